"""The Kubernetes serving backend against the real kube-apiserver testbed.

Nothing is simulated on the Kubernetes side: the real kube-controller-manager turns the
Deployments into ReplicaSets and pods and keeps the Services' Endpoints; the node agent runs
each pod's ``python -m driftline.serving.app`` as a local process and marks it Ready by its
``/ready`` readiness probe; every check and switch goes through the apiserver's service proxy.
The pods read the registry of this test's DRIFTLINE_HOME (the testbed has no volumes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from driftline.registry import ModelVersion, Registry, sha256_file
from driftline.serving.kubernetes import LABEL_SLOT, LABEL_VERSION, KubernetesBlueGreen
from driftline.serving.probe import free_ports
from driftline.serving.verify import DeployError
from driftline.settings import KubernetesServingSettings, ServingSettings, Settings
from kubernetes import client
from kubernetes.client.rest import ApiException
from testbed.k8s.fixtures import kube_testbed  # noqa: F401  (the shared session testbed)

pytestmark = pytest.mark.k8s
SERVICE = "dl"


@dataclasses.dataclass
class Cluster:
    settings: Settings
    api_client: client.ApiClient
    core: client.CoreV1Api
    apps: client.AppsV1Api

    @property
    def ns(self) -> str:
        return self.settings.serving_kubernetes.namespace

    def backend(self, **serving_kubernetes) -> KubernetesBlueGreen:
        settings = self.settings
        if serving_kubernetes:
            settings = dataclasses.replace(settings, serving_kubernetes=dataclasses.replace(
                settings.serving_kubernetes, **serving_kubernetes))
        return KubernetesBlueGreen(settings, api_client=self.api_client)

    def version(self, version: str) -> ModelVersion:
        return Registry(self.settings.registry_dir, self.settings.model_name).get(version)

    def selector(self) -> dict:
        return self.core.read_namespaced_service(SERVICE, self.ns).spec.selector

    def state(self) -> dict:
        cm = self.core.read_namespaced_config_map(f"{SERVICE}-state", self.ns)
        return json.loads(cm.data["state.json"])

    def deployment(self, slot: str) -> client.V1Deployment:
        return self.apps.read_namespaced_deployment(f"{SERVICE}-{slot}", self.ns)

    def live_version(self) -> dict:
        """``GET /version`` through the live Service, as a client in the cluster sees it."""
        response = self.core.connect_get_namespaced_service_proxy_with_path(
            f"{SERVICE}:http", self.ns, "version", _preload_content=False)
        return json.loads(response.data)

    def serve(self, rows: list[dict]) -> list[dict]:
        """``POST /predict`` through the live Service as a client (logged as traffic)."""
        response = self.api_client.call_api(
            f"/api/v1/namespaces/{self.ns}/services/{SERVICE}:http/proxy/predict", "POST",
            body={"rows": rows}, auth_settings=["BearerToken"],
            header_params={"Content-Type": "application/json"}, _preload_content=False,
            _return_http_data_only=True)
        assert len(json.loads(response.data)["predictions"]) == len(rows)
        return rows

    def snapshot(self) -> dict:
        """Every object in the namespace with its resourceVersion."""
        lists = {"deployment": self.apps.list_namespaced_deployment,
                 "replicaset": self.apps.list_namespaced_replica_set,
                 "service": self.core.list_namespaced_service,
                 "configmap": self.core.list_namespaced_config_map,
                 "pod": self.core.list_namespaced_pod}
        return {(kind, o.metadata.name): o.metadata.resource_version
                for kind, fn in lists.items() for o in fn(self.ns).items}


@pytest.fixture(scope="module")
def cluster(kube_testbed, model_home: Path) -> Iterator[Cluster]:  # noqa: F811
    """A namespace, and a DRIFTLINE_HOME with v0001 and v0002 that the pods serve from."""
    home = Path(tempfile.mkdtemp(prefix="dl-k8s-serving-", dir="/tmp"))
    shutil.copytree(model_home / "registry", home / "registry")
    api_client = kube_testbed.api_client()
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    ns = f"serving-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    blue, green = free_ports(2)
    settings = Settings(
        home=home,
        serving=ServingSettings(blue_port=blue, green_port=green, start_timeout_s=60.0,
                                post_switch_watch_s=1.0, shadow_max_disagreement=1.0),
        serving_kubernetes=KubernetesServingSettings(
            image="driftline-serve:test", namespace=ns, service=SERVICE, replicas=1,
            cpu_request="100m", memory_request="256Mi", memory_limit="1Gi", home=str(home),
            config_file=str(kube_testbed.kubeconfig)))
    yield Cluster(settings, api_client, core, apps)
    for slot in ("blue", "green"):  # the GC deletes ReplicaSets and pods: processes stop
        with contextlib.suppress(ApiException):
            apps.delete_namespaced_deployment(f"{SERVICE}-{slot}", ns,
                                              propagation_policy="Foreground")
    deadline = time.monotonic() + 30
    while core.list_namespaced_pod(ns).items and time.monotonic() < deadline:
        time.sleep(0.5)
    shutil.rmtree(home, ignore_errors=True)


def test_deploy_switch_redeploy_and_rollback(cluster):
    backend = cluster.backend()
    t0 = time.monotonic()
    first = backend.deploy(cluster.version("v0001"), "first model")
    first_s = time.monotonic() - t0
    assert first["changed"] and first["live"] == "blue"
    assert cluster.selector() == {"app.kubernetes.io/name": SERVICE, LABEL_SLOT: "blue"}
    assert cluster.live_version()["model_version"] == "v0001"
    assert first["slots"]["blue"]["ready"] and first["slots"]["blue"]["version"] == "v0001"
    assert first["switch"]["smoke_rows"] > 0
    assert first["switch"]["shadow"] is None  # nothing was live to compare with
    client_rows = cluster.version("v0001").metadata["smoke"]["rows"]
    served = cluster.serve(client_rows)  # a client's request: logged as served traffic

    before = cluster.snapshot()
    again = backend.deploy(cluster.version("v0001"), "same again")
    assert again["changed"] is False and again["switch"] is None
    after = cluster.snapshot()
    state_key = ("configmap", f"{SERVICE}-state")  # only the deploy lock came and went
    assert {k: v for k, v in after.items() if k != state_key} == {
        k: v for k, v in before.items() if k != state_key}

    t0 = time.monotonic()
    second = backend.deploy(cluster.version("v0002"), "retrained on drift")
    second_s = time.monotonic() - t0
    assert second["changed"] and second["live"] == "green"
    assert cluster.selector()[LABEL_SLOT] == "green"
    assert cluster.live_version()["model_version"] == "v0002"
    switch = second["switch"]
    assert (switch["from_slot"], switch["to_slot"]) == ("blue", "green")
    assert (switch["version"], switch["previous_version"]) == ("v0002", "v0001")
    # replayed: what clients sent; the deployer's own checks are not logged as traffic
    assert switch["shadow"]["rows"] == len(served)
    blue = cluster.deployment("blue")  # kept, ready, for a rollback
    assert blue.metadata.labels[LABEL_VERSION] == "v0001"
    assert blue.spec.replicas == 1 and blue.status.ready_replicas == 1

    rolled = cluster.backend().rollback("v0002 answers too slowly")  # a new deployer
    assert rolled["changed"] and rolled["live"] == "blue"
    assert cluster.selector()[LABEL_SLOT] == "blue"
    assert cluster.live_version()["model_version"] == "v0001"
    state = cluster.state()
    assert state["live"] == "blue" and state["lock"] is None
    assert [(h["action"], h["version"]) for h in state["history"]] == [
        ("deploy", "v0001"), ("deploy", "v0002"), ("rollback", "v0001")]
    last = state["history"][-1]
    assert last["reason"] == "v0002 answers too slowly"
    assert (last["from_slot"], last["to_slot"], last["previous_version"]) == (
        "green", "blue", "v0002")
    assert backend.status()["history"] == state["history"]
    print(f"\ndeploy v0001 (first) {first_s:.1f}s, deploy v0002 {second_s:.1f}s")


def test_checksum_mismatch_is_refused_before_anything_changes(cluster, tmp_path):
    good = cluster.version("v0002")
    shutil.copytree(good.path, tmp_path / "v0002")
    tampered = ModelVersion(good.name, good.version, tmp_path / "v0002", good.metadata)
    with open(tampered.model_path, "ab") as fh:
        fh.write(b"tampered")
    before = cluster.snapshot()
    with pytest.raises(DeployError, match=r"refusing to deploy v0002: .*sha256"):
        cluster.backend().deploy(tampered, "tampered")
    assert cluster.snapshot() == before


def _broken_version(cluster) -> ModelVersion:
    """v0009: garbage model bytes whose sha256 is recorded, so the deployer's checksum passes
    but the pods' server cannot load the model and exits."""
    registry = Registry(cluster.settings.registry_dir, cluster.settings.model_name)
    path = registry.versions_dir / "v0009"
    if not path.exists():
        shutil.copytree(registry.versions_dir / "v0002", path)
        model = registry.get("v0009").model_path
        model.write_bytes(b"this is not an xgboost model")
        meta = json.loads((path / "metadata.json").read_text())
        meta["artifact"]["sha256"] = sha256_file(model)
        (path / "metadata.json").write_text(json.dumps(meta))
    return registry.get("v0009")


