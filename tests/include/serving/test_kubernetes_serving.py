"""The Kubernetes serving backend against the real kube-apiserver testbed.

Nothing is simulated on the Kubernetes side: the real kube-controller-manager turns the
Deployments into ReplicaSets and pods and keeps the Services' Endpoints; the node agent runs
each pod's ``python -m driftline.serving.app --pack ...`` as a local process and marks it
Ready by its ``/ready`` readiness probe; every check and switch goes through the apiserver's
service proxy. The pods read the registry of this test's DRIFTLINE_HOME and the packs of its
DRIFTLINE_PACKS (the testbed has no volumes and no image).

The testbed's pods share the host's network, so each pack's slots get their own ports here
(``[serving_kubernetes] blue_port``/``green_port``); in a cluster every pod has its own
network and all of them use 8080.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from driftline.features import FeatureSchema
from driftline.packs import Pack, load_pack
from driftline.registry import ModelVersion, Registry, sha256_file
from driftline.scoring import predict, request_rows
from driftline.serving.kubernetes import KubernetesBlueGreen
from driftline.serving.kubernetes.manifests import (
    LABEL_NAME,
    LABEL_PACK,
    LABEL_SLOT,
    LABEL_VERSION,
    label_selector,
    live_service_name,
)
from driftline.serving.paths import predictions_dir
from driftline.serving.probe import free_ports
from driftline.serving.verify import DeployError
from driftline.settings import Settings, load_settings
from driftline.training import SMOKE_ROWS
from driftline.workspace import Workspace
from kubernetes import client
from kubernetes.client.rest import ApiException
from testbed.k8s.fixtures import kube_testbed  # noqa: F401  (the shared session testbed)

pytestmark = pytest.mark.k8s
SERVICE = "dl"
PACK_B = "flights2"  # the second pack of the serving conftest's two_packs_dir
SHADOW_DAY = (2013, 3, 15)  # served only by the shadow test: its own log partition


@dataclasses.dataclass
class Cluster:
    settings: Settings
    packs: dict[str, Pack]
    ports: dict[str, tuple[int, int]]
    pod_ip: str
    api_client: client.ApiClient
    core: client.CoreV1Api
    apps: client.AppsV1Api

    @property
    def ns(self) -> str:
        return self.settings.serving_kubernetes.namespace

    def ws(self, pack: str = "flights", serving: dict | None = None,
           **serving_kubernetes) -> Workspace:
        """``pack``'s workspace, with its slots' ports, ``[packs.<pack>.serving]`` values and
        ``[serving_kubernetes]`` fields changed as given."""
        blue, green = self.ports[pack]
        cfg = dataclasses.replace(self.settings.serving_kubernetes, blue_port=blue,
                                  green_port=green, **serving_kubernetes)
        overrides = json.loads(json.dumps(self.settings.pack_overrides))
        overrides.setdefault(pack, {}).setdefault("serving", {}).update(serving or {})
        ws = Workspace(dataclasses.replace(self.settings, serving_kubernetes=cfg,
                                           pack_overrides=overrides), self.packs[pack])
        ws.check()
        return ws

    def backend(self, pack: str = "flights", serving: dict | None = None,
                **serving_kubernetes) -> KubernetesBlueGreen:
        return KubernetesBlueGreen(self.ws(pack, serving, **serving_kubernetes),
                                   api_client=self.api_client)

    def registry(self, pack: str = "flights") -> Registry:
        return Registry(self.settings.home / "registry", pack)

    def version(self, version: str, pack: str = "flights") -> ModelVersion:
        return self.registry(pack).get(version)

    def live(self, pack: str = "flights") -> str:
        return live_service_name(self.ws(pack))

    def selector(self, pack: str = "flights") -> dict:
        return self.core.read_namespaced_service(self.live(pack), self.ns).spec.selector

    def state_cm(self, pack: str = "flights") -> client.V1ConfigMap:
        return self.core.read_namespaced_config_map(f"{SERVICE}-{pack}-state", self.ns)

    def state(self, pack: str = "flights") -> dict:
        return json.loads(self.state_cm(pack).data["state.json"])

    def deployment(self, slot: str, pack: str = "flights") -> client.V1Deployment:
        return self.apps.read_namespaced_deployment(f"{SERVICE}-{pack}-{slot}", self.ns)

    def live_version(self, pack: str = "flights") -> dict:
        """``GET /version`` through the live Service, as a client in the cluster sees it."""
        response = self.core.connect_get_namespaced_service_proxy_with_path(
            f"{self.live(pack)}:http", self.ns, "version", _preload_content=False)
        return json.loads(response.data)

    def serve(self, rows: list[dict], pack: str = "flights") -> list[dict]:
        """``POST /predict`` through the live Service as a client (logged as traffic)."""
        response = self.api_client.call_api(
            f"/api/v1/namespaces/{self.ns}/services/{self.live(pack)}:http/proxy/predict",
            "POST", body={"rows": rows}, auth_settings=["BearerToken"],
            header_params={"Content-Type": "application/json"}, _preload_content=False,
            _return_http_data_only=True)
        body = json.loads(response.data)
        assert body["pack"] == pack and len(body["predictions"]) == len(rows)
        return rows

    def endpoint_pods(self, pack: str = "flights") -> list[client.V1Pod]:
        """The pods behind the live Service's endpoints (ready or not)."""
        ep = self.core.read_namespaced_endpoints(self.live(pack), self.ns)
        names = [a.target_ref.name for s in ep.subsets or []
                 for a in (s.addresses or []) + (s.not_ready_addresses or [])]
        return [self.core.read_namespaced_pod(name, self.ns) for name in names]

    def snapshot(self, pack: str | None = None) -> dict:
        """Every object in the namespace (or of ``pack``) with its resourceVersion."""
        lists = {"deployment": self.apps.list_namespaced_deployment,
                 "replicaset": self.apps.list_namespaced_replica_set,
                 "service": self.core.list_namespaced_service,
                 "configmap": self.core.list_namespaced_config_map,
                 "pod": self.core.list_namespaced_pod}
        selector = f"{LABEL_PACK}={pack}" if pack else ""
        return {(kind, o.metadata.name): o.metadata.resource_version
                for kind, fn in lists.items()
                for o in fn(self.ns, label_selector=selector).items}


