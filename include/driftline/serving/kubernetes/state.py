"""One pack's deploy state in a ConfigMap, written with optimistic concurrency.

``<service>-<pack>-state`` holds the live slot, each slot's version and the switch history as
JSON. Every write is a ``replace`` with the ``resourceVersion`` that was read, so a write that
lost a race fails instead of clobbering; a deploy or rollback also holds a lock recorded in it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from driftline.serving.deploy import utc_now
from driftline.serving.kubernetes.cluster import or_none
from driftline.serving.kubernetes.manifests import (
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PACK,
    state_name,
)
from driftline.serving.verify import DeployError
from driftline.workspace import Workspace

log = logging.getLogger(__name__)

STATE_KEY = "state.json"
HISTORY_LIMIT = 200
"""Switch records kept in the state ConfigMap (a ConfigMap holds at most 1 MiB)."""
LOCK_GRACE_S = 120


class ConfigMapState:
    """Read, write and lock the pack's deploy state.

    :param ws: the pack's workspace (``[serving_kubernetes]``: namespace and service).
    :param core: the CoreV1 API the ConfigMap is read and written with.
    :param lock_ttl_s: how long a held lock stays valid; a lock left by a killed deployer is
        taken over after that (plus :data:`LOCK_GRACE_S`).
    """

    def __init__(self, ws: Workspace, core: client.CoreV1Api, lock_ttl_s: float):
        self.ws = ws
        self.core = core
        self.ns = ws.settings.serving_kubernetes.namespace
        self.name = state_name(ws)
        self.lock_ttl_s = lock_ttl_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._rv: str | None = None  # resourceVersion of the ConfigMap we last saw

    def read(self) -> dict:
        """The state (``live``, ``slots``, ``history``, ``lock``); empty if none is stored."""
        state: dict[str, Any] = {"live": None, "slots": {}, "history": [], "lock": None}
        cm = or_none(self.core.read_namespaced_config_map, self.name, self.ns)
        if cm is None:
            self._rv = None
            return state
        self._rv = cm.metadata.resource_version
        state.update(json.loads((cm.data or {}).get(STATE_KEY) or "{}"))
        return state

    def write(self, state: dict) -> None:
        """Save ``state`` if nobody changed it since we read it.

        :raises DeployError: another deployer wrote it in between (HTTP 409).
        """
        state["history"] = state["history"][-HISTORY_LIMIT:]
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=self.name, namespace=self.ns, resource_version=self._rv,
                labels={LABEL_NAME: self.ws.settings.serving_kubernetes.service,
                        LABEL_PACK: self.ws.name, LABEL_COMPONENT: "deploy-state",
                        LABEL_MANAGED_BY: "driftline"}),
            data={STATE_KEY: json.dumps(state, indent=1, default=str)})
        try:
            if self._rv is None:
                cm = self.core.create_namespaced_config_map(self.ns, body)
            else:
                cm = self.core.replace_namespaced_config_map(self.name, self.ns, body)
        except ApiException as exc:
            if exc.status == 409:
                raise DeployError(f"ConfigMap {self.ns}/{self.name} was changed by someone "
                                  "else meanwhile (another deployer?); nothing was "
                                  "overwritten") from exc
            raise
        self._rv = cm.metadata.resource_version

    @contextlib.contextmanager
    def locked(self, action: str, version: str | None = None) -> Iterator[dict]:
        """Hold the deploy lock recorded in the ConfigMap; yield the state.

        :raises DeployError: another deployer holds an unexpired lock.
        """
        state = self.read()
        lock = state.get("lock")
        if lock and lock.get("expires", 0) > time.time():
            raise DeployError(f"another {lock.get('action')} ({lock.get('version')}) by "
                              f"{lock.get('holder')} is in progress since {lock.get('since')}; "
                              f"try again later")
        if lock:
            log.warning("taking over an expired lock of %s (%s since %s)", lock.get("holder"),
                        lock.get("action"), lock.get("since"))
        state["lock"] = {"holder": self.holder, "action": action, "version": version,
                         "since": utc_now(),
                         "expires": time.time() + self.lock_ttl_s + LOCK_GRACE_S}
        self.write(state)
        try:
            yield state
        finally:
            state["lock"] = None
            try:
                self.write(state)
            except Exception as exc:  # it expires on its own
                log.error("could not release the deploy lock in %s/%s: %r", self.ns,
                          self.name, exc)
