"""What ``make demo`` prints at the end (scripts/demo.py: ``render_text(collect(ws))`` per
pack, then ``print_access``), on a real small home: a registered model, a gate verdict kept
where the gate task keeps it, a drift report claimed by the sensor, and the model deployed
blue-green behind nginx. Every expected figure is read from the registry, the verdict file,
the report and the serving state, not from the summary code.

The driver's loop itself (ingest, traffic, monitor, sensor) runs through the real scheduler
in tests/e2e/test_scheduler_e2e.py; a whole demo run is too slow for the suite."""

from __future__ import annotations

import datetime as dt
import json
import sys

import pytest
from driftline.evaluation import run_gate
from driftline.monitoring import drift_dir, run_drift_report
from driftline.overview import collect, render_text
from driftline.registry import Registry
from driftline.retraining import claim_interval, decisions

from tests.helpers import ROOT, settings_at, workspace_at

sys.path.insert(0, str(ROOT / "scripts"))
import demo
from airflow_stack import AirflowStack, airflow_env

pytestmark = pytest.mark.nginx
RUN = "manual__2013-01-25T00_00_00_00_00"  # a gate task's per-run directory name


@pytest.fixture
def demo_home(home_copy):
    """``home_copy`` after a first train → gate → deploy and one claimed drift report."""
    from driftline.serving.bluegreen import BlueGreen, stop_serving

    ws = workspace_at(home_copy)
    registry = Registry(ws.registry_dir, ws.model_name)
    v1 = registry.get("v0001")
    run_gate(ws.pack, v1, None, ws.gate, ws.reports_dir / "gates" / "flights_train" / RUN)
    BlueGreen(ws).deploy(v1, "first model")
    registry.set_alias("champion", "v0001", "first model")
    run_drift_report(ws, dt.date(2013, 1, 20), dt.date(2013, 1, 24))
    (decision,) = decisions(ws)
    assert claim_interval(ws, decision, "scheduled__2013-01-25")
    yield home_copy
    stop_serving(settings_at(home_copy))


def test_the_summary_names_models_gates_drift_live_slot_reports_and_endpoints(
        demo_home, tmp_path, capsys):
    ws = workspace_at(demo_home)
    summary = render_text(collect(ws))
    lines = summary.splitlines()

    v1 = Registry(ws.registry_dir, "flights").get("v0001")
    (model,) = [line for line in lines if line.startswith("  v0001  ")]
    assert f"auc {v1.metrics['auc']:.4f}" in model and f"logloss {v1.metrics['logloss']:.4f}" \
        in model
    assert f"data {v1.data_version[:12]}" in model and model.endswith("<- champion")
    assert "window 2013-01-01..2013-01-24" in model

    verdict = json.loads((ws.reports_dir / "gates" / "flights_train" / RUN /
                          "verdict.json").read_text())
    gates = lines[lines.index("== gates ==") + 1:]
    assert gates[0] == f"  v0001 vs (none): PASS - {verdict['reason']}"
    (check,) = verdict["checks"]  # the first model: the floor only
    assert gates[1].split() == [*check["name"].split(), f"{check['value']:.4f}", ">=",
                                str(check["threshold"]), "ok"]

    report = json.loads((drift_dir(ws) / "drift_2013-01-20_2013-01-24" /
                         "summary.json").read_text())
    (drift,) = [line for line in lines if line.startswith("  2013-01-20..2013-01-24  share")]
    assert f"share {report['share']:.3f}" in drift and "vs v0001" in drift
    retrain = lines[lines.index("== retrain policy (per monitored interval) ==") + 1]
    assert retrain.startswith("  2013-01-20..2013-01-24  claimed: started retraining "
                              "(scheduled__2013-01-25)")

    state = json.loads((ws.serving_dir / "state.json").read_text())
    live = state["live"]
    assert f"  live slot: {live} (v0001)" in lines
    assert (f"== reports == {demo_home}/reports/flights (gates/, drift/, quality/, "
            "validation/)") in lines

    stack = AirflowStack(airflow_env(ROOT, tmp_path / "airflow", demo_home, port=8080))
    demo.print_access(stack, ws.settings, ["flights", "bikes"])
    access = capsys.readouterr().out.splitlines()
    port = ws.settings.serving.router_port
    assert access[0].startswith("== Airflow UI == http://127.0.0.1:8080  (login admin / admin)")
    assert access[0].endswith("driftline page: http://127.0.0.1:8080/driftline/")
    assert access[1] == (f"== flights endpoint == http://127.0.0.1:{port}/flights/predict "
                         "(/version, /health)")
    assert access[2].startswith(f"== bikes endpoint == http://127.0.0.1:{port}/bikes/predict")