def _live_blue(cluster) -> None:
    """Make sure something is live (this test may run alone)."""
    if cluster.backend().status()["live"] is None:
        cluster.backend().deploy(cluster.version("v0001"), "setup")


def test_candidate_that_crashes_is_scaled_down_and_live_stays(cluster):
    _live_blue(cluster)
    live = cluster.state()["live"]
    selector = cluster.selector()
    t0 = time.monotonic()
    with pytest.raises(DeployError) as err:
        cluster.backend().deploy(_broken_version(cluster), "broken model")
    took = time.monotonic() - t0
    message = str(err.value)
    assert "v0009 failed to start" in message
    assert "exited with code 2" in message or "CrashLoopBackOff" in message
    assert "refusing to start" in message  # the server's own reason, from the pod log
    assert took < 40, f"a crashing candidate must fail fast, took {took:.1f}s"
    candidate = "green" if live == "blue" else "blue"
    assert cluster.deployment(candidate).spec.replicas == 0
    assert cluster.selector() == selector
    state = cluster.state()
    assert state["live"] == live and state["lock"] is None
    assert state["slots"][candidate] == {**state["slots"][candidate], "version": None,
                                         "failed_version": "v0009"}
    assert cluster.live_version()["slot"] == live
    with pytest.raises(DeployError, match=f"cannot roll back from {live}: slot {candidate} has "
                                          "no ready Deployment"):
        cluster.backend().rollback("back to the crashed one?")
    assert cluster.selector() == selector


