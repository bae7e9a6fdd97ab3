"""Fixtures for the serving tests: tiny real registries (the flights pack, and a second pack
``flights2`` beside it), fresh serving homes with their own router port."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from driftline.registry import Registry, sha256_file
from driftline.serving.probe import free_ports
from driftline.settings import Settings, load_settings
from driftline.workspace import Workspace, open_workspace

from tests.helpers import PACKS

DAYS = [dt.date(2013, 1, d) for d in range(1, 7)]
DERIVED = ("sched_dep_hour", "sched_arr_hour", "day_of_week")
SECOND_PACK = "flights2"
SERVING = {"max_batch_rows": 500, "start_timeout_s": 45.0, "post_switch_watch_s": 1.0}


def write_config(home: Path, router_port: int = 8780, packs: tuple[str, ...] = ("flights",),
                 ) -> Path:
    """A driftline TOML for a test home: the router's port, the serving limits of these
    tests, and a two-day holdout for each of ``packs`` (six days of training data)."""
    lines = ["[serving]", f"router_port = {router_port}"]
    lines += [f"{key} = {value!r}" for key, value in SERVING.items()]
    for pack in packs:
        lines += ["", f"[packs.{pack}.training]", "holdout_days = 2", "reference_rows = 5000"]
    config = home / "driftline.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def train_versions(ws: Workspace, flights, rounds: tuple[int, ...]) -> None:
    """Fill ``ws``'s data repo with the six days of :data:`DAYS` and train one version per
    entry of ``rounds`` (boosting rounds)."""
    from driftline.training import train
    from driftline.versioning import DataRepo

    repo = DataRepo.of(ws)
    for day in DAYS:
        repo.write_partition(day, flights[(flights["year"] == day.year)
                                          & (flights["month"] == day.month)
                                          & (flights["day"] == day.day)])
    for n in rounds:
        train(ws, repo.head(), DAYS[0], DAYS[-1], params={"num_boost_round": n},
              reason=f"serving test, {n} rounds")


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory, flights) -> Path:
    """A driftline home whose flights registry holds v0001 (20 rounds) and v0002 (30
    rounds), trained on six days of January 2013 with a two-day holdout."""
    home = tmp_path_factory.mktemp("model-home")
    settings = load_settings(home=home, config=write_config(home), packs_dir=PACKS)
    train_versions(open_workspace("flights", settings), flights, (20, 30))
    return home


@pytest.fixture(scope="session")
def two_packs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A packs directory with the flights pack and a copy of it named ``flights2``."""
    root = tmp_path_factory.mktemp("packs")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PACKS / "flights", root / "flights", ignore=ignore)
    shutil.copytree(PACKS / "flights", root / SECOND_PACK, ignore=ignore)
    spec = root / SECOND_PACK / "pack.toml"
    text = spec.read_text()
    assert text.count('name = "flights"\n') == 1
    spec.write_text(text.replace('name = "flights"\n', f'name = "{SECOND_PACK}"\n'))
    return root


@pytest.fixture(scope="session")
def two_pack_model_home(tmp_path_factory, model_home: Path, two_packs_dir: Path,
                        flights) -> Path:
    """``model_home``'s flights registry plus a ``flights2`` registry holding v0001 (25
    rounds) trained on its own data repo, filled with the same six days."""
    home = tmp_path_factory.mktemp("two-pack-home")
    shutil.copytree(model_home / "registry", home / "registry")
    settings = load_settings(home=home, config=write_config(home, packs=(SECOND_PACK,)),
                             packs_dir=two_packs_dir)
    train_versions(open_workspace(SECOND_PACK, settings), flights, (25,))
    return home


def _serving_home(model_home: Path, packs_dir: Path, packs: tuple[str, ...]) -> Settings:
    """A fresh home (short path: unix sockets live there) with a copy of ``model_home``'s
    registry and a free router port."""
    home = Path(tempfile.mkdtemp(prefix="dl-serving-", dir="/tmp"))
    shutil.copytree(model_home / "registry", home / "registry")
    [router] = free_ports(1)
    return load_settings(home=home, config=write_config(home, router, packs),
                         packs_dir=packs_dir)


@pytest.fixture
def settings(model_home: Path) -> Iterator[Settings]:
    """Settings of a fresh serving home with its own copy of the flights registry."""
    settings = _serving_home(model_home, PACKS, ("flights",))
    yield settings
    shutil.rmtree(settings.home, ignore_errors=True)


@pytest.fixture
def ws(settings: Settings) -> Workspace:
    """The flights pack's workspace in the fresh serving home."""
    return open_workspace("flights", settings)


@pytest.fixture
def two_pack_settings(two_pack_model_home: Path, two_packs_dir: Path) -> Iterator[Settings]:
    """Settings of a fresh serving home with the flights and flights2 registries."""
    settings = _serving_home(two_pack_model_home, two_packs_dir, ("flights", SECOND_PACK))
    yield settings
    shutil.rmtree(settings.home, ignore_errors=True)


@pytest.fixture
def registry(ws: Workspace) -> Registry:
    return Registry(ws.registry_dir, ws.model_name)


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


def _hours(hhmm: pd.Series) -> np.ndarray:
    hhmm = hhmm.astype("float64").to_numpy()
    return (hhmm // 100) + (hhmm % 100) / 60.0


def independent_probabilities(model_version, rows: list[dict] | pd.DataFrame) -> np.ndarray:
    """The model's probabilities for raw flights rows, computed here without driftline's
    feature code: the scheduled hours and the weekday by hand (``datetime.date.weekday``),
    categories coded by their index in the training vocabulary (unknown: missing), and
    XGBoost's own ``DMatrix`` and ``predict``."""
    import xgboost as xgb

    frame = pd.DataFrame(rows) if isinstance(rows, list) else rows.reset_index(drop=True)
    schema = model_version.metadata["feature_schema"]
    categories = schema["categories"]
    values = {
        "sched_dep_hour": _hours(frame["sched_dep_time"]),
        "sched_arr_hour": _hours(frame["sched_arr_time"]),
        "day_of_week": np.array([dt.date(int(y), int(m), int(d)).weekday() for y, m, d in
                                 zip(frame["year"], frame["month"], frame["day"],
                                     strict=True)], dtype="float64"),
    }
    for name in schema["features"]:
        if name in categories:
            codes = pd.Categorical(frame[name], categories=categories[name]).codes
            values[name] = np.where(codes < 0, np.nan, codes.astype("float64"))
        elif name not in DERIVED:
            values[name] = pd.to_numeric(frame[name]).astype("float64").to_numpy()
    assert set(values) == set(schema["features"]), "the flights pack's features changed"
    matrix = np.column_stack([values[name] for name in schema["features"]]).astype(np.float32)
    dmatrix = xgb.DMatrix(matrix, feature_names=schema["features"], enable_categorical=True,
                          feature_types=["c" if f in categories else "q"
                                         for f in schema["features"]])
    booster = xgb.Booster()
    booster.load_model(str(model_version.model_path))
    return booster.predict(dmatrix)


@pytest.fixture(scope="session")
def reference_probabilities():
    """:func:`independent_probabilities`: expected predictions not made by the code under
    test."""
    return independent_probabilities
