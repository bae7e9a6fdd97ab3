"""The API calls of one pack's blue-green serving: apply, scale, wait, reach the pods.

:class:`PackCluster` knows the pack's object names and the namespace; it decides nothing
(that is :mod:`driftline.serving.deploy`). The pods are reached through the apiserver's
service proxy, marked as verification traffic
(:data:`~driftline.serving.verify.VERIFY_HEADER`) so the servers do not log it as served.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

from driftline.serving.kubernetes.diagnosis import diagnosis, pod_failure
from driftline.serving.kubernetes.manifests import (
    LABEL_SLOT,
    LABEL_VERSION,
    PORT_NAME,
    deployment_name,
    label_selector,
    live_service,
    live_service_name,
    selector,
    switch_patch,
)
from driftline.serving.verify import VERIFY_HEADER, DeployError
from driftline.settings import KubernetesServingSettings
from driftline.workspace import Workspace

log = logging.getLogger(__name__)

PROXY_TIMEOUT_S = 30.0
POLL_S = 0.5


def or_none(read: Callable, *args):
    """``read(*args)``, or None when the object does not exist (404)."""
    try:
        return read(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def load_api_client(cfg: KubernetesServingSettings) -> client.ApiClient:
    """An API client from the pod's service account (``in_cluster``) or a kubeconfig."""
    from kubernetes import config

    if cfg.in_cluster:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(config_file=cfg.config_file or None,
                                         context=cfg.cluster_context or None)


def rolled_out(dep: client.V1Deployment | None) -> bool:
    """The Deployment's current spec is rolled out to all of its (one or more) pods, and all
    of them are ready."""
    if dep is None or not dep.spec.replicas:
        return False
    st, want = dep.status, dep.spec.replicas
    return ((st.observed_generation or 0) >= (dep.metadata.generation or 0)
            and (st.updated_replicas or 0) == want and (st.ready_replicas or 0) == want
            and (st.available_replicas or 0) == want and (st.replicas or 0) == want)