@pytest.fixture(scope="module")
def k8s_registry(two_pack_model_home: Path) -> Iterator[Path]:
    """The registries the pods serve: flights v0001 and v0002, flights2 v0001 and v0002 (a
    second registration of its v0001). Each test serves its own copy."""
    root = Path(tempfile.mkdtemp(prefix="dl-k8s-registry-", dir="/tmp"))
    shutil.copytree(two_pack_model_home / "registry", root / "registry")
    b = Registry(root / "registry", PACK_B)
    first = b.get("v0001")
    meta = {k: v for k, v in first.metadata.items()
            if k not in ("model_name", "version", "run_key", "registered_at", "artifact")}
    b.register(first.model_path, {**meta, "reason": "re-registered for a switch"},
               first.reference(), first.holdout(), run_key="k8s-serving-test-copy")
    yield root / "registry"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(kube_testbed, k8s_registry: Path,  # noqa: F811
            two_packs_dir: Path) -> Iterator[Cluster]:
    """This test's own namespace, free slot ports and DRIFTLINE_HOME, with a copy of
    :func:`k8s_registry` that the pods serve: nothing is live yet."""
    home = Path(tempfile.mkdtemp(prefix="dl-k8s-serving-", dir="/tmp"))
    shutil.copytree(k8s_registry, home / "registry")
    api_client = kube_testbed.api_client()
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    ns = f"serving-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    config = home / "driftline.toml"
    config.write_text(f"""\
[serving]
start_timeout_s = 60.0
post_switch_watch_s = 1.0

[serving_kubernetes]
image = "driftline-serve:test"
namespace = "{ns}"
service = "{SERVICE}"
replicas = 1
cpu_request = "100m"
memory_request = "256Mi"
memory_limit = "1Gi"
home = "{home}"
packs_dir = "{two_packs_dir}"
config_file = "{kube_testbed.kubeconfig}"

[packs.flights.serving]
shadow_max_disagreement = 1.0

[packs.{PACK_B}.serving]
shadow_max_disagreement = 1.0
""")
    settings = load_settings(home=home, config=config, packs_dir=two_packs_dir)
    packs = {name: load_pack(two_packs_dir / name) for name in ("flights", PACK_B)}
    ports = free_ports(4)
    yield Cluster(settings, packs, {"flights": tuple(ports[:2]), PACK_B: tuple(ports[2:])},
                  kube_testbed.pod_ip, api_client, core, apps)
    for dep in apps.list_namespaced_deployment(ns).items:  # the GC deletes RSs and pods
        with contextlib.suppress(ApiException):
            apps.delete_namespaced_deployment(dep.metadata.name, ns,
                                              propagation_policy="Foreground")
    deadline = time.monotonic() + 30
    while core.list_namespaced_pod(ns).items and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ApiException):
        core.delete_namespace(ns)
    shutil.rmtree(home, ignore_errors=True)


