"""DriftReportTrigger: serialisable by class path, and firing on real report files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest


def write_report(root: Path, report_id: str, share: float, end: str) -> None:
    """A report summary as ``driftline.monitoring.drift_report`` writes it (the fields the
    trigger reads)."""
    (root / report_id).mkdir(parents=True)
    (root / report_id / "summary.json").write_text(json.dumps(
        {"report_id": report_id, "share": share, "end": end, "start": end}))


def first_event(trigger, timeout: float):
    async def run():
        return await asyncio.wait_for(anext(trigger.run()), timeout)

    return asyncio.run(run())


def test_trigger_is_importable_by_path_and_round_trips():
    from airflow.sdk.module_loading import import_string
    from driftline_provider.triggers.drift import DriftReportTrigger

    path, kwargs = DriftReportTrigger("/x", 0.4, 2.0).serialize()
    assert path == "driftline_provider.triggers.drift.DriftReportTrigger"
    assert kwargs == {"reports_root": "/x", "threshold": 0.4, "poke_interval": 2.0}
    assert import_string(path)(**kwargs).serialize() == (path, kwargs)


def test_fires_on_the_oldest_unclaimed_report_at_or_over_the_threshold(tmp_path):
    from driftline.monitoring import claim_report
    from driftline_provider.triggers.drift import DriftReportTrigger

    write_report(tmp_path, "drift_2013-03", 0.2, "2013-03-31")  # below
    write_report(tmp_path, "drift_2013-04", 0.375, "2013-04-30")
    write_report(tmp_path, "drift_2013-05", 0.5, "2013-05-31")
    trigger = DriftReportTrigger(str(tmp_path), 0.375, poke_interval=0.05)
    event = first_event(trigger, timeout=10)
    assert event.payload == {"status": "crossed", "report_id": "drift_2013-04"}
    assert claim_report(tmp_path, "drift_2013-04", claimant="run-1")
    event = first_event(DriftReportTrigger(str(tmp_path), 0.375, 0.05), timeout=10)
    assert event.payload["report_id"] == "drift_2013-05"  # the claimed one never fires again


def test_keeps_waiting_while_no_report_crosses(tmp_path):
    from driftline_provider.triggers.drift import DriftReportTrigger

    write_report(tmp_path, "drift_2013-03", 0.374, "2013-03-31")
    with pytest.raises(TimeoutError):
        first_event(DriftReportTrigger(str(tmp_path), 0.375, poke_interval=0.05), timeout=1)
