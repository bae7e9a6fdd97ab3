"""The flights pack's train DAG's Kubernetes path end to end, against a real kube-apiserver.

``flights_train`` is parsed with ``DRIFTLINE_TRAINING_BACKEND=kubernetes`` and run with
``dag.test()``: its ``train`` task is a KubernetesTrainOperator that creates a pod through
the testbed's kube-apiserver; the testbed's node agent runs the pod's command
(``python -m driftline.training --pack flights ...``) as a local process on the same
filesystem, so the pod trains on this test's driftline home, with the packs of
``[kubernetes] packs_dir`` (the repository's packs/ here, the image's in a cluster), and
registers the model there.

The node is labelled and tainted like a GPU node for these tests, and the node agent binds
only pods that carry the matching node selector *and* a toleration of the taint.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
import tomllib
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import structlog.testing
from driftline.features import FeatureSchema
from driftline.registry import Registry
from driftline.scoring import predict
from driftline.serving.probe import free_ports
from driftline.settings import load_settings
from driftline.training import train
from driftline.versioning import DataRepo
from driftline.workspace import open_workspace
from kubernetes import client, watch
from sklearn.metrics import roc_auc_score
from urllib3.exceptions import ProtocolError

from tests.gpu import CUDA_DEVICES, cuda_available

pytestmark = pytest.mark.k8s
ROOT = Path(__file__).resolve().parents[3]
PACKS_DAGS = ROOT / "dags" / "driftline_packs.py"
PACKS = ROOT / "packs"
TEST_CONFIG = ROOT / "tests" / "driftline-test.toml"  # the source; this module sets its own port
GPU_LABEL = {"nvidia.com/gpu.present": "true"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
WINDOW = {"window_start": "2013-01-01", "window_end": "2013-01-24"}


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def gpu_node(kube_testbed):
    """The testbed node labelled and tainted as a GPU node; both removed afterwards."""
    api = kube_testbed.api()
    api.patch_node(kube_testbed.node_name,
                   {"metadata": {"labels": GPU_LABEL}, "spec": {"taints": [GPU_TAINT]}})
    yield kube_testbed
    api.patch_node(kube_testbed.node_name, {"metadata": {"labels": dict.fromkeys(GPU_LABEL)},
                                            "spec": {"taints": None}})


@pytest.fixture
def namespace(gpu_node):
    api = gpu_node.api()
    name = f"train-{uuid.uuid4().hex[:6]}"
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    api.delete_namespace(name)


@pytest.fixture
def k8s(home_copy, gpu_node, namespace, tmp_path, monkeypatch, airflow_db):
    """A driftline home and config that send training to the testbed.

    The config is the test suite's, with the router on a free port (other test sessions on
    this machine use the fixed one) and a ``[kubernetes]`` section; ``configure(**kw)``
    rewrites it with ``kw`` changed in that section.
    """
    config = tmp_path / "driftline-k8s.toml"
    base = tomllib.loads(TEST_CONFIG.read_text())
    [router_port] = free_ports(1)
    base["serving"] = {**base.get("serving", {}), "router_port": router_port}

    def configure(**kubernetes) -> Path:
        section = {"config_file": str(gpu_node.kubeconfig), "namespace": namespace,
                   "home": str(home_copy), "packs_dir": str(PACKS), "gpus": 1,
                   "node_selector": GPU_LABEL,
                   "tolerations": [TOLERATION], "cpu_request": "1", "memory_request": "1Gi",
                   "memory_limit": "4Gi", "startup_timeout_s": 120, **kubernetes}
        tables = {**base, "kubernetes": section}
        config.write_text("".join(f"[{name}]\n" + "".join(
            f"{key} = {toml(value)}\n" for key, value in table.items()) + "\n"
            for name, table in tables.items()))
        return config

    monkeypatch.setenv("DRIFTLINE_HOME", str(home_copy))
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(configure()))
    monkeypatch.setenv("DRIFTLINE_TRAINING_BACKEND", "kubernetes")
    settings = load_settings(home=home_copy, config=config, packs_dir=PACKS)
    ws = open_workspace("flights", settings)
    yield SimpleNamespace(home=home_copy, settings=settings, ws=ws, configure=configure,
                          testbed=gpu_node, api=gpu_node.api(), namespace=namespace)
    from driftline.serving.bluegreen import stop_serving

    stop_serving(settings)


def toml(value) -> str:
    """A TOML value for the few types used here."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml(v)}' for k, v in value.items()) + " }"
    return "[" + ", ".join(toml(v) for v in value) + "]"


