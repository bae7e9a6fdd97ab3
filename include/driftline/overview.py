"""One view of driftline's state: models, gates, slots and drift, for people and the UI."""

from __future__ import annotations

import json
from pathlib import Path

from driftline.monitoring import drift_dir, list_drift_reports
from driftline.registry import Registry
from driftline.settings import Settings


def gate_verdicts(settings: Settings) -> list[dict]:
    """Every kept gate verdict, oldest first."""
    root = settings.reports_dir / "gates"
    verdicts = [json.loads(p.read_text()) for p in root.glob("*/*/verdict.json")]
    return sorted(verdicts, key=lambda v: Path(v["report_dir"]).stat().st_mtime)


def serving_state(settings: Settings) -> dict:
    path = settings.serving_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def collect(settings: Settings) -> dict:
    """Models with metrics and data versions, gate verdicts, drift per interval, live slot."""
    registry = Registry(settings.registry_dir, settings.model_name)
    models = [{"version": v.version, "data_version": v.data_version,
               "window": v.metadata["window"], "reason": v.metadata.get("reason", ""),
               "auc": v.metrics.get("auc"), "logloss": v.metrics.get("logloss"),
               "device": v.metrics.get("device"), "sha256": v.metadata["artifact"]["sha256"]}
              for v in registry.versions()]
    return {
        "home": str(settings.home),
        "models": models,
        "champion": registry.aliases().get("champion"),
        "events": registry.events(),
        "gates": gate_verdicts(settings),
        "drift": [{k: r[k] for k in ("report_id", "start", "end", "share", "threshold",
                                     "crossed", "model_version", "report_dir", "claimed")}
                  for r in list_drift_reports(drift_dir(settings))],
        "serving": serving_state(settings),
        "quarantine": sorted(p.name for p in settings.quarantine_dir.glob("*.csv"))
        if settings.quarantine_dir.exists() else [],
    }


def render_text(view: dict) -> str:
    """The overview as the plain-text summary printed at the end of the demo."""
    lines = ["== models =="]
    for m in view["models"]:
        live = "  <- champion" if m["version"] == view["champion"] else ""
        lines.append(f"  {m['version']}  auc {m['auc']:.4f}  logloss {m['logloss']:.4f}  "
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
            lines.append(f"  {name}: version {s.get('version')} port {s.get('port')}")
    else:
        lines.append("  nothing deployed")
    if view["quarantine"]:
        lines.append(f"== quarantined files == {', '.join(view['quarantine'])}")
    lines.append(f"== reports == {view['home']}/reports (gates/, drift/, validation/)")
    return "\n".join(lines)
