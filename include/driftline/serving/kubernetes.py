"""Blue-green serving of one dataset pack on Kubernetes (``[serving] backend =
"kubernetes"``).

Objects, all in ``[serving_kubernetes] namespace``, named ``<service>-<pack>-<role>`` (the
pack's name with ``_`` as ``-``; every name ends in one role, so two packs' names never
collide) and labelled ``app.kubernetes.io/name=<service>`` and ``driftline.io/pack=<pack>``:

* Deployments ``<service>-<pack>-blue`` and ``-green``: ``replicas`` pods running
  ``python -m driftline.serving.app --pack <pack> --slot <slot> --version <v> --host 0.0.0.0
  --port <p>`` from ``image`` (``p``: ``[serving_kubernetes] blue_port``/``green_port``, both
  8080 by default), labelled ``driftline.io/slot`` and ``driftline.io/model-version``.
  Readiness is ``GET /ready``, liveness ``GET /health`` (with a startup probe for the model
  load); non-root, seccomp ``RuntimeDefault``, no privilege escalation, all capabilities
  dropped, read-only root filesystem. ``DRIFTLINE_HOME`` is ``home``: the ``home_pvc`` mounted
  read-only, except the pack's prediction log directory; ``DRIFTLINE_PACKS`` is
  ``packs_dir`` (the image ships the packs there); ``config_map``'s ``driftline.toml`` is
  ``DRIFTLINE_CONFIG``. The idle slot takes no traffic, so its Deployments use the
  ``Recreate`` strategy.
* Services ``<service>-<pack>-blue``/``-green`` (one per slot, for checks before a switch)
  and the live Service ``<service>-<pack>-live``, whose selector's ``driftline.io/slot`` is
  the only thing a switch changes (a strategic-merge patch of that one key). All expose port
  80 (``http``) and select by pack as well as slot.
* ConfigMap ``<service>-<pack>-state``: the live slot, each slot's version and the switch
  history, as JSON. Every write is a ``replace`` with the ``resourceVersion`` that was read,
  and a deploy or rollback holds a lock recorded in it, so two deployers of the pack cannot
  clobber each other (a lock left by a killed deployer expires after ``3 * start_timeout_s +
  post_switch_watch_s + 120`` seconds); other packs have their own.

A deploy verifies the artifact's sha256 before touching the cluster, applies the idle slot's
Deployment and Service, waits for the rollout, runs the smoke check and the shadow
comparison (:mod:`driftline.serving.verify`, on the pack's recent served rows from
``ws.serving_dir``) through the apiserver's service proxy, switches the live Service,
confirms that it answers with the new version, watches it for ``post_switch_watch_s`` and
switches back on its own if a check fails (an ``auto-rollback`` record). A failure before the
switch scales the candidate to zero and leaves the live Service as it was; the error names the
pods' state, recent events and the server's last log lines. Checks are sent with
:data:`~driftline.serving.verify.VERIFY_HEADER`, so the pods do not log them as served
traffic.

The client comes from ``in_cluster`` (the pod's service account) or ``config_file`` /
``cluster_context``. It needs, in ``namespace``: Deployments (get, create, update, patch),
Services (get, create, patch), ConfigMaps (get, create, update), ``services/proxy`` (get,
create), pods and ReplicaSets (list), events (list), ``pods/log`` (get).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from driftline.registry import ModelVersion
from driftline.serving.backend import utc_now
from driftline.serving.deploy import deploy, rollback
from driftline.serving.paths import SLOTS, check_slot, other_slot, predictions_dir
from driftline.serving.verify import (
    VERIFY_HEADER,
    DeployError,
)
from driftline.settings import KubernetesServingSettings
from driftline.workspace import Workspace

log = logging.getLogger(__name__)

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PACK = "driftline.io/pack"
LABEL_SLOT = "driftline.io/slot"
LABEL_VERSION = "driftline.io/model-version"
CONTAINER = "model-server"
PORT_NAME = "http"
SERVICE_PORT = 80
CONFIG_DIR = "/etc/driftline"
STATE_KEY = "state.json"
HISTORY_LIMIT = 200
"""Switch records kept in the state ConfigMap (a ConfigMap holds at most 1 MiB)."""
PROXY_TIMEOUT_S = 30.0
SWITCH_VERIFY_S = 30.0
"""How long the live Service may take to answer with the new version after a switch."""
POLL_S = 0.5
EVENTS_SHOWN = 12
LOG_LINES_SHOWN = 20
FATAL_WAITING = {"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


def _or_none(read: Callable, *args):
    """``read(*args)``, or None when the object does not exist (404)."""
    try:
        return read(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


# -- manifests ---------------------------------------------------------------------------------
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
"""A Service name (RFC 1035 label); the Deployments and the ConfigMap follow the same rule."""
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
ROLES = (*SLOTS, "live", "state")


def object_name(ws: Workspace, role: str) -> str:
    """``<service>-<pack>-<role>``, the pack's ``_`` written ``-``. A pack name has no ``-``
    and no role has one, so the names of two packs never coincide.

    :raises ValueError: ``role`` is unknown, or the name is not a valid Service name (more
        than 63 characters, or not lower-case letters, digits and ``-``).
    """
    if role not in ROLES:
        raise ValueError(f"unknown object role {role!r}; expected one of {ROLES}")
    service = ws.settings.serving_kubernetes.service
    name = f"{service}-{ws.name.replace('_', '-')}-{role}"
    if not DNS_LABEL.match(name):
        raise ValueError(f"[serving_kubernetes] service {service!r} with pack {ws.name!r} "
                         f"gives the object name {name!r}, which is not a valid Kubernetes "
                         "name (at most 63 lower-case letters, digits and '-', starting with "
                         "a letter, ending with a letter or digit); choose a shorter service")
    return name


def pack_label(ws: Workspace) -> str:
    """The ``driftline.io/pack`` label's value: the pack's name.

    :raises ValueError: the name is not a valid label value (it ends with ``_``).
    """
    if not LABEL_VALUE.match(ws.name):
        raise ValueError(f"pack {ws.name!r} is not a valid Kubernetes label value (it must "
                         "end with a letter or digit)")
    return ws.name


def deployment_name(ws: Workspace, slot: str) -> str:
    return object_name(ws, check_slot(slot))


def slot_service_name(ws: Workspace, slot: str) -> str:
    return object_name(ws, check_slot(slot))


def live_service_name(ws: Workspace) -> str:
    """The Service clients of the pack call; a switch changes its selector."""
    return object_name(ws, "live")


def state_name(ws: Workspace) -> str:
    """The ConfigMap with the pack's deploy state."""
    return object_name(ws, "state")


