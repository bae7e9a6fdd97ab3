"""Event times and data intervals of a pack: how a row's time maps to the interval (daily or
monthly, cut in the pack's timezone) whose partition it belongs to."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from driftline.packs.spec import TimeSpec

if TYPE_CHECKING:
    import pandas as pd


def interval_start(day: dt.date, interval: str) -> dt.date:
    """The first day of the interval that contains ``day``."""
    return day.replace(day=1) if interval == "monthly" else day


def interval_end(start: dt.date, interval: str) -> dt.date:
    """The first day after the interval that starts on ``start`` (exclusive end)."""
    if interval == "monthly":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start + dt.timedelta(days=1)


def iter_intervals(first: dt.date, last: dt.date, interval: str) -> Iterator[dt.date]:
    """Start days of every interval that overlaps ``[first, last]``."""
    start = interval_start(first, interval)
    while start <= last:
        yield start
        start = interval_end(start, interval)


def local_times(values, spec: TimeSpec) -> pd.Series:
    """Event times as naive local times of the pack's timezone; NaT where unparseable.

    Times with an offset (``2013-01-01T10:00:00Z``) are converted to the zone; times without
    one are taken as already local. Each distinct text is parsed once (an interval's rows
    share few distinct times), then spread back to its rows.
    """
    import pandas as pd  # not at import: DAG files load packs at parse time

    codes, distinct = pd.factorize(pd.Series(values, dtype=object))  # NA: code -1, NaT below
    text = pd.Series(distinct, dtype=object).astype("string")
    parsed = _parse_local_times(text, spec).to_numpy()
    out = np.full(len(codes), np.datetime64("NaT"), dtype="datetime64[ns]")
    known = codes >= 0
    out[known] = parsed[codes[known]]
    return pd.Series(out)


def _parse_local_times(text: pd.Series, spec: TimeSpec) -> pd.Series:
    import pandas as pd

    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    if spec.format:
        parsed = pd.to_datetime(text, format=spec.format, errors="coerce")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert(spec.timezone).dt.tz_localize(None)
        return parsed.astype("datetime64[ns]")
    offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False).to_numpy()
    if offset.any():
        aware = pd.to_datetime(text[offset], format="ISO8601", utc=True, errors="coerce")
        out[offset] = aware.dt.tz_convert(spec.timezone).dt.tz_localize(None)
    if (~offset).any():
        out[~offset] = pd.to_datetime(text[~offset], format="ISO8601", errors="coerce")
    return out


def local_dates(values, spec: TimeSpec) -> np.ndarray:
    """The local calendar date (``datetime64[D]``) of each event time; NaT if unparseable."""
    return local_times(values, spec).to_numpy().astype("datetime64[D]")


class RowClock:
    """Parses one request row's time at a time (no pandas on the request path).

    :param spec: the pack's time spec.
    """

    def __init__(self, spec: TimeSpec):
        self.format = spec.format
        self.zone = ZoneInfo(spec.timezone)
        # traffic repeats its times (an hour, a day): parse each distinct value once
        self.date = functools.lru_cache(maxsize=65_536)(self._date)

    def _date(self, value: str) -> str:
        """The local ``YYYY-MM-DD`` of ``value``.

        :raises ValueError: ``value`` is not a time in the pack's format.
        """
        moment = (dt.datetime.strptime(value, self.format) if self.format
                  else dt.datetime.fromisoformat(value))
        if moment.tzinfo is not None:
            moment = moment.astimezone(self.zone)
        return moment.date().isoformat()
