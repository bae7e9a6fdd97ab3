"""PlanTrainingOperator's retrain policy: an asset-triggered retraining is skipped until it
is due, counted from the pack's own champion."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from tests.helpers import workspace_at


def test_flights_asset_triggered_retraining_is_skipped_until_due(home_copy):
    from airflow.sdk.exceptions import AirflowSkipException
    from driftline.registry import Registry
    from driftline_provider.operators.training import PlanTrainingOperator

    ws = workspace_at(home_copy)  # v0001 was trained up to 2013-01-24
    plan = PlanTrainingOperator(task_id="plan", pack="flights")
    plan._skip_unless_due(ws, dt.date(2013, 1, 24), None)  # no champion: bootstrap
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", "v0001", "t")
    with pytest.raises(AirflowSkipException, match="scheduled retraining is off"):
        plan._skip_unless_due(ws, dt.date(2013, 2, 1), None)
    with pytest.raises(AirflowSkipException, match="after 2013-01-31"):
        plan._skip_unless_due(ws, dt.date(2013, 1, 30), 7)
    plan._skip_unless_due(ws, dt.date(2013, 1, 31), 7)  # due: no exception


def test_bikes_asset_triggered_retraining_counts_from_its_own_champion(bikes_trained_home,
                                                                       home_copy, tmp_path):
    """A monthly pack's windows end on a month's last day; only its own champion decides,
    not the flights champion in the same registry."""
    from airflow.sdk.exceptions import AirflowSkipException
    from driftline.registry import Registry
    from driftline_provider.operators.training import PlanTrainingOperator

    home = tmp_path / "both-packs"
    shutil.copytree(bikes_trained_home, home, symlinks=True)
    shutil.copytree(home_copy / "registry" / "flights", home / "registry" / "flights")
    ws = workspace_at(home, "bikes")
    registry = Registry(ws.registry_dir, "bikes")
    assert registry.get("v0001").metadata["window"]["end"] == "2011-02-28"
    Registry(ws.registry_dir, "flights").set_alias("champion", "v0001", "t")
    plan = PlanTrainingOperator(task_id="plan", pack="bikes")
    plan._skip_unless_due(ws, dt.date(2011, 3, 31), None)  # no bikes champion: bootstrap
    registry.set_alias("champion", "v0001", "t")
    with pytest.raises(AirflowSkipException, match="v0001 is live and scheduled"):
        plan._skip_unless_due(ws, dt.date(2011, 3, 31), None)
    with pytest.raises(AirflowSkipException, match=r"up to 2011-02-28.*after 2011-04-29"):
        plan._skip_unless_due(ws, dt.date(2011, 3, 31), 60)  # March: 31 days on
    plan._skip_unless_due(ws, dt.date(2011, 4, 30), 61)  # April: 61 days on, due
