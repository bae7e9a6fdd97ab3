"""The whole loop through a real Airflow scheduler, triggerer, dag-processor and api-server.

ingest (backfill) → manual train → gate → deploy → later data → monitor (backfill) → drift
sensor in the triggerer → drift-triggered train → gate → deploy or refuse. Nothing here
calls DAG code: every step goes through Airflow's REST API and scheduler.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import pytest
from driftline.registry import Registry
from driftline.sources import iter_days, replay

from tests.helpers import ROOT, TEST_CONFIG, settings_at

sys.path.insert(0, str(ROOT / "scripts"))
from airflow_stack import AirflowStack, airflow_env

pytestmark = [pytest.mark.e2e, pytest.mark.nginx]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = airflow_env(ROOT, root / "airflow", root / "driftline", port=18080, extra={
        "DRIFTLINE_CONFIG": str(TEST_CONFIG),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root}/airflow/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "DRIFTLINE_PRELOAD": "1",
    })
    stack = AirflowStack(env)
    stack.init()
    stack.start()
    try:
        stack.wait_healthy()
        yield stack, settings_at(root / "driftline")
    finally:
        stack.stop()
        from driftline.serving.bluegreen import BlueGreen

        BlueGreen(settings_at(root / "driftline")).stop_all()
        for log in sorted((root / "airflow" / "logs").glob("*.log")):
            if os.environ.get("DRIFTLINE_E2E_LOGS"):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def test_drift_triggers_retraining_through_the_real_scheduler(stack):
    stack, settings = stack
    api = stack.api()
    for dag_id in ("driftline_ingest", "driftline_train", "driftline_monitor",
                   "driftline_retrain_on_drift"):
        api.wait_for_dag(dag_id)

    start, end = dt.date(2013, 1, 1), dt.date(2013, 1, 24)
    replay(settings.landing_dir, start, end)
    api.backfill("driftline_ingest", str(start), str(end), max_active_runs=4)
    runs = api.wait_runs("driftline_ingest", {str(d) for d in iter_days(start, end)},
                         timeout=900)
    assert {r["state"] for r in runs} == {"success"}

    api.set_paused("driftline_train", False)
    run_id = api.trigger("driftline_train", {"window_start": str(start),
                                             "window_end": str(end), "reason": "e2e v1"})
    assert api.wait_run("driftline_train", run_id, timeout=600)["state"] == "success"
    registry = Registry(settings.registry_dir, settings.model_name)
    v1 = registry.champion().version

    api.set_paused("driftline_retrain_on_drift", False)
    july = dt.date(2013, 7, 1), dt.date(2013, 7, 7)
    replay(settings.landing_dir, *july)
    api.backfill("driftline_ingest", str(july[0]), str(july[1]), max_active_runs=4)
    api.wait_runs("driftline_ingest", {str(d) for d in iter_days(*july)}, timeout=600)
    api.backfill("driftline_monitor", "2013-07-01", "2013-07-01", max_active_runs=1)
    (monitor,) = api.wait_runs("driftline_monitor", {"2013-07-01"}, timeout=600)
    assert monitor["state"] == "success"
    summary = json.loads((settings.reports_dir / "drift" / "drift_2013-07-01_2013-07-31" /
                          "summary.json").read_text())
    assert summary["crossed"], summary

    import time

    deadline = time.monotonic() + 600
    drift_run = None
    while time.monotonic() < deadline and drift_run is None:
        drift_run = next((r for r in api.runs("driftline_train")
                          if (r.get("conf") or {}).get("drift_report_id") == summary[
                              "report_id"]), None)
        time.sleep(3)
    assert drift_run, "the drift sensor did not trigger driftline_train"
    finished = api.wait_run("driftline_train", drift_run["dag_run_id"], timeout=600)
    states = {t["task_id"]: t["state"]
              for t in api.task_instances("driftline_train", drift_run["dag_run_id"])}
    assert states["train"] == "success"
    assert states["gate"] in {"success", "failed"}  # deployed or refused, both with reasons
    if finished["state"] == "success":
        assert registry.champion().version != v1
    else:
        assert registry.champion().version == v1
        assert registry.events()[-1]["event"] == "refused"
    claim = json.loads((Path(summary["report_dir"]) / "retrain_claim.json").read_text())
    assert claim["by"].startswith(("scheduled__", "manual__", "asset_triggered__"))
