"""The one feature code path: training, gates, monitoring and serving all call these.

Raw rows (landing data, or a request to the model server) go through :func:`build_features`
to a feature frame with readable categorical values (what drift reports compare), then
through :func:`encode` with the model's :class:`FeatureSchema` to the matrix XGBoost sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from driftline.sources import WEATHER_COLUMNS

INPUT_COLUMNS = [
    "year", "month", "day", "sched_dep_time", "sched_arr_time",
    "carrier", "origin", "dest", "distance", *WEATHER_COLUMNS,
]  # fmt: skip
"""Raw fields a caller must supply: everything known before the flight departs."""

CATEGORICAL_FEATURES = ["carrier", "origin", "dest"]
NUMERIC_FEATURES = [
    "sched_dep_hour", "sched_arr_hour", "day_of_week", "distance", *WEATHER_COLUMNS,
]  # fmt: skip
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
LABEL = "late"
LATE_MINUTES = 15


def as_float(values) -> np.ndarray:
    """Values as float64; missing or non-numeric values become NaN."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):  # pd.NA, free text: coerce like pandas does
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan)


def as_text(values) -> np.ndarray:
    """Values as an object array of ``str``, with ``None`` where missing."""
    out = np.empty(len(values), dtype=object)
    out[:] = [v if isinstance(v, str) else (None if pd.isna(v) else str(v)) for v in values]
    return out


def calendar_date_mask(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """True where ``year``/``month``/``day`` (floats) form a calendar date."""
    with np.errstate(invalid="ignore"):
        whole = (year % 1 == 0) & (month % 1 == 0) & (day % 1 == 0)
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        month_index = np.where((month >= 1) & (month <= 12), month, 1).astype(np.int64) - 1
        month_days = _MONTH_DAYS[month_index] + (leap & (month == 2))
        return whole & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (
            day <= month_days)


_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_SAKAMOTO = np.array([0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4])


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


def derive_features(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The model's features, one array each, from raw input columns (any sequences).

    This is the one implementation: :func:`build_features` (training, gates, monitoring)
    and the model server's request path both call it.

    :param columns: at least :data:`INPUT_COLUMNS`, each a sequence of equal length.
    """
    year, month, day = (as_float(columns[c]) for c in ("year", "month", "day"))
    out = {"sched_dep_hour": clock_to_hours(as_float(columns["sched_dep_time"])),
           "sched_arr_hour": clock_to_hours(as_float(columns["sched_arr_time"])),
           "day_of_week": day_of_week(year, month, day),
           "distance": as_float(columns["distance"])}
    for column in WEATHER_COLUMNS:
        out[column] = as_float(columns[column])
    for column in CATEGORICAL_FEATURES:
        out[column] = as_text(columns[column])
    return {name: out[name] for name in FEATURES}


def build_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Derive the model's features from raw flight rows, as a frame (see
    :func:`derive_features`).

    :param raw: rows with at least :data:`INPUT_COLUMNS`.
    :raises KeyError: a required input column is missing (named in the message).
    """
    missing = [c for c in INPUT_COLUMNS if c not in raw.columns]
    if missing:
        raise KeyError(f"input is missing required column(s) {missing}")
    columns = {c: raw[c].to_numpy() for c in INPUT_COLUMNS}
    return pd.DataFrame(derive_features(columns), index=raw.index)


def build_label(raw: pd.DataFrame) -> pd.Series:
    """1.0 when the flight arrived more than 15 minutes late, 0.0 if not, NaN if unknown
    (cancelled or diverted flights have no arrival delay)."""
    delay = pd.to_numeric(raw["arr_delay"], errors="coerce")
    return (delay > LATE_MINUTES).astype("float64").where(delay.notna())


@dataclass
class FeatureSchema:
    """Feature order and categorical vocabularies frozen at training time."""

    features: list[str] = field(default_factory=lambda: list(FEATURES))
    categories: dict[str, list[str]] = field(default_factory=dict)
    codes: dict[str, dict[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.codes = {name: {value: i for i, value in enumerate(vocab)}
                      for name, vocab in self.categories.items()}

    @classmethod
    def fit(cls, features: pd.DataFrame) -> FeatureSchema:
        """Learn each categorical column's vocabulary from training features."""
        vocab = {c: sorted(features[c].dropna().astype(str).unique().tolist())
                 for c in CATEGORICAL_FEATURES}
        return cls(features=list(FEATURES), categories=vocab)

    @property
    def feature_types(self) -> list[str]:
        return ["c" if f in self.categories else "q" for f in self.features]

    def to_dict(self) -> dict:
        return {"features": self.features, "categories": self.categories}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSchema:
        return cls(features=list(data["features"]), categories=dict(data["categories"]))


def encode(features: Mapping[str, Any], schema: FeatureSchema) -> np.ndarray:
    """Turn features (a frame, or :func:`derive_features`' arrays) into the float32 matrix
    the model takes.

    Categorical values become their index in the training vocabulary; values never seen
    in training become NaN (XGBoost's missing), so a new airport cannot crash serving.
    """
    rows = len(features[schema.features[0]])
    matrix = np.empty((rows, len(schema.features)), dtype=np.float32)
    for j, name in enumerate(schema.features):
        column = features[name]
        if name in schema.codes:
            codes = schema.codes[name]
            matrix[:, j] = [codes.get(value, np.nan) for value in column]
        else:
            matrix[:, j] = np.asarray(column, dtype=np.float64)
    return matrix