def test_deploy_switch_redeploy_and_rollback(cluster):
    backend = cluster.backend()
    first = backend.deploy(cluster.version("v0001"), "first model")
    assert first["changed"] and first["live"] == "blue" and first["pack"] == "flights"
    assert cluster.selector() == {LABEL_NAME: SERVICE, LABEL_PACK: "flights",
                                  LABEL_SLOT: "blue"}
    answer = cluster.live_version()
    assert (answer["pack"], answer["model_version"]) == ("flights", "v0001")
    assert first["slots"]["blue"]["ready"] and first["slots"]["blue"]["version"] == "v0001"
    assert first["slots"]["blue"]["deployment"] == "dl-flights-blue"
    assert first["service"]["name"] == "dl-flights-live"
    # every smoke row training recorded (training.SMOKE_ROWS of the holdout) was checked
    assert len(cluster.version("v0001").metadata["smoke"]["rows"]) == SMOKE_ROWS == 20
    assert first["switch"]["smoke_rows"] == SMOKE_ROWS
    assert first["switch"]["shadow"] is None  # nothing was live to compare with
    client_rows = cluster.version("v0001").metadata["smoke"]["rows"]
    served = cluster.serve(client_rows)  # a client's request: logged as served traffic

    before = cluster.snapshot()
    again = backend.deploy(cluster.version("v0001"), "same again")
    assert again["changed"] is False and again["switch"] is None
    after = cluster.snapshot()
    state_key = ("configmap", "dl-flights-state")  # only the deploy lock came and went
    assert {k: v for k, v in after.items() if k != state_key} == {
        k: v for k, v in before.items() if k != state_key}

    second = backend.deploy(cluster.version("v0002"), "retrained on drift")
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


def test_another_packs_model_is_refused_before_anything_changes(cluster):
    before = cluster.snapshot()
    with pytest.raises(DeployError, match=f"refusing to deploy {PACK_B} v0001: pack flights "
                                          "serves model flights"):
        cluster.backend().deploy(cluster.version("v0001", PACK_B), "wrong pack")
    assert cluster.snapshot() == before


def _broken_version(cluster) -> ModelVersion:
    """v0009: garbage model bytes whose sha256 is recorded, so the deployer's checksum passes
    but the pods' server cannot load the model and exits."""
    registry = cluster.registry()
    path = registry.versions_dir / "v0009"
    shutil.copytree(registry.versions_dir / "v0002", path)
    model = registry.get("v0009").model_path
    model.write_bytes(b"this is not an xgboost model")
    meta = json.loads((path / "metadata.json").read_text())
    meta["artifact"]["sha256"] = sha256_file(model)
    (path / "metadata.json").write_text(json.dumps(meta))
    return registry.get("v0009")


