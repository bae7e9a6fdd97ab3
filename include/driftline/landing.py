"""The landing zone: where upstream drops one file per data interval for each pack.

:func:`read_landing_file` reads a file as its pack declares it (CSV, gzipped CSV or Parquet;
text columns as text, nothing coerced yet). :func:`replay` plays a pack's history (its
``[source]`` loader) into the landing zone interval by interval, as an upstream system would
drop files; ingest reads only the landing zone, never the source.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from driftline.packs import Pack
from driftline.packs.timeline import iter_intervals
from driftline.workspace import Workspace

log = logging.getLogger(__name__)


def read_landing_file(pack: Pack, path: Path) -> pd.DataFrame:
    """Read a landing file: declared text columns as strings, the rest as parsed.

    :raises FileNotFoundError: no file for that interval has landed.
    :raises ValueError: the file is not readable in the pack's format.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"landing file {path.name} has not arrived")
    landing = pack.spec.landing
    try:
        if landing.format == "parquet":
            return pd.read_parquet(path)
        text: Mapping[Hashable, type[str]] = {c: str for c in pack.text_columns}
        return pd.read_csv(path, dtype=text, sep=landing.delimiter,
                           compression="gzip" if landing.format == "csv.gz" else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            ValueError) as exc:
        detail = str(exc).replace(str(path.resolve()), path.name).replace(str(path), path.name)
        raise ValueError(f"{path.name}: not a readable {landing.format} file: {detail}") from exc


def write_landing_file(pack: Pack, rows: pd.DataFrame, target: Path) -> None:
    """Write ``rows`` as the pack's landing format, atomically (aside, then renamed)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fmt = pack.spec.landing.format
    if fmt == "parquet":
        rows.to_parquet(tmp, index=False)
    else:
        rows.to_csv(tmp, index=False, sep=pack.spec.landing.delimiter,
                    compression="gzip" if fmt == "csv.gz" else None)
    os.replace(tmp, target)


def replay(ws: Workspace, start: dt.date, end: dt.date, overwrite: bool = False,
           source: pd.DataFrame | None = None) -> list[Path]:
    """Drop one landing file per interval overlapping ``[start, end]`` from the pack's source.

    Existing files are kept unless ``overwrite``; intervals without rows get no file.

    :param source: the rows to replay from; default the pack's ``[source]`` loader.
    :return: the files written.
    """
    pack = ws.pack
    ws.landing_dir.mkdir(parents=True, exist_ok=True)
    rows = pack.load_source() if source is None else source
    dates = pack.local_dates(rows[pack.time_column])
    columns = [c for c in pack.spec.columns if c in rows.columns]
    written = []
    for first in iter_intervals(start, end, pack.interval):
        target = ws.landing_path(first)
        if target.exists() and not overwrite:
            continue
        last = pack.interval_end(first)
        mask = (dates >= np.datetime64(first)) & (dates < np.datetime64(last))
        if not mask.any():
            log.warning("%s: no rows in the interval starting %s; no file dropped",
                        pack.name, first)
            continue
        write_landing_file(pack, rows.loc[mask, columns], target)
        written.append(target)
    log.info("%s: replayed %d interval(s) into %s", pack.name, len(written), ws.landing_dir)
    return written
