"""PlanTrainingOperator: the core decides the plan (tests/include/test_planning.py); the
operator reads it from the run's context and maps the core's refusals to Airflow's: not due
skips the run, a bad conf fails it without retries."""

from __future__ import annotations

import types

import pytest
from driftline.planning import TRAIN_OPTIONS
from driftline.registry import Registry
from driftline.versioning import DataRepo

from tests.helpers import workspace_at

DEFAULTS = {name: spec["default"] for name, spec in TRAIN_OPTIONS.items()}


def context(conf=None, events=(), **params) -> dict:
    """The parts of a task's context the operator reads: Params, the run's conf and the
    ingest Asset events that triggered it."""
    from driftline_provider.assets import data_asset

    return {"params": {**DEFAULTS, **params},
            "dag_run": types.SimpleNamespace(conf=conf or {}),
            "triggering_asset_events": {data_asset("flights"): [
                types.SimpleNamespace(extra=extra) for extra in events]}}


def test_an_asset_triggered_run_bootstraps_then_is_skipped_until_due(home_copy, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException
    from driftline_provider.operators.training import PlanTrainingOperator

    monkeypatch.setenv("DRIFTLINE_HOME", str(home_copy))
    ws = workspace_at(home_copy)  # v0001 was trained up to 2013-01-24
    head = DataRepo.of(ws).head()
    events = [{"day": "2013-01-24", "data_version": head}]
    plan = PlanTrainingOperator(task_id="plan", pack="flights")
    assert plan.execute(context(events=events))["trigger"] == "asset"  # no champion yet
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", "v0001", "t")
    with pytest.raises(AirflowSkipException, match="scheduled retraining is off"):
        plan.execute(context(events=events))
    with pytest.raises(AirflowSkipException, match="after 2013-01-31"):
        plan.execute(context(events=events, retrain_every_days=7))
    # a manual run with the champion live trains all the same
    assert plan.execute(context(conf={"reason": "by hand"}))["reason"] == "by hand"


def test_a_conf_the_planner_refuses_fails_the_task_without_retries(home_copy, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException
    from driftline_provider.operators.training import PlanTrainingOperator

    monkeypatch.setenv("DRIFTLINE_HOME", str(home_copy))
    plan = PlanTrainingOperator(task_id="plan", pack="flights")
    with pytest.raises(AirflowFailException, match="'deadbeef' is not a commit"):
        plan.execute(context(conf={"data_version": "deadbeef"}))
