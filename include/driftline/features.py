"""The one feature code path: training, gates, monitoring and serving all call these.

Raw rows (landing data, or a request to the model server) go through :func:`build_features`
to a feature frame with readable categorical values (what drift reports compare), then
through :func:`encode` with the model's :class:`FeatureSchema` to the matrix XGBoost sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def _clock_to_hours(hhmm: pd.Series) -> pd.Series:
    hhmm = pd.to_numeric(hhmm, errors="coerce")
    return (hhmm // 100) + (hhmm % 100) / 60.0


def build_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Derive the model's features from raw flight rows.

    :param raw: rows with at least :data:`INPUT_COLUMNS`.
    :raises KeyError: a required input column is missing (named in the message).
    """
    missing = [c for c in INPUT_COLUMNS if c not in raw.columns]
    if missing:
        raise KeyError(f"input is missing required column(s) {missing}")
    dates = pd.to_datetime(
        pd.DataFrame({"year": raw["year"], "month": raw["month"], "day": raw["day"]}),
        errors="coerce",
    )
    out = pd.DataFrame(index=raw.index)
    out["sched_dep_hour"] = _clock_to_hours(raw["sched_dep_time"])
    out["sched_arr_hour"] = _clock_to_hours(raw["sched_arr_time"])
    out["day_of_week"] = dates.dt.dayofweek.astype("float64")
    out["distance"] = pd.to_numeric(raw["distance"], errors="coerce").astype("float64")
    for column in WEATHER_COLUMNS:
        out[column] = pd.to_numeric(raw[column], errors="coerce").astype("float64")
    for column in CATEGORICAL_FEATURES:
        out[column] = raw[column].astype("string").astype(object)
    return out[FEATURES]


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


def encode(features: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """Turn a feature frame into the float32 matrix the model takes.

    Categorical values become their index in the training vocabulary; values never seen
    in training become NaN (XGBoost's missing), so a new airport cannot crash serving.
    """
    matrix = np.empty((len(features), len(schema.features)), dtype=np.float32)
    for j, name in enumerate(schema.features):
        column = features[name]
        if name in schema.categories:
            codes = pd.Categorical(column, categories=schema.categories[name]).codes
            matrix[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            matrix[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return matrix