def test_candidate_never_scheduled_times_out_with_events(cluster):
    _live_blue(cluster)
    live = cluster.state()["live"]
    selector = cluster.selector()
    settings = dataclasses.replace(cluster.settings, serving=dataclasses.replace(
        cluster.settings.serving, start_timeout_s=4.0))
    backend = KubernetesBlueGreen(dataclasses.replace(
        settings, serving_kubernetes=dataclasses.replace(
            settings.serving_kubernetes, cpu_request="64")), api_client=cluster.api_client)
    with pytest.raises(DeployError, match=r"not rolled out after 4s: 0/1 pods ready") as err:
        backend.deploy(cluster.version("v0002"), "too big for the node")
    assert "FailedScheduling" in str(err.value) and "Insufficient cpu" in str(err.value)
    candidate = "green" if live == "blue" else "blue"
    assert cluster.deployment(candidate).spec.replicas == 0
    assert cluster.selector() == selector
    assert cluster.live_version()["slot"] == live


def test_candidate_that_dies_after_the_switch_is_rolled_back_automatically(cluster):
    """Failure injection: right after the live Service is switched to the candidate, its
    pods are deleted. The post-switch watch must notice and switch back on its own."""
    _live_blue(cluster)
    live = cluster.state()["live"]
    candidate = "green" if live == "blue" else "blue"
    backend = KubernetesBlueGreen(dataclasses.replace(cluster.settings, serving=dataclasses.replace(
        cluster.settings.serving, post_switch_watch_s=5.0)), api_client=cluster.api_client)
    switch = backend._switch

    def switch_then_kill(slot, version):
        result = switch(slot, version)
        if slot == candidate:
            cluster.core.delete_collection_namespaced_pod(
                cluster.ns, label_selector=f"{LABEL_SLOT}={candidate}", grace_period_seconds=0)
        return result

    backend._switch = switch_then_kill
    with pytest.raises(DeployError, match=r"live Service dl \(slot \w+\): /ready answered "
                                          r"503.*rolled back automatically to v0001"):
        backend.deploy(cluster.version("v0002"), "dies after the switch")
    assert cluster.selector()[LABEL_SLOT] == live
    assert cluster.live_version()["slot"] == live
    state = cluster.state()
    assert state["live"] == live and state["lock"] is None
    deploy, auto = state["history"][-2:]
    assert (deploy["action"], deploy["to_slot"], deploy["version"]) == (
        "deploy", candidate, "v0002")
    assert (auto["action"], auto["from_slot"], auto["to_slot"]) == (
        "auto-rollback", candidate, live)
    assert auto["previous_version"] == "v0002"
    assert auto["reason"].startswith("post-switch check of v0002 failed: ")
    assert cluster.deployment(candidate).spec.replicas == 0


def test_a_second_deployer_is_refused_while_one_holds_the_lock(cluster):
    first, second = cluster.backend(), cluster.backend()
    with first._locked("deploy", "v0002"):
        with pytest.raises(DeployError, match="in progress since"):
            second.deploy(cluster.version("v0001"), "concurrent")
        with pytest.raises(DeployError, match="in progress since"):
            second.rollback("concurrent")
    # a deployer that read the state before someone else wrote it cannot overwrite it
    state = first._read_state()
    with second._locked("rollback"):
        pass
    state["live"] = "nonsense"
    with pytest.raises(DeployError, match="was changed by someone else"):
        first._write_state(state)
    assert cluster.state()["live"] != "nonsense"


def test_the_backend_factory_builds_it_from_the_kubeconfig(cluster):
    from driftline.serving.backend import serving_backend

    settings = dataclasses.replace(cluster.settings, serving=dataclasses.replace(
        cluster.settings.serving, backend="kubernetes"))
    backend = serving_backend(settings)  # no injected client: config_file from the settings
    assert isinstance(backend, KubernetesBlueGreen)
    assert backend.status()["service"] == {"name": SERVICE, "namespace": cluster.ns,
                                           "selects": cluster.selector().get(LABEL_SLOT)}
