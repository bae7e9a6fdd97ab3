"""Blue-green deployment of model versions behind the nginx router.

Two slots, blue and green, each run one model server. A deploy starts the new version in
the idle slot, waits until it is ready, checks its predictions on the rows recorded at
training (``metadata["smoke"]``), then switches the router to it and confirms through the
router that the new version answers. The old slot keeps running, so a rollback is a switch
back. What runs where, and every switch, is kept in ``serving_dir/state.json``.

The slot servers and nginx are detached daemons: they outlive the process that deployed
them (an Airflow task). Deploys, rollbacks and stops are serialised by a file lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
from filelock import FileLock, Timeout

from driftline.registry import ModelVersion, Registry
from driftline.serving.deploy import deploy, rollback, switch_record, utc_now
from driftline.serving.paths import (
    SLOTS,
    live_link,
    other_slot,
    router_url,
    slot_client,
    slot_log,
    slot_socket,
    standby_link,
)
from driftline.serving.processes import (
    adopt,
    process_alive,
    process_cmdline,
    set_nice,
    stop_process,
    stop_supervisor,
)
from driftline.serving.router import Router, RouterError
from driftline.serving.verify import (
    VERIFY_HEADER,
    DeployError,
)
from driftline.settings import INSTALLATION_WIDE, Settings
from driftline.workspace import Workspace

log = logging.getLogger(__name__)

ROUTER_VERIFY_S = 10.0
LOG_TAIL_LINES = 40
HISTORY_LIMIT = 500
STARTUP_NICE = 10
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Waits after the 1st, 2nd, ... failed restart of a slot server; the last one repeats."""
"""A starting candidate (imports, model load: seconds of CPU) yields to the live slot."""


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def settings_toml(ws: Workspace) -> str:
    """What a slot server reads of the deployer's settings (the pack's resolved ``[serving]``)
    as a TOML file for :func:`~driftline.settings.load_settings`, so a server started from
    code sees the deployer's settings, not whatever its environment names."""
    wide = INSTALLATION_WIDE["serving"]
    fields = [f.name for f in dataclasses.fields(ws.serving)]
    lines = [f"dvc_remote_url = {_toml_value(ws.settings.dvc_remote_url)}", "", "[serving]"]
    lines += [f"{name} = {_toml_value(getattr(ws.serving, name))}"
              for name in fields if name in wide]
    lines += ["", f"[packs.{ws.name}.serving]"]
    lines += [f"{name} = {_toml_value(getattr(ws.serving, name))}"
              for name in fields if name not in wide]
    return "\n".join(lines) + "\n"


