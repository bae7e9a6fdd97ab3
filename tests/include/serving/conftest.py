"""Fixtures for the serving tests: a tiny real registry, fresh serving homes, free ports."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from driftline.registry import Registry, sha256_file
from driftline.serving.probe import free_ports
from driftline.settings import ServingSettings, Settings, TrainingSettings

DAYS = [dt.date(2013, 1, d) for d in range(1, 7)]
MODEL = "flight_delay"


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A driftline home whose registry holds v0001 (20 rounds) and v0002 (30 rounds),
    trained on six days of January 2013 with a two-day holdout."""
    from driftline.sources import load_flights_with_weather
    from driftline.training import train
    from driftline.versioning import DataRepo

    home = tmp_path_factory.mktemp("model-home")
    settings = Settings(home=home, training=TrainingSettings(holdout_days=2))
    flights = load_flights_with_weather()
    repo = DataRepo(settings.data_repo, settings.dvc_remote)
    for day in DAYS:
        rows = flights[(flights["year"] == day.year) & (flights["month"] == day.month)
                       & (flights["day"] == day.day)]
        repo.write_partition(day, rows)
    for rounds in (20, 30):
        train(settings, repo.head(), DAYS[0], DAYS[-1], params={"num_boost_round": rounds},
              reason=f"serving test, {rounds} rounds")
    return home



@pytest.fixture
def settings(model_home: Path) -> Iterator[Settings]:
    """Settings for a fresh home (short path: unix sockets live there) with its own copy of
    the registry and free ports for the router and both slots."""
    home = Path(tempfile.mkdtemp(prefix="dl-serving-", dir="/tmp"))
    shutil.copytree(model_home / "registry", home / "registry")
    router, blue, green = free_ports(3)
    yield Settings(home=home, serving=ServingSettings(router_port=router, blue_port=blue,
                                                     green_port=green, max_batch_rows=500,
                                                     start_timeout_s=45.0,
                                                     post_switch_watch_s=1.0))
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return Registry(settings.registry_dir, settings.model_name)


@pytest.fixture
def tamper(registry: Registry):
    """``tamper(version)`` changes a version's model bytes: its sha256 no longer matches."""

    def _tamper(version: str) -> None:
        with open(registry.get(version).model_path, "ab") as fh:
            fh.write(b"tampered")

    return _tamper


@pytest.fixture
def corrupt(registry: Registry):
    """``corrupt(version)`` replaces a version's model with garbage and records the garbage's
    sha256, so the checksum passes but no server can load the model."""

    def _corrupt(version: str) -> None:
        model_version = registry.get(version)
        model_version.model_path.write_bytes(b"this is not an xgboost model")
        meta_path = model_version.path / "metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["artifact"]["sha256"] = sha256_file(model_version.model_path)
        meta_path.write_text(json.dumps(meta))

    return _corrupt
