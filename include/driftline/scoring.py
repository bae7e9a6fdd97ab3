"""A model's output for raw rows, and raw rows as a request carries them.

The one scoring path shared by training (holdout and smoke rows), the gate, the drift monitor
and the model server, so none of them imports another's module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from driftline.features import FeatureSchema, derive_features, encode
from driftline.packs import Pack


def predict(pack: Pack, booster, raw: pd.DataFrame | Mapping[str, Any],
            schema: FeatureSchema) -> np.ndarray:
    """The model's output for raw rows (a frame, or one sequence per input column): a
    probability (binary) or a value (regression), through the one feature path
    (:func:`~driftline.features.derive_features`)."""
    columns = raw if isinstance(raw, Mapping) else {c: raw[c].to_numpy() for c in pack.inputs}
    matrix = encode(derive_features(pack, columns), schema)
    return booster.inplace_predict(matrix, validate_features=False)


def request_rows(pack: Pack, raw: pd.DataFrame) -> list[dict]:
    """Raw rows as a model server's request carries them (JSON types, None for missing)."""
    present = [c for c in pack.request_columns if c in raw.columns]
    return json.loads(raw[present].to_json(orient="records", date_format="iso"))
