"""The blue-green deploy algorithm, written once for every serving platform.

deploy: refuse an unservable or tampered artifact → start the candidate in the idle slot and
wait until it is ready → smoke check (the rows recorded at training) → shadow comparison with
the live slot on recently served rows → switch → confirm through the live route → watch for
``post_switch_watch_s`` → keep it, or switch back at once (``auto-rollback``). A failure
before the switch leaves the live slot as it was and retires the candidate. rollback: switch
back to the standby slot, which still runs the previous version, after checking it is ready.

A platform (:class:`SlotPlatform`) says how slots are started, reached, switched and retired:
local processes behind nginx (:mod:`driftline.serving.bluegreen`) or Deployments behind a
Service (:mod:`driftline.serving.kubernetes`). A third platform implements the same small
interface in one module; the algorithm does not change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from driftline.packs import Pack
from driftline.registry import ArtifactIntegrityError, ModelVersion
from driftline.serving.paths import other_slot
from driftline.serving.verify import DeployError, recent_served_rows, shadow_compare, smoke_check
from driftline.settings import ServingSettings

log = logging.getLogger(__name__)

Predict = Callable[[list[dict]], dict]


class SlotPlatform(Protocol):
    """Where one pack's two slots run. Slot names are ``blue`` and ``green``; ``None`` as a
    slot means "through the live route" (the router, the live Service)."""

    @property
    def live_route(self) -> str:
        """Names the live route in messages, e.g. ``the router``."""
    verified_field: str
    """The switch record's field for how long confirming a switch took."""
    watch_poll_s: float
    shadow_batch_rows: int | None
    serving_dir: Path
    """The pack's serving directory: its prediction log feeds the shadow comparison."""

    def locked(self, action: str, version: str | None) -> contextlib.AbstractContextManager[dict]:
        """Serialise deploys and rollbacks of the pack; yield its state (``live``, ``slots``,
        ``history``), saved with :meth:`write_state`."""

    def write_state(self, state: dict) -> None: ...

    def status(self) -> dict: ...

    def refuse_unservable(self, model_version: ModelVersion) -> None:
        """Raise :class:`DeployError` if this platform cannot serve ``model_version``."""

    def serves(self, state: dict, slot: str, version: str | None) -> bool:
        """Whether ``slot`` runs ``version`` and is up."""

    def ensure_routed(self, slot: str, version: str) -> None:
        """Make the live route point at ``slot`` again if it drifted (nothing to deploy)."""

    def start(self, state: dict, slot: str, version: str) -> dict:
        """Start ``version`` in ``slot`` and wait until it is ready; figures for the record.

        :raises DeployError: it did not become ready, saying why.
        """

    def predictor(self, slot: str | None) -> Predict: ...

    def switch(self, slot: str, version: str) -> tuple[float, float]:
        """Point the live route at ``slot`` and confirm ``version`` answers through it.

        :return: the switch's wall-clock time and how long confirming took.
        """

    def switch_back(self, slot: str, version: str | None) -> tuple[float, float]:
        """Point the live route back at ``slot`` after a failed watch (as fast as the
        platform can; confirmation optional)."""

    def ready_answer(self, slot: str | None, version: str, expected_slot: str) -> str | None:
        """None if ``slot`` (or the live route) answers ``/ready`` with ``version`` from
        ``expected_slot``; otherwise what it answered."""

    def abandon(self, state: dict, target: str, live: str | None, version: str,
                switched: bool, error: BaseException) -> None:
        """After a failed deploy: the live route back on ``live``, the candidate retired."""

    def retire(self, state: dict, slot: str, version: str) -> None:
        """Stop serving from ``slot`` (after an auto-rollback)."""

    def standby_version(self, state: dict, slot: str) -> str:
        """The version ``slot`` runs for a rollback (its ``/ready`` is checked by
        :func:`rollback`).

        :raises DeployError: it runs no model, saying what it runs.
        """


