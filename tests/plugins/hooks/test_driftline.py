"""The driftline hook: connection → settings and a pack's workspace, remote credentials."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.helpers import PACKS


@pytest.fixture
def connection(monkeypatch):
    def make(**fields):
        from airflow.models import Connection

        conn = Connection(conn_id="driftline_test", conn_type="driftline", **fields)
        monkeypatch.setenv("AIRFLOW_CONN_DRIFTLINE_TEST", conn.as_json())
        return "driftline_test"

    return make


def test_missing_connection_means_embedded_defaults(monkeypatch, tmp_path):
    from driftline.packs import PackError
    from driftline_provider.hooks.driftline import DriftlineHook

    monkeypatch.setenv("DRIFTLINE_HOME", str(tmp_path))
    hook = DriftlineHook("no_such_connection")
    settings = hook.get_settings()
    assert settings.home == tmp_path and settings.dvc_remote == str(tmp_path / "dvc-remote")
    assert settings.packs_dir == PACKS  # $DRIFTLINE_PACKS
    assert hook.remote_env() == {}
    for pack, task in (("flights", "binary"), ("bikes", "regression")):
        ws = hook.get_workspace(pack)
        assert (ws.name, ws.pack.task, ws.model_name) == (pack, task, pack)
        assert ws.landing_dir == tmp_path / "landing" / pack
        assert ws.reports_dir == tmp_path / "reports" / pack
    with pytest.raises(PackError, match=r"pack 'sales'.*no such pack.*\['bikes', 'flights'\]"):
        hook.get_workspace("sales")


def test_connection_sets_home_packs_remote_and_credentials_only_in_env(connection, tmp_path):
    from driftline.packs import PackError
    from driftline_provider.hooks.driftline import DriftlineHook

    packs = tmp_path / "packs"
    shutil.copytree(PACKS / "bikes", packs / "bikes")
    conn_id = connection(login="AKIA123", password="s3cret", extra=json.dumps({
        "home": str(tmp_path), "packs_dir": str(packs), "dvc_remote_url": "s3://bucket/dvc",
        "endpoint_url": "http://127.0.0.1:9000"}))
    hook = DriftlineHook(conn_id)
    settings = hook.get_settings()
    assert settings.home == tmp_path and settings.dvc_remote == "s3://bucket/dvc"
    ws = hook.get_workspace("bikes")
    assert ws.pack.directory == packs / "bikes" and ws.data_repo == tmp_path / "data" / "bikes"
    assert ws.dvc_remote == "s3://bucket/dvc"
    with pytest.raises(PackError, match=r"pack 'flights'.*no such pack.*\['bikes'\]"):
        hook.get_workspace("flights")  # the connection's packs directory, not the default
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ
    with hook.remote_credentials():
        assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIA123"
        assert os.environ["AWS_SECRET_ACCESS_KEY"] == "s3cret"
        assert os.environ["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9000"
    assert "AWS_ACCESS_KEY_ID" not in os.environ


def test_an_endpoint_without_a_key_still_reaches_dvc_and_a_bad_one_is_refused(connection):
    """No login (credentials from the pod's role or ~/.aws): the endpoint is still handed
    over; an endpoint that is not an http(s) URL fails naming the field and the form."""
    from driftline_provider.hooks.driftline import DriftlineHook

    hook = DriftlineHook(connection(extra=json.dumps({
        "dvc_remote_url": "s3://bucket/dvc", "endpoint_url": "https://minio.internal:9000"})))
    assert hook.remote_env() == {"AWS_ENDPOINT_URL_S3": "https://minio.internal:9000"}
    hook = DriftlineHook(connection(extra=json.dumps({"endpoint_url": "minio.internal:9000"})))
    with pytest.raises(ValueError, match=r"connection 'driftline_test': extra.endpoint_url "
                                         r"'minio.internal:9000': expected http\(s\)://<host>"):
        hook.remote_env()