def slot_port(cfg: KubernetesServingSettings, slot: str) -> int:
    """The model server's TCP port inside ``slot``'s pods."""
    return cfg.blue_port if check_slot(slot) == "blue" else cfg.green_port


def selector(ws: Workspace, slot: str) -> dict[str, str]:
    """The labels that select the pack's ``slot`` pods (the Deployment's immutable selector)."""
    return {LABEL_NAME: ws.settings.serving_kubernetes.service, LABEL_PACK: pack_label(ws),
            LABEL_SLOT: check_slot(slot)}


def label_selector(labels: dict[str, str]) -> str:
    """``labels`` as a label selector (``k=v,k=v``)."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


def slot_labels(ws: Workspace, slot: str, version: str) -> dict[str, str]:
    return {**selector(ws, slot), LABEL_VERSION: version, LABEL_COMPONENT: "model-server",
            LABEL_MANAGED_BY: "driftline"}


def _http_probe(path: str, period: int, failures: int, timeout: int = 2) -> client.V1Probe:
    return client.V1Probe(http_get=client.V1HTTPGetAction(path=path, port=PORT_NAME),
                          period_seconds=period, timeout_seconds=timeout,
                          failure_threshold=failures)


def slot_deployment(ws: Workspace, slot: str, version: str) -> client.V1Deployment:
    """The Deployment that serves ``version`` of the pack in ``slot``."""
    cfg = ws.settings.serving_kubernetes
    port = slot_port(cfg, slot)
    env = [client.V1EnvVar(name="DRIFTLINE_HOME", value=cfg.home),
           client.V1EnvVar(name="DRIFTLINE_PACKS", value=cfg.packs_dir),
           client.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
           client.V1EnvVar(name="POD_NAME", value_from=client.V1EnvVarSource(
               field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")))]
    volumes = [client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())]
    mounts = [client.V1VolumeMount(name="tmp", mount_path="/tmp")]
    if cfg.home_pvc:
        # the pod's DRIFTLINE_HOME is cfg.home; the pack's log sits at the same place below it
        log_dir = predictions_dir(ws.serving_dir).relative_to(ws.home)
        volumes.append(client.V1Volume(
            name="driftline-home", persistent_volume_claim=(
                client.V1PersistentVolumeClaimVolumeSource(claim_name=cfg.home_pvc))))
        mounts += [  # the registry read-only; only the pack's prediction log is writable
            client.V1VolumeMount(name="driftline-home", mount_path=cfg.home, read_only=True),
            client.V1VolumeMount(name="driftline-home", mount_path=f"{cfg.home}/{log_dir}",
                                 sub_path=str(log_dir))]
    if cfg.config_map:
        volumes.append(client.V1Volume(name="driftline-config", config_map=(
            client.V1ConfigMapVolumeSource(name=cfg.config_map))))
        mounts.append(client.V1VolumeMount(name="driftline-config", mount_path=CONFIG_DIR,
                                           read_only=True))
        env.append(client.V1EnvVar(name="DRIFTLINE_CONFIG", value=f"{CONFIG_DIR}/driftline.toml"))
    start_periods = max(1, math.ceil(ws.serving.start_timeout_s / 2))
    container = client.V1Container(
        name=CONTAINER, image=cfg.image, image_pull_policy="IfNotPresent",
        command=["python", "-m", "driftline.serving.app"],
        # the server also listens on a unix socket; the pod's own /tmp holds it
        args=["--pack", ws.name, "--slot", slot, "--version", version,
              "--host", "0.0.0.0", "--port", str(port), "--uds", "/tmp/$(POD_NAME).sock"],
        ports=[client.V1ContainerPort(name=PORT_NAME, container_port=port, protocol="TCP")],
        env=env, volume_mounts=mounts,
        resources=client.V1ResourceRequirements(
            requests={"cpu": cfg.cpu_request, "memory": cfg.memory_request},
            limits={"memory": cfg.memory_limit}),
        startup_probe=_http_probe("/health", 2, start_periods),
        readiness_probe=_http_probe("/ready", 2, 2),
        liveness_probe=_http_probe("/health", 10, 3, timeout=3),
        security_context=client.V1SecurityContext(
            allow_privilege_escalation=False, run_as_non_root=True,
            read_only_root_filesystem=True, capabilities=client.V1Capabilities(drop=["ALL"])),
        termination_message_policy="FallbackToLogsOnError")
    labels = slot_labels(ws, slot, version)
    pod = client.V1PodSpec(
        containers=[container], volumes=volumes, automount_service_account_token=False,
        enable_service_links=False, termination_grace_period_seconds=20,
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=cfg.run_as_user, run_as_group=cfg.run_as_user,
            fs_group=cfg.run_as_user, fs_group_change_policy="OnRootMismatch",
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault")))
    return client.V1Deployment(
        api_version="apps/v1", kind="Deployment",
        metadata=client.V1ObjectMeta(name=deployment_name(ws, slot), namespace=cfg.namespace,
                                     labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=cfg.replicas, revision_history_limit=3,
            selector=client.V1LabelSelector(match_labels=selector(ws, slot)),
            strategy=client.V1DeploymentStrategy(type="Recreate"),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels),
                                              spec=pod)))


def _service(ws: Workspace, name: str, slot: str, role: str) -> client.V1Service:
    cfg = ws.settings.serving_kubernetes
    return client.V1Service(
        api_version="v1", kind="Service",
        metadata=client.V1ObjectMeta(
            name=name, namespace=cfg.namespace,
            labels={LABEL_NAME: cfg.service, LABEL_PACK: pack_label(ws),
                    LABEL_COMPONENT: role, LABEL_MANAGED_BY: "driftline"}),
        spec=client.V1ServiceSpec(
            type="ClusterIP", selector=selector(ws, slot),
            ports=[client.V1ServicePort(name=PORT_NAME, port=SERVICE_PORT,
                                        target_port=PORT_NAME, protocol="TCP")]))


def slot_service(ws: Workspace, slot: str) -> client.V1Service:
    """``<service>-<pack>-<slot>``: reaches ``slot``'s pods whether or not they are live."""
    return _service(ws, slot_service_name(ws, slot), slot, "slot")


