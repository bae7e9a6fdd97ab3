"""A real S3-compatible server on loopback for the DVC remote tests: moto's standalone server
(``moto_server``, PyPI ``moto[server]``) with authentication on, one IAM user whose access key
may use S3, and one bucket. It runs on a free port for one test; import the fixture into a
test module (the ``s3`` marker: a missing ``moto_server`` skips locally, fails in CI)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from driftline.serving.probe import free_ports

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
BUCKET = "driftline-lake"
USER = "driftline-ingest"
# The IAM calls that set the user up run before authentication is enforced; every later
# request must be signed with the user's key (moto: INITIAL_NO_AUTH_ACTION_COUNT).
_SETUP_ACTIONS = 4
_S3_POLICY = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@dataclass(frozen=True)
class S3Server:
    """A running moto server: its endpoint, the IAM user's key and the bucket."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    log: Path

    def remote_url(self, prefix: str = "dvc") -> str:
        """A DVC remote URL in the bucket."""
        return f"s3://{self.bucket}/{prefix}"

    def client(self, secret: str | None = None):
        """A boto3 S3 client signed with the user's key (or another ``secret``)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id=self.access_key_id,
                            aws_secret_access_key=secret or self.secret_access_key)

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                        Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def connection(self, secret: str | None = None, **extra) -> str:
        """The ``driftline`` Airflow connection (JSON, for ``AIRFLOW_CONN_<ID>``) whose DVC
        remote is this bucket: ``extra`` adds fields (``home``, ``packs_dir``, ...)."""
        return json.dumps({"conn_type": "driftline", "login": self.access_key_id,
                           "password": secret or self.secret_access_key,
                           "extra": {"dvc_remote_url": self.remote_url(),
                                     "endpoint_url": self.endpoint_url, **extra}})


def moto_problem() -> str | None:
    """Why moto's server cannot run here; None when ``moto_server`` is installed."""
    if MOTO_SERVER.is_file() and os.access(MOTO_SERVER, os.X_OK):
        return None
    return f"{MOTO_SERVER} is missing (make install installs moto[server] from the lock)"


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on 127.0.0.1:{port} within {timeout} s: "
                       f"{log.read_text()[-2000:]}")


def _user_key(endpoint_url: str) -> dict:
    """Create the IAM user allowed to use S3 and its access key (the setup actions)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint_url, region_name="us-east-1",
                       aws_access_key_id="setup", aws_secret_access_key="setup")
    iam.create_user(UserName=USER)
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    policy = iam.create_policy(PolicyName="driftline-s3", PolicyDocument=json.dumps(_S3_POLICY))
    iam.attach_user_policy(UserName=USER, PolicyArn=policy["Policy"]["Arn"])
    return key


@contextmanager
def running_s3_server(workdir: Path, timeout: float = 60.0) -> Iterator[S3Server]:
    """Start ``moto_server`` on a free loopback port with authentication enforced after the
    user's setup, create the bucket with the user's key, stop the server afterwards.

    :param workdir: where the server's log goes.
    :param timeout: seconds to wait for it to listen.
    """
    (port,) = free_ports(1)
    log = workdir / "moto_server.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_ACTIONS)}
    with log.open("w") as out:
        proc = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc, log, timeout)
        endpoint = f"http://127.0.0.1:{port}"
        key = _user_key(endpoint)
        server = S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], BUCKET, log)
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_server(tmp_path) -> Iterator[S3Server]:
    """A moto S3 server with authentication on, a user's key and an empty bucket."""
    with running_s3_server(tmp_path) as server:
        yield server
