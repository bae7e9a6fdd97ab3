"""The auto-rollback alert from a real automatic rollback (model servers behind nginx): the
green slot is killed right after the switch, the watch switches back to blue, and the alert
built from the serving history says from/to versions, slots and why."""

from __future__ import annotations

import dataclasses

import pytest
from driftline import alerts
from driftline.serving.bluegreen import BlueGreen, DeployError, stop_serving
from driftline.workspace import Workspace

from tests.helpers import kill_green_after_the_switch

pytestmark = pytest.mark.nginx


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
        kill_green_after_the_switch(bluegreen)
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
