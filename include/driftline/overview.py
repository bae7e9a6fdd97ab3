"""One view of driftline's state per pack: models, gates, slots and drift, for people and
the UI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

from driftline.monitoring import drift_dir, list_drift_reports
from driftline.outcomes import list_quality_reports
from driftline.packs.spec import HIGHER_IS_BETTER
from driftline.registry import Registry
from driftline.retraining import RETRAIN, decisions
from driftline.settings import Settings
from driftline.workspace import Workspace, open_workspaces


def gate_verdicts(ws: Workspace) -> list[dict]:
    """Every kept gate verdict of the pack, oldest first, each with ``report_path`` (its
    directory relative to the pack's reports) and the HTML reports in it."""
    root = ws.reports_dir / "gates"
    verdicts = []
    for path in root.glob("*/*/verdict.json"):
        verdict = json.loads(path.read_text())
        verdict["report_path"] = path.parent.relative_to(ws.reports_dir).as_posix()
        verdict["reports"] = sorted(p.name for p in path.parent.glob("*.html"))
        verdict["decided_at"] = _mtime(path)
        verdicts.append(verdict)
    return sorted(verdicts, key=lambda v: v["decided_at"])


def serving_state(ws: Workspace) -> dict:
    path = ws.serving_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def drift_history(ws: Workspace) -> list[dict]:
    """Every drift report of the pack, oldest interval first: the share against its
    threshold, and per compared dataset (``lake``, ``served``) each column's score and the
    columns that drifted."""
    history = []
    for report in list_drift_reports(drift_dir(ws)):
        report_dir = Path(report["report_dir"])
        entry = {k: report[k] for k in ("report_id", "start", "end", "share", "threshold",
                                        "crossed", "model_version", "report_dir")}
        entry["report_path"] = f"drift/{report['report_id']}"
        entry["column_threshold"] = report.get("column_threshold")  # older reports: None
        entry["datasets"] = {
            name: {"share": d["share"], "rows": d.get("rows"), "columns": d["columns"],
                   "drifted": d["drifted"],
                   "report": f"{name}.html" if (report_dir / f"{name}.html").exists() else None}
            for name, d in report.get("datasets", {}).items()}
        history.append(entry)
    return history


def quality_history(ws: Workspace) -> list[dict]:
    """Every interval's live quality, oldest first: measured (the live model's figure against
    its holdout baseline, prediction drift, the report) or pending (with why)."""
    history = []
    for report in list_quality_reports(ws):
        entry = dict(report)
        entry["report_path"] = f"quality/{report['report_id']}"
        entry["report"] = ("quality.html" if (Path(report["report_dir"]) / "quality.html")
                           .exists() and report["status"] == "measured" else None)
        history.append(entry)
    return history


def quarantined(ws: Workspace) -> list[dict]:
    """Quarantined landing files with the checks that failed, oldest first."""
    if not ws.quarantine_dir.exists():
        return []
    files = []
    for path in sorted(ws.quarantine_dir.glob("*")):
        if path.name.endswith(".reason.json"):
            continue
        reason_file = path.with_name(path.name + ".reason.json")
        reason = json.loads(reason_file.read_text()) if reason_file.exists() else {}
        files.append({"file": path.name, "failed": reason.get("failed", []),
                      "quarantined_at": reason.get("quarantined_at")})
    return sorted(files, key=lambda f: f["quarantined_at"] or "")


def validation_reports(ws: Workspace) -> list[dict]:
    """Each ingested interval's validation result (rows, passed, warnings), oldest first."""
    reports = []
    for path in sorted((ws.reports_dir / "validation").glob("*.json")):
        report = json.loads(path.read_text())
        reports.append({"interval": path.stem, "rows": report.get("rows"),
                        "passed": report.get("passed"), "warnings": report.get("warnings", []),
                        "report_path": f"validation/{path.name}"})
    return reports


def collect(ws: Workspace) -> dict:
    """Models with metrics and data versions, gate verdicts, drift per interval, live slot,
    quarantine and validation, and what needs a person's attention."""
    registry = Registry(ws.registry_dir, ws.model_name)
    metric = ws.pack.metric
    models = [{"version": v.version, "data_version": v.data_version,
               "window": v.metadata["window"], "reason": v.metadata.get("reason", ""),
               "registered_at": v.metadata.get("registered_at"),
               "metric": metric, "value": v.metrics.get(metric), "metrics": v.metrics,
               "device": v.metrics.get("device"), "sha256": v.metadata["artifact"]["sha256"]}
              for v in registry.versions()]
    view = {
        "pack": ws.name, "task": ws.pack.task, "metric": metric,
        "higher_is_better": metric in HIGHER_IS_BETTER,
        "home": str(ws.home),
        "models": models,
        "champion": registry.aliases().get("champion"),
        "events": registry.events(),
        "gates": gate_verdicts(ws),
        "drift": drift_history(ws),
        "quality": quality_history(ws),
        "retrain": [d.to_dict() for d in decisions(ws)],
        "policy": dataclasses.asdict(ws.retrain),
        "serving": serving_state(ws),
        "quarantine": quarantined(ws),
        "validation": validation_reports(ws),
    }
    view["summary"] = summarize(view)
    return view


def summarize(view: dict) -> dict:
    """The pack at a glance: what is live, the last gate and drift, the quarantine count,
    and ``attention``: what a person should look at first, most urgent first."""
    serving, gates, drift = view["serving"], view["gates"], view["drift"]
    live_slot = serving.get("live")
    live_version = (serving.get("slots", {}).get(live_slot) or {}).get("version")
    last_gate, last_drift = (gates or [None])[-1], (drift or [None])[-1]
    attention = []
    if last_gate and not last_gate["passed"]:
        attention.append(f"the last gate refused {last_gate['candidate']}: "
                         f"{last_gate['reason']}")
    due = [d for d in view.get("retrain", []) if d["action"] == RETRAIN]
    if due:
        attention.append(f"the retrain policy is due on {due[-1]['start']}..{due[-1]['end']} "
                         f"and no retraining started yet: {due[-1]['reason']}")
    measured = [q for q in view.get("quality", []) if q["status"] == "measured"]
    last_quality = measured[-1] if measured else None
    if last_quality and last_quality["crossed"]:
        attention.append(
            f"live {last_quality['metric']} in {last_quality['start']}..{last_quality['end']} "
            f"is {last_quality['value']:.4f}, {last_quality['drop']:.4f} worse than "
            f"{last_quality['model_version']}'s holdout (limit {last_quality['limit']})")
    if view["quarantine"]:
        attention.append(f"{len(view['quarantine'])} landing file(s) quarantined: "
                         + ", ".join(f["file"] for f in view["quarantine"]))
    if view["champion"] and live_version and live_version != view["champion"]:
        attention.append(f"the registry's champion is {view['champion']} but slot "
                         f"{live_slot} serves {live_version}")
    if view["champion"] and not live_slot:
        attention.append(f"champion {view['champion']} is registered but nothing is deployed")
    return {
        "live_version": live_version, "live_slot": live_slot,
        "last_gate": last_gate and {k: last_gate[k] for k in ("candidate", "champion",
                                                              "passed", "reason")},
        "last_drift": last_drift and {k: last_drift[k] for k in ("report_id", "share",
                                                                 "threshold", "crossed")},
        "last_live_quality": last_quality and {
            k: last_quality[k] for k in ("report_id", "metric", "value", "baseline", "drop",
                                         "limit", "crossed", "model_version")},
        "pending_quality": sum(q["status"] == "pending" for q in view.get("quality", [])),
        "quarantined": len(view["quarantine"]),
        "attention": attention,
    }


def collect_all(settings: Settings) -> dict:
    """Every pack's view, and the packs that cannot load with their errors."""
    workspaces, broken = open_workspaces(settings)
    views = {name: collect(ws) for name, ws in workspaces.items()}
    return {"home": str(settings.home), "packs": views,
            "broken": {name: str(exc) for name, exc in broken.items()}}


def _mtime(path: Path) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat(
        timespec="seconds")


def quality_line(q: dict) -> str:
    """One interval's live quality in a line: the figure against the holdout, or pending."""
    if q["status"] == "pending":
        return f"pending: {q['reason']}"
    return (f"{q['metric']} {q['value']:.4f}  holdout {q['baseline']:.4f}  drop "
            f"{q['drop']:+.4f} (limit {q['limit']})  {q['model_version']} on {q['rows']} "
            f"{q['source']} rows  prediction drift {q['prediction_drift']['score']:.3f}"
            f"{'  CROSSED' if q['crossed'] else ''}")


def render_text(view: dict) -> str:
    """The overview as the plain-text summary printed at the end of the demo."""
    lines = [f"== {view['pack']} ({view['task']}, {view['metric']}): models =="]
    for m in view["models"]:
        live = "  <- champion" if m["version"] == view["champion"] else ""
        others = "  ".join(f"{k} {m['metrics'][k]:.4f}" for k in ("auc", "logloss", "rmse",
                                                                   "mae", "r2")
                           if isinstance(m["metrics"].get(k), float))
        lines.append(f"  {m['version']}  {others}  "
                     f"window {m['window']['start']}..{m['window']['end']}  "
                     f"data {m['data_version'][:12]}  device {m['device']}  "
                     f"reason: {m['reason']}{live}")
    lines.append("== gates ==")
    for g in view["gates"]:
        lines.append(f"  {g['candidate']} vs {g['champion'] or '(none)'}: "
                     f"{'PASS' if g['passed'] else 'FAIL'} - {g['reason']}")
        for c in g["checks"]:
            value = "n/a" if c["value"] is None else f"{c['value']:.4f}"
            lines.append(f"      {c['name']:<32} {value:>8} {c['op']} {c['threshold']:<6} "
                         f"{'ok' if c['passed'] else 'FAILED'}")
    lines.append("== drift (drifted-column share per monitored interval) ==")
    for d in view["drift"]:
        lines.append(f"  {d['start']}..{d['end']}  share {d['share']:.3f}  threshold "
                     f"{d['threshold']}  vs {d['model_version']}"
                     f"{'  CROSSED' if d['crossed'] else ''}")
    lines.append("== live quality (the live model on each interval's outcomes) ==")
    lines += [f"  {q['start']}..{q['end']}  {quality_line(q)}" for q in view.get("quality", [])]
    lines.append("== retrain policy (per monitored interval) ==")
    lines += [f"  {r['start']}..{r['end']}  {r['action']}: {r['reason']}"
              for r in view.get("retrain", [])]
    serving = view["serving"]
    lines.append("== serving ==")
    if serving.get("live"):
        slot = serving["slots"][serving["live"]]
        lines.append(f"  live slot: {serving['live']} ({slot.get('version')})")
        for name, s in serving["slots"].items():
            lines.append(f"  {name}: version {s.get('version')}"
                         f"{'' if s.get('running', True) else ' (not running)'}")
    else:
        lines.append("  nothing deployed")
    if view["quarantine"]:
        lines.append("== quarantined files == "
                     + ", ".join(f["file"] for f in view["quarantine"]))
    lines.append(f"== reports == {view['home']}/reports/{view['pack']} (gates/, drift/, "
                 "quality/, validation/)")
    return "\n".join(lines)
