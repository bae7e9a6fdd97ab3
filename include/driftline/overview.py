"""One view of driftline's state per pack: models, gates, slots and drift, for people and
the UI."""

from __future__ import annotations

import json
from pathlib import Path

from driftline.monitoring import drift_dir, list_drift_reports
from driftline.registry import Registry
from driftline.settings import Settings
from driftline.workspace import Workspace, open_workspaces


def gate_verdicts(ws: Workspace) -> list[dict]:
    """Every kept gate verdict of the pack, oldest first."""
    root = ws.reports_dir / "gates"
    verdicts = [json.loads(p.read_text()) for p in root.glob("*/*/verdict.json")]
    return sorted(verdicts, key=lambda v: Path(v["report_dir"]).stat().st_mtime)


def serving_state(ws: Workspace) -> dict:
    path = ws.serving_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def collect(ws: Workspace) -> dict:
    """Models with metrics and data versions, gate verdicts, drift per interval, live slot."""
    registry = Registry(ws.registry_dir, ws.model_name)
    metric = ws.pack.metric
    models = [{"version": v.version, "data_version": v.data_version,
               "window": v.metadata["window"], "reason": v.metadata.get("reason", ""),
               "metric": metric, "value": v.metrics.get(metric), "metrics": v.metrics,
               "device": v.metrics.get("device"), "sha256": v.metadata["artifact"]["sha256"]}
              for v in registry.versions()]
    return {
        "pack": ws.name, "task": ws.pack.task, "metric": metric,
        "home": str(ws.home),
        "models": models,
        "champion": registry.aliases().get("champion"),
        "events": registry.events(),
        "gates": gate_verdicts(ws),
        "drift": [{k: r[k] for k in ("report_id", "start", "end", "share", "threshold",
                                     "crossed", "model_version", "report_dir", "claimed")}
                  for r in list_drift_reports(drift_dir(ws))],
        "serving": serving_state(ws),
        "quarantine": sorted(p.name for p in ws.quarantine_dir.glob("*")
                             if not p.name.endswith(".reason.json"))
        if ws.quarantine_dir.exists() else [],
    }


def collect_all(settings: Settings) -> dict:
    """Every pack's view, and the packs that cannot load with their errors."""
    workspaces, broken = open_workspaces(settings)
    views = {name: collect(ws) for name, ws in workspaces.items()}
    return {"home": str(settings.home), "packs": views,
            "broken": {name: str(exc) for name, exc in broken.items()}}


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
        claim = f"  -> triggered retraining ({d['claimed']['by']})" if d["claimed"] else ""
        lines.append(f"  {d['start']}..{d['end']}  share {d['share']:.3f}  threshold "
                     f"{d['threshold']}  vs {d['model_version']}"
                     f"{'  CROSSED' if d['crossed'] else ''}{claim}")
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
        lines.append(f"== quarantined files == {', '.join(view['quarantine'])}")
    lines.append(f"== reports == {view['home']}/reports/{view['pack']} (gates/, drift/, "
                 "validation/)")
    return "\n".join(lines)
