"""The XGBoost hyperparameters a training run may set, with their bounds: declared once.

The train DAG's ``hyperparameters`` Param is this JSON schema, and the trainer refuses any
other name (:func:`driftline.training.resolve_params`); each name is also a
:class:`~driftline.settings.TrainingSettings` field, its default. Imports nothing heavy, so
DAG files may import it at parse time.
"""

from __future__ import annotations

HYPERPARAMETER_SCHEMA: dict[str, dict] = {
    "num_boost_round": {"type": "integer", "minimum": 1, "maximum": 5000},
    "max_depth": {"type": "integer", "minimum": 1, "maximum": 16},
    "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "subsample": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "colsample_bytree": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "min_child_weight": {"type": "number", "minimum": 0},
    "nthread": {"type": "integer", "minimum": 0, "maximum": 256},
    "device": {"type": "string", "enum": ["cpu", "cuda"]},
}
HYPERPARAMETERS: tuple[str, ...] = tuple(HYPERPARAMETER_SCHEMA)
