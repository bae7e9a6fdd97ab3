"""Alerts: what happened to a pack, with its figures and a link to the report, built from
driftline's own records.

Each builder reads the record the stage wrote and returns an :class:`Alert` (event, subject,
text body, JSON payload), or None when the record says there is nothing to alert about:

- ``drift``: a drift report's ``summary.json`` (:mod:`driftline.monitoring`) that crossed:
  the share of drifted columns against the threshold, the drifted columns per dataset;
- ``quality``: a live-quality ``summary.json`` (:mod:`driftline.outcomes`) that crossed: the
  live metric against its holdout baseline, the drop against ``max_quality_drop``;
- ``gate_refused``: a gate's ``verdict.json`` (:mod:`driftline.evaluation`) that refused: each
  failed check, its value, limit and how far off, a significance check's interval;
- ``auto_rollback`` / ``deploy_failed``: the serving history's switch records
  (:mod:`driftline.serving.deploy`): from/to versions and slots and the reason, or the error;
- ``quarantine``: a quarantined landing file's ``<file>.reason.json``
  (:func:`driftline.ingest.quarantine`): the file and its failed checks.

Links point at the driftline pages in the Airflow UI (``[alerts] ui_base_url`` +
``/driftline/...``). Nothing here knows a connection: an alert never carries a password or
token. Sending is the provider's (:mod:`driftline_provider.notifications.driftline`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from driftline.packs.spec import METRIC_LABELS
from driftline.workspace import Workspace

PREFIX = "[driftline]"


@dataclass(frozen=True)
class Alert:
    """One alert: ``subject`` and ``text`` for people, ``payload`` (JSON) for machines."""

    event: str
    pack: str
    subject: str
    text: str
    link: str
    figures: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)
    """The Airflow task that raised it (``dag_id``, ``run_id``, ``task_id``), when known."""

    @property
    def payload(self) -> dict:
        """The webhook's JSON body."""
        return {"source": "driftline", "event": self.event, "pack": self.pack,
                "subject": self.subject, "text": self.text, "link": self.link,
                "figures": self.figures, "airflow": self.origin}

    def from_task(self, dag_id: str, run_id: str, task_id: str) -> Alert:
        """This alert, saying which Airflow task raised it."""
        origin = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id}
        return replace(self, origin=origin,
                       text=f"{self.text}\nAirflow: {dag_id} / {run_id} / {task_id}")


def configured(ws: Workspace) -> bool:
    """Whether the pack sends alerts anywhere (email recipients or a webhook)."""
    return bool(ws.alerts.email_to or ws.alerts.webhook_conn_id)


def wanted(ws: Workspace, event: str) -> bool:
    """Whether ``event`` alerts for this pack: it is configured and among ``events``."""
    return configured(ws) and event in ws.alerts.events


def ui_url(ws: Workspace, path: str) -> str:
    """``<ui_base_url>/driftline/<path>``: a driftline page or report in the Airflow UI."""
    return f"{ws.alerts.ui_base_url.rstrip('/')}/driftline/{path}"


def report_url(ws: Workspace, *parts: str) -> str:
    """The UI's route to a file of the pack's report directory (each part URL-quoted)."""
    path = "/".join(["reports", quote(ws.name, safe=""), *(quote(p, safe="") for p in parts)])
    return ui_url(ws, path)


def pack_url(ws: Workspace, anchor: str) -> str:
    return ui_url(ws, f"packs/{quote(ws.name, safe='')}#{anchor}")


def _subject(ws: Workspace, what: str) -> str:
    return f"{PREFIX} {ws.name}: {what}"


