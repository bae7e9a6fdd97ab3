"""Data drift of a pack's features: one check for the gate's training-data comparison and
for monitoring (the lake's and the served inputs' drift).

The figures are Evidently 0.7's ``DataDriftPreset`` verdicts, computed on all rows from value
counts (:mod:`driftline.stattests`: the same test per column, the same score); a column that
module does not reproduce makes the comparison run Evidently itself. The HTML report is
Evidently's, on a fixed-seed sample of at most :data:`HTML_SAMPLE_ROWS` rows per side.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftline.packs import Pack
from driftline.stattests import NotReproduced, count_frame, frame_drift

log = logging.getLogger(__name__)

HTML_SAMPLE_ROWS = 10_000
"""Rows per side of the HTML report (Evidently: 1.5-6 s at 10,000 rows, over a minute at 1M)."""
HTML_SAMPLE_SEED = 0


def feature_drift(pack: Pack, current: pd.DataFrame, reference: pd.DataFrame,
                  threshold: float, html_path: Path | None = None,
                  json_path: Path | None = None) -> dict:
    """Data drift of ``current`` against ``reference`` over the pack's features, on all rows.

    :param threshold: per-column drift score above which a column counts as drifted.
    :param html_path: where to write Evidently's HTML report (on a sample, see
        :func:`html_sample`, unless Evidently computed the figures).
    :param json_path: where to write the figures, each column's test and what the HTML
        report was made of.

    :return: ``{"share", "count", "columns": {name: drift score}, "drifted": [names]}``.
    """
    numerical, categorical = pack.numeric_features, pack.categorical_features
    try:
        verdicts = frame_drift(count_frame(current, numerical, categorical),
                               count_frame(reference, numerical, categorical), threshold)
    except NotReproduced as reason:
        log.info("drift: %s; Evidently computes this comparison", reason)
        return _evidently_drift(pack, current, reference, threshold, html_path, json_path,
                                str(reason))
    drifted = [c for c, v in verdicts.items() if v.drifted]
    summary = {"share": len(drifted) / len(verdicts), "count": len(drifted),
               "columns": {c: v.score for c, v in verdicts.items()}, "drifted": drifted}
    html = None
    if html_path:
        cur, ref = html_sample(current), html_sample(reference)
        evidently_report(pack, cur, ref, threshold).save_html(str(html_path))
        html = {"file": Path(html_path).name, "rows": {"current": len(cur), "reference": len(ref)},
                "seed": HTML_SAMPLE_SEED,
                "note": f"Evidently's report on a fixed-seed sample of at most "
                        f"{HTML_SAMPLE_ROWS} rows per side; the figures here are on all rows"}
    if json_path:
        _write_json(json_path, summary, current, reference, html, engine="driftline.stattests",
                    stattests={c: v.stattest for c, v in verdicts.items()})
    return summary


def html_sample(frame: pd.DataFrame, rows: int = HTML_SAMPLE_ROWS,
                seed: int = HTML_SAMPLE_SEED) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame``, drawn without replacement with ``seed``, in order."""
    if len(frame) <= rows:
        return frame
    picked = np.random.default_rng(seed).choice(len(frame), rows, replace=False)
    return frame.iloc[np.sort(picked)]


def evidently_report(pack: Pack, current: pd.DataFrame, reference: pd.DataFrame,
                     threshold: float | None):
    """Evidently's ``DataDriftPreset`` (with its tests) of the pack's features: a snapshot."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    features = pack.features
    definition = DataDefinition(numerical_columns=pack.numeric_features,
                                categorical_columns=pack.categorical_features)
    cur = Dataset.from_pandas(current[features].reset_index(drop=True),
                              data_definition=definition)
    ref = Dataset.from_pandas(reference[features].reset_index(drop=True),
                              data_definition=definition)
    return Report([DataDriftPreset(threshold=threshold)], include_tests=True).run(cur, ref)


def _evidently_drift(pack: Pack, current: pd.DataFrame, reference: pd.DataFrame,
                     threshold: float, html_path: Path | None, json_path: Path | None,
                     reason: str) -> dict:
    snapshot = evidently_report(pack, current, reference, threshold)
    report = snapshot.dict()
    summary = summarize_drift(report)
    if html_path:
        snapshot.save_html(str(html_path))
    if json_path:
        html = {"file": Path(html_path).name, "rows": {"current": len(current),
                                                      "reference": len(reference)},
                "note": "Evidently's report on all rows"} if html_path else None
        _write_json(json_path, summary, current, reference, html, engine="evidently",
                    stattests=stattests_of(report), fallback_reason=reason)
    return summary


def _write_json(path: Path, summary: dict, current: pd.DataFrame, reference: pd.DataFrame,
                html: dict | None, **extra: Any) -> None:
    doc = {**summary, "rows": {"current": len(current), "reference": len(reference)},
           **extra, "html": html}
    Path(path).write_text(json.dumps(doc, indent=2))


def stattests_of(report: dict) -> dict[str, str]:
    """Each column's test in an Evidently drift report (its display name)."""
    return {m["config"]["column"]: m["config"]["method"] for m in report["metrics"]
            if m["metric_name"].startswith("ValueDrift")}


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