def _live_blue(cluster) -> str:
    """Deploy v0001 to this test's namespace (nothing is live in a new one); its slot."""
    assert cluster.backend().deploy(cluster.version("v0001"), "setup")["live"] == "blue"
    return "blue"


def _refused_and_scaled_down(cluster, live: str, selector: dict, version: str) -> str:
    """After a refused deploy: the candidate slot at 0 replicas and recorded as failed, the
    live Service and state as they were, the lock released; the candidate slot."""
    candidate = "green" if live == "blue" else "blue"
    assert cluster.deployment(candidate).spec.replicas == 0
    assert cluster.selector() == selector
    state = cluster.state()
    assert state["live"] == live and state["lock"] is None
    assert state["slots"][candidate] == {**state["slots"][candidate], "version": None,
                                         "failed_version": version}
    assert cluster.live_version()["slot"] == live
    return candidate


def test_candidate_that_crashes_is_scaled_down_and_live_stays(cluster):
    live = _live_blue(cluster)
    selector = cluster.selector()
    with pytest.raises(DeployError) as err:
        cluster.backend().deploy(_broken_version(cluster), "broken model")
    message = str(err.value)
    # it failed on the crashed pod, not by waiting out start_timeout_s (60 s here)
    assert re.search(r"v0009 failed to start: pod \S+ container \S+( exited with code 2 "
                     r"|: CrashLoopBackOff )", message), message
    assert "not rolled out after" not in message
    assert "refusing to start flights v0009" in message  # the server's reason, from its log
    candidate = _refused_and_scaled_down(cluster, live, selector, "v0009")
    with pytest.raises(DeployError, match=f"cannot roll back from {live}: slot {candidate} has "
                                          "no ready Deployment"):
        cluster.backend().rollback("back to the crashed one?")
    assert cluster.selector() == selector


def test_candidate_never_scheduled_times_out_with_events(cluster):
    live = _live_blue(cluster)
    selector = cluster.selector()
    backend = cluster.backend(serving={"start_timeout_s": 4.0}, cpu_request="64")
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
    live = _live_blue(cluster)
    candidate = "green" if live == "blue" else "blue"
    backend = cluster.backend(serving={"post_switch_watch_s": 5.0})
    switch = backend._switch

    def switch_then_kill(slot, version):
        result = switch(slot, version)
        if slot == candidate:
            cluster.core.delete_collection_namespaced_pod(
                cluster.ns, label_selector=f"{LABEL_PACK}=flights,{LABEL_SLOT}={candidate}",
                grace_period_seconds=0)
        return result

    backend._switch = switch_then_kill
    with pytest.raises(DeployError, match=r"live Service dl-flights-live \(slot \w+\): /ready "
                                          r"answered 503.*rolled back automatically to v0001"):
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
    # force-deleted pods' processes are killed after their objects are gone; the testbed's
    # pods share one network, so the next candidate in this slot needs the port back
    port = cluster.ports["flights"][0 if candidate == "blue" else 1]
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((cluster.pod_ip, port), timeout=1).close()
        except OSError:
            break
        assert time.monotonic() < deadline, f"a killed pod's server still listens on {port}"
        time.sleep(0.2)


def _register_copy(cluster, model_of: str, metadata_of: str, key: str) -> ModelVersion:
    """A new flights version: ``model_of``'s model file, registered with ``metadata_of``'s
    metadata (its smoke rows and the predictions recorded for them)."""
    registry = cluster.registry()
    model, meta = registry.get(model_of), registry.get(metadata_of)
    metadata = {k: v for k, v in meta.metadata.items()
                if k not in ("model_name", "version", "run_key", "registered_at", "artifact")}
    return registry.register(model.model_path, {**metadata, "reason": key}, meta.reference(),
                             meta.holdout(), run_key=key)


