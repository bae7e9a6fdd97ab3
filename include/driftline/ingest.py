"""The ingest stage for one day: landing file → checks → versioned partition, or quarantine.

Idempotent per day: the partition is rebuilt from the landing file and replaced whole, so a
rerun or backfill gives the same content hash and never duplicates rows. A file that fails
its checks is moved to quarantine with a reason file and nothing is written to the lake.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path

from driftline.settings import Settings
from driftline.sources import landing_path, read_landing_file
from driftline.validation import (
    Check,
    DataValidationError,
    ValidationResult,
    validate_landing_frame,
)
from driftline.versioning import DataRepo, PartitionVersion

log = logging.getLogger(__name__)


def quarantine(settings: Settings, source: Path, result: ValidationResult) -> Path:
    """Move a rejected landing file aside with ``<file>.reason.json`` next to it."""
    settings.quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = settings.quarantine_dir / source.name
    reason = {**result.to_dict(), "quarantined_at": dt.datetime.now(dt.UTC).isoformat(),
              "failed": [c.describe() for c in result.failures]}
    reason_path = target.with_name(target.name + ".reason.json")
    reason_path.write_text(json.dumps(reason, indent=2, default=str))
    shutil.move(str(source), target)
    log.error("quarantined %s → %s (reason in %s)", source, target, reason_path.name)
    return target


def ingest_day(settings: Settings, day: dt.date) -> PartitionVersion:
    """Ingest the landing file of ``day``.

    :raises FileNotFoundError: the day's file has not landed.
    :raises DataValidationError: the file failed a check; it is quarantined.
    """
    source = landing_path(settings.landing_dir, day)
    try:
        frame = read_landing_file(source)
    except ValueError as exc:  # unreadable CSV: quarantine with the parser's message
        result = ValidationResult(source.name, 0, [Check("readable CSV", None, str(exc),
                                                         "parseable", False)])
        quarantine(settings, source, result)
        raise DataValidationError(result) from exc
    result = validate_landing_frame(frame, source.name, settings.validation)
    _save_validation(settings, day, result)
    for check in result.failures:
        log.error("check failed: %s", check.describe())
    if not result.passed:
        quarantine(settings, source, result)
        raise DataValidationError(result)
    log.info("%s passed %d checks (%d rows)", source.name, len(result.checks), result.rows)
    repo = DataRepo(settings.data_repo, settings.dvc_remote)
    return repo.write_partition(day, frame)


def _save_validation(settings: Settings, day: dt.date, result: ValidationResult) -> None:
    out = settings.reports_dir / "validation"
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{day.isoformat()}.{os.getpid()}"
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    os.replace(tmp, out / f"{day.isoformat()}.json")
