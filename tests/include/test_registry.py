import json
import shutil

import pytest
from driftline.registry import ArtifactIntegrityError, Registry, sha256_file
from driftline.training import train
from driftline.versioning import DataRepo

from tests.helpers import DATA_END, DATA_START, workspace_at


@pytest.fixture(scope="module")
def own_trained_home(tmp_path_factory, trained_home):
    """The shared data home without its registry, and one flights model trained here: a
    registry no other test of the run writes to."""
    home = tmp_path_factory.mktemp("registry-home") / "home"
    shutil.copytree(trained_home, home, symlinks=True,
                    ignore=lambda d, names: ["registry"] if d == str(trained_home) else [])
    ws = workspace_at(home)
    train(ws, DataRepo.of(ws).head(), DATA_START, DATA_END, reason="test_registry")
    return home


@pytest.fixture
def own_home_copy(own_trained_home, tmp_path):
    """A private copy of ``own_trained_home`` a test may change freely."""
    target = tmp_path / "home"
    shutil.copytree(own_trained_home, target, symlinks=True)
    return target


def test_training_registered_a_verifiable_model_with_lineage(own_trained_home):
    ws = workspace_at(own_trained_home)
    (version,) = Registry(ws.registry_dir, ws.model_name).versions()
    meta = version.metadata
    assert version.version == "v0001" and version.name == ws.model_name == "flights"
    assert version.path == own_trained_home / "registry" / "flights" / "versions" / "v0001"
    assert meta["artifact"]["format"] == "xgboost-ubj"
    assert version.verify() == meta["artifact"]["sha256"] == sha256_file(version.model_path)
    assert len(meta["data_version"]) == 40 and meta["code_version"]
    assert meta["pack"] == ws.pack.identity()
    assert {"auc", "logloss", "device"} <= set(meta["metrics"])
    assert not list(version.path.glob("*.pkl")) and not list(version.path.glob("*.pickle"))
    reference, holdout = version.reference(), version.holdout()
    assert list(reference.columns) == ws.pack.features and len(reference) == 5000
    assert len(holdout) == meta["metrics"]["rows"] > 1000
    # The holdout is raw rows: the gate recomputes the label with the pack's rule.
    assert list(holdout.columns) == list(ws.pack.spec.columns)


def test_tampered_artifact_is_refused(own_home_copy):
    ws = workspace_at(own_home_copy)
    version = Registry(ws.registry_dir, ws.model_name).get("v0001")
    with open(version.model_path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactIntegrityError, match="does not match the registry"):
        version.load_booster()


def test_aliases_and_events_are_recorded(own_home_copy):
    ws = workspace_at(own_home_copy)
    registry = Registry(ws.registry_dir, ws.model_name)
    assert registry.champion() is None
    registry.set_alias("champion", "v0001", "first deploy")
    assert registry.champion().version == "v0001"
    events = [e["event"] for e in registry.events()]
    assert events == ["registered", "alias:champion"]
    assert json.loads((registry.model_dir / "aliases.json").read_text()) == {
        "champion": "v0001"}
    with pytest.raises(LookupError, match="no version 'v0042'"):
        registry.set_alias("champion", "v0042", "typo")
