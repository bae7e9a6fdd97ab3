"""Kubernetes as a :class:`~driftline.serving.deploy.SlotPlatform`: two Deployments per pack
behind a live Service whose selector a switch changes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from kubernetes import client

from driftline.registry import ModelVersion
from driftline.serving.deploy import deploy, rollback, utc_now
from driftline.serving.kubernetes.cluster import (
    POLL_S,
    PackCluster,
    load_api_client,
    rolled_out,
)
from driftline.serving.kubernetes.manifests import (
    LABEL_VERSION,
    ROLES,
    deployment_name,
    object_name,
    pack_label,
    slot_deployment,
    slot_port,
    slot_service,
    slot_service_name,
)
from driftline.serving.kubernetes.state import ConfigMapState
from driftline.serving.paths import SLOTS, other_slot
from driftline.serving.verify import DeployError
from driftline.workspace import Workspace

log = logging.getLogger(__name__)

SWITCH_VERIFY_S = 30.0
"""How long the live Service may take to answer with the new version after a switch."""


class KubernetesBlueGreen:
    """Deploy, switch and roll back one pack's model versions between two Deployments.

    :param ws: the pack's workspace (its ``serving`` settings, ``[serving_kubernetes]``).
    :param api_client: the Kubernetes API client; default from
        :func:`~driftline.serving.kubernetes.cluster.load_api_client`.
    :raises ValueError: the pack's object names would not be valid Kubernetes names.
    """

    verified_field = "service_verified_s"
    watch_poll_s = POLL_S

    def __init__(self, ws: Workspace, api_client: client.ApiClient | None = None):
        self.ws = ws
        self.pack = ws.pack
        self.serving = ws.serving
        self.serving_dir = ws.serving_dir
        self.shadow_batch_rows: int | None = min(1000, self.serving.max_batch_rows)
        self.cfg = ws.settings.serving_kubernetes
        for role in ROLES:  # fail now on a name Kubernetes would refuse, before connecting
            object_name(ws, role)
        pack_label(ws)
        self.cluster = PackCluster(ws, api_client or load_api_client(self.cfg))
        self.ns, self.service = self.cluster.ns, self.cluster.service
        self.state = ConfigMapState(
            ws, self.cluster.core,
            lock_ttl_s=3 * self.serving.start_timeout_s + self.serving.post_switch_watch_s)

    @property
    def live_route(self) -> str:
        return f"the live Service {self.service}"

    # -- public operations -------------------------------------------------------------
    def deploy(self, model_version: ModelVersion, reason: str) -> dict:
        """Serve ``model_version`` (:func:`driftline.serving.deploy.deploy`): roll it out in
        the idle slot, check it through the slot Services, switch the live Service."""
        return deploy(self, self.pack, self.serving, model_version, reason)

    def rollback(self, reason: str) -> dict:
        """Switch back to the standby slot (:func:`driftline.serving.deploy.rollback`)."""
        return rollback(self, reason)

    def status(self) -> dict:
        """What is live, what each slot's Deployment runs, the live Service, the history."""
        state = self.state.read()
        slots = {}
        for slot in SLOTS:
            dep = self.cluster.read_deployment(slot)
            entry = state["slots"].get(slot) or {}
            slots[slot] = {
                "version": entry.get("version"),
                "deployment": deployment_name(self.ws, slot),
                "exists": dep is not None,
                "deployed_version": (dep.metadata.labels or {}).get(LABEL_VERSION) if dep else None,
                "replicas": dep.spec.replicas if dep else 0,
                "ready_replicas": (dep.status.ready_replicas or 0) if dep else 0,
                "ready": rolled_out(dep),
                "port": slot_port(self.cfg, slot),
                "deployed_at": entry.get("deployed_at")}
        return {"pack": self.ws.name, "live": state["live"], "slots": slots,
                "service": {"name": self.service, "namespace": self.ns,
                            "selects": self.cluster.live_selector()},
                "history": state["history"]}

    # -- the slot platform (driftline.serving.deploy) -----------------------------------
    def locked(self, action: str, version: str | None = None
               ) -> contextlib.AbstractContextManager[dict]:
        return self.state.locked(action, version)

    def write_state(self, state: dict) -> None:
        self.state.write(state)

    def refuse_unservable(self, model_version: ModelVersion) -> None:
        if model_version.name != self.ws.model_name:
            raise DeployError(f"refusing to deploy {model_version.name} "
                              f"{model_version.version}: pack {self.ws.name} serves model "
                              f"{self.ws.model_name}")

    def serves(self, state: dict, slot: str, version: str | None) -> bool:
        return ((state["slots"].get(slot) or {}).get("version") == version
                and rolled_out(self.cluster.read_deployment(slot)))

    def ensure_routed(self, slot: str, version: str) -> None:
        selects = self.cluster.live_selector()
        if selects != slot:
            log.warning("Service %s/%s selects %s, but %s is live; switching it back",
                        self.ns, self.service, selects, slot)
            self._switch(slot, version)

    def start(self, state: dict, slot: str, version: str) -> dict:
        state["slots"][slot] = {"version": version, "deployed_at": utc_now()}
        self.state.write(state)
        self.cluster.apply_deployment(slot_deployment(self.ws, slot, version))
        self.cluster.apply_service(slot_service(self.ws, slot))
        waited = self.cluster.wait_rollout(slot, version, self.serving.start_timeout_s)
        return {"rollout_s": round(waited, 2)}

    def predictor(self, slot: str | None) -> Callable[[list[dict]], dict]:
        return self.cluster.predictor(self._service_of(slot))

    def switch(self, slot: str, version: str) -> tuple[float, float]:
        return self._switch(slot, version)

    def switch_back(self, slot: str, version: str | None) -> tuple[float, float]:
        if version is None:
            raise DeployError(f"slot {slot} has no recorded version to switch back to")
        return self._switch(slot, version)

    def ready_answer(self, slot: str | None, version: str, expected_slot: str) -> str | None:
        return self.cluster.answers(self._service_of(slot), "ready", version, expected_slot)

    def retire(self, state: dict, slot: str, version: str) -> None:
        self.cluster.scale_down(slot)
        state["slots"][slot] = {"version": None, "failed_version": version,
                                "failed_at": utc_now()}

    def standby_version(self, state: dict, slot: str) -> str:
        version = (state["slots"].get(slot) or {}).get("version")
        dep = self.cluster.read_deployment(slot)
        deployed = (dep.metadata.labels or {}).get(LABEL_VERSION) if dep else None
        if not version or deployed != version or not rolled_out(dep):
            raise DeployError(
                f"cannot roll back from {other_slot(slot)}: slot {slot} has no ready "
                f"Deployment of its recorded version {version} (Deployment "
                f"{deployment_name(self.ws, slot)}: version {deployed}, "
                f"{'ready' if rolled_out(dep) else 'not rolled out'}, "
                f"{dep.spec.replicas if dep else 0} replicas)")
        return version

    def abandon(self, state: dict, target: str, live: str | None, version: str,
                switched: bool, error: BaseException) -> None:
        """After a failed deploy: the live Service back on ``live``, the candidate at 0."""
        log.error("deploying %s to slot %s failed (%s); scaling it down, %s", version, target,
                  str(error).splitlines()[0] if str(error) else repr(error),
                  f"slot {live} stays live" if live else "nothing is live")
        if switched and live:
            try:
                self.cluster.select(live)
            except Exception as exc:  # also no connection: never hide the deploy's own error
                log.error("could not point Service %s back at %s: %r", self.service, live,
                          exc)
        self.retire(state, target, version)
        try:
            self.state.write(state)
        except Exception as exc:
            log.error("could not record the failed deploy: %r", exc)

    # -- switching ---------------------------------------------------------------------
    def _service_of(self, slot: str | None) -> str:
        """``slot``'s own Service, or the live Service for None."""
        return slot_service_name(self.ws, slot) if slot else self.service

    def _switch(self, slot: str, version: str) -> tuple[float, float]:
        """Point the live Service at ``slot``; confirm through it that ``version`` answers.

        :return: the switch's wall-clock time and how long confirming it took.
        :raises DeployError: the Service does not answer with ``version`` in time.
        """
        switched_at = time.time()
        self.cluster.select(slot)
        started = time.monotonic()
        last: str | None = "no answer"
        while time.monotonic() - started < SWITCH_VERIFY_S:
            if self.cluster.endpoints_are(slot):
                last = self.cluster.answers(self.service, "version", version, slot)
                if last is None:
                    verified_s = time.monotonic() - started
                    log.info("Service %s/%s answers with %s from slot %s (%.2fs after the "
                             "switch)", self.ns, self.service, version, slot, verified_s)
                    return switched_at, verified_s
            else:
                last = f"its endpoints are not (only) slot {slot}'s ready pods yet"
            time.sleep(POLL_S / 2)
        raise DeployError(f"Service {self.ns}/{self.service} did not answer with {version} "
                          f"from slot {slot} within {SWITCH_VERIFY_S:.0f}s; last: {last}")
