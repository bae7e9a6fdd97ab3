"""The driftline hook (connection → settings, remote credentials) and the retrain policy."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from tests.helpers import settings_at


@pytest.fixture
def connection(monkeypatch):
    def make(**fields):
        from airflow.models import Connection

        conn = Connection(conn_id="driftline_test", conn_type="driftline", **fields)
        monkeypatch.setenv("AIRFLOW_CONN_DRIFTLINE_TEST", conn.as_json())
        return "driftline_test"

    return make


def test_missing_connection_means_embedded_defaults(monkeypatch, tmp_path):
    from driftline_provider.hooks.driftline import DriftlineHook

    monkeypatch.setenv("DRIFTLINE_HOME", str(tmp_path))
    settings = DriftlineHook("no_such_connection").get_settings()
    assert settings.home == tmp_path and settings.dvc_remote == str(tmp_path / "dvc-remote")
    assert DriftlineHook("no_such_connection").remote_env() == {}


def test_connection_sets_home_remote_and_credentials_only_in_env(connection, tmp_path):
    from driftline_provider.hooks.driftline import DriftlineHook

    conn_id = connection(login="AKIA123", password="s3cret", extra=json.dumps({
        "home": str(tmp_path), "dvc_remote_url": "s3://bucket/dvc",
        "endpoint_url": "http://127.0.0.1:9000"}))
    hook = DriftlineHook(conn_id)
    settings = hook.get_settings()
    assert settings.home == tmp_path and settings.dvc_remote == "s3://bucket/dvc"
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ
    with hook.remote_credentials():
        assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIA123"
        assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert "AWS_ACCESS_KEY_ID" not in os.environ


def test_asset_triggered_retraining_is_skipped_until_due(home_copy):
    from airflow.sdk.exceptions import AirflowSkipException
    from driftline.registry import Registry
    from driftline_provider.operators.training import PlanTrainingOperator

    settings = settings_at(home_copy)
    plan = PlanTrainingOperator(task_id="plan")
    plan._skip_unless_due(settings, dt.date(2013, 1, 24), None)  # no champion: bootstrap
    Registry(settings.registry_dir, settings.model_name).set_alias("champion", "v0001", "t")
    with pytest.raises(AirflowSkipException, match="scheduled retraining is off"):
        plan._skip_unless_due(settings, dt.date(2013, 2, 1), None)
    with pytest.raises(AirflowSkipException, match="after 2013-01-31"):
        plan._skip_unless_due(settings, dt.date(2013, 1, 30), 7)
    plan._skip_unless_due(settings, dt.date(2013, 1, 31), 7)  # due: no exception