def _body(headline: str, lines: list[str], link: str) -> str:
    return "\n".join([headline, "", *lines, "", f"Report: {link}"])


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _num(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# -- drift -----------------------------------------------------------------------------------
def drift_alert(ws: Workspace, report_id: str) -> Alert | None:
    """The alert of drift report ``report_id``; None unless it exists and crossed."""
    from driftline.monitoring import SUMMARY_FILE, drift_dir

    path = drift_dir(ws) / report_id / SUMMARY_FILE
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if not summary.get("crossed"):
        return None
    datasets = summary.get("datasets", {})
    drifted = sorted({c for d in datasets.values() for c in d.get("drifted", [])})
    worst = max(datasets, key=lambda name: datasets[name]["share"]) if datasets else "lake"
    link = report_url(ws, "drift", report_id, f"{worst}.html")
    span = f"{summary['start']}..{summary['end']}"
    lines = [f"Drift share {summary['share']:.3f} >= threshold {summary['threshold']:.3f} "
             f"(share of feature columns whose drift score is over "
             f"{summary.get('column_threshold')}), against model {summary['model_version']}."]
    for name, data in datasets.items():
        scores = data.get("columns", {})
        columns = ", ".join(f"{c} ({scores[c]:.3g})" if c in scores else c
                            for c in data.get("drifted", [])) or "none"
        lines.append(f"- {name} ({data.get('rows')} rows): share {data['share']:.3f}, "
                     f"drifted: {columns}")
    figures = {"report_id": report_id, "start": summary["start"], "end": summary["end"],
               "share": summary["share"], "threshold": summary["threshold"],
               "column_threshold": summary.get("column_threshold"),
               "model_version": summary["model_version"],
               "data_version": summary.get("data_version"), "drifted_columns": drifted,
               "datasets": {name: {"share": d["share"], "rows": d.get("rows"),
                                   "drifted": d.get("drifted", []),
                                   "scores": {c: d.get("columns", {}).get(c)
                                              for c in d.get("drifted", [])}}
                            for name, d in datasets.items()}}
    subject = _subject(ws, f"drift {summary['share']:.2f} over threshold "
                           f"{summary['threshold']:.2f} in {span} ({len(drifted)} columns "
                           "drifted)")
    return Alert("drift", ws.name, subject,
                 _body(f"{ws.name}: the data of {span} drifted from the live model's "
                       "reference.", lines, link), link, figures)


# -- live quality ----------------------------------------------------------------------------
def quality_alert(ws: Workspace, report_id: str) -> Alert | None:
    """The alert of live-quality report ``report_id``; None unless it was measured and
    crossed its limit."""
    from driftline.outcomes import MEASURED, SUMMARY_FILE, quality_dir

    path = quality_dir(ws) / report_id / SUMMARY_FILE
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if summary.get("status") != MEASURED or not summary.get("crossed"):
        return None
    metric = _label(summary["metric"])
    span = f"{summary['start']}..{summary['end']}"
    link = report_url(ws, "quality", report_id, "quality.html")
    drift = summary.get("prediction_drift") or {}
    lines = [f"Live {metric} {_num(summary['value'])} against its holdout "
             f"{_num(summary['baseline'])}: worse by {_num(summary['drop'])}, over the limit "
             f"{summary['limit']} ([monitor] max_quality_drop).",
             f"Model {summary['model_version']}, {summary.get('rows')} labelled rows "
             f"({summary.get('source')} predictions)."]
    if drift:
        flag = " DRIFTED" if drift.get("drifted") else ""
        lines.append(f"Prediction drift: {drift.get('stattest')} {_num(drift.get('score'))} "
                     f"(threshold {drift.get('threshold')}){flag}.")
    figures = {k: summary.get(k) for k in ("report_id", "start", "end", "model_version",
                                           "metric", "value", "baseline", "drop", "limit",
                                           "rows", "source")}
    figures["prediction_drift"] = drift
    subject = _subject(ws, f"live {metric} {_num(summary['value'])} is "
                           f"{_num(summary['drop'])} worse than holdout "
                           f"{_num(summary['baseline'])} (limit {summary['limit']}) in {span}")
    return Alert("quality", ws.name, subject,
                 _body(f"{ws.name}: the live model's quality on {span}'s outcomes crossed "
                       "its limit.", lines, link), link, figures)


# -- gate --------------------------------------------------------------------------------------
def describe_check(check: dict) -> str:
    """One failed gate check: value, limit, how far off, and a statistical check's interval."""
    if check.get("value") is None:
        return f"{check['name']}: {check.get('detail', '')}"
    line = (f"{check['name']} = {check['value']:.4f}, limit {check['op']} {check['threshold']}"
            f" (off by {abs(check['margin']):.4f})")
    stats = check.get("statistics")
    if stats:
        line += (f"; {stats['confidence']:.0%} interval of candidate - champion "
                 f"[{stats['low']:+.4f}, {stats['high']:+.4f}], difference "
                 f"{stats['difference']:+.4f}, p = {stats['p_value']:.4f}, {stats['rows']} rows")
    elif check.get("detail"):
        line += f"; {check['detail']}"
    return line


def gate_alert(ws: Workspace, report_dir: str | Path) -> Alert | None:
    """The alert of the gate verdict in ``report_dir``; None unless it refused."""
    path = Path(report_dir) / "verdict.json"
    if not path.is_file():
        return None
    verdict = json.loads(path.read_text())
    if verdict.get("passed"):
        return None
    failed = [c for c in verdict["checks"] if not c["passed"]]
    relative = Path(report_dir).resolve().relative_to(ws.reports_dir.resolve())
    link = report_url(ws, *relative.parts, "verdict.html")
    champion = verdict.get("champion") or "none"
    lines = [f"Failed checks ({len(failed)} of {len(verdict['checks'])}):",
             *(f"- {describe_check(c)}" for c in failed)]
    figures = {"candidate": verdict["candidate"], "champion": verdict.get("champion"),
               "failed_checks": [{k: c.get(k) for k in ("name", "value", "op", "threshold",
                                                         "margin", "detail", "statistics")}
                                 for c in failed],
               "checks": len(verdict["checks"]), "metrics": verdict.get("metrics", {})}
    subject = _subject(ws, f"gate refused {verdict['candidate']} ({len(failed)} failed "
                           f"check{'s' if len(failed) != 1 else ''})")
    return Alert("gate_refused", ws.name, subject,
                 _body(f"{ws.name}: the gate refused candidate {verdict['candidate']}; champion "
                       f"{champion} stays live.", lines, link), link, figures)


# -- deploy ------------------------------------------------------------------------------------
def serving_history(ws: Workspace) -> tuple[dict, list[dict]]:
    """The pack's serving status (live slot, slots) and its switch records."""
    from driftline.serving.backend import serving_backend

    status = serving_backend(ws).status()
    return status, list(status.get("history") or [])


def deploy_alert(ws: Workspace, version: str, error: str, since: str | None = None,
                 status: dict | None = None) -> Alert:
    """The alert of a failed deploy of ``version``: ``auto_rollback`` when the serving
    history's newest record about ``version`` (at or after ``since``, ISO 8601) is the
    automatic rollback from it, else ``deploy_failed`` with ``error``.

    :param status: the serving status with its ``history``; default the backend's.
    """
    if status is None:
        status, history = serving_history(ws)
    else:
        history = list(status.get("history") or [])
    link = pack_url(ws, "serving")
    live = status.get("live")
    live_version = ((status.get("slots") or {}).get(live) or {}).get("version") if live else None
    record = next((r for r in reversed(history)
                   if version in (r.get("version"), r.get("previous_version"))
                   and (since is None or _after(r.get("at"), since))), None)
    if record is not None and record.get("action") == "auto-rollback" \
            and record.get("previous_version") == version:
        figures = {"from_version": version, "from_slot": record.get("from_slot"),
                   "to_version": record.get("version"), "to_slot": record.get("to_slot"),
                   "reason": record.get("reason"), "at": record.get("at"), "error": error}
        subject = _subject(ws, f"auto-rollback {version} -> {record.get('version')}")
        lines = [f"From {version} (slot {record.get('from_slot')}) back to "
                 f"{record.get('version')} (slot {record.get('to_slot')}) at {record.get('at')}.",
                 f"Reason: {record.get('reason')}"]
        return Alert("auto_rollback", ws.name, subject,
                     _body(f"{ws.name}: {version} failed its post-switch check and was rolled "
                           f"back automatically; {record.get('version')} serves.", lines, link),
                     link, figures)
    figures = {"version": version, "error": error, "live_slot": live,
               "live_version": live_version}
    stays = f"{live_version} stays live" if live_version else "nothing is live"
    subject = _subject(ws, f"deploy of {version} failed ({stays})")
    lines = [f"Error: {error}",
             f"Live: {live_version or 'nothing'}" + (f" in slot {live}" if live else "") + "."]
    return Alert("deploy_failed", ws.name, subject,
                 _body(f"{ws.name}: deploying {version} failed; what was live stays live.",
                       lines, link), link, figures)


def _after(at: str | None, since: str) -> bool:
    if not at:
        return False
    return dt.datetime.fromisoformat(at) >= dt.datetime.fromisoformat(since)


# -- quarantine --------------------------------------------------------------------------------
def quarantine_alert(ws: Workspace, file_name: str, since: str | None = None) -> Alert | None:
    """The alert of the quarantined landing file ``file_name``; None unless its reason file
    exists (and was written at or after ``since``, ISO 8601)."""
    path = ws.quarantine_dir / f"{file_name}.reason.json"
    if not path.is_file():
        return None
    reason = json.loads(path.read_text())
    if since is not None and not _after(reason.get("quarantined_at"), since):
        return None
    failed = reason.get("failed", [])
    link = pack_url(ws, "quarantine")
    checks = [c for c in reason.get("checks", [])
              if not c.get("passed") and c.get("severity", "fail") == "fail"]
    figures = {"file": file_name, "rows": reason.get("rows"),
               "quarantined_at": reason.get("quarantined_at"),
               "quarantine_path": str(ws.quarantine_dir / file_name), "failed": failed,
               "failed_checks": checks}
    subject = _subject(ws, f"quarantined {file_name} ({len(failed)} failed "
                           f"check{'s' if len(failed) != 1 else ''})")
    lines = [f"{reason.get('rows')} rows; moved to {ws.quarantine_dir / file_name} at "
             f"{reason.get('quarantined_at')}; nothing was written to the lake.",
             "Failed checks:", *(f"- {f}" for f in failed)]
    return Alert("quarantine", ws.name, subject,
                 _body(f"{ws.name}: landing file {file_name} failed validation and was "
                       "quarantined.", lines, link), link, figures)