class BlueGreen:
    """Deploy, switch and roll back one pack's model versions between its blue and green
    slots, behind the installation's one router.

    :param ws: the pack's workspace; state lives under ``ws.serving_dir``.
    """

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.serving = ws.serving
        self.dir = self.serving_dir = ws.serving_dir
        self.state_path = self.dir / "state.json"
        self.router = Router(ws.settings)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(self.dir / ".bluegreen.lock"),
                             timeout=4 * self.serving.start_timeout_s + 60)

    @property
    def url(self) -> str:
        """The pack's endpoint behind the router."""
        return router_url(self.ws.settings, self.ws.name)

    # -- state -------------------------------------------------------------------------
    def _read_state(self) -> dict:
        state: dict[str, Any] = {"live": None, "slots": {}, "history": []}
        if self.state_path.exists():
            state.update(json.loads(self.state_path.read_text()))
        return state

    def _write_state(self, state: dict) -> None:
        state["history"] = state["history"][-HISTORY_LIMIT:]
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2, default=str))
        os.replace(tmp, self.state_path)

    def _slot_running(self, slot: str, pid: int | None) -> bool:
        """Whether ``pid`` is alive and is this directory's server for ``slot``."""
        if pid is None or not process_alive(pid):
            return False
        cmdline = process_cmdline(pid)
        return ("driftline.serving.app" in cmdline and f"--slot {slot}" in cmdline
                and str(slot_socket(self.dir, slot)) in cmdline)

    def status(self) -> dict:
        """What is live, what each slot runs, the router, and the switch history."""
        state = self._read_state()
        slots = {}
        for slot in SLOTS:
            entry = state["slots"].get(slot) or {}
            pid = entry.get("pid")
            slots[slot] = {"version": entry.get("version"), "pid": pid,
                           "socket": str(slot_socket(self.dir, slot)),
                           "running": self._slot_running(slot, pid),
                           "started_at": entry.get("started_at")}
        return {"pack": self.ws.name, "live": state["live"], "slots": slots,
                "router": {"url": self.url, "running": self.router.is_running(),
                           "points_to": self.router.live_slot(self.dir)},
                "history": state["history"]}

    # -- slot processes ----------------------------------------------------------------
    def _start_slot(self, slot: str, version: str) -> tuple[subprocess.Popen, int]:
        """Start ``slot``'s server, detached; return it and its log's size before start."""
        config = self.dir / "settings.toml"
        config.write_text(settings_toml(self.ws))
        log_path = slot_log(self.dir, slot)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = log_path.stat().st_size if log_path.exists() else 0
        env = {**os.environ, "DRIFTLINE_HOME": str(self.ws.home),
               "DRIFTLINE_CONFIG": str(config),
               "DRIFTLINE_PACKS": str(self.ws.settings.packs_dir)}
        command = [sys.executable, "-m", "driftline.serving.app", "--pack", self.ws.name,
                   "--slot", slot, "--version", version,
                   "--uds", str(slot_socket(self.dir, slot))]
        with open(log_path, "ab") as out:
            out.write(f"\n--- {utc_now()} starting {version} in slot {slot}\n".encode())
            out.flush()
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                                       start_new_session=True)
        adopt(process)
        set_nice(process.pid, os.getpriority(os.PRIO_PROCESS, 0) + STARTUP_NICE)
        return process, offset

    def _stop_slot(self, state: dict, slot: str) -> None:
        entry = state["slots"].get(slot) or {}
        pid = entry.get("pid")
        if pid is not None and self._slot_running(slot, pid):
            log.info("stopping slot %s (%s, pid %d)", slot, entry.get("version"), pid)
            if not stop_process(pid):
                raise DeployError(f"slot {slot}: server pid {pid} did not stop")
        state["slots"][slot] = self._slot_entry(slot)

    def _slot_entry(self, slot: str, version: str | None = None,
                    pid: int | None = None) -> dict:
        return {"version": version, "pid": pid, "started_at": utc_now() if pid else None}

    def _log_tail(self, slot: str, offset: int) -> str:
        path = slot_log(self.dir, slot)
        with open(path, "rb") as fh:
            fh.seek(offset)
            lines = fh.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def _wait_ready(self, slot: str, version: str, process: subprocess.Popen,
                    offset: int) -> None:
        """Wait for the new server's ``/ready``.

        :raises DeployError: it exited or was not ready within ``start_timeout_s``.
        """
        url = "/ready"
        timeout = self.serving.start_timeout_s
        deadline = time.monotonic() + timeout
        with slot_client(self.dir, slot, timeout=2.0) as client:
            while True:
                code = process.poll()
                if code is not None:
                    why = f"its server exited with status {code}"
                    break
                try:
                    body = client.get(url).json()
                    if body.get("ready") and body.get("pid") == process.pid:
                        if body.get("model_version") != version:
                            why = f"it serves {body.get('model_version')}, not {version}"
                            break
                        log.info("slot %s ready: %s (pid %d)", slot, version, process.pid)
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    why = f"it was not ready after {timeout:g}s"
                    break
                time.sleep(0.1)
        tail = self._log_tail(slot, offset)
        if process.poll() is None:
            stop_process(process.pid)
        raise DeployError(f"slot {slot}: {version} failed to start: {why}. Server log "
                          f"({slot_log(self.dir, slot).name}), last lines:\n{tail}")

    def _client(self, slot: str | None, timeout: float = 30.0) -> httpx.Client:
        """A client to ``slot``'s own socket, or to the pack's endpoint on the router."""
        if slot:
            return slot_client(self.dir, slot, timeout=timeout)
        return httpx.Client(base_url=self.url, timeout=timeout)

    def _predictor(self, slot: str | None):
        """A ``predict`` callable for :mod:`~driftline.serving.verify`: ``slot``'s own
        socket, or the router for None. Its requests are marked so servers do not log them
        as served traffic."""
        where = f"slot {slot}" if slot else "router"

        def predict(rows: list[dict]) -> dict:
            try:
                with self._client(slot) as client:
                    response = client.post("/predict", json={"rows": rows},
                                           headers={VERIFY_HEADER: "1"})
            except httpx.HTTPError as exc:
                raise DeployError(f"{where}: predict request failed: {exc!r}") from exc
            if response.status_code != 200:
                raise DeployError(f"{where}: predict request answered "
                                  f"{response.status_code}: {response.text[:500]}")
            return response.json()

        return predict

    def ready_answer(self, slot: str | None, version: str, expected_slot: str) -> str | None:
        """None if ``slot``'s socket (the router for None) answers ``/ready`` with
        ``version`` from ``expected_slot``; otherwise what it answered."""
        try:
            with self._client(slot, timeout=2.0) as client:
                body = client.get("/ready").json()
        except (httpx.HTTPError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if (body.get("ready") and body.get("model_version") == version
                and body.get("slot") == expected_slot):
            return None
        return str(body)

    # -- switching ---------------------------------------------------------------------
    def _switch(self, slot: str, version: str) -> tuple[float, float]:
        """Point the router at ``slot`` and confirm through it that ``version`` answers.

        :return: the switch's wall-clock time and how long confirming it took.
        :raises DeployError: the router does not answer with ``version`` from ``slot``.
        """
        last = None
        with self._client(None, timeout=2.0) as client:  # made before the switch: not free
            try:
                self.router.ensure_running()
                switched_at = time.time()
                self.router.switch(self.dir, slot)
            except RouterError as exc:
                raise DeployError(f"router: {exc}") from exc
            self._set_standby(other_slot(slot))
            self._drain(other_slot(slot))
            started = time.monotonic()
            while time.monotonic() - started < ROUTER_VERIFY_S:
                try:
                    response = client.get("/version")
                    last = f"{response.status_code} {response.text[:200]}"
                    body = response.json()
                    if body.get("model_version") == version and body.get("slot") == slot:
                        verified_s = time.monotonic() - started
                        log.info("router %s now answers with %s from slot %s (%.3fs)",
                                 self.url, version, slot, verified_s)
                        return switched_at, verified_s
                except (httpx.HTTPError, ValueError) as exc:
                    last = repr(exc)
                time.sleep(0.05)
        raise DeployError(f"router {self.url} did not answer with {version} from slot "
                          f"{slot} within {ROUTER_VERIFY_S:.0f}s; last answer: {last}")

    def _set_standby(self, slot: str) -> None:
        """Make ``slot`` the router's fallback if its server runs, else have none."""
        entry = self._read_state()["slots"].get(slot) or {}
        running = bool(entry.get("version")) and self._slot_running(slot, entry.get("pid"))
        self.router.set_standby(self.dir, slot if running else None)

    def _drain(self, slot: str) -> None:
        """Tell ``slot``'s server (all its processes) to drop nginx's kept connections."""
        pid = (self._read_state()["slots"].get(slot) or {}).get("pid")
        if pid is not None and self._slot_running(slot, pid):
            try:
                os.killpg(pid, signal.SIGUSR1)  # started in its own session: pgid == pid
            except OSError as exc:
                log.warning("could not tell slot %s (pid %d) to drain: %s", slot, pid, exc)

    # -- the slot platform (driftline.serving.deploy) -----------------------------------
    live_route = "the router"
    verified_field = "router_verified_s"
    watch_poll_s = 0.2
    shadow_batch_rows: int | None = None

    @contextlib.contextmanager
    def locked(self, action: str, version: str | None) -> Iterator[dict]:
        with self.lock:
            yield self._read_state()

    def write_state(self, state: dict) -> None:
        self._write_state(state)

    def refuse_unservable(self, model_version: ModelVersion) -> None:
        served_from = Registry(self.ws.registry_dir, self.ws.model_name)
        if (served_from.versions_dir / model_version.version).resolve() != (
                model_version.path.resolve()):
            raise DeployError(f"refusing to deploy {model_version.version}: it is at "
                              f"{model_version.path}, but slot servers load from "
                              f"{served_from.versions_dir}")

    def serves(self, state: dict, slot: str, version: str | None) -> bool:
        entry = state["slots"].get(slot) or {}
        return entry.get("version") == version and self._slot_running(slot, entry.get("pid"))

    def ensure_routed(self, slot: str, version: str) -> None:
        if self.router.live_slot(self.dir) != slot or not self.router.is_running():
            self._switch(slot, version)

    def start(self, state: dict, slot: str, version: str) -> dict:
        if self.router.standby_slot(self.dir) == slot:
            self.router.set_standby(self.dir, None)  # never fall back to an unchecked candidate
        self._stop_slot(state, slot)
        self._write_state(state)
        process, offset = self._start_slot(slot, version)
        state["slots"][slot] = self._slot_entry(slot, version, process.pid)
        self._write_state(state)
        log.info("started %s in slot %s (pid %d); waiting for /ready", version, slot,
                 process.pid)
        self._wait_ready(slot, version, process, offset)
        set_nice(process.pid, os.getpriority(os.PRIO_PROCESS, 0))
        return {}

    def predictor(self, slot: str | None):
        return self._predictor(slot)

    def switch(self, slot: str, version: str) -> tuple[float, float]:
        return self._switch(slot, version)

    def switch_back(self, slot: str, version: str | None) -> tuple[float, float]:
        switched_at = time.time()
        self.router.switch(self.dir, slot)
        self.router.set_standby(self.dir, None)  # the failed candidate is no fallback
        self._drain(other_slot(slot))
        return switched_at, 0.0

    def abandon(self, state: dict, target: str, live: str | None, version: str,
                switched: bool, error: BaseException) -> None:
        log.error("deploy to slot %s failed; stopping it, %s stays live", target, live)
        if self.router.standby_slot(self.dir) == target:
            self.router.set_standby(self.dir, None)
        if live and self.router.live_slot(self.dir) != live:
            try:
                self.router.switch(self.dir, live)
            except (RouterError, OSError) as exc:
                log.error("could not point the router back at %s: %s", live, exc)
        self._stop_slot(state, target)
        self._write_state(state)

    def retire(self, state: dict, slot: str, version: str) -> None:
        if self.router.standby_slot(self.dir) == slot:
            self.router.set_standby(self.dir, None)
        self._stop_slot(state, slot)

    def standby_version(self, state: dict, slot: str) -> str:
        entry = state["slots"].get(slot) or {}
        version = entry.get("version")
        live = other_slot(slot)
        if not version or not self._slot_running(slot, entry.get("pid")):
            raise DeployError(f"cannot roll back from {live}: slot {slot} runs no model "
                              f"(version {version}, pid {entry.get('pid')} not running)")
        return version

    # -- public operations -------------------------------------------------------------
    def deploy(self, model_version: ModelVersion, reason: str) -> dict:
        """Serve ``model_version`` (:func:`driftline.serving.deploy.deploy`)."""
        return deploy(self, self.ws.pack, self.serving, model_version, reason)

    def rollback(self, reason: str) -> dict:
        """Switch back to the standby slot (:func:`driftline.serving.deploy.rollback`)."""
        return rollback(self, reason)

    # -- supervision (driftline.serving.supervisor) -------------------------------------
    def restore(self) -> list[dict]:
        """Restart this pack's slot servers that died, the live slot first, each after its
        back-off; record each failover, restart and failed restart in the history.

        Does nothing while a deploy or rollback holds the pack's lock (it decides).

        :return: the history records written.
        """
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            return []
        try:
            state = self._read_state()
            live = state["live"]
            events = []
            for slot in (live, other_slot(live)) if live else ():
                entry = state["slots"].get(slot) or {}
                if entry.get("version") and not self._slot_running(slot, entry.get("pid")):
                    events += self._restart(state, slot, is_live=slot == live)
            return events
        finally:
            self.lock.release()

    def _restart(self, state: dict, slot: str, is_live: bool) -> list[dict]:
        entry = state["slots"][slot]
        version, pid, now = entry["version"], entry.get("pid"), time.time()
        events = []
        if not entry.get("down_since"):
            entry["down_since"] = now
            if is_live:
                events.append(self._failover_record(state, slot))
        if now < entry.get("retry_at", 0):
            self._write_state(state)
            return events
        attempts = entry.get("restart_attempts", 0) + 1
        process, offset = self._start_slot(slot, version)
        try:
            self._wait_ready(slot, version, process, offset)
        except DeployError as exc:
            delay = RESTART_BACKOFF_S[min(attempts, len(RESTART_BACKOFF_S)) - 1]
            entry.update(pid=None, restart_attempts=attempts, retry_at=time.time() + delay)
            events.append(switch_record("restart-failed", slot, slot, version, version,
                                        f"attempt {attempts}: {str(exc).splitlines()[0]}; "
                                        f"next in {delay:g}s", now))
        else:
            down_s = round(time.time() - entry["down_since"], 2)
            state["slots"][slot] = self._slot_entry(slot, version, process.pid)
            events.append(switch_record(
                "restart", slot, slot, version, version,
                f"server pid {pid} of slot {slot} exited; restarted after {down_s}s "
                f"(attempt {attempts})", now, pid=process.pid, down_s=down_s))
            if not is_live:
                self.router.set_standby(self.dir, slot)
            log.warning("slot %s of %s: %s restarted (pid %d) after %.1fs down", slot,
                        self.ws.name, version, process.pid, down_s)
        state["history"].extend(events)
        self._write_state(state)
        return events

    def _failover_record(self, state: dict, slot: str) -> dict:
        """The live slot died: what the router now falls back to, for the history."""
        standby = self.router.standby_slot(self.dir)
        entry = (state["slots"].get(standby) or {}) if standby else {}
        running = standby is not None and self._slot_running(standby, entry.get("pid"))
        serving = entry.get("version") if running else None
        live_version = state["slots"][slot]["version"]
        reason = (f"slot {slot} ({live_version}, pid {state['slots'][slot].get('pid')}) "
                  f"stopped; " + (f"the router falls back to slot {standby} ({serving}) "
                                  "until it is back" if serving else
                                  "no standby slot runs: requests fail until it is back"))
        log.error("%s: %s", self.ws.name, reason)
        return switch_record("failover", slot, standby if serving else None, serving or "",
                             live_version, reason, time.time())

    def stop_all(self) -> None:
        """Stop both of this pack's slot servers; nothing of it is live afterwards (the
        router keeps serving the other packs)."""
        with self.lock:
            state = self._read_state()
            for slot in SLOTS:
                self._stop_slot(state, slot)
            live_link(self.dir).unlink(missing_ok=True)
            standby_link(self.dir).unlink(missing_ok=True)
            state["live"] = None
            self._write_state(state)
            log.info("%s serving stopped: both slots", self.ws.name)


def stop_serving(settings: Settings) -> None:
    """Stop the supervisor, every pack's slots that have serving state here, then the
    router."""
    from driftline.packs import discover_packs

    stop_supervisor(settings.serving_dir)  # it would restart the slots stopped here
    packs, _ = discover_packs(settings.packs_dir)
    for state in sorted(settings.serving_dir.glob("*/state.json")):
        pack = packs.get(state.parent.name)
        if pack is not None:
            BlueGreen(Workspace(settings, pack)).stop_all()
        else:
            log.warning("no pack %r in %s: its slots were left running", state.parent.name,
                        settings.packs_dir)
    Router(settings).stop()
    log.info("serving stopped: every pack's slots and the router")

