"""The training plan, decided in the core from how a run was started (real DVC repo with
2013-01-01..24 of flights; v0001 trained on it)."""

from __future__ import annotations

import pytest
from driftline.planning import (
    TRAIN_OPTIONS,
    NotDue,
    PlanError,
    due_or_raise,
    plan_training,
    training_command,
)
from driftline.registry import Registry
from driftline.versioning import DataRepo

from tests.helpers import workspace_at

DEFAULTS = {name: spec["default"] for name, spec in TRAIN_OPTIONS.items()}


@pytest.fixture
def ws(home_copy):
    return workspace_at(home_copy)


def plan(ws, conf=None, events=None, **params):
    return plan_training(ws, DataRepo.of(ws), {**DEFAULTS, **params}, conf or {}, events or [])


def test_a_manual_run_trains_the_newest_window(ws):
    got = plan(ws, {"reason": "by hand"})
    head = DataRepo.of(ws).head()
    # window_days = 24 (tests/driftline-test.toml), newest partition 2013-01-24
    assert got == {"pack": "flights", "data_version": head, "start": "2013-01-01",
                   "end": "2013-01-24", "params": {}, "reason": "by hand", "trigger": "manual"}
    assert training_command(got)[:4] == ["-m", "driftline.training", "--pack", "flights"]


def test_a_hyperparameter_at_the_top_level_is_refused_with_the_accepted_keys(ws):
    with pytest.raises(PlanError) as err:
        plan(ws, {"num_boost_round": -5})
    message = str(err.value)
    assert "unknown option(s) ['num_boost_round']" in message
    assert "accepted: ['window_start', 'window_end', 'window_days', 'data_version', " in message
    assert "put them under \"hyperparameters\"" in message


def test_an_unknown_hyperparameter_is_refused(ws):
    with pytest.raises(PlanError, match=r"unknown hyperparameter\(s\) \['seed'\]"):
        plan(ws, {"hyperparameters": {"seed": 3}})


def test_a_data_version_that_does_not_exist_is_refused(ws):
    with pytest.raises(PlanError, match="'deadbeef' is not a commit of the data repository"):
        plan(ws, {"data_version": "deadbeef"})


def test_a_short_data_version_is_resolved_to_its_commit(ws):
    head = DataRepo.of(ws).head()
    assert plan(ws, {"data_version": head[:8]})["data_version"] == head


def test_a_window_past_the_data_is_refused_in_the_users_own_dates(ws):
    with pytest.raises(PlanError, match=r"window_end 2013-03-31 is after the newest data "
                                        r"\(2013-01-01\.\.2013-01-24 at data version"):
        plan(ws, {"window_end": "2013-03-31"})
    with pytest.raises(PlanError, match=r"window 2012-11-01\.\.2012-11-30 holds no data"):
        plan(ws, {"window_start": "2012-11-01", "window_end": "2012-11-30"})
    with pytest.raises(PlanError, match="window_start 2013-01-20 is after window_end 2013-01-10"):
        plan(ws, {"window_start": "2013-01-20", "window_end": "2013-01-10"})


def test_a_drift_run_for_a_month_still_being_ingested_ends_at_the_newest_data(ws):
    got = plan(ws, {"drift_report_id": "2013-01", "window_end": "2013-01-31"})
    assert (got["trigger"], got["end"], got["start"]) == ("drift", "2013-01-24", "2013-01-01")
    assert got["reason"] == "drift report 2013-01"


def test_an_asset_run_bootstraps_then_waits_until_due(ws):
    head = DataRepo.of(ws).head()
    events = [{"day": "2013-01-23", "data_version": head}, {"day": "2013-01-24",
                                                            "data_version": head}]
    got = plan(ws, events=events)
    assert (got["trigger"], got["end"]) == ("asset", "2013-01-24")
    assert got["reason"] == "new data: 2 partition event(s) up to 2013-01-24"
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", "v0001", "test")
    with pytest.raises(NotDue, match="scheduled retraining is off"):
        plan(ws, events=events)
    with pytest.raises(NotDue, match="after 2013-01-31"):
        plan(ws, events=events, retrain_every_days=7)


