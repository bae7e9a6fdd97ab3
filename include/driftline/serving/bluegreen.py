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

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
from filelock import FileLock

from driftline.registry import ArtifactIntegrityError, ModelVersion, Registry
from driftline.serving.backend import switch_record, utc_now
from driftline.serving.paths import (
    SLOTS,
    live_link,
    other_slot,
    router_url,
    slot_client,
    slot_log,
    slot_socket,
)
from driftline.serving.processes import (
    adopt,
    process_alive,
    process_cmdline,
    set_nice,
    stop_process,
)
from driftline.serving.router import Router, RouterError
from driftline.serving.verify import (
    VERIFY_HEADER,
    DeployError,
    recent_served_rows,
    shadow_compare,
    smoke_check,
)
from driftline.settings import INSTALLATION_WIDE, Settings
from driftline.workspace import Workspace

log = logging.getLogger(__name__)

ROUTER_VERIFY_S = 10.0
LOG_TAIL_LINES = 40
HISTORY_LIMIT = 500
STARTUP_NICE = 10
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
        self.dir = ws.serving_dir
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

    def _shadow(self, target: str, live: str | None) -> dict | None:
        """Compare ``target`` with the running ``live`` slot on recent served rows.

        :raises DeployError: they disagree on more than the configured share.
        """
        if not live:
            log.info("shadow comparison skipped: no live slot to compare with")
            return None
        pack = self.ws.pack
        rows = recent_served_rows(self.dir, self.serving.shadow_rows, pack.request_columns)
        if not rows:
            log.info("shadow comparison skipped: nothing served yet")
            return None
        return shadow_compare(pack, self._predictor(target), self._predictor(live), rows,
                              self.serving, f"slot {target}")

    def _watch(self, slot: str, model_version: ModelVersion) -> str | None:
        """Check through the router for ``post_switch_watch_s`` that ``slot`` stays ready
        with ``model_version`` and keeps its smoke predictions.

        :return: the first failure, or None.
        """
        watch_s = self.serving.post_switch_watch_s
        deadline = time.monotonic() + watch_s
        checks = 0
        with self._client(None, timeout=2.0) as client:
            while True:
                try:
                    body = client.get("/ready").json()
                    if not body.get("ready") or body.get("model_version") != (
                            model_version.version) or body.get("slot") != slot:
                        return f"router /ready answered {body}"
                    smoke_check(self.ws.pack, self._predictor(None), model_version, "router")
                except (httpx.HTTPError, ValueError, DeployError) as exc:
                    return f"{type(exc).__name__}: {exc}"
                checks += 1
                if time.monotonic() >= deadline:
                    log.info("post-switch watch passed: %d checks over %.1fs through the router",
                             checks, watch_s)
                    return None
                time.sleep(0.2)

    def _smoke_test(self, slot: str, model_version: ModelVersion) -> None:
        """:func:`~driftline.serving.verify.smoke_check` on ``slot``'s own socket."""
        smoke_check(self.ws.pack, self._predictor(slot), model_version, f"slot {slot}")

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

    def _drain(self, slot: str) -> None:
        """Tell ``slot``'s server (all its processes) to drop nginx's kept connections."""
        pid = (self._read_state()["slots"].get(slot) or {}).get("pid")
        if pid is not None and self._slot_running(slot, pid):
            try:
                os.killpg(pid, signal.SIGUSR1)  # started in its own session: pgid == pid
            except OSError as exc:
                log.warning("could not tell slot %s (pid %d) to drain: %s", slot, pid, exc)

    def _record(self, state: dict, action: str, from_slot: str | None, to_slot: str,
                version: str, previous_version: str | None, reason: str,
                switched_at: float, verified_s: float, **extra) -> dict:
        record = switch_record(action, from_slot, to_slot, version, previous_version, reason,
                               switched_at, router_verified_s=round(verified_s, 4), **extra)
        state["live"] = to_slot
        state["history"].append(record)
        self._write_state(state)
        return record

    # -- public operations -------------------------------------------------------------
    def deploy(self, model_version: ModelVersion, reason: str) -> dict:
        """Serve ``model_version``: start it in the idle slot, check it, switch to it.

        :return: :meth:`status` after the deploy, plus ``changed`` (False when the version
            was already live) and ``switch`` (the history record, None if unchanged).
        :raises DeployError: refused (checksum mismatch) or failed (start, readiness, smoke
            test, router); the live slot is untouched and keeps serving.
        """
        version = model_version.version
        with self.lock:
            state = self._read_state()
            live = state["live"]
            live_entry = (state["slots"].get(live) or {}) if live else {}
            if (live and live_entry.get("version") == version
                    and self._slot_running(live, live_entry.get("pid"))):
                log.info("%s is already live in slot %s; nothing to deploy", version, live)
                if self.router.live_slot(self.dir) != live or not self.router.is_running():
                    self._switch(live, version)
                return {**self.status(), "changed": False, "switch": None}

            log.info("deploying %s %s: %s", model_version.name, version, reason)
            served_from = Registry(self.ws.registry_dir, self.ws.model_name)
            if (served_from.versions_dir / version).resolve() != model_version.path.resolve():
                raise DeployError(f"refusing to deploy {version}: it is at {model_version.path}"
                                  f", but slot servers load from {served_from.versions_dir}")
            try:
                sha256 = model_version.verify()
            except (ArtifactIntegrityError, OSError, KeyError) as exc:
                raise DeployError(f"refusing to deploy {version}: {exc}") from exc
            log.info("artifact checksum verified: %s", sha256)

            target = other_slot(live) if live else "blue"
            self._stop_slot(state, target)
            self._write_state(state)
            process, offset = self._start_slot(target, version)
            state["slots"][target] = self._slot_entry(target, version, process.pid)
            self._write_state(state)
            log.info("started %s in slot %s (pid %d); waiting for /ready", version, target,
                     process.pid)
            try:
                self._wait_ready(target, version, process, offset)
                set_nice(process.pid, os.getpriority(os.PRIO_PROCESS, 0))
                self._smoke_test(target, model_version)
                shadow = self._shadow(target, live)
                switched_at, verified_s = self._switch(target, version)
            except BaseException as exc:  # also a killed task: leave the live slot as it was
                self._abandon(state, target, live)
                if isinstance(exc, Exception) and not isinstance(exc, DeployError):
                    raise DeployError(f"slot {target}: deploying {version} failed: "
                                      f"{exc!r}") from exc
                raise
            record = self._record(state, "deploy", live, target, version,
                                  live_entry.get("version"), reason, switched_at, verified_s,
                                  shadow=shadow)
            failure = self._watch(target, model_version)
            if failure:
                self._auto_rollback(state, target, version, live, live_entry, failure)
            if live:
                log.info("switched live traffic from %s (%s) to %s (%s); %s keeps running "
                         "for rollback", live, live_entry.get("version"), target, version, live)
            else:
                log.info("live traffic now goes to %s (%s)", target, version)
            return {**self.status(), "changed": True, "switch": record}

    def _auto_rollback(self, state: dict, target: str, version: str, live: str | None,
                       live_entry: dict, failure: str) -> None:
        """The post-switch watch failed: switch back to ``live`` at once, stop ``target``.

        :raises DeployError: always, saying what failed and what serves now.
        """
        previous = live_entry.get("version")
        if not live or not self._slot_running(live, live_entry.get("pid")):
            raise DeployError(f"{version} in slot {target} failed its post-switch check "
                              f"({failure}) and there is no previous slot to roll back to")
        if previous is None:  # a running slot always records its version
            raise DeployError(f"{version} in slot {target} failed its post-switch check "
                              f"({failure}) and the previous slot {live} records no version")
        log.error("post-switch check of %s failed: %s; rolling back to %s (%s)", version,
                  failure, live, previous)
        switched_at = time.time()
        self.router.switch(self.dir, live)
        self._drain(target)
        self._record(state, "auto-rollback", target, live, previous, version,
                     f"post-switch check of {version} failed: {failure}", switched_at, 0.0)
        self._stop_slot(state, target)
        self._write_state(state)
        raise DeployError(f"{version} failed its post-switch check through the router "
                          f"({failure}); rolled back automatically to {previous} in slot "
                          f"{live}")

    def _abandon(self, state: dict, target: str, live: str | None) -> None:
        """After a failed deploy: point the router back at ``live``, stop the candidate."""
        log.error("deploy to slot %s failed; stopping it, %s stays live", target, live)
        if live and self.router.live_slot(self.dir) != live:
            try:
                self.router.switch(self.dir, live)
            except (RouterError, OSError) as exc:
                log.error("could not point the router back at %s: %s", live, exc)
        self._stop_slot(state, target)
        self._write_state(state)

    def rollback(self, reason: str) -> dict:
        """Switch back to the other slot, which still runs the previous version.

        :return: :meth:`status` after the switch, plus ``changed`` and ``switch`` (the
            history record).
        :raises DeployError: nothing is live, or the other slot runs no ready model.
        """
        with self.lock:
            state = self._read_state()
            live = state["live"]
            if live is None:
                raise DeployError("cannot roll back: nothing is live")
            target = other_slot(live)
            entry = state["slots"].get(target) or {}
            version = entry.get("version")
            if not version or not self._slot_running(target, entry.get("pid")):
                raise DeployError(f"cannot roll back from {live}: slot {target} runs no model "
                                  f"(version {version}, pid {entry.get('pid')} not running)")
            try:
                with slot_client(self.dir, target, timeout=5) as client:
                    body = client.get("/ready").json()
            except (httpx.HTTPError, ValueError) as exc:
                raise DeployError(f"cannot roll back: slot {target} is not ready: {exc}") from exc
            if not body.get("ready") or body.get("model_version") != version:
                raise DeployError(f"cannot roll back: slot {target} answers {body}, "
                                  f"expected {version} ready")
            log.info("rolling back from %s to %s (%s): %s", live, target, version, reason)
            live_version = (state["slots"].get(live) or {}).get("version")
            switched_at, verified_s = self._switch(target, version)
            record = self._record(state, "rollback", live, target, version, live_version,
                                  reason, switched_at, verified_s)
            return {**self.status(), "changed": True, "switch": record}

    def stop_all(self) -> None:
        """Stop both of this pack's slot servers; nothing of it is live afterwards (the
        router keeps serving the other packs)."""
        with self.lock:
            state = self._read_state()
            for slot in SLOTS:
                self._stop_slot(state, slot)
            live_link(self.dir).unlink(missing_ok=True)
            state["live"] = None
            self._write_state(state)
            log.info("%s serving stopped: both slots", self.ws.name)


def stop_serving(settings: Settings) -> None:
    """Stop every pack's slots that have serving state here, then the router."""
    from driftline.packs import discover_packs

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

