"""Compiled trees: the served model's XGBoost trees as a C library (treelite + tl2cgen).

XGBoost's ``inplace_predict`` has a fixed cost per call (0.2-0.4 ms here, whatever the
batch), more than the rest of a single-row request. The compiled trees predict one row in
tens of microseconds and a 1,000-row batch in about half XGBoost's time.

Trust: the library is built at load time from the booster that
:meth:`~driftline.registry.ModelVersion.load_booster` has just verified (sha256), into the
pack's own serving directory (``compiled/``), never taken from elsewhere. A library built
earlier is reused only if its record names the same model sha256, tl2cgen and treelite
versions and compiler options, and the library's bytes match the sha256 in that record
(written by the build). Before it serves, :func:`check_same` requires its output to equal
XGBoost's within ``TOLERANCE`` on the model's smoke rows; when treelite, tl2cgen or gcc is
missing, the build fails, or the outputs differ, the server serves with XGBoost and says why
(``predictor`` in ``/ready`` and ``/version``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftline.features import FeatureSchema
from driftline.packs import Pack
from driftline.registry import sha256_file
from driftline.scoring import predict
from driftline.serving.processes import process_alive

log = logging.getLogger(__name__)

COMPILER_OPTIONS = ["-O1"]
"""gcc flags after tl2cgen's ``-O3``: -O1 compiles the 200-tree model ~3x faster than -O3
and predicted as fast in a probe here (-O0: batches ~2x slower)."""
TOLERANCE = 1e-6
"""Largest absolute difference from XGBoost's output allowed on the smoke rows."""


@dataclass
class PendingTrees:
    """Compiled trees being built by the process ``builder_pid`` (:func:`start_build`)."""

    model_sha256: str
    cache_dir: Path
    builder_pid: int

    def outcome(self) -> Path | str | None:
        """The built library, why there is none, or None while the build runs."""
        lib = cached(self.model_sha256, self.cache_dir)
        if lib is not None:
            return lib
        failure = build_failure(self.model_sha256, self.cache_dir)
        if failure is not None:
            return f"no compiled trees: build failed: {failure}"
        if not process_alive(self.builder_pid):
            return (cached(self.model_sha256, self.cache_dir)
                    or "no compiled trees: the build process stopped")
        return None


async def when_built(pending: PendingTrees, poll_s: float = 0.5) -> Path | str:
    """The outcome of ``pending`` (:meth:`PendingTrees.outcome`) once it has one."""
    while (outcome := pending.outcome()) is None:
        await asyncio.sleep(poll_s)
    return outcome


class CompiledTrees:
    """A compiled model with XGBoost's ``inplace_predict`` signature, so
    :func:`driftline.scoring.predict` (the one feature path) takes it as the booster.

    :param libpath: the shared library built by :func:`build`.
    """

    def __init__(self, libpath: Path):
        import tl2cgen

        self._tl2cgen = tl2cgen
        self.libpath = Path(libpath)
        self.predictor = tl2cgen.Predictor(str(libpath), nthread=1)
        self.description = f"compiled (tl2cgen {tl2cgen.__version__})"

    def inplace_predict(self, matrix: np.ndarray, validate_features: bool = False) -> np.ndarray:
        """One output per row of the float32 ``matrix`` (NaN: missing), as XGBoost's."""
        dmat = self._tl2cgen.DMatrix(matrix, dtype="float32")
        return np.asarray(self.predictor.predict(dmat), dtype=np.float32).reshape(-1)

    def set_param(self, params: Mapping[str, Any]) -> None:
        """Ignored: the library predicts on the calling thread."""


def _record(model_sha256: str) -> dict:
    import tl2cgen
    import treelite

    return {"model_sha256": model_sha256, "tl2cgen": tl2cgen.__version__,
            "treelite": treelite.__version__, "options": COMPILER_OPTIONS}


def _paths(model_sha256: str, cache_dir: Path) -> tuple[Path, Path, Path]:
    import tl2cgen

    stem = cache_dir / f"{model_sha256}-tl2cgen{tl2cgen.__version__}"
    return stem.with_suffix(".so"), stem.with_suffix(".json"), stem.with_suffix(".failed")


def cached(model_sha256: str, cache_dir: Path) -> Path | None:
    """The library built in ``cache_dir`` from the model with ``model_sha256`` by the same
    tools, if its bytes match its record; else None."""
    lib, meta, _ = _paths(model_sha256, cache_dir)
    try:
        kept = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    record = _record(model_sha256)
    if ({k: kept.get(k) for k in record} == record
            and sha256_file(lib) == kept.get("lib_sha256")):
        return lib
    log.warning("compiled trees at %s do not match their record; not used", lib)
    return None


def build_failure(model_sha256: str, cache_dir: Path) -> str | None:
    """Why the last build for the model failed, if it did (None: built or building)."""
    try:
        return _paths(model_sha256, cache_dir)[2].read_text().strip() or "build failed"
    except OSError:
        return None