def test_a_quality_run_from_the_retrain_policy_plans_like_a_drift_run_with_its_reason(ws):
    """The retrain policy's conf: empty strings for the report that did not trigger (a conf
    renders through templates as text) are ignored like absent keys."""
    reason = "retrain policy: quality rule: quality report quality_2013-01 auc +0.0800 worse"
    got = plan(ws, {"reason": reason, "drift_report_id": "", "window_end": "2013-01-31",
                    "quality_report_id": "quality_2013-01"})
    assert (got["trigger"], got["end"], got["reason"]) == ("quality", "2013-01-24", reason)


def test_the_packs_cadence_rule_retrains_new_data_when_due(tmp_path, trained_home, flights):
    import datetime as dt

    from tests.helpers import write_days
    from tests.policy_reports import policy_home

    ws = policy_home(tmp_path, trained_home, retrain='on = ["drift", "cadence"]\n'
                                                     "cadence_days = 20")
    repo = DataRepo.of(ws)
    write_days(ws, flights, dt.date(2013, 1, 25), dt.date(2013, 2, 12))
    events = [{"day": "2013-02-12", "data_version": repo.head()}]
    with pytest.raises(NotDue, match=r"v0001 was trained up to 2013-01-24; next scheduled "
                                     r"retraining after 2013-02-13"):
        plan(ws, events=events)
    write_days(ws, flights, dt.date(2013, 2, 13), dt.date(2013, 2, 13))
    got = plan(ws, events=[{"day": "2013-02-13", "data_version": repo.head()}])
    assert got["reason"] == ("new data: 1 partition event(s) up to 2013-02-13; cadence rule: "
                             "20 days of data since champion v0001's window end 2013-01-24 "
                             "(every 20)")
    # a run's own retrain_every_days overrides the pack's cadence
    with pytest.raises(NotDue, match="after 2013-02-23"):
        plan(ws, events=[{"day": "2013-02-13", "data_version": repo.head()}],
             retrain_every_days=30)


def test_scheduled_retraining_counts_from_the_flights_champions_window_end(ws):
    import datetime as dt

    assert due_or_raise(ws, dt.date(2013, 1, 24), None) is None  # no champion: bootstrap
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", "v0001", "t")
    with pytest.raises(NotDue, match="scheduled retraining is off"):
        due_or_raise(ws, dt.date(2013, 2, 1), None)
    with pytest.raises(NotDue, match="after 2013-01-31"):
        due_or_raise(ws, dt.date(2013, 1, 30), 7)
    assert due_or_raise(ws, dt.date(2013, 1, 31), 7) == (
        "cadence rule: 7 days of data since champion v0001's window end 2013-01-24 (every 7)")


def test_a_monthly_packs_retraining_counts_from_its_own_champion(bikes_trained_home,
                                                                   home_copy, tmp_path):
    """A monthly pack's windows end on a month's last day; only its own champion decides,
    not the flights champion in the same registry."""
    import datetime as dt
    import shutil

    home = tmp_path / "both-packs"
    shutil.copytree(bikes_trained_home, home, symlinks=True)
    shutil.copytree(home_copy / "registry" / "flights", home / "registry" / "flights")
    ws = workspace_at(home, "bikes")
    registry = Registry(ws.registry_dir, "bikes")
    assert registry.get("v0001").metadata["window"]["end"] == "2011-02-28"
    Registry(ws.registry_dir, "flights").set_alias("champion", "v0001", "t")
    assert due_or_raise(ws, dt.date(2011, 3, 31), None) is None  # no bikes champion yet
    registry.set_alias("champion", "v0001", "t")
    with pytest.raises(NotDue, match="v0001 is live and scheduled"):
        due_or_raise(ws, dt.date(2011, 3, 31), None)
    with pytest.raises(NotDue, match=r"up to 2011-02-28.*after 2011-04-29"):
        due_or_raise(ws, dt.date(2011, 3, 31), 60)  # March: 31 days on
    assert due_or_raise(ws, dt.date(2011, 4, 30), 61).startswith("cadence rule: 61 days")
