"""The auto-rollback alert from a real automatic rollback (model servers behind nginx): the
green slot is killed right after the switch, the watch switches back to blue, and the alert
built from the serving history says from/to versions, slots and why."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest
from driftline import alerts
from driftline.serving.bluegreen import BlueGreen, DeployError, stop_serving
from driftline.workspace import Workspace

pytestmark = pytest.mark.nginx


def _gone(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                in {"Z", "X"})
    except OSError:
        return True


def with_alerts(ws: Workspace) -> Workspace:
    """``ws`` with email alerts on and a UI address (as a ``[packs.flights.alerts]`` would)."""
    pack = dataclasses.replace(ws.pack, spec=ws.pack.spec.model_copy(update={"alerts": {
        "email_to": ["ops@example.test"], "ui_base_url": "http://ui.example.test"}}))
    return Workspace(ws.settings, pack)


def test_a_real_auto_rollback_alerts_with_its_versions_slots_and_reason(ws, registry):
    bluegreen = BlueGreen(ws)
    try:
        v1, v2 = registry.get("v0001"), registry.get("v0002")
        bluegreen.deploy(v1, "first")
        switch = bluegreen._switch

        def switch_then_kill(slot, version):
            result = switch(slot, version)
            if slot == "green":
                pid = bluegreen.status()["slots"]["green"]["pid"]
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 30
                while not _gone(pid):
                    assert time.monotonic() < deadline, "the killed green server lives on"
                    time.sleep(0.02)
            return result

        bluegreen._switch = switch_then_kill
        with pytest.raises(DeployError, match="rolled back automatically") as failure:
            bluegreen.deploy(v2, "dies right after the switch")
        alert = alerts.deploy_alert(with_alerts(ws), "v0002", str(failure.value))
    finally:
        stop_serving(ws.settings)
    record = bluegreen.status()["history"][-1]
    assert record["action"] == "auto-rollback"
    assert alert.event == "auto_rollback"
    assert alert.subject == "[driftline] flights: auto-rollback v0002 -> v0001"
    assert "From v0002 (slot green) back to v0001 (slot blue)" in alert.text
    assert f"Reason: {record['reason']}" in alert.text
    assert "post-switch check of v0002 failed" in record["reason"]
    assert alert.link == "http://ui.example.test/driftline/packs/flights#serving"
    assert alert.payload["figures"] | {"at": None} == {
        "from_version": "v0002", "from_slot": "green", "to_version": "v0001",
        "to_slot": "blue", "reason": record["reason"], "at": None,
        "error": str(failure.value)}
    print(f"\n--- auto-rollback alert ---\nSubject: {alert.subject}\n{alert.text}")
