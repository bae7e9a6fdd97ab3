"""Drift monitoring: recent data and served inputs against the live model's reference.

Each monitored interval gets one report directory ``reports/drift/<report_id>/`` with the
Evidently HTML/JSON reports and a ``summary.json``. Rerunning an interval rewrites the same
report id. Whether a report starts a retraining is the retrain policy's decision
(:mod:`driftline.retraining`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pandas as pd

from driftline.drift import feature_drift
from driftline.features import build_features
from driftline.registry import Registry
from driftline.versioning import DataRepo
from driftline.workspace import Workspace

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
MIN_ROWS = 200


def drift_dir(ws: Workspace) -> Path:
    return ws.reports_dir / "drift"


def report_id_for(start: dt.date, end: dt.date) -> str:
    """Deterministic id of the report for an interval (so reruns overwrite, not add)."""
    return f"drift_{start.isoformat()}_{end.isoformat()}"


def _served_inputs(ws: Workspace, start: dt.date, end: dt.date) -> pd.DataFrame:
    from driftline.serving.prediction_log import read_served_inputs

    return read_served_inputs(ws.pack, ws.serving_dir, start, end)


def run_drift_report(ws: Workspace, start: dt.date, end: dt.date,
                     data_version: str | None = None) -> dict:
    """Build the drift report of ``[start, end]`` against the champion's reference data.

    Two current datasets are compared when present: the ingested partitions of the interval
    and the inputs the model server logged for events in it. The report's ``share`` is the
    larger of the two drifted-column shares.

    :raises LookupError: there is no champion yet, or no data in the interval.
    """
    pack = ws.pack
    champion = Registry(ws.registry_dir, ws.model_name).champion()
    if champion is None:
        raise LookupError(f"no {pack.name} champion model is live yet: nothing to monitor "
                          "against")
    repo = DataRepo.of(ws)
    data_version = data_version or repo.head()
    reference = champion.reference()
    report_id = report_id_for(start, end)
    out = drift_dir(ws) / report_id
    out.mkdir(parents=True, exist_ok=True)

    datasets = {}
    lake = build_features(pack, repo.read_days(data_version, start, end))
    column_threshold = ws.monitor.column_drift_threshold
    datasets["lake"] = feature_drift(pack, lake, reference, column_threshold,
                                     out / "lake.html", out / "lake.json")
    datasets["lake"]["rows"] = len(lake)
    served = _served_inputs(ws, start, end)
    if len(served) >= MIN_ROWS:
        datasets["served"] = feature_drift(pack, build_features(pack, served), reference,
                                           column_threshold, out / "served.html",
                                           out / "served.json")
        datasets["served"]["rows"] = len(served)
    else:
        log.info("only %d served rows in %s..%s (< %d): served inputs not compared",
                 len(served), start, end, MIN_ROWS)
    share = max(d["share"] for d in datasets.values())
    threshold = ws.monitor.drift_share_threshold
    summary = {
        "pack": pack.name, "report_id": report_id, "start": start.isoformat(),
        "end": end.isoformat(),
        "model_version": champion.version, "data_version": data_version,
        "share": share, "threshold": threshold, "crossed": share >= threshold,
        "column_threshold": column_threshold, "datasets": datasets, "report_dir": str(out),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tmp = out / f".{SUMMARY_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / SUMMARY_FILE)
    log.info("%s drift %s: share %.3f (threshold %.3f) %s; drifted lake columns: %s",
             pack.name, report_id, share, threshold, "CROSSED" if summary["crossed"] else "below",
             ", ".join(datasets["lake"]["drifted"]) or "none")
    return summary


def list_drift_reports(reports_root: Path) -> list[dict]:
    """Every drift report summary under ``reports_root``, oldest interval first."""
    reports = [json.loads(summary.read_text())
               for summary in Path(reports_root).glob(f"*/{SUMMARY_FILE}")]
    return sorted(reports, key=lambda r: (r["end"], r["report_id"]))