def test_candidate_whose_smoke_predictions_differ_is_refused(cluster):
    """The candidate loads and serves (its checksum is right), but it is v0001's model under
    v0002's training record: its smoke rows do not get the recorded predictions."""
    live = _live_blue(cluster)
    selector = cluster.selector()
    mixed = _register_copy(cluster, "v0001", "v0002", "k8s-smoke-mismatch")
    with pytest.raises(DeployError, match=rf"slot \w+: smoke predictions of {mixed.version} "
                                          rf"differ from those recorded at training for "
                                          rf"{mixed.version} in [1-9]\d* of \d+ rows"):
        cluster.backend().deploy(mixed, "the wrong model file")
    _refused_and_scaled_down(cluster, live, selector, mixed.version)


def _disagreeing_rows(cluster, flights: pd.DataFrame, a: str, b: str) -> list[dict]:
    """Request rows of :data:`SHADOW_DAY` on whose call (late or not) versions ``a`` and
    ``b`` disagree, computed here with the boosters themselves."""
    pack = cluster.packs["flights"]
    year, month, day = SHADOW_DAY
    frame = flights[(flights["year"] == year) & (flights["month"] == month)
                    & (flights["day"] == day)].reset_index(drop=True)
    calls = []
    for version in (cluster.version(a), cluster.version(b)):
        schema = FeatureSchema.from_dict(version.metadata["feature_schema"])
        calls.append(predict(pack, version.load_booster(), frame, schema) >= 0.5)
    rows = request_rows(pack, frame[calls[0] != calls[1]])
    assert len(rows) >= 3, f"{a} and {b} disagree on only {len(rows)} rows of {SHADOW_DAY}"
    return rows


def test_candidate_that_disagrees_with_live_over_the_limit_is_refused(cluster, flights):
    """Clients sent rows on which the candidate's call differs from the live model's on
    every one: the shadow comparison (limit 25%; at least 3 rows put the interval's lower
    bound over 43%) refuses it before any switch."""
    live = _live_blue(cluster)
    selector = cluster.selector()
    live_version, candidate_version = "v0001", "v0002"
    rows = cluster.serve(_disagreeing_rows(cluster, flights, live_version, candidate_version))
    log_dir = predictions_dir(cluster.ws().serving_dir) / "date={}-{:02d}-{:02d}".format(
        *SHADOW_DAY)
    deadline = time.monotonic() + 20  # the pods log off the request path
    while sum(p.read_bytes().count(b"\n") for p in log_dir.glob("*.jsonl")) < len(rows):
        assert time.monotonic() < deadline, "the served rows never reached the prediction log"
        time.sleep(0.2)

    backend = cluster.backend(serving={"shadow_rows": len(rows),
                                       "shadow_max_disagreement": 0.25})
    n = len(rows)
    with pytest.raises(DeployError, match=rf"slot \w+: shadow comparison failed: its call "
                                          rf"differs from the live slot's on {n} of {n} recent "
                                          rf"served rows \(100\.00%, 95% CI [\d.]+% to "
                                          rf"100\.00%: its lower bound [\d.]+% > 25\.00% "
                                          rf"allowed"):
        backend.deploy(cluster.version(candidate_version), "disagrees with live")
    _refused_and_scaled_down(cluster, live, selector, candidate_version)
    assert cluster.live_version()["model_version"] == live_version


def test_a_second_deployer_is_refused_while_one_holds_the_lock(cluster):
    first, second = cluster.backend(), cluster.backend()
    with first.locked("deploy", "v0002"):
        with pytest.raises(DeployError, match="in progress since"):
            second.deploy(cluster.version("v0001"), "concurrent")
        with pytest.raises(DeployError, match="in progress since"):
            second.rollback("concurrent")
    # a deployer that read the state before someone else wrote it cannot overwrite it
    state = first.state.read()
    with second.locked("rollback"):
        pass
    state["live"] = "nonsense"
    with pytest.raises(DeployError, match="was changed by someone else"):
        first.write_state(state)
    assert cluster.state()["live"] != "nonsense"


