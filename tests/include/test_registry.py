import json

import pytest
from driftline.registry import ArtifactIntegrityError, Registry

from tests.helpers import settings_at


def test_training_registered_a_verifiable_model_with_lineage(trained_home):
    settings = settings_at(trained_home)
    (version,) = Registry(settings.registry_dir, settings.model_name).versions()
    meta = version.metadata
    assert version.version == "v0001"
    assert meta["artifact"]["format"] == "xgboost-ubj"
    assert version.verify() == meta["artifact"]["sha256"]
    assert len(meta["data_version"]) == 40 and meta["code_version"]
    assert {"auc", "logloss", "device"} <= set(meta["metrics"])
    assert not list(version.path.glob("*.pkl")) and not list(version.path.glob("*.pickle"))
    assert len(version.reference()) > 1000 and len(version.holdout()) > 1000


def test_tampered_artifact_is_refused(home_copy):
    settings = settings_at(home_copy)
    version = Registry(settings.registry_dir, settings.model_name).get("v0001")
    with open(version.model_path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactIntegrityError, match="does not match the registry"):
        version.load_booster()


def test_aliases_and_events_are_recorded(home_copy):
    settings = settings_at(home_copy)
    registry = Registry(settings.registry_dir, settings.model_name)
    assert registry.champion() is None
    registry.set_alias("champion", "v0001", "first deploy")
    assert registry.champion().version == "v0001"
    events = [e["event"] for e in registry.events()]
    assert events == ["registered", "alias:champion"]
    assert json.loads((registry.model_dir / "aliases.json").read_text()) == {
        "champion": "v0001"}
    with pytest.raises(LookupError, match="no version 'v0042'"):
        registry.set_alias("champion", "v0042", "typo")