def deploy(platform: SlotPlatform, pack: Pack, serving: ServingSettings,
           model_version: ModelVersion, reason: str) -> dict:
    """Serve ``model_version``: start it in the idle slot, check it, switch to it, watch it.

    :return: the platform's status after the deploy, plus ``changed`` (False when the version
        was already live) and ``switch`` (the history record, None if unchanged).
    :raises DeployError: refused (unservable, checksum mismatch) or failed (start, smoke,
        shadow, switch, watch); what was live before still serves.
    """
    version = model_version.version
    platform.refuse_unservable(model_version)
    try:
        sha256 = model_version.verify()
    except (ArtifactIntegrityError, OSError, KeyError) as exc:
        raise DeployError(f"refusing to deploy {version}: {exc}") from exc
    log.info("artifact checksum of %s %s verified: %s", model_version.name, version, sha256)
    with platform.locked("deploy", version) as state:
        live = state["live"]
        live_version = _version(state, live)
        if live and live_version == version and platform.serves(state, live, version):
            platform.ensure_routed(live, version)
            log.info("%s is already live in slot %s; nothing to deploy", version, live)
            return {**platform.status(), "changed": False, "switch": None}

        target = other_slot(live) if live else "blue"
        log.info("deploying %s %s to slot %s (live: %s %s): %s", model_version.name, version,
                 target, live, live_version, reason)
        switched = False
        try:
            figures = platform.start(state, target, version)
            checks = _check_candidate(platform, pack, serving, model_version, target, live)
            switched = True
            switched_at, verified_s = platform.switch(target, version)
        except BaseException as exc:  # also a killed task: what was live stays live
            platform.abandon(state, target, live, version, switched, exc)
            if isinstance(exc, Exception) and not isinstance(exc, DeployError):
                raise DeployError(f"slot {target}: deploying {version} failed: {exc!r}") from exc
            raise
        record = _record(platform, state, "deploy", live, target, version, live_version,
                         reason, switched_at, verified_s, **figures, **checks)
        failure = watch(platform, pack, serving, target, model_version)
        if failure:
            _auto_rollback(platform, state, target, live, version, live_version, failure)
        log.info("live traffic now goes to slot %s (%s); %s", target, version,
                 f"slot {live} keeps {live_version} for rollback" if live else "first deploy")
        return {**platform.status(), "changed": True, "switch": record}


def rollback(platform: SlotPlatform, reason: str) -> dict:
    """Switch back to the standby slot, which still runs the previous version.

    :return: the platform's status after the switch, plus ``changed`` and ``switch``.
    :raises DeployError: nothing is live, or the standby slot is not ready to serve.
    """
    with platform.locked("rollback", None) as state:
        live = state["live"]
        if live is None:
            raise DeployError("cannot roll back: nothing is live")
        target = other_slot(live)
        version = platform.standby_version(state, target)
        wrong = platform.ready_answer(target, version, target)
        if wrong is not None:
            raise DeployError(f"cannot roll back: slot {target} answers {wrong}, expected "
                              f"{version} ready")
        live_version = _version(state, live)
        log.info("rolling back from %s (%s) to %s (%s): %s", live, live_version, target,
                 version, reason)
        switched_at, verified_s = platform.switch(target, version)
        record = _record(platform, state, "rollback", live, target, version, live_version,
                         reason, switched_at, verified_s)
        return {**platform.status(), "changed": True, "switch": record}


