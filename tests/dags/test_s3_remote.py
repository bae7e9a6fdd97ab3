"""The DVC remote on a real S3 endpoint (moto's server, authentication on): the ingest DAG
pushes there with the key and secret of the ``driftline_default`` connection, a training run
given only the git URL (a pod's view, the local checkout gone) reads the same bytes back and
trains the same model, and the secret is nowhere: logs, XCom, rendered templates, the data
repository's git history, its ``.dvc`` directory, any file of the home."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from driftline.landing import replay
from driftline.packs.timeline import iter_intervals
from driftline.versioning import PARTITION_FILE, PARTITION_ROOT, DataRepo, check_remote_url

# imported here, not first inside a test: ``import dvc`` binds its log handler to the
# sys.stderr of the moment, which capfd closes when its test ends
from dvc.api import DVCFileSystem

from tests.gitserver import GitHttpServer
from tests.helpers import TEST_CONFIG, workspace_at
from tests.s3_server import s3_server  # noqa: F401 (the fixture)

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "driftline_packs.py"
FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 7)  # 7 days: 2 for training, 5 held out


@pytest.fixture
def s3_home(tmp_path, s3_server, flights, monkeypatch, airflow_db):  # noqa: F811
    """A fresh home whose ``driftline_default`` connection names the S3 bucket as the DVC
    remote (endpoint, key and secret included), with a landing file for each day."""
    home = tmp_path / "home"
    monkeypatch.setenv("DRIFTLINE_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_DRIFTLINE_DEFAULT", s3_server.connection(home=str(home)))
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)  # only the connection gives DVC its credentials
    replay(workspace_at(home), FIRST, LAST, source=flights)
    return home


def ingest_dag_test(day: dt.date) -> tuple[str, str]:
    """``dag.test()`` of ``flights_ingest`` for the daily interval ``day``: state, run id."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAG_FILE)).get_dag("flights_ingest")
    logical_date = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    dag_run = dag.test(logical_date=logical_date)
    return dag_run.state, dag_run.run_id