def test_two_packs_in_one_namespace_keep_their_own_objects(cluster):
    """Pack B's Deployments, pods, Services and state sit beside pack A's in one namespace,
    with the same service prefix and the same slot labels: deploying B, then switching it,
    leaves every object of A untouched and A's live Service selecting only A's pods."""
    _live_blue(cluster)
    a_selector, a_state = cluster.selector(), cluster.state()
    a_objects, a_answer = cluster.snapshot("flights"), cluster.live_version()

    def a_unchanged() -> None:
        assert cluster.snapshot("flights") == a_objects
        assert cluster.selector() == a_selector and cluster.state() == a_state
        assert cluster.live_version() == a_answer
        pods = cluster.endpoint_pods()
        assert pods and all(p.metadata.labels[LABEL_PACK] == "flights" and
                            p.metadata.labels[LABEL_SLOT] == a_selector[LABEL_SLOT]
                            for p in pods)

    backend = cluster.backend(PACK_B)
    first = backend.deploy(cluster.version("v0001", PACK_B), "pack B's first model")
    assert first["pack"] == PACK_B and first["live"] == "blue"
    assert first["service"]["name"] == f"dl-{PACK_B}-live"
    # B's blue pods and A's live pods share the app and slot labels; the pack label parts them
    assert cluster.selector(PACK_B) == {LABEL_NAME: SERVICE, LABEL_PACK: PACK_B,
                                        LABEL_SLOT: "blue"}
    assert all(p.metadata.labels[LABEL_PACK] == PACK_B for p in cluster.endpoint_pods(PACK_B))
    a_unchanged()

    second = backend.deploy(cluster.version("v0002", PACK_B), "pack B switches")
    assert second["changed"] and second["live"] == "green"
    assert cluster.selector(PACK_B)[LABEL_SLOT] == "green"
    answer = cluster.live_version(PACK_B)
    assert (answer["pack"], answer["model_version"], answer["slot"]) == (
        PACK_B, "v0002", "green")
    b_state = cluster.state(PACK_B)
    assert [(h["action"], h["version"]) for h in b_state["history"]] == [
        ("deploy", "v0001"), ("deploy", "v0002")]
    a_unchanged()

    b_objects = cluster.snapshot(PACK_B)
    assert {name for kind, name in b_objects if kind != "pod" and kind != "replicaset"} == {
        f"dl-{PACK_B}-{role}" for role in ("blue", "green", "live", "state")}
    assert not {name for _, name in b_objects} & {name for _, name in a_objects}
    assert set(cluster.snapshot()) == set(b_objects) | set(a_objects)  # nothing unlabelled
    rolled = backend.rollback("pack B goes back")
    assert rolled["live"] == "blue" and cluster.selector(PACK_B)[LABEL_SLOT] == "blue"
    a_unchanged()


def test_the_backend_factory_builds_it_from_the_kubeconfig(cluster):
    from driftline.serving.backend import serving_backend

    _live_blue(cluster)
    ws = cluster.ws()
    ws = Workspace(dataclasses.replace(ws.settings, serving=dataclasses.replace(
        ws.settings.serving, backend="kubernetes")), ws.pack)
    backend = serving_backend(ws)  # no injected client: config_file from the settings
    assert isinstance(backend, KubernetesBlueGreen)
    assert backend.status()["service"] == {"name": "dl-flights-live", "namespace": cluster.ns,
                                           "selects": cluster.selector().get(LABEL_SLOT)}
    pods = cluster.core.list_namespaced_pod(cluster.ns, label_selector=label_selector(
        {LABEL_PACK: "flights", LABEL_SLOT: cluster.selector()[LABEL_SLOT]})).items
    assert pods and all(p.spec.containers[0].args[:2] == ["--pack", "flights"] for p in pods)
