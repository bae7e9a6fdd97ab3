"""Evidently data drift of a pack's features: one check for the gate's training-data
comparison and for monitoring (the lake's and the served inputs' drift)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from driftline.packs import Pack


def feature_drift(pack: Pack, current: pd.DataFrame, reference: pd.DataFrame,
                  threshold: float, html_path: Path | None = None,
                  json_path: Path | None = None) -> dict:
    """Evidently data drift of ``current`` against ``reference`` over the pack's features.

    :param threshold: per-column drift score above which a column counts as drifted.

    :return: ``{"share", "count", "columns": {name: drift score}, "drifted": [names]}``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    features = pack.features
    definition = DataDefinition(numerical_columns=pack.numeric_features,
                                categorical_columns=pack.categorical_features)
    cur = Dataset.from_pandas(current[features].reset_index(drop=True),
                              data_definition=definition)
    ref = Dataset.from_pandas(reference[features].reset_index(drop=True),
                              data_definition=definition)
    snapshot = Report([DataDriftPreset(threshold=threshold)], include_tests=True).run(
        cur, ref)
    if html_path:
        snapshot.save_html(str(html_path))
    if json_path:
        snapshot.save_json(str(json_path))
    return summarize_drift(snapshot.dict())


def summarize_drift(report: dict) -> dict:
    """Drifted-column count/share and per-column scores from an Evidently drift report."""
    summary: dict[str, Any] = {"share": None, "count": None, "columns": {}, "drifted": []}
    for metric in report["metrics"]:
        name = metric["metric_name"]
        if name.startswith("DriftedColumnsCount"):
            summary["count"] = int(metric["value"]["count"])
            summary["share"] = float(metric["value"]["share"])
        elif name.startswith("ValueDrift"):
            column = metric["config"]["column"]
            summary["columns"][column] = float(metric["value"])
    for test in report.get("tests", []):
        column = test["metric_config"]["params"].get("column")
        if column and test["status"] == "FAIL":
            summary["drifted"].append(column)
    return summary
