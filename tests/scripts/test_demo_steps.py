"""What ``make demo`` prints after each monitor run (the month's live quality, and months
measured later) and for the weak candidate the gate refuses (scripts/demo.py), on the files
the real code wrote in ``lifecycle_home``: July 1-3's live quality (measured), July 4-6's
(pending) and the gate's verdict refusing a one-stump v0002. Every expected figure is read
from those files, not from the formatting code."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys

import pytest
from driftline.outcomes import list_quality_reports, measure_live_quality

from tests.helpers import LIFECYCLE_RUN, ROOT, workspace_at

sys.path.insert(0, str(ROOT / "scripts"))
import demo

JULY = (dt.date(2013, 7, 1), dt.date(2013, 7, 3))


@pytest.fixture(scope="module")
def quality(lifecycle_home):
    """The lifecycle's live-quality summaries by start day."""
    return {r["start"]: r for r in list_quality_reports(workspace_at(lifecycle_home))}


def test_a_measured_interval_shows_the_live_figure_against_holdout_rows_and_prediction_drift(
        quality):
    summary = quality["2013-07-01"]
    drift = summary["prediction_drift"]
    limit = "none" if summary["limit"] is None else summary["limit"]
    crossed = ", CROSSED" if summary["crossed"] else ""
    assert demo.quality_line("flights", summary) == (
        f"flights live auc 2013-07-01..2013-07-03: {summary['value']:.3f} vs holdout "
        f"{summary['baseline']:.3f} (drop {summary['drop']:.3f}, limit {limit}{crossed}) on "
        f"{summary['rows']:,} rows ({summary['source']}); prediction drift "
        f"{drift['stattest']} {drift['score']:.2f}{' (drifted)' if drift['drifted'] else ''}")


def test_a_pending_interval_says_why(quality):
    summary = quality["2013-07-04"]
    assert summary["status"] == "pending"
    assert demo.quality_line("flights", summary) == (
        f"flights live auc 2013-07-04..2013-07-06: pending: {summary['reason']}")


def test_a_whole_month_is_named_and_a_crossed_limit_shown(quality):
    summary = {**quality["2013-07-01"], "start": "2013-04-01", "end": "2013-04-30",
               "limit": 0.01, "crossed": True}
    line = demo.quality_line("flights", summary)
    assert line.startswith("flights live auc April 2013: ")
    assert ", limit 0.01, CROSSED) on " in line
    assert demo.interval_label("2013-02-01", "2013-02-28") == "February 2013"
    assert demo.interval_label("2013-02-01", "2013-02-27") == "2013-02-01..2013-02-27"


def test_an_interval_measured_after_its_outcomes_landed_is_shown_once(lifecycle_home, tmp_path,
                                                                       flights, capsys):
    from driftline.versioning import DataRepo

    home = tmp_path / "home"
    shutil.copytree(lifecycle_home, home, symlinks=True)
    ws = workspace_at(home)
    pack_demo = demo.PackDemo(None, ws, flights)
    pack_demo.show_quality(dt.date(2013, 7, 4), dt.date(2013, 7, 6))
    assert capsys.readouterr().out.startswith(
        "   flights live auc 2013-07-04..2013-07-06: pending: ")

    repo = DataRepo.of(ws)
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    for day in (dt.date(2013, 7, 5), dt.date(2013, 7, 6)):
        repo.write_partition(day, flights[dates == (day.year, day.month, day.day)])
    measured = measure_live_quality(ws, dt.date(2013, 7, 4), dt.date(2013, 7, 6))
    assert measured["status"] == "measured"
    pack_demo.show_quality(dt.date(2013, 7, 7), dt.date(2013, 7, 31))  # not measured at all
    pack_demo.show_quality(*JULY)
    assert capsys.readouterr().out.splitlines() == [
        "   flights live quality July 2013: no summary was written (see the monitor's "
        "live_quality task log)",
        f"   measured later: {demo.quality_line('flights', measured)}",
        f"   {demo.quality_line('flights', list_quality_reports(ws)[0])}"]


def test_the_refusal_names_each_failed_check_and_the_interval_p_value_and_rows(lifecycle_home):
    ws = workspace_at(lifecycle_home)
    verdict = json.loads((ws.reports_dir / "gates" / "flights_train" / LIFECYCLE_RUN /
                          "verdict.json").read_text())
    failed = [c for c in verdict["checks"] if not c["passed"]]
    (interval,) = [c["statistics"] for c in verdict["checks"] if c["statistics"]]
    assert demo.significantly_worse(verdict)

    lines = demo.verdict_lines(verdict)
    assert lines[0] == (f"gate refused v0002 ({len(failed)} of {len(verdict['checks'])} checks "
                        "failed; champion v0001 stays live)")
    assert lines[1:-1] == [
        f"FAILED {c['name']}: {c['value']:.4f}, limit {c['op']} {c['threshold']}, off by "
        f"{-c['margin']:.4f}" for c in failed]
    assert lines[-1] == (
        f"candidate - champion auc {interval['difference']:+.4f}, 95% CI "
        f"[{interval['low']:+.4f}, {interval['high']:+.4f}], p = {interval['p_value']:.4f}, "
        f"{interval['rows']:,} holdout rows (paired bootstrap, 2000 resamples, seed 0)")
    assert interval["high"] < 0


def test_a_passing_verdict_is_not_significantly_worse(lifecycle_home):
    ws = workspace_at(lifecycle_home)
    verdict = json.loads((ws.reports_dir / "gates" / "flights_train" / LIFECYCLE_RUN /
                          "verdict.json").read_text())
    passed = {**verdict, "checks": [{**c, "passed": True} for c in verdict["checks"]]}
    assert not demo.significantly_worse(passed)
    assert demo.verdict_lines(passed)[0] == "gate passed v0002"
