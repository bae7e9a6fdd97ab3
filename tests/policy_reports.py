"""A test home for the retrain policy, and drift and live-quality summaries written as
driftline.monitoring and driftline.outcomes write them (the fields the policy reads)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

from tests.helpers import PACKS, TEST_CONFIG


def policy_home(tmp_path, trained_home, retrain: str = "", monitor: str = ""):
    """A copy of ``trained_home`` (v0001 trained on Jan 1-24, the champion) whose settings
    add ``[packs.flights.retrain]`` / ``[packs.flights.monitor]`` lines."""
    from driftline.registry import Registry
    from driftline.settings import load_settings
    from driftline.workspace import open_workspace

    home = tmp_path / "home"
    shutil.copytree(trained_home, home, symlinks=True)
    config = tmp_path / "driftline.toml"
    text = TEST_CONFIG.read_text().replace(
        "[packs.flights.monitor]\n", f"[packs.flights.monitor]\n{monitor}\n")
    config.write_text(f"{text}\n[packs.flights.retrain]\n{retrain}\n")
    ws = open_workspace("flights", load_settings(home, config, PACKS))
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", "v0001", "test")
    return ws


def drift(ws, month: int, share: float, model: str = "v0001") -> str:
    """A drift summary as run_drift_report writes it, for 2013-<month>."""
    from driftline.monitoring import drift_dir, report_id_for

    start, end = f"2013-{month:02d}-01", f"2013-{month:02d}-28"
    report_id = report_id_for(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    folder = drift_dir(ws) / report_id
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "pack": "flights", "report_id": report_id, "start": start, "end": end,
        "model_version": model, "share": share, "threshold": 0.4, "crossed": share >= 0.4}))
    return report_id


def quality(ws, month: int, drop: float, model: str = "v0001") -> str:
    """A measured live-quality summary as measure_live_quality writes it, for 2013-<month>."""
    from driftline.outcomes import quality_dir

    start, end = f"2013-{month:02d}-01", f"2013-{month:02d}-28"
    report_id = f"quality_{start}_{end}"
    folder = quality_dir(ws) / report_id
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "pack": "flights", "report_id": report_id, "start": start, "end": end,
        "model_version": model, "metric": "auc", "status": "measured", "value": 0.7 - drop,
        "baseline": 0.7, "drop": drop}))
    return report_id
