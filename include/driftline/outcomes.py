"""Live quality: how the model that was live in an interval scored once its outcomes landed.

Input drift does not show a changed relation between inputs and outcome (concept drift); the
live model's own quality does, once the outcomes are known. For each monitored interval this
module measures the model that was live then (the model the interval's drift report was made
against, else the champion) on the interval's labelled rows:

- ``served``: when the pack has an ``id_column`` and served requests carried it, the
  predictions the server actually returned, joined to the outcomes by id;
- ``rescored``: otherwise the interval's ingested rows scored again with that model, through
  the one feature path.

Each interval gets ``reports/quality/<report_id>/`` with Evidently's classification or
regression report (``quality.html``/``quality.json``) and ``summary.json``: the figures, the
model's holdout figure as the baseline, how far below it the live model fell, and the drift
of the model's outputs against its holdout outputs (prediction drift). An interval whose
outcomes have not landed yet (the pack's ``label.delay_days``) is recorded as ``pending``,
never as a zero, and is measured by a later run once they land.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftline.evaluation import (
    PREDICTION,
    TARGET,
    metric_values,
    quality_dataset,
    quality_preset,
    score_rows,
)
from driftline.packs.spec import HIGHER_IS_BETTER
from driftline.registry import ModelVersion, Registry
from driftline.stattests import NUMERICAL, column_drift, count_column
from driftline.versioning import DataRepo
from driftline.workspace import Workspace

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
MIN_LABELLED_ROWS = 200
"""Fewer labelled rows than this leave an interval pending: its figure would be noise."""
MEASURED, PENDING = "measured", "pending"


def quality_dir(ws: Workspace) -> Path:
    return ws.reports_dir / "quality"


def report_id_for(start: dt.date, end: dt.date) -> str:
    """Deterministic id of an interval's live-quality report (reruns overwrite it)."""
    return f"quality_{start.isoformat()}_{end.isoformat()}"


def quality_drop(metric: str, value: float, baseline: float) -> float:
    """How much worse ``value`` is than ``baseline`` in ``metric``'s units (> 0: worse)."""
    return baseline - value if metric in HIGHER_IS_BETTER else value - baseline


def live_model(ws: Workspace, start: dt.date, end: dt.date) -> ModelVersion | None:
    """The model that was live in ``[start, end]``: the one its drift report was made
    against, else today's champion."""
    from driftline.monitoring import SUMMARY_FILE as DRIFT_SUMMARY
    from driftline.monitoring import drift_dir
    from driftline.monitoring import report_id_for as drift_report_id

    registry = Registry(ws.registry_dir, ws.model_name)
    drift_summary = drift_dir(ws) / drift_report_id(start, end) / DRIFT_SUMMARY
    if drift_summary.exists():
        return registry.get(json.loads(drift_summary.read_text())["model_version"])
    return registry.champion()


