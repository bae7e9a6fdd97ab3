"""Compiled trees (treelite + tl2cgen): the same predictions as XGBoost, built only from the
verified model, and a slot server that serves them with more than one worker process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from driftline.features import FeatureSchema
from driftline.scoring import predict
from driftline.serving.compiled import (
    TOLERANCE,
    CompiledTrees,
    build,
    cached,
    model_json,
    serving_predictor,
)
from driftline.serving.paths import slot_client, slot_socket

from tests.helpers import process_gone, wait_until

pytest.importorskip("tl2cgen")
pytest.importorskip("treelite")
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def compiled_home(tmp_path_factory, model_home):
    """The library of the session's v0001 and v0002, built once for this module."""
    from driftline.registry import Registry

    registry = Registry(model_home / "registry", "flights")
    libs = {}
    for version in registry.versions():
        booster = version.load_booster()
        libs[version.version] = build(model_json(booster), version.metadata["artifact"]["sha256"],
                                      tmp_path_factory.mktemp("compiled"))
    return registry, libs


def _columns(pack, frame) -> dict:
    return {c: frame[c].to_numpy() for c in pack.inputs}


def test_compiled_trees_predict_as_xgboost_on_smoke_rows_and_a_day(compiled_home, ws, flights):
    registry, libs = compiled_home
    day = flights[(flights["month"] == 1) & (flights["day"] == 9)]  # a day out of training
    assert len(day) > 800
    for version in registry.versions():
        booster = version.load_booster()
        compiled = CompiledTrees(libs[version.version])
        schema = FeatureSchema.from_dict(version.metadata["feature_schema"])
        smoke = version.metadata["smoke"]
        rows = {c: [r[c] for r in smoke["rows"]] for c in ws.pack.inputs}
        for raw in (rows, _columns(ws.pack, day)):
            expected = predict(ws.pack, booster, raw, schema)
            actual = predict(ws.pack, compiled, raw, schema)
            assert actual.shape == expected.shape
            np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(predict(ws.pack, compiled, rows, schema),
                                   smoke["predictions"], rtol=0, atol=TOLERANCE)
        one = {c: v[:1] for c, v in rows.items()}  # a single row, as most requests
        np.testing.assert_allclose(predict(ws.pack, compiled, one, schema),
                                   smoke["predictions"][:1], rtol=0, atol=TOLERANCE)


def test_a_library_is_reused_only_while_it_matches_its_record(compiled_home, tmp_path):
    registry, _ = compiled_home
    version = registry.get("v0001")
    sha256 = version.metadata["artifact"]["sha256"]
    assert cached(sha256, tmp_path) is None
    lib = build(model_json(version.load_booster()), sha256, tmp_path)
    assert cached(sha256, tmp_path) == lib
    assert cached("0" * 64, tmp_path) is None  # another model's sha256: not this library
    lib.write_bytes(lib.read_bytes() + b"\0")  # changed after its build
    assert cached(sha256, tmp_path) is None
    assert build(model_json(version.load_booster()), sha256, tmp_path) == lib  # rebuilt
    assert cached(sha256, tmp_path) == lib


def test_compiled_trees_of_another_model_are_refused(compiled_home, ws):
    """The guard before serving: v0002's library next to v0001's booster differs, so
    XGBoost serves, and says why."""
    registry, libs = compiled_home
    version = registry.get("v0001")
    booster = version.load_booster()
    schema = FeatureSchema.from_dict(version.metadata["feature_schema"])
    rows = version.metadata["smoke"]["rows"]
    chosen, name = serving_predictor(ws.pack, booster, libs["v0002"], rows, schema)
    assert chosen is booster
    assert name.startswith("xgboost (compiled trees unusable") and "differ" in name
    chosen, name = serving_predictor(ws.pack, booster, libs["v0001"], rows, schema)
    assert isinstance(chosen, CompiledTrees) and name.startswith("compiled (tl2cgen")
    chosen, name = serving_predictor(ws.pack, booster, libs["v0001"], [], schema)
    assert chosen is booster and "no smoke rows" in name


def _env(ws, workers: int) -> dict:
    from driftline.serving.bluegreen import settings_toml

    config = ws.home / "settings.toml"
    text = settings_toml(ws)
    assert "\nworkers = 0\n" in text
    config.write_text(text.replace("\nworkers = 0\n", f"\nworkers = {workers}\n"))
    return {**os.environ, "DRIFTLINE_HOME": str(ws.home), "DRIFTLINE_CONFIG": str(config),
            "DRIFTLINE_PACKS": str(ws.settings.packs_dir)}


def test_a_slot_server_serves_compiled_trees_from_two_workers(ws, registry):
    """XGBoost answers at once; the compiled trees take over once built; both workers
    answer; stopping the server stops every worker and removes the socket."""
    version = registry.get("v0001")
    process = subprocess.Popen(
        [sys.executable, "-m", "driftline.serving.app", "--pack", "flights", "--slot", "blue",
         "--version", "v0001"], env=_env(ws, workers=2), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    smoke = version.metadata["smoke"]
    try:
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 240
        while not any(name.startswith("compiled") for name in seen.values()) or len(seen) < 2:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, f"predictors seen: {seen}"
            try:
                with slot_client(ws.serving_dir, "blue", timeout=5) as client:  # new connection
                    ready = client.get("/ready").json()
                    body = client.post("/predict", json={"rows": smoke["rows"]}).json()
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            assert ready["pid"] == process.pid and ready["model_version"] == "v0001"
            seen[ready["worker_pid"]] = ready["predictor"]
            np.testing.assert_allclose([p["late_probability"] for p in body["predictions"]],
                                       smoke["predictions"], rtol=0, atol=TOLERANCE)
            time.sleep(0.05)
        workers = [pid for pid in seen if pid != process.pid]
        assert workers, seen
        wait_until(lambda: _all_compiled(ws), "every worker to serve the compiled trees", 60)
    finally:
        process.terminate()
        process.wait(30)
    assert process.returncode == -15
    assert all(process_gone(pid) for pid in workers)
    assert not slot_socket(ws.serving_dir, "blue").exists()


def _all_compiled(ws) -> bool:
    answers = {}
    for _ in range(12):
        with slot_client(ws.serving_dir, "blue", timeout=5) as client:
            ready = client.get("/ready").json()
        answers[ready["worker_pid"]] = ready["predictor"]
    return len(answers) == 2 and all(a.startswith("compiled") for a in answers.values())