class PodRecorder:
    """Watches a namespace and keeps every pod event (type, pod) the apiserver sends."""

    def __init__(self, api: client.CoreV1Api, namespace: str):
        self.events: list[tuple[str, client.V1Pod]] = []
        self._watch = watch.Watch()
        stream = self._watch.stream(api.list_namespaced_pod, namespace, timeout_seconds=600)
        self._thread = threading.Thread(target=self._record, args=(stream,), daemon=True)
        self._thread.start()

    def _record(self, stream) -> None:
        with contextlib.suppress(ProtocolError):  # the connection closed by stop()
            self.events.extend((e["type"], e["object"]) for e in stream)

    def stop(self, wait_for: str = "DELETED", timeout: float = 15) -> None:
        """Stop watching once a ``wait_for`` event has come (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not self.kinds().count(wait_for) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._watch.stop()  # closes the connection: the thread ends
        self._thread.join(timeout=5)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def first(self, kind: str) -> client.V1Pod:
        return next(pod for kind_, pod in self.events if kind_ == kind)

    def names(self) -> set[str]:
        return {pod.metadata.name for _, pod in self.events}


def parse_train_dag():
    """The flights pack's train DAG parsed now (the training backend is chosen at parse
    time)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PACKS_DAGS))
    assert bag.import_errors == {}
    return bag.get_dag("flights_train")


def run_dag(dag, conf: dict) -> tuple[str, dict[str, str], object, str]:
    """``dag.test()``: the run's state, each task's state, the run and its log.

    The log is what Airflow and the operators logged through structlog, captured as events
    (not from stdout: Airflow binds its handlers to whichever stdout existed at import).
    """
    from airflow.utils.session import create_session

    with structlog.testing.capture_logs() as events:
        dag_run = dag.test(run_conf=conf)
    with create_session() as session:
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances(session=session)}
    return dag_run.state, states, dag_run, "\n".join(map(log_line, events))


def log_line(event: dict) -> str:
    """One captured structlog event as text: level, logger and the formatted message."""
    message = str(event.get("event", ""))
    if event.get("positional_args"):
        with contextlib.suppress(TypeError, ValueError):
            message = message % tuple(event["positional_args"])
    return f"[{event.get('log_level')}] {event.get('logger', '')}: {message}"


def train_xcom(dag_run) -> dict | None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="train",
            key="return_value").one_or_none()
        return XComModel.deserialize_value(row) if row else None


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


@pytest.mark.nginx  # the DAG's deploy task serves the new model behind nginx
@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_train_dag_trains_in_a_gpu_pod_and_registers_the_model(k8s, deferrable):
    from driftline.serving.bluegreen import BlueGreen
    from driftline_provider.operators.kubernetes import KubernetesTrainOperator

    k8s.configure(deferrable=deferrable)
    ws = k8s.ws
    registry = Registry(ws.registry_dir, ws.model_name)
    before = {v.version for v in registry.versions()}
    dag = parse_train_dag()
    assert isinstance(dag.task_dict["train"], KubernetesTrainOperator)
    assert dag.task_dict["train"].resolved_settings().deferrable is deferrable

    pods = PodRecorder(k8s.api, k8s.namespace)
    # new hyperparameters: a new run key, so the pod really trains (no reuse of v0001);
    # the testbed node advertises a GPU it does not have, so this run asks for the CPU
    conf = {**WINDOW, "reason": "k8s e2e", "hyperparameters": {"max_depth": 5, "device": "cpu"}}
    state, tasks, dag_run, log = run_dag(dag, conf)
    pods.stop()

    assert tasks["plan"] == "success" and tasks["train"] == "success", (tasks, log[-5000:])
    # the model: trained by the pod on this test's home, registered there, on the CPU
    (new,) = {v.version for v in registry.versions()} - before
    version = registry.get(new)
    head = DataRepo.of(ws).head()
    assert version.metadata["reason"] == "k8s e2e" and version.data_version == head
    assert version.metadata["window"] == {"start": "2013-01-01", "end": "2013-01-24"}
    assert version.metadata["params"]["max_depth"] == 5
    assert version.metrics["device"] == "cpu"
    # the recorded AUC, recomputed here: sklearn on the model's holdout predictions against
    # "arrived more than 15 minutes late"
    holdout = version.holdout()
    proba = predict(ws.pack, version.load_booster(), holdout,
                    FeatureSchema.from_dict(version.metadata["feature_schema"]))
    late = (holdout["arr_delay"] > 15).astype(int)
    assert version.metrics["auc"] == pytest.approx(roc_auc_score(late, proba), abs=1e-9)
    result = train_xcom(dag_run)
    assert result["version"] == new and result["device"] == "cpu"
    # the pod: created through the apiserver as rendered, bound to the GPU node, deleted
    created = pods.first("ADDED")
    (container,) = created.spec.containers
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert created.spec.node_selector == GPU_LABEL
    assert "nvidia.com/gpu" in [t.key for t in created.spec.tolerations]
    assert container.command + container.args[:4] == [
        "python", "-m", "driftline.training", "--pack", "flights"]
    assert {e.name: e.value for e in container.env}["DRIFTLINE_PACKS"] == str(PACKS)
    assert created.metadata.labels["driftline.io/pack"] == "flights"
    assert any(p.spec.node_name == k8s.testbed.node_name for _, p in pods.events)
    assert "DELETED" in pods.kinds() and not k8s.api.list_namespaced_pod(k8s.namespace).items
    # the pod's own log lines, as the operator relayed them
    assert ("Pausing task as DEFERRED" in log) is deferrable  # the trigger ran (inline)
    prefix = r"\[base\] logs: " if deferrable else r"\[base\] "
    assert re.search(prefix + rf"\S+ \S+ INFO __main__: registered flights {new} ", log)
    assert re.search(prefix + r'\{"model_name": "flights", "pack": "flights"', log)
    assert f"model flights {new} trained in the pod on device cpu" in log
    # gate and deploy ran on the pod's result
    assert tasks["gate"] == "success", tasks
    assert state == "success" and tasks["deploy"] == "success", tasks
    live = BlueGreen(ws).status()
    assert live["slots"][live["live"]]["version"] == new


