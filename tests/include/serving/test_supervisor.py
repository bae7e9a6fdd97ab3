"""A slot server or nginx killed with ``kill -9`` is not an outage: the router falls back to
the standby slot at once, and the supervisor brings back what died, with back-off, recording
each failover and restart. Real slot servers, real nginx, real kills of processes these
tests started."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import httpx
import pytest
from driftline.serving.bluegreen import BlueGreen
from driftline.serving.paths import router_url, standby_link
from driftline.serving.processes import process_alive, supervisor_pid
from driftline.serving.router import Router
from driftline.serving.supervisor import start_detached, supervise_once

from tests.include.serving.test_bluegreen import stop_and_check

pytestmark = pytest.mark.nginx


@pytest.fixture
def live_green(ws, registry):
    """v0001 in blue (the standby), v0002 live in green; everything stopped afterwards."""
    bg = BlueGreen(ws)
    bg.deploy(registry.get("v0001"), "first")
    bg.deploy(registry.get("v0002"), "second")
    yield bg
    stop_and_check(ws.settings)
    assert supervisor_pid(ws.settings.serving_dir) is None


class Load:
    """One client sending smoke rows through the router, recording what answered."""

    def __init__(self, ws, rows):
        self.url, self.rows = f"{router_url(ws.settings, ws.name)}/predict", rows
        self.answers: list[tuple[float, int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(self.url, json={"rows": self.rows})
                    version = r.json().get("model_version") if r.status_code == 200 else None
                    self.answers.append((time.monotonic(), r.status_code, version))
                except httpx.HTTPError as exc:
                    self.answers.append((time.monotonic(), 0, repr(exc)))
                time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def failed(self) -> list:
        return [a for a in self.answers if a[1] != 200]

    def versions_since(self, t: float) -> set:
        return {v for at, code, v in self.answers if at >= t and code == 200}


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_killed_live_slot_fails_over_to_the_standby_and_is_restarted(live_green, ws,
                                                                        registry):
    bg = live_green
    assert os.readlink(standby_link(ws.serving_dir)) == "blue.sock"
    green_pid = bg.status()["slots"]["green"]["pid"]
    rows = registry.get("v0002").metadata["smoke"]["rows"][:1]
    with Load(ws, rows) as load:
        wait_until(lambda: len(load.answers) > 20, 30, "traffic")
        killed_at = time.monotonic()
        os.kill(green_pid, signal.SIGKILL)
        wait_until(lambda: not process_alive(green_pid), 10, "the kill")
        wait_until(lambda: "v0001" in load.versions_since(killed_at), 10, "the fallback")
        assert bg.status()["slots"]["green"]["running"] is False
        events = supervise_once(ws.settings)
        restored_at = time.monotonic()
        wait_until(lambda: len(load.versions_since(restored_at)) > 0, 10, "traffic after")
        time.sleep(0.5)
    assert load.failed() == [], load.failed()[:5]  # not one request lost
    assert load.versions_since(restored_at + 0.3) == {"v0002"}  # the live slot is back
    assert [(e["pack"], e["action"]) for e in events] == [("flights", "failover"),
                                                          ("flights", "restart")]
    status = bg.status()
    failover, restart = status["history"][-2:]
    assert (failover["from_slot"], failover["to_slot"], failover["version"]) == (
        "green", "blue", "v0001")
    assert "falls back to slot blue (v0001)" in failover["reason"]
    assert (restart["to_slot"], restart["version"]) == ("green", "v0002")
    assert restart["pid"] == status["slots"]["green"]["pid"] != green_pid
    assert status["live"] == "green" and status["slots"]["green"]["running"]
    assert supervise_once(ws.settings) == []  # nothing more to do


def test_a_failed_restart_backs_off_then_succeeds(live_green, ws, registry):
    bg = live_green
    blue_pid = bg.status()["slots"]["blue"]["pid"]
    model = registry.versions_dir / "v0001"
    hidden = model.with_name(".v0001.hidden")
    os.kill(blue_pid, signal.SIGKILL)
    wait_until(lambda: not process_alive(blue_pid), 10, "the kill")
    model.rename(hidden)  # the standby's version cannot load now
    try:
        (event,) = supervise_once(ws.settings)
        assert (event["action"], event["to_slot"]) == ("restart-failed", "blue")
        assert event["reason"].startswith("attempt 1: slot blue: v0001 failed to start")
        assert event["reason"].endswith("next in 1s")
        assert supervise_once(ws.settings) == []  # backing off: no attempt yet
    finally:
        hidden.rename(model)
    time.sleep(1.1)
    (event,) = supervise_once(ws.settings)
    assert (event["action"], event["version"]) == ("restart", "v0001")
    assert "(attempt 2)" in event["reason"]
    assert bg.status()["slots"]["blue"]["running"]
    assert os.readlink(standby_link(ws.serving_dir)) == "blue.sock"  # the fallback again


def test_after_everything_died_one_pass_brings_back_the_recorded_live_version(live_green, ws):
    """As ``make up`` after a reboot: both slot servers and the nginx master are gone (its
    worker, left behind, still holds the port until the new master's start kills it)."""
    bg = live_green
    router = Router(ws.settings)
    pids = [bg.status()["slots"][s]["pid"] for s in ("blue", "green")] + [router.pid()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(process_alive(p) for p in pids), 10, "the kills")
    # the killed master's worker may still accept, but has no slot to send to
    with contextlib.suppress(httpx.HTTPError):
        assert httpx.get(f"{router_url(ws.settings, ws.name)}/version",
                         timeout=2).status_code == 502
    events = supervise_once(ws.settings)
    assert sorted((e["action"], e.get("to_slot")) for e in events) == [
        ("failover", None), ("restart", "blue"), ("restart", "green"), ("router-restart", None)]
    answer = httpx.get(f"{router_url(ws.settings, ws.name)}/version", timeout=5).json()
    assert (answer["slot"], answer["model_version"]) == ("green", "v0002")


def test_the_detached_supervisor_restarts_a_killed_slot_on_its_own(live_green, ws):
    bg = live_green
    pid = start_detached(ws.settings, interval=0.2)
    assert supervisor_pid(ws.settings.serving_dir) == pid
    assert start_detached(ws.settings) == pid  # one per installation
    green_pid = bg.status()["slots"]["green"]["pid"]
    os.kill(green_pid, signal.SIGKILL)

    def restarted() -> bool:
        green = bg.status()["slots"]["green"]
        return green["pid"] != green_pid and green["running"]

    wait_until(restarted, 60, "the restart")
    assert [h["action"] for h in bg.status()["history"][-2:]] == ["failover", "restart"]
