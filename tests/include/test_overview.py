"""The view behind the driftline pages (:func:`driftline.overview.collect`) on a real home
(``lifecycle_home``): a refused gate, a drift report that crossed, a quarantined landing file
and a validated interval, each read back from the file the stage wrote, and the attention list
they make."""

from __future__ import annotations

import json
import shutil

import pytest
from driftline.monitoring import drift_dir
from driftline.overview import collect, render_text
from driftline.retraining import claim_interval, next_trigger

from tests.helpers import LIFECYCLE_RUN as RUN
from tests.helpers import workspace_at


@pytest.fixture
def home(lifecycle_home):
    return lifecycle_home


def test_the_last_gate_is_the_refused_one_and_it_leads_the_attention_list(home):
    ws = workspace_at(home)
    view = collect(ws)
    saved = json.loads((ws.reports_dir / "gates" / "flights_train" / RUN /
                        "verdict.json").read_text())
    (gate,) = view["gates"]
    assert {k: gate[k] for k in saved} == saved
    assert gate["report_path"] == f"gates/flights_train/{RUN}"
    assert {"quality.html", "drift.html"} <= set(gate["reports"])
    summary = view["summary"]
    assert summary["last_gate"] == {"candidate": "v0002", "champion": "v0001",
                                    "passed": False, "reason": saved["reason"]}
    assert summary["attention"][0] == f"the last gate refused v0002: {saved['reason']}"
    assert view["higher_is_better"] is True  # AUC


def test_drift_per_column_comes_from_the_report_and_a_claim_clears_the_attention(home,
                                                                              tmp_path):
    ws = workspace_at(home)
    report_id = "drift_2013-07-01_2013-07-03"
    saved = json.loads((drift_dir(ws) / report_id / "summary.json").read_text())
    assert saved["crossed"]
    (drift,) = collect(ws)["drift"]
    lake = drift["datasets"]["lake"]
    assert lake["columns"] == saved["datasets"]["lake"]["columns"]
    assert lake["drifted"] == saved["datasets"]["lake"]["drifted"] and lake["drifted"]
    assert lake["report"] == "lake.html" and drift["report_path"] == f"drift/{report_id}"
    assert drift["column_threshold"] == ws.monitor.column_drift_threshold
    due = [line for line in collect(ws)["summary"]["attention"] if "retrain policy" in line]
    decision = next_trigger(ws)
    assert due == [f"the retrain policy is due on 2013-07-01..2013-07-03 and no retraining "
                   f"started yet: {decision.reason}"]

    copy = tmp_path / "claimed"
    shutil.copytree(home, copy, symlinks=True)
    claimed = workspace_at(copy)
    assert claim_interval(claimed, decision, "scheduled__2013-07-04")
    view = collect(claimed)
    (retrain,) = view["retrain"]
    assert (retrain["action"], retrain["claim"]["by"]) == ("claimed", "scheduled__2013-07-04")
    assert retrain["claim"]["drift_report_id"] == report_id
    assert not [line for line in view["summary"]["attention"] if "retrain policy" in line]
    assert view["summary"]["last_drift"] == {"report_id": report_id, "share": saved["share"],
                                             "threshold": saved["threshold"], "crossed": True}


def test_quarantined_files_and_validated_intervals_are_listed_with_their_checks(home, flights):
    ws = workspace_at(home)
    view = collect(ws)
    reason = json.loads((ws.quarantine_dir / "flights_2013-07-05.csv.reason.json").read_text())
    assert view["quarantine"] == [{"file": "flights_2013-07-05.csv", "failed": reason["failed"],
                                   "quarantined_at": reason["quarantined_at"]}]
    assert reason["failed"][0].startswith("required column present on column 'year' FAILED")
    assert view["summary"]["quarantined"] == 1
    assert "1 landing file(s) quarantined: flights_2013-07-05.csv" in view["summary"][
        "attention"]
    (validated,) = [v for v in view["validation"] if v["interval"] == "2013-07-04"]
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    assert validated["rows"] == int((dates == (2013, 7, 4)).sum()) and validated["passed"]
    assert validated["report_path"] == "validation/2013-07-04.json"


def test_a_champion_that_is_not_deployed_needs_attention(home):
    view = collect(workspace_at(home))
    assert view["serving"] == {} and view["summary"]["live_version"] is None
    assert "champion v0001 is registered but nothing is deployed" in view["summary"][
        "attention"]


def test_live_quality_per_interval_is_listed_measured_or_pending(home):
    ws = workspace_at(home)
    view = collect(ws)
    july, later = view["quality"]
    saved = json.loads((ws.reports_dir / "quality" / "quality_2013-07-01_2013-07-03" /
                        "summary.json").read_text())
    assert july["status"] == "measured" and july["value"] == saved["value"]
    assert july["report"] == "quality.html"
    assert july["report_path"] == "quality/quality_2013-07-01_2013-07-03"
    assert later["status"] == "pending" and later["report"] is None
    assert "2013-07-06" in later["reason"]
    summary = view["summary"]
    assert summary["last_live_quality"] == {k: saved[k] for k in (
        "report_id", "metric", "value", "baseline", "drop", "limit", "crossed",
        "model_version")}
    assert summary["pending_quality"] == 1
    crossing = [line for line in summary["attention"] if line.startswith("live auc")]
    assert bool(crossing) is saved["crossed"]
    text = render_text(view)
    assert f"auc {saved['value']:.4f}" in text and "2013-07-04..2013-07-06  pending" in text
