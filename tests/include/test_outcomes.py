"""Live quality once outcomes land (driftline.outcomes), on real flights, a real DVC repo and a
real trained model: measured figures recomputed independently, pending intervals until the
outcomes land, and a concept drift (same inputs, changed outcomes) that input drift misses
but live quality catches."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.helpers import PACKS, workspace_at, write_days

JULY = (dt.date(2013, 7, 1), dt.date(2013, 7, 3))
LIMIT = 0.1


@pytest.fixture
def outcome_home(tmp_path, trained_home, flights):
    """A copy of ``trained_home`` with v0001 live, July 1-3 ingested, and a flights pack whose
    outcomes land 2 days after an interval and whose AUC may fall 0.1 below its holdout."""
    from driftline.registry import Registry

    home = tmp_path / "home"
    shutil.copytree(trained_home, home, symlinks=True)
    packs = tmp_path / "packs"
    shutil.copytree(PACKS / "flights", packs / "flights")
    spec = packs / "flights" / "pack.toml"
    text = spec.read_text()
    text = text.replace("[label]\n", "[label]\ndelay_days = 2\n", 1)
    assert "max_quality_drop = {auc = 0.05}" in text  # the pack's own limit, replaced
    text = text.replace("max_quality_drop = {auc = 0.05}", f"max_quality_drop = {{auc = {LIMIT}}}")
    spec.write_text(text)
    ws = workspace_at(home, packs_dir=packs)
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", "v0001", "first model")
    write_days(ws, flights, *JULY)
    return ws


def test_an_interval_waits_as_pending_until_its_outcomes_land_then_is_measured(
        outcome_home, flights):
    from driftline.outcomes import (
        list_quality_reports,
        measure_interval_and_pending,
        measure_live_quality,
    )

    ws = outcome_home
    pending = measure_live_quality(ws, *JULY)
    assert pending["status"] == "pending"
    assert "2013-07-05" in pending["reason"] and "2013-07-03" in pending["reason"]
    assert "value" not in pending and pending["crossed"] is False
    assert not (ws.reports_dir / "quality" / pending["report_id"] / "quality.html").exists()

    write_days(ws, flights, dt.date(2013, 7, 4), dt.date(2013, 7, 5))
    results = measure_interval_and_pending(ws, dt.date(2013, 7, 4), dt.date(2013, 7, 5))
    assert [r["report_id"] for r in results] == ["quality_2013-07-01_2013-07-03",
                                                  "quality_2013-07-04_2013-07-05"]
    july, newest = results
    assert july["status"] == "measured" and july["source"] == "rescored"
    assert newest["status"] == "pending"  # its outcomes need data up to 2013-07-07
    stored = {r["report_id"]: r["status"] for r in list_quality_reports(ws)}
    assert stored == {"quality_2013-07-01_2013-07-03": "measured",
                      "quality_2013-07-04_2013-07-05": "pending"}


def test_measured_quality_matches_an_independent_score_of_the_same_rows(outcome_home, flights):
    from driftline.features import FeatureSchema
    from driftline.outcomes import measure_live_quality
    from driftline.registry import Registry
    from driftline.scoring import predict

    ws = outcome_home
    write_days(ws, flights, dt.date(2013, 7, 4), dt.date(2013, 7, 5))
    summary = measure_live_quality(ws, *JULY)

    model = Registry(ws.registry_dir, ws.model_name).get("v0001")
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    rows = flights[dates.isin([(2013, 7, d) for d in (1, 2, 3)])]
    rows = rows[rows["arr_delay"].notna()]
    probabilities = predict(ws.pack, model.load_booster(), rows,
                            FeatureSchema.from_dict(model.metadata["feature_schema"]))
    expected = roc_auc_score((rows["arr_delay"] > 15).astype(int), probabilities)

    assert summary["rows"] == len(rows)
    assert summary["value"] == pytest.approx(expected, abs=1e-9)
    assert summary["baseline"] == model.metrics["auc"]
    assert summary["drop"] == pytest.approx(model.metrics["auc"] - expected, abs=1e-9)
    assert summary["limit"] == LIMIT
    assert summary["crossed"] is (summary["drop"] > LIMIT)
    drift = summary["prediction_drift"]
    assert drift["mean"] == pytest.approx(float(np.mean(probabilities)), abs=1e-6)
    assert drift["stattest"] in ("wasserstein", "ks") and drift["score"] >= 0
    out = ws.reports_dir / "quality" / summary["report_id"]
    assert "<html" in (out / "quality.html").read_text()[:500].lower()
    assert json.loads((out / "summary.json").read_text()) == summary
    assert "RocAuc" in (out / "quality.json").read_text()


def test_concept_drift_crosses_live_quality_while_input_drift_stays_below(outcome_home,
                                                                          flights):
    """Same inputs, outcomes swapped between early and late flights: the model's inputs do
    not drift, but its live AUC falls far below its holdout and crosses the limit."""
    from driftline.monitoring import run_drift_report
    from driftline.outcomes import measure_live_quality

    ws = outcome_home
    days = (dt.date(2013, 7, 6), dt.date(2013, 7, 8))

    def reversed_outcomes(rows):
        rows = rows.copy()
        rows["arr_delay"] = 15.5 - rows["arr_delay"]  # late <-> on time
        return rows

    write_days(ws, flights, *days, transform=reversed_outcomes)
    write_days(ws, flights, dt.date(2013, 7, 9), dt.date(2013, 7, 10))
    honest = measure_live_quality(ws, *JULY)
    drift = run_drift_report(ws, *days)
    drifted = measure_live_quality(ws, *days)

    assert drifted["model_version"] == drift["model_version"] == "v0001"
    assert drifted["value"] < 0.5 < honest["value"]
    assert drifted["drop"] > LIMIT and drifted["crossed"] is True
    assert honest["crossed"] is False
    assert honest["drop"] < drifted["drop"]
    # the outcome swap leaves the inputs as they were: the report's input drift is exactly
    # that of the untouched rows, so input drift alone could not have seen it
    from driftline.drift import feature_drift
    from driftline.features import build_features
    from driftline.registry import Registry

    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    untouched = flights[dates.isin([(2013, 7, d) for d in (6, 7, 8)])]
    reference = Registry(ws.registry_dir, ws.model_name).get("v0001").reference()
    clean = feature_drift(ws.pack, build_features(ws.pack, untouched), reference,
                          ws.monitor.column_drift_threshold)
    assert drift["datasets"]["lake"]["share"] == clean["share"]

def test_no_live_model_is_a_clear_error(tmp_path, trained_home):
    from driftline.outcomes import measure_live_quality

    home = tmp_path / "home"
    shutil.copytree(trained_home, home, symlinks=True)
    with pytest.raises(LookupError, match="no flights model was live"):
        measure_live_quality(workspace_at(home), *JULY)