def test_a_pod_given_a_gpu_trains_on_cuda_and_fails_with_its_exit_code_without_one(k8s):
    """A pod given a GPU trains on cuda unless the plan names a device. Without a CUDA device
    here (tests/gpu.py) XGBoost falls back to the CPU, require_gpu fails training and the
    task fails with the pod's exit code; with one, the pod trains on it."""
    registry = Registry(k8s.ws.registry_dir, k8s.ws.model_name)
    before = [v.version for v in registry.versions()]
    dag = parse_train_dag()
    dag.task_dict["train"].retries = 0  # the DAG retries once after 30 s; one try is enough

    pods = PodRecorder(k8s.api, k8s.namespace)
    # no row or column sampling: its random streams differ between devices
    params = {"max_depth": 3, "subsample": 1.0, "colsample_bytree": 1.0}
    conf = {**WINDOW, "reason": "needs a gpu", "hyperparameters": params}
    state, tasks, dag_run, log = run_dag(dag, conf)
    pods.stop()

    assert "DELETED" in pods.kinds() and not k8s.api.list_namespaced_pod(k8s.namespace).items
    if cuda_available():
        _assert_trained_on_cuda_like_the_cpu(k8s, tasks, train_xcom(dag_run), params, log)
        return
    assert state == "failed"
    assert tasks["train"] == "failed" and tasks["gate"] == "upstream_failed", tasks
    assert "exited with code 1: GpuUnavailableError: asked for device 'cuda'" in log, log[-5000:]
    assert "exit_code=1" in log  # the container state, logged by KubernetesPodOperator
    assert [v.version for v in registry.versions()] == before


def _assert_trained_on_cuda_like_the_cpu(k8s, tasks, result, params, log) -> None:
    """The pod's model was trained on CUDA and ranks the holdout like the same model trained
    here on the CPU, to 1e-3 (what the DAG's gate and deploy then did is not asserted)."""
    assert tasks["train"] == "success", (tasks, log[-5000:])
    assert result["device"] in CUDA_DEVICES, result
    start, end = (dt.date.fromisoformat(WINDOW[k]) for k in ("window_start", "window_end"))
    cpu = train(k8s.ws, result["data_version"], start, end, params={**params, "device": "cpu"})
    assert cpu["device"] == "cpu"
    assert result["metrics"]["auc"] == pytest.approx(cpu["metrics"]["auc"], abs=1e-3)


def test_the_gpu_node_takes_only_pods_with_selector_and_toleration(k8s):
    """The node agent schedules like kube-scheduler for the GPU node: no toleration or no
    selector match, no binding; so the DAG tests above prove the operator sets both."""
    from driftline_provider.operators.kubernetes import KubernetesTrainOperator

    cases = {"no-toleration": {"tolerations": []},
             "wrong-selector": {"node_selector": {"nvidia.com/gpu.present": "false"}},
             "both": {}}
    for name, overrides in cases.items():
        cfg = load_settings(config=k8s.configure(**overrides)).kubernetes
        op = KubernetesTrainOperator(task_id="train", pack="flights", plan=None, settings=cfg,
                                     name=name,
                                     random_name_suffix=False, arguments=["-c", "pass"])
        k8s.api.create_namespaced_pod(k8s.namespace, op.build_pod_request_obj(dry_run=True))

    def scheduled(name: str) -> client.V1PodCondition | None:
        conds = k8s.api.read_namespaced_pod(name, k8s.namespace).status.conditions or []
        return next((c for c in conds if c.type == "PodScheduled"), None)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(scheduled(n) for n in cases):
        time.sleep(0.2)
    assert scheduled("both").status == "True"
    assert k8s.api.read_namespaced_pod("both", k8s.namespace).spec.node_name
    refused = {n: scheduled(n) for n in ("no-toleration", "wrong-selector")}
    assert all(c.status == "False" and c.reason == "Unschedulable" for c in refused.values())
    assert "didn't tolerate" in refused["no-toleration"].message
    assert "didn't match node selector" in refused["wrong-selector"].message
    for name in cases:
        k8s.api.delete_namespaced_pod(name, k8s.namespace, grace_period_seconds=0)
