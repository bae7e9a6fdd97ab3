"""Connection to driftline's state: where it lives and the DVC remote's credentials."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from driftline.settings import Settings, load_settings
from driftline.workspace import Workspace, open_workspace


class DriftlineHook(BaseHook):
    """Resolve driftline settings from an Airflow Connection, else the embedded defaults.

    Connection fields (all optional): ``extra.home`` (state directory), ``extra.config``
    (TOML file), ``extra.packs_dir`` (dataset packs), ``extra.dvc_remote_url`` (a directory
    or ``s3://<bucket>/<prefix>``), ``extra.endpoint_url`` (an S3-compatible server's
    ``http(s)://`` URL; none for AWS); ``login`` and ``password`` are the remote's access key
    and secret. Key, secret and endpoint reach DVC through the environment only
    (:meth:`remote_env`): the data repository's committed config names the bucket alone.

    The connection form is declared in ``get_provider_info()`` (``conn-fields``).

    :param driftline_conn_id: the connection id; missing means defaults.
    """

    conn_name_attr = "driftline_conn_id"
    default_conn_name = "driftline_default"
    conn_type = "driftline"
    hook_name = "driftline"

    def __init__(self, driftline_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.driftline_conn_id = driftline_conn_id

    def _connection(self):
        try:
            return self.get_connection(self.driftline_conn_id)
        except AirflowNotFoundException:
            return None

    def get_settings(self) -> Settings:
        """driftline settings for this connection (defaults when it does not exist)."""
        conn = self._connection()
        extra = conn.extra_dejson if conn else {}
        settings = load_settings(home=extra.get("home"), config=extra.get("config"),
                                 packs_dir=extra.get("packs_dir"))
        if extra.get("dvc_remote_url"):
            from dataclasses import replace

            settings = replace(settings, dvc_remote_url=extra["dvc_remote_url"])
        return settings

    def get_workspace(self, pack: str) -> Workspace:
        """The workspace of ``pack`` under this connection's settings.

        :raises PackError: no such pack, or it is invalid.
        """
        return open_workspace(pack, self.get_settings())

    def remote_env(self) -> dict[str, str]:
        """Environment variables that give DVC's S3 remote its credentials and endpoint:
        ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (login, password) and
        ``AWS_ENDPOINT_URL_S3`` (``extra.endpoint_url``; botocore reads it for S3 clients
        only, so other AWS calls such as STS keep their own endpoints).

        :raises ValueError: ``extra.endpoint_url`` is not an ``http(s)://host`` URL.
        """
        conn = self._connection()
        if not conn:
            return {}
        env = {}
        if conn.login:
            env = {"AWS_ACCESS_KEY_ID": conn.login,
                   "AWS_SECRET_ACCESS_KEY": conn.password or ""}
        endpoint = conn.extra_dejson.get("endpoint_url")
        if endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"connection {self.driftline_conn_id!r}: extra.endpoint_url "
                                 f"{endpoint!r}: expected http(s)://<host>[:<port>] of an "
                                 "S3-compatible server")
            env["AWS_ENDPOINT_URL_S3"] = endpoint
        return env

    @contextmanager
    def remote_credentials(self):
        """Expose the remote credentials to DVC for the duration of a block."""
        env = self.remote_env()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