def watch(platform: SlotPlatform, pack: Pack, serving: ServingSettings, slot: str,
          model_version: ModelVersion) -> str | None:
    """Check through the live route for ``post_switch_watch_s`` that ``slot`` stays ready
    with ``model_version`` and keeps its smoke predictions.

    :return: the first failure, or None.
    """
    where = f"{platform.live_route} (slot {slot})"
    predict = platform.predictor(None)
    started, checks = time.monotonic(), 0
    while True:
        wrong = platform.ready_answer(None, model_version.version, slot)
        if wrong is not None:
            return f"{where}: /ready answered {wrong}"
        try:
            smoke_check(pack, predict, model_version, where)
        except DeployError as exc:
            return str(exc)
        checks += 1
        if time.monotonic() - started >= serving.post_switch_watch_s:
            log.info("post-switch watch passed: %d checks over %.1fs through %s", checks,
                     time.monotonic() - started, platform.live_route)
            return None
        time.sleep(platform.watch_poll_s)


def _check_candidate(platform: SlotPlatform, pack: Pack, serving: ServingSettings,
                     model_version: ModelVersion, target: str, live: str | None) -> dict:
    """Smoke check, then shadow comparison with the live slot; figures for the record."""
    candidate = platform.predictor(target)
    checks: dict[str, Any] = {
        "smoke_rows": smoke_check(pack, candidate, model_version, f"slot {target}"),
        "shadow": None}
    if not live:
        log.info("shadow comparison skipped: nothing is live to compare with")
        return checks
    rows = recent_served_rows(platform.serving_dir, serving.shadow_rows,
                              pack.request_columns)
    if not rows:
        log.info("shadow comparison skipped: nothing served yet")
        return checks
    extra = {"batch_rows": platform.shadow_batch_rows} if platform.shadow_batch_rows else {}
    checks["shadow"] = shadow_compare(pack, candidate, platform.predictor(live), rows, serving,
                                      f"slot {target}", **extra)
    return checks


def _auto_rollback(platform: SlotPlatform, state: dict, target: str, live: str | None,
                   version: str, live_version: str | None, failure: str) -> None:
    """The watch failed: switch back to ``live`` at once, record it, retire ``target``.

    :raises DeployError: always, saying what failed and what serves now.
    """
    if not live or not platform.serves(state, live, live_version):
        raise DeployError(f"{version} in slot {target} failed its post-switch check "
                          f"({failure}) and there is no previous slot to roll back to; slot "
                          f"{target} stays live")
    log.error("post-switch check of %s in slot %s failed: %s; switching back to %s (%s)",
              version, target, failure, live, live_version)
    switched_at, verified_s = platform.switch_back(live, live_version)
    _record(platform, state, "auto-rollback", target, live, live_version or "", version,
            f"post-switch check of {version} failed: {failure}", switched_at, verified_s)
    platform.retire(state, target, version)
    platform.write_state(state)
    raise DeployError(f"{version} failed its post-switch check through {platform.live_route} "
                      f"({failure}); rolled back automatically to {live_version} in slot {live}")


def utc_now() -> str:
    """Now, as an ISO 8601 UTC timestamp to the millisecond (state and history records)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def switch_record(action: str, from_slot: str | None, to_slot: str | None, version: str,
                  previous_version: str | None, reason: str, switched_at: float,
                  **extra) -> dict:
    """One history entry of any platform: a deploy, rollback or auto-rollback.

    :param switched_at: wall-clock time of the switch (``time.time()``).
    :param extra: platform-specific figures (how long confirming took, shadow results).
    """
    return {"at": utc_now(), "action": action, "from_slot": from_slot, "to_slot": to_slot,
            "version": version, "previous_version": previous_version, "reason": reason,
            "switched_at": round(switched_at, 6), **extra}


def _record(platform: SlotPlatform, state: dict, action: str, from_slot: str | None,
            to_slot: str, version: str, previous_version: str | None, reason: str,
            switched_at: float, verified_s: float, **extra) -> dict:
    record = switch_record(action, from_slot, to_slot, version, previous_version, reason,
                           switched_at, **{platform.verified_field: round(verified_s, 4)},
                           **extra)
    state["live"] = to_slot
    state["history"].append(record)
    platform.write_state(state)
    return record


def _version(state: dict, slot: str | None) -> str | None:
    return (state["slots"].get(slot) or {}).get("version") if slot else None