def measure_live_quality(ws: Workspace, start: dt.date, end: dt.date,
                         data_version: str | None = None) -> dict:
    """Measure (or record as pending) the live model's quality on ``[start, end]``.

    :raises LookupError: no model was live yet (nothing to measure).
    """
    pack = ws.pack
    model = live_model(ws, start, end)
    if model is None:
        raise LookupError(f"no {pack.name} model was live in {start}..{end}: no live quality "
                          "to measure")
    repo = DataRepo.of(ws)
    data_version = data_version or repo.head()
    report_id = report_id_for(start, end)
    out = quality_dir(ws) / report_id
    base = {"pack": pack.name, "report_id": report_id, "start": start.isoformat(),
            "end": end.isoformat(), "model_version": model.version,
            "data_version": data_version, "metric": pack.metric,
            "baseline": model.metrics.get(pack.metric), "report_dir": str(out),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    waiting = _pending_reason(ws, repo, data_version, end)
    if waiting is not None:
        return _pending(out, base, waiting)
    scored, source = _scored_outcomes(ws, model, repo, data_version, start, end)
    if len(scored) < MIN_LABELLED_ROWS:
        return _pending(out, base, f"only {len(scored)} labelled rows in {start}..{end} "
                                   f"(fewer than {MIN_LABELLED_ROWS})")
    figures = _figures(ws, model, scored, out)
    summary = {**base, "status": MEASURED, "source": source, "rows": len(scored), **figures}
    _write_summary(out, summary)
    drift = figures["prediction_drift"]
    log.info("%s live quality %s of %s (%s rows, %s): %s %.4f vs holdout %.4f, drop %+.4f "
             "(limit %s) %s; prediction drift %s %.4f%s", pack.name, report_id, model.version,
             len(scored), source, pack.metric, figures["value"], base["baseline"],
             figures["drop"], figures["limit"], "CROSSED" if figures["crossed"] else "within",
             drift["stattest"], drift["score"], " (drifted)" if drift["drifted"] else "")
    return summary


def _pending(out: Path, base: dict[str, Any], reason: str) -> dict[str, Any]:
    """Write and return the summary of an interval whose outcomes are not known yet."""
    summary = {**base, "status": PENDING, "reason": reason, "crossed": False}
    log.info("%s live quality %s: pending: %s", base["pack"], base["report_id"], reason)
    _write_summary(out, summary)
    return summary


def _pending_reason(ws: Workspace, repo: DataRepo, data_version: str,
                    end: dt.date) -> str | None:
    """Why the outcomes of an interval ending ``end`` are not known yet; None if they are."""
    days = repo.list_days(data_version)
    if not days:
        return "no data ingested yet"
    newest = ws.pack.interval_end(days[-1]) - dt.timedelta(days=1)
    needed = end + dt.timedelta(days=ws.pack.spec.label.delay_days)
    if newest < needed:
        return (f"outcomes land {ws.pack.spec.label.delay_days} day(s) after the interval: "
                f"they need data up to {needed}, the newest ingested is {newest}")
    return None


def _scored_outcomes(ws: Workspace, model: ModelVersion, repo: DataRepo, data_version: str,
                     start: dt.date, end: dt.date) -> tuple[pd.DataFrame, str]:
    """The interval's labelled rows as ``target`` + ``prediction``, and where the
    predictions came from (``served`` or ``rescored``)."""
    pack = ws.pack
    try:
        raw = repo.read_days(data_version, start, end)
    except LookupError:
        return pd.DataFrame({TARGET: [], PREDICTION: []}), "rescored"
    labels = pack.label(raw)
    raw = raw[labels.notna().to_numpy()].reset_index(drop=True)
    served = _served_by_id(ws, model, raw, start, end)
    if served is not None:
        return served, "served"
    return score_rows(pack, model, raw), "rescored"


def _served_by_id(ws: Workspace, model: ModelVersion, raw: pd.DataFrame, start: dt.date,
                  end: dt.date) -> pd.DataFrame | None:
    """The predictions the server returned for the interval's rows, joined by the pack's id
    column; None when the pack has no id column or fewer than the minimum rows joined."""
    from driftline.serving.prediction_log import read_served_inputs

    id_column = ws.pack.id_column
    if not id_column:
        return None
    served = read_served_inputs(ws.pack, ws.serving_dir, start, end)
    served = served[(served["model_version"] == model.version) & served[id_column].notna()]
    served = served.drop_duplicates(id_column, keep="last")
    outcomes = pd.DataFrame({id_column: raw[id_column].astype(str),
                             TARGET: ws.pack.label(raw).to_numpy()})
    joined = outcomes.merge(pd.DataFrame({id_column: served[id_column].astype(str),
                                          PREDICTION: served["prediction"]}), on=id_column)
    if len(joined) < MIN_LABELLED_ROWS:
        return None
    if ws.pack.task == "binary":
        joined[TARGET] = joined[TARGET].astype(int)
    return joined[[TARGET, PREDICTION]]


def _figures(ws: Workspace, model: ModelVersion, scored: pd.DataFrame, out: Path) -> dict:
    """Evidently's quality report of ``scored`` (written to ``out``), the primary metric
    against its holdout baseline, and prediction drift against the holdout outputs."""
    from evidently import Report

    pack = ws.pack
    out.mkdir(parents=True, exist_ok=True)
    snapshot = Report([quality_preset(pack)]).run(quality_dataset(pack, scored))
    snapshot.save_html(str(out / "quality.html"))
    snapshot.save_json(str(out / "quality.json"))
    metrics = metric_values(snapshot)
    value, baseline = metrics[pack.metric], model.metrics[pack.metric]
    drop = quality_drop(pack.metric, value, baseline)
    limit = ws.monitor.max_quality_drop.get(pack.metric)
    holdout_outputs = score_rows(pack, model, model.holdout())[PREDICTION]
    drift = column_drift(count_column(pd.Series(np.asarray(scored[PREDICTION], float)),
                                      NUMERICAL),
                         count_column(pd.Series(np.asarray(holdout_outputs, float)), NUMERICAL),
                         ws.monitor.prediction_drift_threshold)
    return {"value": value, "drop": drop, "limit": limit,
            "crossed": limit is not None and drop > limit, "metrics": metrics,
            "holdout_metrics": {k: model.metrics[k] for k in metrics if k in model.metrics},
            "prediction_drift": {"stattest": drift.stattest, "score": drift.score,
                                 "threshold": drift.threshold, "drifted": drift.drifted,
                                 "mean": float(np.mean(scored[PREDICTION])),
                                 "holdout_mean": float(np.mean(holdout_outputs))}}


def _write_summary(out: Path, summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{SUMMARY_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / SUMMARY_FILE)


def list_quality_reports(ws: Workspace) -> list[dict]:
    """Every interval's live-quality summary, oldest interval first."""
    reports = [json.loads(p.read_text())
               for p in quality_dir(ws).glob(f"*/{SUMMARY_FILE}")]
    return sorted(reports, key=lambda r: (r["end"], r["report_id"]))


def measure_interval_and_pending(ws: Workspace, start: dt.date, end: dt.date) -> list[dict]:
    """Measure ``[start, end]`` and every earlier interval still pending whose outcomes may
    have landed since; the summaries, oldest first (``[start, end]``'s last)."""
    earlier = [r for r in list_quality_reports(ws)
               if r["status"] == PENDING and r["report_id"] != report_id_for(start, end)]
    results = []
    for report in earlier:
        results.append(measure_live_quality(ws, dt.date.fromisoformat(report["start"]),
                                            dt.date.fromisoformat(report["end"])))
    results.append(measure_live_quality(ws, start, end))
    return results
