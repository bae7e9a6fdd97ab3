"""A training run given only the data repo's git URL (as a Kubernetes pod is: ``--data-repo``)
reads exactly the data version it was given, through a real git server over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from driftline.registry import Registry
from driftline.versioning import DataRepo, is_git_url

from tests.gitserver import GitHttpServer
from tests.helpers import DATA_END, DATA_START, TEST_CONFIG, workspace_at


@pytest.fixture
def served_repo(tmp_path, trained_home):
    """The shared data repo as a bare clone behind ``git http-backend``; yields its URL."""
    ws = workspace_at(trained_home)
    subprocess.run(["git", "clone", "-q", "--bare", str(ws.data_repo),
                    str(tmp_path / "git" / "data.git")], check=True)
    with GitHttpServer(tmp_path / "git") as server:
        yield server.url("data.git")


@pytest.mark.parametrize("location, url", [
    ("https://git.example/driftline-data.git", True), ("ssh://git@host/data.git", True),
    ("git@github.com:team/data.git", True), ("file:///srv/data.git", True),
    ("/srv/driftline/data/flights", False), ("data/flights", False),
])
def test_git_urls_are_told_from_paths(location, url):
    assert is_git_url(location) is url


def test_a_url_reads_the_same_rows_as_the_checkout(served_repo, trained_home):
    ws = workspace_at(trained_home)
    local = DataRepo.of(ws)
    version = local.head()
    remote = DataRepo.of(ws, served_repo)
    assert remote.list_days(version) == local.list_days(version)
    assert remote.read_days(version, DATA_START, DATA_END).equals(
        local.read_days(version, DATA_START, DATA_END))
    with pytest.raises(ValueError, match="is a git URL, read-only here"):
        remote.ensure()


def test_training_from_the_url_alone_gives_the_same_model(served_repo, trained_home, tmp_path):
    """A fresh home with no data repo (a pod's view): the entrypoint clones the URL and
    trains a model byte-identical to the one trained from the local checkout."""
    ws = workspace_at(trained_home)
    [shared] = Registry(ws.registry_dir, ws.model_name).versions()
    pod_home = tmp_path / "pod-home"
    env = {**os.environ, "DRIFTLINE_HOME": str(pod_home), "DRIFTLINE_CONFIG": str(TEST_CONFIG)}
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, "-m", "driftline.training", "--pack", "flights",
                    "--data-version", shared.data_version, "--start", str(DATA_START),
                    "--end", str(DATA_END), "--reason", "shared fixture",
                    "--data-repo", served_repo, "--output", str(out)],
                   check=True, env=env, capture_output=True, text=True)
    result = json.loads(out.read_text())
    assert not (pod_home / "data").exists()  # nothing read from a local checkout
    assert result["data_version"] == shared.data_version
    assert result["sha256"] == shared.metadata["artifact"]["sha256"]
    timing = {"train_seconds"}
    assert ({k: v for k, v in result["metrics"].items() if k not in timing}
            == {k: v for k, v in shared.metrics.items() if k not in timing})
