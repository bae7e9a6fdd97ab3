"""The one feature code path: training, gates, monitoring and serving all call these.

Raw rows (landing data, or a request to the model server) go through :func:`derive_features`
(:func:`build_features` for frames) to the pack's features with readable categorical values
(what drift reports compare), then through :func:`encode` with the model's
:class:`FeatureSchema` to the matrix XGBoost sees. Which columns are features, and how derived
ones are computed, comes from the pack's spec and hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from driftline.packs import Pack


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


def input_arrays(pack: Pack, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The pack's inputs as arrays: float64 for numbers, ``str``/``None`` objects for text."""
    return {c: as_text(columns[c]) if pack.is_text(c) else as_float(columns[c])
            for c in pack.inputs}


def derive_features(pack: Pack, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The model's features, one array each, from raw input columns (any sequences).

    This is the one implementation: :func:`build_features` (training, gates, monitoring)
    and the model server's request path both call it.

    :param columns: at least the pack's inputs, each a sequence of equal length.
    """
    inputs = input_arrays(pack, columns)
    derived = pack.derive(inputs)
    out = {}
    for name in pack.numeric_features:
        out[name] = as_float(derived[name] if name in derived else inputs[name])
    for name in pack.categorical_features:
        out[name] = as_text(derived[name] if name in derived else inputs[name])
    return out


def build_features(pack: Pack, raw: pd.DataFrame) -> pd.DataFrame:
    """The pack's features of raw rows, as a frame (see :func:`derive_features`).

    :raises KeyError: a required input column is missing (named in the message).
    """
    missing = [c for c in pack.inputs if c not in raw.columns]
    if missing:
        raise KeyError(f"input is missing required column(s) {missing}")
    columns = {c: raw[c].to_numpy() for c in pack.inputs}
    return pd.DataFrame(derive_features(pack, columns), index=raw.index)


def build_label(pack: Pack, raw: pd.DataFrame) -> pd.Series:
    """The pack's label of each row (binary: 1.0/0.0), NaN where not known yet."""
    return pack.label(raw)


@dataclass
class FeatureSchema:
    """Feature order and categorical vocabularies frozen at training time."""

    features: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    codes: dict[str, dict[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.codes = {name: {value: i for i, value in enumerate(vocab)}
                      for name, vocab in self.categories.items()}

    @classmethod
    def fit(cls, pack: Pack, features: pd.DataFrame) -> FeatureSchema:
        """Learn each categorical feature's vocabulary from training features."""
        vocab = {c: sorted(features[c].dropna().astype(str).unique().tolist())
                 for c in pack.categorical_features}
        return cls(features=list(pack.features), categories=vocab)

    @property
    def feature_types(self) -> list[str]:
        return ["c" if f in self.categories else "q" for f in self.features]

    def to_dict(self) -> dict:
        return {"features": self.features, "categories": self.categories}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSchema:
        return cls(features=list(data["features"]), categories=dict(data["categories"]))


def encode(features: pd.DataFrame | Mapping[str, Any], schema: FeatureSchema) -> np.ndarray:
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
