"""The retrain policy (driftline.retraining) on a real registry and real report files: which
interval retrains, by which rule, and what it does after a retrain the gate refused."""

from __future__ import annotations

import shutil

import pytest

from tests.policy_reports import drift, policy_home, quality


def actions(ws) -> dict[str, str]:
    from driftline.retraining import decisions

    return {d.start[:7]: d.action for d in decisions(ws)}


def test_a_real_crossing_report_triggers_once_with_its_figure_as_the_reason(tmp_path,
                                                                            lifecycle_home):
    from driftline.monitoring import drift_dir, list_drift_reports
    from driftline.outcomes import list_quality_reports
    from driftline.retraining import claim_interval, decisions, next_trigger, train_conf

    from tests.helpers import workspace_at

    home = tmp_path / "home"
    shutil.copytree(lifecycle_home, home, symlinks=True)
    ws = workspace_at(home)
    # 1-3 July, written by run_drift_report and measure_live_quality: both cross (the
    # flights pack's live AUC limit is 0.05)
    (report,) = list_drift_reports(drift_dir(ws))
    (measured,) = [q for q in list_quality_reports(ws) if q["status"] == "measured"]
    assert measured["drop"] > 0.05
    decision = next_trigger(ws)
    assert (decision.start, decision.end) == (report["start"], report["end"])
    assert [o.rule for o in decision.crossing] == ["drift", "quality"]
    assert decision.reason == (
        f"retrain policy: drift rule: drift report {report['report_id']} share "
        f"{report['share']:.3f} >= 0.4; quality rule: quality report {measured['report_id']} "
        f"auc {measured['drop']:+.4f} worse than v0001's holdout (> limit 0.05)")
    assert train_conf(decision) == {"reason": decision.reason,
                                    "drift_report_id": report["report_id"],
                                    "quality_report_id": measured["report_id"],
                                    "window_end": report["end"]}

    assert claim_interval(ws, decision, "scheduled__1") is True
    assert claim_interval(ws, decision, "scheduled__2") is False  # a rerun or a second sensor
    assert next_trigger(ws) is None
    (claimed,) = [d for d in decisions(ws) if d.claim]
    assert claimed.action == "claimed" and claimed.claim["by"] == "scheduled__1"
    assert claimed.claim["drift_report_id"] == report["report_id"]
    assert claimed.claim["figures"][0]["figure"] == report["share"]


def test_consecutive_crossings_are_needed_and_a_lower_month_starts_the_count_again(
        tmp_path, trained_home):
    from driftline.retraining import next_trigger

    ws = policy_home(tmp_path, trained_home, retrain="consecutive = 2")
    drift(ws, 3, 0.5)
    assert actions(ws) == {"2013-03": "waiting"} and next_trigger(ws) is None
    drift(ws, 4, 0.2)
    drift(ws, 5, 0.5)
    assert actions(ws) == {"2013-03": "waiting", "2013-04": "below", "2013-05": "waiting"}
    drift(ws, 6, 0.45)
    decision = next_trigger(ws)
    assert decision.start == "2013-06-01" and "(2 consecutive)" in decision.reason


def test_the_cooldown_counts_from_the_champions_data_and_the_last_retrain(tmp_path,
                                                                          trained_home):
    from driftline.retraining import claim_interval, decisions, next_trigger

    ws = policy_home(tmp_path, trained_home, retrain="cooldown_days = 60")
    drift(ws, 2, 0.5)  # ends 2013-02-28: within 60 days of v0001's window end, 2013-01-24
    (february,) = decisions(ws)
    assert february.action == "cooldown" and "until 2013-03-25" in february.reason
    drift(ws, 4, 0.5)
    decision = next_trigger(ws)
    assert decision.start == "2013-04-01"
    assert claim_interval(ws, decision, "scheduled__april")
    drift(ws, 5, 0.5)  # 30 days after April's retrain: cooling down again
    drift(ws, 7, 0.5)
    assert actions(ws) == {"2013-02": "passed over", "2013-04": "claimed",
                           "2013-05": "cooldown", "2013-07": "retrain"}


def test_after_a_refused_retrain_the_same_reports_never_retrigger_the_next_crossing_does(
        tmp_path, trained_home):
    """The gate refused the retrain the April report started: the champion stays v0001, the
    April interval stays claimed, and only a newer crossing report starts another."""
    from driftline.retraining import claim_interval, next_trigger

    ws = policy_home(tmp_path, trained_home)
    drift(ws, 4, 0.5)
    assert claim_interval(ws, next_trigger(ws), "scheduled__april")
    for _ in range(3):  # the sensor looks again and again: nothing
        assert next_trigger(ws) is None
    drift(ws, 5, 0.3)
    assert next_trigger(ws) is None
    drift(ws, 6, 0.6)
    assert next_trigger(ws).start == "2013-06-01"


def test_reports_of_a_replaced_model_are_superseded_and_only_the_newest_due_interval_triggers(
        tmp_path, trained_home):
    from driftline.retraining import next_trigger

    ws = policy_home(tmp_path, trained_home)
    drift(ws, 3, 0.9, model="v0000")  # measured a model that is no longer the champion
    drift(ws, 4, 0.5)
    drift(ws, 5, 0.6)
    assert actions(ws) == {"2013-03": "superseded", "2013-04": "passed over",
                           "2013-05": "retrain"}
    assert next_trigger(ws).start == "2013-05-01"


def test_the_quality_rule_triggers_on_a_live_drop_past_its_limit_and_names_its_report(
        tmp_path, trained_home):
    from driftline.retraining import next_trigger, train_conf

    ws = policy_home(tmp_path, trained_home, monitor="max_quality_drop = {auc = 0.05}")
    drift(ws, 4, 0.1)
    quality(ws, 4, 0.04)
    assert actions(ws) == {"2013-04": "below"}
    drift(ws, 5, 0.1)
    report_id = quality(ws, 5, 0.08)
    decision = next_trigger(ws)
    assert [o.rule for o in decision.crossing] == ["quality"]
    assert "quality report quality_2013-05-01_2013-05-28 auc +0.0800 worse than v0001's " \
           "holdout (> limit 0.05)" in decision.reason
    assert train_conf(decision) == {"reason": decision.reason, "drift_report_id": "",
                                    "quality_report_id": report_id, "window_end": "2013-05-28"}


def test_a_rule_that_is_off_or_has_no_limit_never_triggers(tmp_path, trained_home):
    from driftline.retraining import next_trigger

    ws = policy_home(tmp_path, trained_home, retrain='on = ["quality"]',
                     monitor="max_quality_drop = {}")
    drift(ws, 4, 0.9)  # the drift rule is off
    quality(ws, 4, 0.5)  # no max_quality_drop: the quality rule has no limit
    assert next_trigger(ws) is None
    assert actions(ws) == {"2013-04": "below"}


def test_a_cadence_rule_without_its_days_is_refused_naming_the_section(tmp_path, trained_home):
    with pytest.raises(Exception, match=r"\[packs\.flights\.retrain\]: the cadence rule is "
                                        r"on but cadence_days is not set"):
        policy_home(tmp_path, trained_home, retrain='on = ["cadence"]')


def test_concurrent_claims_of_one_interval_give_exactly_one_retrain(tmp_path, trained_home):
    from concurrent.futures import ThreadPoolExecutor

    from driftline.retraining import claim_interval, next_trigger

    ws = policy_home(tmp_path, trained_home)
    drift(ws, 7, 0.7)
    decision = next_trigger(ws)
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda i: claim_interval(ws, decision, f"run{i}"), range(8)))
    assert wins.count(True) == 1
    assert next_trigger(ws) is None