class PackCluster:
    """One pack's serving objects in ``[serving_kubernetes] namespace``.

    :param ws: the pack's workspace.
    :param api_client: the Kubernetes API client.
    """

    def __init__(self, ws: Workspace, api_client: client.ApiClient):
        self.ws = ws
        self.ns = ws.settings.serving_kubernetes.namespace
        self.service = live_service_name(ws)
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    # -- reading -----------------------------------------------------------------------
    def read_deployment(self, slot: str) -> client.V1Deployment | None:
        return or_none(self.apps.read_namespaced_deployment, deployment_name(self.ws, slot),
                       self.ns)

    def live_selector(self) -> str | None:
        """The slot the live Service selects now (None: no live Service)."""
        svc = or_none(self.core.read_namespaced_service, self.service, self.ns)
        return (svc.spec.selector or {}).get(LABEL_SLOT) if svc else None

    def slot_pods(self, slot: str, version: str | None = None) -> list[client.V1Pod]:
        """``slot``'s pods (of ``version`` only, if given)."""
        labels = selector(self.ws, slot)
        if version:
            labels[LABEL_VERSION] = version
        return self.core.list_namespaced_pod(self.ns, label_selector=label_selector(labels)).items

    def endpoints_are(self, slot: str) -> bool:
        """The live Service's endpoints are exactly ready pods of ``slot`` (at least one)."""
        ep = or_none(self.core.read_namespaced_endpoints, self.service, self.ns)
        if ep is None:
            return False
        addresses = [a for s in ep.subsets or [] for a in (s.addresses or [])]
        not_ready = [a for s in ep.subsets or [] for a in (s.not_ready_addresses or [])]
        names = {p.metadata.name for p in self.slot_pods(slot)}
        refs = [a.target_ref.name if a.target_ref else None for a in addresses + not_ready]
        return bool(addresses) and all(r in names for r in refs)

    # -- applying ----------------------------------------------------------------------
    def apply_deployment(self, body: client.V1Deployment) -> client.V1Deployment:
        name = body.metadata.name
        current = or_none(self.apps.read_namespaced_deployment, name, self.ns)
        if current is None:
            log.info("creating Deployment %s/%s", self.ns, name)
            return self.apps.create_namespaced_deployment(self.ns, body)
        body.metadata.resource_version = current.metadata.resource_version
        log.info("replacing Deployment %s/%s (was %s, %s replicas)", self.ns, name,
                 (current.metadata.labels or {}).get(LABEL_VERSION), current.spec.replicas)
        return self.apps.replace_namespaced_deployment(name, self.ns, body)

    def apply_service(self, body: client.V1Service) -> None:
        """Create the Service, or patch its spec (a replace would drop its clusterIP)."""
        name = body.metadata.name
        try:
            self.core.create_namespaced_service(self.ns, body)
            log.info("created Service %s/%s", self.ns, name)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_namespaced_service(name, self.ns, body)

    def select(self, slot: str) -> None:
        """Point the live Service at ``slot`` (create it if there is none yet).

        :raises DeployError: the patch was refused.
        """
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

    def scale_down(self, slot: str) -> None:
        """Scale ``slot``'s Deployment to zero; a failure is logged, never raised (it must
        not hide the deploy's own error)."""
        name = deployment_name(self.ws, slot)
        try:
            self.apps.patch_namespaced_deployment(name, self.ns, {"spec": {"replicas": 0}})
            log.info("scaled Deployment %s/%s to 0 replicas", self.ns, name)
        except Exception as exc:  # also no connection
            log.error("could not scale %s/%s to 0: %r", self.ns, name, exc)

    # -- waiting for a rollout ---------------------------------------------------------
    def wait_rollout(self, slot: str, version: str, timeout: float) -> float:
        """Wait until ``slot``'s Deployment runs ``version`` on all replicas, all ready.

        :return: seconds waited.
        :raises DeployError: a pod failed, the rollout stalled, or ``timeout`` passed; with
            the pods' state, recent events and log lines.
        """
        name = deployment_name(self.ws, slot)
        started = time.monotonic()
        last_note = None
        while True:
            dep = self.read_deployment(slot)
            if dep is None:
                raise DeployError(f"Deployment {self.ns}/{name} disappeared during its rollout")
            if rolled_out(dep):
                waited = time.monotonic() - started
                log.info("Deployment %s/%s rolled out %s: %d/%d pods ready in %.1fs", self.ns,
                         name, version, dep.status.ready_replicas or 0, dep.spec.replicas,
                         waited)
                return waited
            pods = self.slot_pods(slot, version)
            why = _not_rolling_out(dep, pods, time.monotonic() - started, timeout)
            if why:
                raise DeployError(f"slot {slot}: {version} failed to start: {why}\n"
                                  f"{self.diagnosis(dep, pods)}")
            ready = sum(any(c.type == "Ready" and c.status == "True"
                            for c in p.status.conditions or []) for p in pods)
            if (ready, len(pods)) != last_note:
                log.info("waiting for %s/%s: %d of %d pods of %s ready, %d wanted (%.1fs)",
                         self.ns, name, ready, len(pods), version, dep.spec.replicas,
                         time.monotonic() - started)
                last_note = (ready, len(pods))
            time.sleep(POLL_S)

    def diagnosis(self, dep: client.V1Deployment, pods: list[client.V1Pod]) -> str:
        """:func:`~driftline.serving.kubernetes.diagnosis.diagnosis` of ``dep``'s slot."""
        try:
            owned = self.apps.list_namespaced_replica_set(self.ns, label_selector=label_selector(
                selector(self.ws, dep.metadata.labels.get(LABEL_SLOT)))).items
        except ApiException as exc:
            return (f"{diagnosis(self.core, self.ns, dep, [], pods)}\n"
                    f"(ReplicaSets unavailable: {exc.status} {exc.reason})")
        return diagnosis(self.core, self.ns, dep, [rs.metadata.name for rs in owned], pods)

    # -- talking to the pods through the apiserver's service proxy ---------------------
    def proxy(self, service: str, method: str, path: str, body: dict | None = None,
              timeout: float = PROXY_TIMEOUT_S) -> tuple[int, dict]:
        """``method`` ``path`` on ``service``'s ``http`` port via the apiserver's service
        proxy; the status code and the JSON body.

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

    def predictor(self, service: str) -> Callable[[list[dict]], dict]:
        """A ``predict`` callable for :mod:`~driftline.serving.verify` through ``service``."""

        def predict(rows: list[dict]) -> dict:
            status, body = self.proxy(service, "POST", "predict", {"rows": rows})
            if status != 200:
                raise DeployError(f"service {self.ns}/{service}: predict answered {status}: "
                                  f"{json.dumps(body)[:500]}")
            return body

        return predict

    def answers(self, service: str, path: str, version: str, slot: str) -> str | None:
        """None if ``service`` answers ``GET path`` with the pack's ``version`` from
        ``slot``; else what it answered."""
        try:
            status, body = self.proxy(service, "GET", path, timeout=5.0)
        except DeployError as exc:
            return str(exc)
        if (status == 200 and body.get("model_version") == version and body.get("slot") == slot
                and body.get("pack") == self.ws.name):
            return None
        return f"{status} {json.dumps(body)[:300]}"


def _not_rolling_out(dep: client.V1Deployment, pods: list[client.V1Pod], waited: float,
                     timeout: float) -> str | None:
    """Why waiting longer for ``dep``'s rollout is pointless, if it is."""
    why = pod_failure(pods)
    for cond in dep.status.conditions or []:
        if cond.type == "Progressing" and cond.status == "False":
            why = why or f"rollout stalled: {cond.reason}: {cond.message}"
    if why is None and waited > timeout:
        st = dep.status
        why = (f"not rolled out after {timeout:g}s: {st.ready_replicas or 0}/"
               f"{dep.spec.replicas} pods ready, {st.updated_replicas or 0} updated")
    return why
