"""A versioned model registry on a filesystem (local, or a shared volume in a cluster).

Layout under ``<root>/<model>/``::

    versions/v0001/model.ubj          XGBoost's own UBJSON format (never pickle)
    versions/v0001/metadata.json      data version, code version, params, metrics, sha256
    versions/v0001/reference.parquet  training-feature sample: the drift reference
    versions/v0001/holdout.parquet    the time-based holdout rows (raw), for gates
    aliases.json                      {"champion": "v0001"}
    events.jsonl                      every registration, promotion, refusal and rollback

Versions are immutable and appear atomically (written aside, then renamed). Registering the
same ``run_key`` twice returns the existing version, so retried and backfilled training runs
never create duplicates. Loading a model checks its sha256 first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from filelock import FileLock

MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference.parquet"
HOLDOUT_FILE = "holdout.parquet"


class ArtifactIntegrityError(RuntimeError):
    """A stored model's bytes do not match the sha256 recorded at registration."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version."""

    name: str
    version: str
    path: Path
    metadata: dict

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def metrics(self) -> dict:
        return self.metadata.get("metrics", {})

    @property
    def data_version(self) -> str:
        return self.metadata["data_version"]

    def reference(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / REFERENCE_FILE)

    def holdout(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / HOLDOUT_FILE)

    def verify(self) -> str:
        """Check the artifact against its recorded sha256.

        :raises ArtifactIntegrityError: the bytes changed since registration.
        """
        expected = self.metadata["artifact"]["sha256"]
        actual = sha256_file(self.model_path)
        if actual != expected:
            raise ArtifactIntegrityError(
                f"{self.model_path}: sha256 {actual} does not match the registry's {expected}; "
                "refusing to load a model that changed after registration")
        return actual

    def load_booster(self):
        """The verified XGBoost booster."""
        import xgboost as xgb

        self.verify()
        booster = xgb.Booster()
        booster.load_model(str(self.model_path))
        return booster


class Registry:
    """Model versions of one model name.

    :param root: registry root directory.
    :param name: model name: the pack's name.
    """

    def __init__(self, root: Path, name: str):
        self.root = Path(root)
        self.name = name
        self.model_dir = self.root / name
        self.versions_dir = self.model_dir / "versions"
        self.lock = FileLock(str(self.root / f".{name}.lock"), timeout=300)

    # -- reading -----------------------------------------------------------------------
    def versions(self) -> list[ModelVersion]:
        """All versions, oldest first."""
        if not self.versions_dir.exists():
            return []
        return [self.get(p.name) for p in sorted(self.versions_dir.glob("v[0-9]*"))]

    def get(self, version: str) -> ModelVersion:
        """:raises LookupError: no such version."""
        path = self.versions_dir / version
        meta = path / METADATA_FILE
        if not meta.exists():
            raise LookupError(f"model {self.name!r} has no version {version!r} in {self.root}")
        return ModelVersion(self.name, version, path, json.loads(meta.read_text()))

    def aliases(self) -> dict[str, str]:
        path = self.model_dir / "aliases.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def alias(self, alias: str) -> ModelVersion | None:
        version = self.aliases().get(alias)
        return self.get(version) if version else None

    def champion(self) -> ModelVersion | None:
        """The version serving live traffic, if any."""
        return self.alias("champion")

    def events(self) -> list[dict]:
        path = self.model_dir / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def find_run(self, run_key: str) -> ModelVersion | None:
        for version in self.versions():
            if version.metadata.get("run_key") == run_key:
                return version
        return None

    # -- writing -----------------------------------------------------------------------
    def register(self, model_file: Path, metadata: dict, reference: pd.DataFrame,
                 holdout: pd.DataFrame, run_key: str) -> ModelVersion:
        """Add a new immutable version, or return the one already made by ``run_key``.

        :param model_file: the booster saved in XGBoost's UBJSON format.
        :param metadata: data/code version, params, metrics, feature schema, ...
        :param reference: feature sample used as drift reference.
        :param holdout: raw holdout rows used by gates.
        :param run_key: identity of the training run (same inputs, same key).
        """
        with self.lock:
            existing = self.find_run(run_key)
            if existing:
                return existing
            numbers = [int(p.name[1:]) for p in self.versions_dir.glob("v[0-9]*")]
            version = f"v{max(numbers, default=0) + 1:04d}"
            staging = self.versions_dir / f".{version}.{os.getpid()}.tmp"
            staging.mkdir(parents=True)
            try:
                shutil.copyfile(model_file, staging / MODEL_FILE)
                reference.to_parquet(staging / REFERENCE_FILE, index=False)
                holdout.to_parquet(staging / HOLDOUT_FILE, index=False)
                full = {**metadata, "model_name": self.name, "version": version,
                        "run_key": run_key, "registered_at": _now(),
                        "artifact": {"file": MODEL_FILE, "format": "xgboost-ubj",
                                     "sha256": sha256_file(staging / MODEL_FILE)}}
                (staging / METADATA_FILE).write_text(json.dumps(full, indent=2, default=str))
                os.replace(staging, self.versions_dir / version)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self._append_event("registered", version, metadata.get("reason", ""))
        return self.get(version)

    def set_alias(self, alias: str, version: str, reason: str) -> None:
        """Point ``alias`` (e.g. champion) at ``version`` and record why."""
        self.get(version)
        with self.lock:
            aliases = self.aliases()
            previous = aliases.get(alias)
            aliases[alias] = version
            _write_json_atomic(self.model_dir / "aliases.json", aliases)
            self._append_event(f"alias:{alias}", version, reason, previous=previous)

    def record(self, event: str, version: str, reason: str, **details) -> None:
        """Append an event (e.g. ``refused`` with the gate's reason) to the history."""
        with self.lock:
            self._append_event(event, version, reason, **details)

    def _append_event(self, event: str, version: str, reason: str, **details) -> None:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"at": _now(), "event": event, "version": version, "reason": reason,
                           **details}, default=str)
        with open(self.model_dir / "events.jsonl", "a") as fh:
            fh.write(line + "\n")


def _write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