def live_service(ws: Workspace, slot: str) -> client.V1Service:
    """``<service>-<pack>-live``, selecting ``slot``'s pods: what clients call."""
    return _service(ws, live_service_name(ws), slot, "live")


def switch_patch(slot: str) -> dict:
    """The strategic-merge patch a switch applies to the live Service: one selector key."""
    return {"spec": {"selector": {LABEL_SLOT: check_slot(slot)}}}


def load_api_client(cfg: KubernetesServingSettings) -> client.ApiClient:
    """An API client from the pod's service account (``in_cluster``) or a kubeconfig."""
    from kubernetes import config

    if cfg.in_cluster:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(config_file=cfg.config_file or None,
                                         context=cfg.cluster_context or None)


# -- the backend -------------------------------------------------------------------------------
class KubernetesBlueGreen:
    """Deploy, switch and roll back one pack's model versions between two Deployments.

    :param ws: the pack's workspace (its ``serving`` settings, ``[serving_kubernetes]``).
    :param api_client: the Kubernetes API client; default from :func:`load_api_client`.
    :raises ValueError: the pack's object names would not be valid Kubernetes names.
    """

    def __init__(self, ws: Workspace, api_client: client.ApiClient | None = None):
        self.ws = ws
        self.pack = ws.pack
        self.serving = ws.serving
        self.serving_dir = ws.serving_dir
        self.shadow_batch_rows: int | None = min(1000, self.serving.max_batch_rows)
        self.cfg = ws.settings.serving_kubernetes
        self.ns = self.cfg.namespace
        self.service = live_service_name(ws)
        self.state_name = state_name(ws)
        pack_label(ws)  # fail now, not halfway through a deploy
        self.api_client = api_client or load_api_client(self.cfg)
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._rv: str | None = None  # resourceVersion of the state ConfigMap we last saw

    # -- state -------------------------------------------------------------------------
    def _read_state(self) -> dict:
        state: dict[str, Any] = {"live": None, "slots": {}, "history": [], "lock": None}
        cm = _or_none(self.core.read_namespaced_config_map, self.state_name, self.ns)
        if cm is None:
            self._rv = None
            return state
        self._rv = cm.metadata.resource_version
        state.update(json.loads((cm.data or {}).get(STATE_KEY) or "{}"))
        return state

    def _write_state(self, state: dict) -> None:
        """Save ``state`` if nobody changed it since we read it.

        :raises DeployError: another deployer wrote it in between (HTTP 409).
        """
        state["history"] = state["history"][-HISTORY_LIMIT:]
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=self.state_name, namespace=self.ns, resource_version=self._rv,
                labels={LABEL_NAME: self.cfg.service, LABEL_PACK: self.ws.name,
                        LABEL_COMPONENT: "deploy-state", LABEL_MANAGED_BY: "driftline"}),
            data={STATE_KEY: json.dumps(state, indent=1, default=str)})
        try:
            if self._rv is None:
                cm = self.core.create_namespaced_config_map(self.ns, body)
            else:
                cm = self.core.replace_namespaced_config_map(self.state_name, self.ns, body)
        except ApiException as exc:
            if exc.status == 409:
                raise DeployError(f"ConfigMap {self.ns}/{self.state_name} was changed by "
                                  "someone else meanwhile (another deployer?); nothing was "
                                  "overwritten") from exc
            raise
        self._rv = cm.metadata.resource_version

    @contextlib.contextmanager
    def _locked(self, action: str, version: str | None = None) -> Iterator[dict]:
        """Hold the deploy lock recorded in the state ConfigMap; yield the state."""
        state = self._read_state()
        lock = state.get("lock")
        if lock and lock.get("expires", 0) > time.time():
            raise DeployError(f"another {lock.get('action')} ({lock.get('version')}) by "
                              f"{lock.get('holder')} is in progress since {lock.get('since')}; "
                              f"try again later")
        if lock:
            log.warning("taking over an expired lock of %s (%s since %s)", lock.get("holder"),
                        lock.get("action"), lock.get("since"))
        ttl = 3 * self.serving.start_timeout_s + self.serving.post_switch_watch_s
        state["lock"] = {"holder": self.holder, "action": action, "version": version,
                         "since": utc_now(), "expires": time.time() + ttl + 120}
        self._write_state(state)
        try:
            yield state
        finally:
            state["lock"] = None
            try:
                self._write_state(state)
            except Exception as exc:  # it expires on its own
                log.error("could not release the deploy lock in %s/%s: %r", self.ns,
                          self.state_name, exc)

    # -- reading the cluster ---------------------------------------------------------------
    def _read_deployment(self, slot: str) -> client.V1Deployment | None:
        return _or_none(self.apps.read_namespaced_deployment, deployment_name(self.ws, slot),
                        self.ns)

    def _live_selector(self) -> str | None:
        """The slot the live Service selects now (None: no live Service)."""
        svc = _or_none(self.core.read_namespaced_service, self.service, self.ns)
        return (svc.spec.selector or {}).get(LABEL_SLOT) if svc else None

    @staticmethod
    def _rolled_out(dep: client.V1Deployment | None) -> bool:
        """The Deployment's current spec is rolled out to all of its (one or more) pods, and
        all of them are ready."""
        if dep is None or not dep.spec.replicas:
            return False
        st, want = dep.status, dep.spec.replicas
        return ((st.observed_generation or 0) >= (dep.metadata.generation or 0)
                and (st.updated_replicas or 0) == want and (st.ready_replicas or 0) == want
                and (st.available_replicas or 0) == want and (st.replicas or 0) == want)

    def status(self) -> dict:
        """What is live, what each slot's Deployment runs, the live Service, the history."""
        state = self._read_state()
        slots = {}
        for slot in SLOTS:
            dep = self._read_deployment(slot)
            entry = state["slots"].get(slot) or {}
            st = dep.status if dep else None
            slots[slot] = {
                "version": entry.get("version"),
                "deployment": deployment_name(self.ws, slot),
                "exists": dep is not None,
                "deployed_version": (dep.metadata.labels or {}).get(LABEL_VERSION) if dep else None,
                "replicas": dep.spec.replicas if dep else 0,
                "ready_replicas": (st.ready_replicas or 0) if st else 0,
                "ready": self._rolled_out(dep),
                "port": slot_port(self.cfg, slot),
                "deployed_at": entry.get("deployed_at")}
        return {"pack": self.ws.name, "live": state["live"], "slots": slots,
                "service": {"name": self.service, "namespace": self.ns,
                            "selects": self._live_selector()},
                "history": state["history"]}

    # -- applying ----------------------------------------------------------------------
    def _apply_deployment(self, body: client.V1Deployment) -> client.V1Deployment:
        name = body.metadata.name
        current = _or_none(self.apps.read_namespaced_deployment, name, self.ns)
        if current is None:
            log.info("creating Deployment %s/%s", self.ns, name)
            return self.apps.create_namespaced_deployment(self.ns, body)
        body.metadata.resource_version = current.metadata.resource_version
        log.info("replacing Deployment %s/%s (was %s, %s replicas)", self.ns, name,
                 (current.metadata.labels or {}).get(LABEL_VERSION), current.spec.replicas)
        return self.apps.replace_namespaced_deployment(name, self.ns, body)

    def _apply_service(self, body: client.V1Service) -> None:
        """Create the Service, or patch its spec (a replace would drop its clusterIP)."""
        name = body.metadata.name
        try:
            self.core.create_namespaced_service(self.ns, body)
            log.info("created Service %s/%s", self.ns, name)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_namespaced_service(name, self.ns, body)

    def _scale_down(self, slot: str) -> None:
        name = deployment_name(self.ws, slot)
        try:
            self.apps.patch_namespaced_deployment(name, self.ns, {"spec": {"replicas": 0}})
            log.info("scaled Deployment %s/%s to 0 replicas", self.ns, name)
        except Exception as exc:  # also no connection: never hide the deploy's own error
            log.error("could not scale %s/%s to 0: %r", self.ns, name, exc)

    # -- waiting for a rollout ---------------------------------------------------------
    def _slot_pods(self, slot: str, version: str) -> list[client.V1Pod]:
        labels = {**selector(self.ws, slot), LABEL_VERSION: version}
        return self.core.list_namespaced_pod(self.ns, label_selector=label_selector(labels)).items

    @staticmethod
    def _pod_failure(pods: list[client.V1Pod]) -> str | None:
        """Why one of ``pods`` cannot become ready by waiting longer, if so."""
        for pod in pods:
            name = pod.metadata.name
            if pod.status.phase == "Failed":
                return f"pod {name} failed: {pod.status.reason} {pod.status.message or ''}"
            for cs in (pod.status.init_container_statuses or []) + (
                    pod.status.container_statuses or []):
                waiting = cs.state.waiting if cs.state else None
                if waiting and waiting.reason in FATAL_WAITING:
                    last = cs.last_state.terminated if cs.last_state else None
                    exit_info = f", last exit code {last.exit_code}" if last else ""
                    return (f"pod {name} container {cs.name}: {waiting.reason} "
                            f"(restarted {cs.restart_count} times{exit_info}): "
                            f"{waiting.message or ''}")
                done = cs.state.terminated if cs.state else None
                if done and done.exit_code:
                    return (f"pod {name} container {cs.name} exited with code "
                            f"{done.exit_code} ({done.reason}): {(done.message or '')[-500:]}")
        return None

    def _wait_rollout(self, slot: str, version: str) -> float:
        """Wait until ``slot``'s Deployment runs ``version`` on all replicas, all ready.

        :return: seconds waited.
        :raises DeployError: a pod failed, the rollout stalled, or ``start_timeout_s`` passed;
            with the pods' state, recent events and log lines.
        """
        name = deployment_name(self.ws, slot)
        timeout = self.serving.start_timeout_s
        started = time.monotonic()
        last_note = None
        while True:
            dep = self._read_deployment(slot)
            if dep is None:
                raise DeployError(f"Deployment {self.ns}/{name} disappeared during its rollout")
            if self._rolled_out(dep):
                waited = time.monotonic() - started
                log.info("Deployment %s/%s rolled out %s: %d/%d pods ready in %.1fs", self.ns,
                         name, version, dep.status.ready_replicas or 0, dep.spec.replicas,
                         waited)
                return waited
            pods = self._slot_pods(slot, version)
            why = self._pod_failure(pods)
            for cond in dep.status.conditions or []:
                if cond.type == "Progressing" and cond.status == "False":
                    why = why or f"rollout stalled: {cond.reason}: {cond.message}"
            if why is None and time.monotonic() - started > timeout:
                st = dep.status
                why = (f"not rolled out after {timeout:g}s: {st.ready_replicas or 0}/"
                       f"{dep.spec.replicas} pods ready, {st.updated_replicas or 0} updated")
            if why:
                raise DeployError(f"slot {slot}: {version} failed to start: {why}\n"
                                  f"{self._diagnosis(dep, pods)}")
            ready = sum(any(c.type == "Ready" and c.status == "True"
                            for c in p.status.conditions or []) for p in pods)
            note = (ready, len(pods))
            if note != last_note:
                log.info("waiting for %s/%s: %d of %d pods of %s ready, %d wanted (%.1fs)",
                         self.ns, name, ready, len(pods), version, dep.spec.replicas,
                         time.monotonic() - started)
                last_note = note
            time.sleep(POLL_S)

    def _diagnosis(self, dep: client.V1Deployment, pods: list[client.V1Pod]) -> str:
        """The pods' phases, recent events of the Deployment, its ReplicaSets and pods, and
        the last log lines of a failed container (best effort)."""
        lines = []
        for pod in pods:
            states = []
            for cs in pod.status.container_statuses or []:
                state = cs.state.to_dict() if cs.state else {}
                kind = next((k for k, v in state.items() if v), "unknown")
                states.append(f"{cs.name}={kind} restarts={cs.restart_count}")
            states += [f"{c.type}=False: {c.message}" for c in pod.status.conditions or []
                       if c.status == "False" and c.message]
            lines.append(f"pod {pod.metadata.name}: {pod.status.phase}; {'; '.join(states)}")
        objects = [dep.metadata.name] + [p.metadata.name for p in pods]
        try:
            owned = self.apps.list_namespaced_replica_set(self.ns, label_selector=label_selector(
                selector(self.ws, dep.metadata.labels.get(LABEL_SLOT))))
            objects += [rs.metadata.name for rs in owned.items]
            events = []
            for name in objects[:10]:
                events += self.core.list_namespaced_event(
                    self.ns, field_selector=f"involvedObject.name={name}").items
        except ApiException as exc:
            events = []
            lines.append(f"(events unavailable: {exc.status} {exc.reason})")

        def when(ev) -> dt.datetime:
            t = ev.last_timestamp or ev.event_time or ev.first_timestamp
            return t or dt.datetime.min.replace(tzinfo=dt.UTC)

        events.sort(key=when)
        if events:
            lines.append("recent events:")
        lines += [f"  {when(ev):%H:%M:%S} {ev.type} {ev.reason} {ev.involved_object.kind}/"
                  f"{ev.involved_object.name}: {ev.message}" for ev in events[-EVENTS_SHOWN:]]
        failed = next((p for p in pods if any(
            cs.restart_count or (cs.state and cs.state.terminated)
            for cs in p.status.container_statuses or [])), None)
        if failed is not None:
            try:
                text = self.core.read_namespaced_pod_log(
                    failed.metadata.name, self.ns, container=CONTAINER,
                    tail_lines=LOG_LINES_SHOWN, _preload_content=False).data.decode(
                        errors="replace")
                lines.append(f"last log lines of {failed.metadata.name}:")
                lines += [f"  {line}" for line in text.splitlines()]
            except ApiException as exc:
                lines.append(f"(log of {failed.metadata.name} unavailable: {exc.reason})")
        return "\n".join(lines)

    # -- talking to the pods through the apiserver's service proxy ---------------------
    def _proxy(self, service: str, method: str, path: str, body: dict | None = None,
               timeout: float = PROXY_TIMEOUT_S) -> tuple[int, dict]:
        """``method`` ``path`` on ``service``'s ``http`` port via the apiserver's service
        proxy; the status code and the JSON body. Marked as verification traffic
        (:data:`~driftline.serving.verify.VERIFY_HEADER`): the servers do not log it.

        ``CoreV1Api.connect_post_namespaced_service_proxy_with_path`` takes no request body,
        so this calls the same endpoint through :meth:`ApiClient.call_api`.
        """
        resource = f"/api/v1/namespaces/{self.ns}/services/{service}:{PORT_NAME}/proxy/{path}"
        try:
            response = self.api_client.call_api(
                resource, method, body=body, auth_settings=["BearerToken"],
                header_params={"Content-Type": "application/json",
                               "Accept": "application/json", VERIFY_HEADER: "1"},
                _preload_content=False, _return_http_data_only=True,
                _request_timeout=timeout)
            status, raw = response.status, response.data
        except ApiException as exc:
            status, raw = exc.status, exc.body or b""
        except Exception as exc:  # connection errors (urllib3), timeouts
            raise DeployError(f"service {self.ns}/{service}: {method} /{path} failed: "
                              f"{exc!r}") from exc
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, {"detail": text[:500]}

    def _predictor(self, service: str) -> Callable[[list[dict]], dict]:
        """A ``predict`` callable for :mod:`~driftline.serving.verify` through ``service``."""

        def predict(rows: list[dict]) -> dict:
            status, body = self._proxy(service, "POST", "predict", {"rows": rows})
            if status != 200:
                raise DeployError(f"service {self.ns}/{service}: predict answered {status}: "
                                  f"{json.dumps(body)[:500]}")
            return body

        return predict

    def _answers(self, service: str, path: str, version: str, slot: str) -> str | None:
        """None if ``service`` answers ``GET path`` with the pack's ``version`` from
        ``slot``; else what it answered."""
        try:
            status, body = self._proxy(service, "GET", path, timeout=5.0)
        except DeployError as exc:
            return str(exc)
        if (status == 200 and body.get("model_version") == version and body.get("slot") == slot
                and body.get("pack") == self.ws.name):
            return None
        return f"{status} {json.dumps(body)[:300]}"

    # -- switching ---------------------------------------------------------------------
    def _endpoints_slot(self, slot: str) -> bool:
        """The live Service's endpoints are exactly ready pods of ``slot`` (at least one)."""
        ep = _or_none(self.core.read_namespaced_endpoints, self.service, self.ns)
        if ep is None:
            return False
        addresses = [a for s in ep.subsets or [] for a in (s.addresses or [])]
        not_ready = [a for s in ep.subsets or [] for a in (s.not_ready_addresses or [])]
        names = {p.metadata.name for p in self.core.list_namespaced_pod(
            self.ns, label_selector=label_selector(selector(self.ws, slot))).items}
        refs = [a.target_ref.name if a.target_ref else None for a in addresses + not_ready]
        return bool(addresses) and all(r in names for r in refs)

    def _switch(self, slot: str, version: str) -> tuple[float, float]:
        """Point the live Service at ``slot``; confirm through it that ``version`` answers.

        :return: the switch's wall-clock time and how long confirming it took.
        :raises DeployError: the Service does not answer with ``version`` in time.
        """
        switched_at = time.time()
        try:
            self.core.patch_namespaced_service(self.service, self.ns, switch_patch(slot))
            log.info("Service %s/%s now selects %s=%s", self.ns, self.service, LABEL_SLOT,
                     slot)
        except ApiException as exc:
            if exc.status != 404:
                raise DeployError(f"switching Service {self.ns}/{self.service} to {slot} "
                                  f"failed: {exc.status} {exc.reason}") from exc
            self.core.create_namespaced_service(self.ns, live_service(self.ws, slot))
            log.info("created the live Service %s/%s selecting %s=%s", self.ns,
                     self.service, LABEL_SLOT, slot)
        started = time.monotonic()
        last: str | None = "no answer"
        while time.monotonic() - started < SWITCH_VERIFY_S:
            if self._endpoints_slot(slot):
                last = self._answers(self.service, "version", version, slot)
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

    # -- the slot platform (driftline.serving.deploy) -----------------------------------
    live_route = "the live Service"
    verified_field = "service_verified_s"
    watch_poll_s = POLL_S

    def locked(self, action: str, version: str | None):
        return self._locked(action, version)

    def write_state(self, state: dict) -> None:
        self._write_state(state)

    def refuse_unservable(self, model_version: ModelVersion) -> None:
        if model_version.name != self.ws.model_name:
            raise DeployError(f"refusing to deploy {model_version.name} "
                              f"{model_version.version}: pack {self.ws.name} serves model "
                              f"{self.ws.model_name}")

    def serves(self, state: dict, slot: str, version: str | None) -> bool:
        return ((state["slots"].get(slot) or {}).get("version") == version
                and self._rolled_out(self._read_deployment(slot)))

    def ensure_routed(self, slot: str, version: str) -> None:
        selects = self._live_selector()
        if selects != slot:
            log.warning("Service %s/%s selects %s, but %s is live; switching it back",
                        self.ns, self.service, selects, slot)
            self._switch(slot, version)

    def start(self, state: dict, slot: str, version: str) -> dict:
        state["slots"][slot] = {"version": version, "deployed_at": utc_now()}
        self._write_state(state)
        self._apply_deployment(slot_deployment(self.ws, slot, version))
        self._apply_service(slot_service(self.ws, slot))
        return {"rollout_s": round(self._wait_rollout(slot, version), 2)}

    def predictor(self, slot: str | None) -> Callable[[list[dict]], dict]:
        return self._predictor(slot_service_name(self.ws, slot) if slot else self.service)

    def switch(self, slot: str, version: str) -> tuple[float, float]:
        return self._switch(slot, version)

    def switch_back(self, slot: str, version: str | None) -> tuple[float, float]:
        if version is None:
            raise DeployError(f"slot {slot} has no recorded version to switch back to")
        return self._switch(slot, version)

    def ready_answer(self, slot: str | None, version: str, expected_slot: str) -> str | None:
        service = slot_service_name(self.ws, slot) if slot else self.service
        return self._answers(service, "ready", version, expected_slot)

    def retire(self, state: dict, slot: str, version: str) -> None:
        self._scale_down(slot)
        state["slots"][slot] = {"version": None, "failed_version": version,
                                "failed_at": utc_now()}

    def standby_version(self, state: dict, slot: str) -> str:
        live = other_slot(slot)
        version = (state["slots"].get(slot) or {}).get("version")
        dep = self._read_deployment(slot)
        deployed = (dep.metadata.labels or {}).get(LABEL_VERSION) if dep else None
        if not version or deployed != version or not self._rolled_out(dep):
            raise DeployError(
                f"cannot roll back from {live}: slot {slot} has no ready Deployment of "
                f"its recorded version {version} (Deployment "
                f"{deployment_name(self.ws, slot)}: version {deployed}, "
                f"{'ready' if self._rolled_out(dep) else 'not rolled out'}, "
                f"{dep.spec.replicas if dep else 0} replicas)")
        wrong = self.ready_answer(slot, version, slot)
        if wrong is not None:
            raise DeployError(f"cannot roll back: slot {slot} answers {wrong}, expected "
                              f"{version} ready")
        return version

    def abandon(self, state: dict, target: str, live: str | None, version: str,
                 switched: bool, error: BaseException) -> None:
        """After a failed deploy: the live Service back on ``live``, the candidate at 0."""
        log.error("deploying %s to slot %s failed (%s); scaling it down, %s", version, target,
                  str(error).splitlines()[0] if str(error) else repr(error),
                  f"slot {live} stays live" if live else "nothing is live")
        if switched and live:
            try:
                self.core.patch_namespaced_service(self.service, self.ns, switch_patch(live))
            except Exception as exc:  # also no connection: never hide the deploy's own error
                log.error("could not point Service %s back at %s: %r", self.service, live,
                          exc)
        self._scale_down(target)
        state["slots"][target] = {"version": None, "failed_version": version,
                                  "failed_at": utc_now()}
        try:
            self._write_state(state)
        except Exception as exc:
            log.error("could not record the failed deploy: %r", exc)

    # -- public operations -------------------------------------------------------------
    def deploy(self, model_version: ModelVersion, reason: str) -> dict:
        """Serve ``model_version`` (:func:`driftline.serving.deploy.deploy`): roll it out in
        the idle slot, check it through the slot Services, switch the live Service."""
        return deploy(self, self.pack, self.serving, model_version, reason)

    def rollback(self, reason: str) -> dict:
        """Switch back to the standby slot (:func:`driftline.serving.deploy.rollback`)."""
        return rollback(self, reason)