def model_json(booster) -> str:
    """The booster's XGBoost JSON, what :func:`build` compiles."""
    return booster.save_raw("json").decode()


def build(model: str, model_sha256: str, cache_dir: Path) -> Path:
    """The compiled library of a verified booster: reused from ``cache_dir`` (see
    :func:`cached`), else built now. A failure is also written next to it
    (:func:`build_failure`).

    :param model: the booster as :func:`model_json` gives it.
    :param model_sha256: the sha256 the booster's file was verified against.
    :raises ImportError: treelite or tl2cgen is not installed.
    :raises Exception: the conversion or the build failed (gcc missing, ...).
    """
    import tl2cgen
    import treelite

    cache_dir.mkdir(parents=True, exist_ok=True)
    _paths(model_sha256, cache_dir)[2].unlink(missing_ok=True)
    kept = cached(model_sha256, cache_dir)
    if kept is not None:
        return kept
    lib, meta, failed = _paths(model_sha256, cache_dir)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
    try:
        built = work / "model.so"
        tl2cgen.export_lib(treelite.frontend.from_xgboost_json(model), toolchain="gcc",
                           libpath=str(built),
                           params={"parallel_comp": max(1, min(8, os.cpu_count() or 1))},
                           nthread=os.cpu_count(), options=COMPILER_OPTIONS)
        record = {**_record(model_sha256), "lib_sha256": sha256_file(built)}
        os.replace(built, lib)
        (work / "record.json").write_text(json.dumps(record, indent=2))
        os.replace(work / "record.json", meta)
    except Exception as exc:
        failed.write_text(f"{type(exc).__name__}: {str(exc)[:500]}")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("compiled trees built: %s", lib)
    return lib


def start_build(booster, model_sha256: str, cache_dir: Path, nice: int = 10) -> int:
    """Build the library in a forked process at ``nice`` (it must not slow the slots that
    serve meanwhile); its pid. Call it before this process starts any thread. The child
    calls no XGBoost code (its OpenMP state does not survive a fork)."""
    model = model_json(booster)
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        import signal

        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the slot's drain, sent to its group
        os.nice(nice)
        build(model, model_sha256, cache_dir)
        status = 0
    except BaseException as exc:
        log.warning("compiled trees not built: %s: %s", type(exc).__name__, exc)
    finally:
        logging.shutdown()
        os._exit(status)


def check_same(pack: Pack, booster, compiled: CompiledTrees, rows: list[dict],
               schema: FeatureSchema) -> float:
    """The largest absolute difference between XGBoost's and the compiled trees' outputs on
    raw ``rows`` (through :func:`~driftline.scoring.predict`).

    :raises ValueError: it is over :data:`TOLERANCE` (the figure in the message).
    """
    if not rows:
        raise ValueError("the model has no smoke rows to check the compiled trees on")
    columns = {c: [row.get(c) for row in rows] for c in pack.inputs}
    expected = predict(pack, booster, columns, schema)
    actual = predict(pack, compiled, columns, schema)
    diff = float(np.max(np.abs(expected.astype(np.float64) - actual)))
    if not diff <= TOLERANCE:
        raise ValueError(f"compiled trees differ from XGBoost by {diff:.3g} on the smoke rows "
                         f"(allowed {TOLERANCE:g})")
    return diff


def first_predictor(pack: Pack, booster, compiled: Path | PendingTrees | str | None,
                    rows: list[dict], schema: FeatureSchema) -> tuple[Any, str]:
    """What a server predicts with now, and its name: the compiled trees at ``compiled`` if
    they pass :func:`serving_predictor`'s check, else ``booster``, named with why (still
    being built, or the text ``compiled`` gives)."""
    if isinstance(compiled, Path):
        return serving_predictor(pack, booster, compiled, rows, schema)
    if isinstance(compiled, PendingTrees):
        return booster, "xgboost (compiled trees are being built)"
    if compiled:
        log.warning("serving with XGBoost: %s", compiled)
        return booster, f"xgboost ({compiled})"
    return booster, "xgboost"


def serving_predictor(pack: Pack, booster, libpath: Path | None, rows: list[dict],
                      schema: FeatureSchema) -> tuple[Any, str]:
    """The predictor to serve with, and what it is: the compiled trees at ``libpath`` if
    they load and match XGBoost on ``rows``, else ``booster`` (the reason is logged and
    given)."""
    if libpath is None:
        return booster, "xgboost"
    try:
        compiled = CompiledTrees(libpath)
        diff = check_same(pack, booster, compiled, rows, schema)
    except Exception as exc:  # any failure: XGBoost serves
        log.warning("serving with XGBoost: compiled trees unusable: %s", exc)
        return booster, f"xgboost (compiled trees unusable: {type(exc).__name__}: {exc})"
    log.info("serving with compiled trees %s (largest difference from XGBoost on %d smoke "
             "rows: %.3g)", libpath.name, len(rows), diff)
    return compiled, compiled.description
