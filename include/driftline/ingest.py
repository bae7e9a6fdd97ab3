"""The ingest stage for one data interval: landing file → checks → versioned partition, or
quarantine.

Idempotent per interval: the partition is rebuilt from the landing file and replaced whole,
so a rerun or backfill gives the same content hash and never duplicates rows. A file that
fails its checks is moved to quarantine with a reason file and nothing is written to the lake.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path

from driftline.landing import read_landing_file
from driftline.validation import (
    Check,
    DataValidationError,
    ValidationResult,
    validate_landing_frame,
)
from driftline.versioning import DataRepo, PartitionVersion
from driftline.workspace import Workspace

log = logging.getLogger(__name__)


def quarantine(ws: Workspace, source: Path, result: ValidationResult) -> Path:
    """Move a rejected landing file aside with ``<file>.reason.json`` next to it."""
    ws.quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = ws.quarantine_dir / source.name
    reason = {**result.to_dict(), "pack": ws.name,
              "quarantined_at": dt.datetime.now(dt.UTC).isoformat(),
              "failed": [c.describe() for c in result.failures]}
    reason_path = target.with_name(target.name + ".reason.json")
    reason_path.write_text(json.dumps(reason, indent=2, default=str))
    shutil.move(str(source), target)
    log.error("quarantined %s (reason in %s)", source.name, reason_path.name)
    return target


def ingest_interval(ws: Workspace, start: dt.date) -> PartitionVersion:
    """Ingest the landing file of the data interval starting on ``start``.

    :raises FileNotFoundError: the interval's file has not landed.
    :raises DataValidationError: the file failed a check; it is quarantined.
    """
    pack = ws.pack
    source = ws.landing_path(start)
    oversized = _file_size_check(ws, source)
    if oversized:
        result = ValidationResult(source.name, 0, [oversized])
        quarantine(ws, source, result)
        raise DataValidationError(result)
    try:
        frame = read_landing_file(pack, source)
    except ValueError as exc:  # unreadable file: quarantine with the parser's message
        result = ValidationResult(source.name, 0, [Check("readable file", None, str(exc),
                                                         str(pack.spec.landing.format),
                                                         False)])
        quarantine(ws, source, result)
        raise DataValidationError(result) from exc
    result = validate_landing_frame(pack, frame, source.name, ws.validation, start=start,
                                    history_rows=recent_row_counts(ws, start))
    _save_validation(ws, start, result)
    for check in result.failures:
        log.error("check failed: %s", check.describe())
    for check in result.warnings:
        log.warning("check failed, ingesting anyway ([validation] policy): %s",
                    check.describe())
    if not result.passed:
        quarantine(ws, source, result)
        raise DataValidationError(result)
    log.info("%s passed %d checks (%d rows)", source.name, len(result.checks), result.rows)
    return DataRepo.of(ws).write_partition(start, frame)


def _file_size_check(ws: Workspace, source: Path) -> Check | None:
    """A failed check if the landing file is larger than ``[validation] max_file_mb``."""
    try:
        size_mb = source.stat().st_size / 2**20
    except OSError:
        return None  # read_landing_file names a missing or unreadable file
    limit = ws.validation.max_file_mb
    if size_mb <= limit:
        return None
    return Check("file size (MiB)", None, round(size_mb, 1), limit, False)


def recent_row_counts(ws: Workspace, start: dt.date) -> list[int]:
    """Row counts of the pack's last ``history_partitions`` intervals ingested before
    ``start`` (from their validation reports)."""
    counts = []
    for path in sorted((ws.reports_dir / "validation").glob("*.json"), reverse=True):
        try:
            day = dt.date.fromisoformat(path.stem)
        except ValueError:
            continue
        if day >= start:
            continue
        report = json.loads(path.read_text())
        if report.get("passed") and report.get("rows"):
            counts.append(int(report["rows"]))
        if len(counts) == ws.validation.history_partitions:
            break
    return counts


def _save_validation(ws: Workspace, start: dt.date, result: ValidationResult) -> None:
    out = ws.reports_dir / "validation"
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{start.isoformat()}.{os.getpid()}"
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    os.replace(tmp, out / f"{start.isoformat()}.json")