def what_airflow_kept(run_id: str) -> tuple[list, list]:
    """The run's XCom values and its task instances' rendered template fields."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.scalars(XComModel.get_many(run_id=run_id,
                                                   dag_ids="flights_ingest")).all()
        rendered = session.query(RenderedTaskInstanceFields).filter_by(
            dag_id="flights_ingest", run_id=run_id).all()
        return ([XComModel.deserialize_value(x) for x in xcoms],
                [r.rendered_fields for r in rendered])


def files_holding(root: Path, *needles: str) -> list[str]:
    """The files under ``root`` (git's packed objects aside) whose bytes hold a needle."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and any(n.encode() in path.read_bytes() for n in needles):
            found.append(str(path.relative_to(root)))
    return found


def pod_training(url: str, version: str, env: dict, pod_home: Path) -> subprocess.CompletedProcess:
    """The training entrypoint as a pod runs it: a fresh home, the git URL, ``env``."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AWS_", "AIRFLOW_CONN_"))}
    return subprocess.run(
        [sys.executable, "-m", "driftline.training", "--pack", "flights", "--data-version",
         version, "--start", str(FIRST), "--end", str(LAST), "--reason", "s3 remote",
         "--data-repo", url, "--output", str(pod_home / "result.json")],
        env={**clean, "DRIFTLINE_HOME": str(pod_home), "DRIFTLINE_CONFIG": str(TEST_CONFIG),
             **env}, capture_output=True, text=True)


@pytest.mark.s3
def test_ingest_pushes_to_s3_and_a_pod_reads_the_same_bytes_without_the_secret_anywhere(
        s3_home, s3_server, tmp_path, capfd, caplog):  # noqa: F811
    from driftline.ingest import ingest_interval
    from driftline.training import train
    from driftline_provider.hooks.driftline import DriftlineHook

    secrets = (s3_server.secret_access_key, s3_server.access_key_id)
    caplog.set_level("DEBUG")
    state, run_id = ingest_dag_test(FIRST)  # the operator path: creates the data repository
    assert state == "success"
    hook = DriftlineHook()
    ws = hook.get_workspace("flights")
    with hook.remote_credentials():  # what the ingest operator does, for the other days
        for day in iter_intervals(FIRST + dt.timedelta(days=1), LAST, "daily"):
            ingest_interval(ws, day)
    repo = DataRepo.of(ws)
    version = repo.head()
    assert ws.dvc_remote == s3_server.remote_url() and not (ws.home / "dvc-remote").exists()

    # every partition's object is in the bucket, under DVC's content address
    stored = {}
    for day in iter_intervals(FIRST, LAST, "daily"):
        part = repo.partition_path(day)
        md5 = part.with_name(PARTITION_FILE + ".dvc").read_text().split("md5: ")[1].split()[0]
        stored[day] = (md5, part.read_bytes())
    objects = s3_server.keys("dvc/")
    assert objects == sorted(f"dvc/files/md5/{m[:2]}/{m[2:]}" for m, _ in stored.values())
    with hook.remote_credentials():  # a rerun: same hash, no commit, no new object
        again = ingest_interval(ws, LAST)
    assert (again.md5, again.changed, again.data_version) == (stored[LAST][0], False, version)
    assert s3_server.keys("dvc/") == objects
    committed = subprocess.run(["git", "-C", str(repo.root), "show", f"{version}:.dvc/config"],
                               check=True, capture_output=True, text=True).stdout
    assert s3_server.remote_url() in committed and s3_server.endpoint_url not in committed

    # the secret (and the key id) nowhere Airflow or the data repository keeps things
    out, err = capfd.readouterr()
    logged = out + err + "\n".join(r.getMessage() for r in caplog.records
                                   if r.levelno >= logging.INFO)
    assert f"partition {FIRST}" in logged  # the task's log was captured
    assert not [s for s in secrets if s in logged]
    # at DEBUG botocore logs the key id (its signature's Credential=), never the secret
    assert not [r for r in caplog.records if s3_server.secret_access_key in r.getMessage()]
    xcoms, rendered = what_airflow_kept(run_id)
    assert {x["data_version"] for x in xcoms if isinstance(x, dict) and "data_version" in x}
    assert rendered and all(rendered)  # rendered fields were stored
    kept = json.dumps([xcoms, rendered], default=str)
    assert not [s for s in secrets if s in kept]
    history = subprocess.run(["git", "-C", str(repo.root), "log", "-p", "--all"], check=True,
                             capture_output=True, text=True).stdout
    assert "Ingest flights 2013-01-07" in history and not [s for s in secrets if s in history]
    assert files_holding(repo.root / ".dvc", *secrets) == []
    assert files_holding(ws.home, *secrets) == []

    # the model trained from the local checkout, for comparison
    local = train(ws, version, FIRST, LAST, reason="local checkout")

    # a pod: the git URL, the connection's remote environment, no checkout left anywhere
    served = tmp_path / "git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.root), str(served / "data.git")],
                   check=True)
    shutil.rmtree(repo.root)  # the working tree and its DVC cache: only S3 has the bytes
    with GitHttpServer(served) as git:
        url = git.url("data.git")
        with hook.remote_credentials():
            remote = DataRepo.of(ws, url)
            fs = DVCFileSystem(url, rev=version)
            for day, (_, data) in stored.items():
                path = f"/{PARTITION_ROOT}/date={day}/{PARTITION_FILE}"
                assert fs.read_bytes(path) == data, day
            assert remote.list_days(version) == list(stored)
        pod_home = tmp_path / "pod-home"
        pod_home.mkdir()
        pod = pod_training(url, version, hook.remote_env(), pod_home)
    assert pod.returncode == 0, pod.stderr[-3000:]
    result = json.loads((pod_home / "result.json").read_text())
    assert result["data_version"] == version and result["sha256"] == local["sha256"]
    assert not (pod_home / "data").exists()
    assert not [s for s in secrets if s in pod.stdout + pod.stderr]
    assert files_holding(pod_home, *secrets) == []


@pytest.mark.s3
def test_a_refused_secret_fails_ingest_naming_the_remote_and_commits_nothing(
        s3_home, s3_server, monkeypatch):  # noqa: F811
    from driftline.ingest import ingest_interval
    from driftline_provider.hooks.driftline import DriftlineHook

    wrong = "not-the-secret-0123456789"
    monkeypatch.setenv("AIRFLOW_CONN_DRIFTLINE_DEFAULT",
                       s3_server.connection(secret=wrong, home=str(s3_home)))
    hook = DriftlineHook()
    ws = hook.get_workspace("flights")
    with hook.remote_credentials(), pytest.raises(OSError) as refused:
        ingest_interval(ws, FIRST)
    message = str(refused.value)
    assert f"to the DVC remote {s3_server.remote_url()}: PermissionError" in message
    assert "AWS_SECRET_ACCESS_KEY" in message and wrong not in message
    repo = DataRepo.of(ws)
    assert subprocess.run(["git", "-C", str(repo.root), "log", "--format=%s"], check=True,
                          capture_output=True, text=True).stdout.splitlines() == [
        "Initialise driftline data repository"]
    assert s3_server.keys() == []


@pytest.mark.parametrize("url, why", [
    ("gs://bucket/dvc", "DVC remote 'gs://bucket/dvc': expected a directory or s3://"),
    ("s3:///dvc", "DVC remote 's3:///dvc': expected a directory or s3://<bucket>/<prefix>"),
    ("s3://AKIA:s3cret@bucket/dvc", "holds credentials or options"),
    ("s3://bucket/dvc?secret=s3cret", "holds credentials or options"),
])
def test_a_remote_url_driftline_cannot_use_is_refused_without_repeating_credentials(url,
                                                                                      why):
    with pytest.raises(ValueError, match=why.replace("?", r"\?")) as refused:
        check_remote_url(url)
    assert "s3cret" not in str(refused.value)


def test_directories_and_s3_urls_are_accepted():
    for url in ("/mnt/shared/dvc", "relative/dvc", "s3://bucket", "s3://bucket/a/b"):
        assert check_remote_url(url) == url
