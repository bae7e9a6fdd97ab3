"""Tests of the loopback Kubernetes testbed: the python client, and KubernetesPodOperator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.k8s
HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
OK_LINE = "hello from the driftline k8s testbed"
FAIL_LINE = "about to exit with status 3"


def wait_for(check, what: str, timeout: float = 30.0, interval: float = 0.2):
    """Poll ``check()`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def new_namespace(api: client.CoreV1Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def python_pod(name: str, code: str, **container: object) -> client.V1Pod:
    """A pod whose single container ``main`` runs ``python -c code`` (image is ignored)."""
    main = client.V1Container(
        name="main", image="python:3.11-slim", command=["python", "-c"], args=[code], **container
    )
    spec = client.V1PodSpec(restart_policy="Never", containers=[main])
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=spec)


def pod_log(api: client.CoreV1Api, name: str, ns: str, **kwargs: object) -> str:
    """Log text. Not ``read_namespaced_pod_log(...)`` itself: kubernetes client 36 returns the
    repr of the bytes there (kubernetes-client/python#2596); KubernetesPodOperator streams."""
    resp = api.read_namespaced_pod_log(name, ns, _preload_content=False, **kwargs)
    return resp.data.decode()


def phase_in(api: client.CoreV1Api, ns: str, name: str, *phases: str):
    pod = api.read_namespaced_pod(name, ns)
    return pod if pod.status.phase in phases else None


def pod_gone(api: client.CoreV1Api, ns: str, name: str) -> bool:
    try:
        api.read_namespaced_pod(name, ns)
    except ApiException as exc:
        return exc.status == 404
    return False


# --------------------------------------------------------------------------------------------
# python client
# --------------------------------------------------------------------------------------------


def test_pod_succeeds_with_its_log(kube_testbed):
    api = kube_testbed.api()
    ns = new_namespace(api, "tb")
    code = "import os; print('hello', os.environ['GREETING']); print('line two')"
    env = [client.V1EnvVar(name="GREETING", value="testbed")]
    api.create_namespaced_pod(ns, python_pod("hello", code, env=env))

    pod = wait_for(lambda: phase_in(api, ns, "hello", "Succeeded", "Failed"), "pod to finish")
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name == kube_testbed.node_name
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    scheduled = {c.type: c.status for c in pod.status.conditions}["PodScheduled"]
    assert scheduled == "True"

    assert pod_log(api, "hello", ns) == "hello testbed\nline two\n"
    assert pod_log(api, "hello", ns, tail_lines=1) == "line two\n"
    stamped = pod_log(api, "hello", ns, timestamps=True).splitlines()
    assert stamped[0].endswith("Z hello testbed") and stamped[0][:4].isdigit()

    api.delete_namespaced_pod("hello", ns)
    wait_for(lambda: pod_gone(api, ns, "hello"), "pod deletion")


def test_pod_failure_reports_exit_code(kube_testbed):
    api = kube_testbed.api()
    ns = new_namespace(api, "tb")
    api.create_namespaced_pod(ns, python_pod("boom", "import sys; print('bye'); sys.exit(3)"))
    pod = wait_for(lambda: phase_in(api, ns, "boom", "Succeeded", "Failed"), "pod to finish")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert pod_log(api, "boom", ns) == "bye\n"


def test_follow_streams_until_exit_and_delete_kills(kube_testbed):
    api = kube_testbed.api()
    ns = new_namespace(api, "tb")
    code = "import time\nfor i in range(3):\n    print('tick', i, flush=True); time.sleep(0.3)"
    api.create_namespaced_pod(ns, python_pod("ticker", code))
    wait_for(lambda: phase_in(api, ns, "ticker", "Running", "Succeeded"), "pod to run")
    streamed = pod_log(api, "ticker", ns, follow=True)
    assert streamed == "tick 0\ntick 1\ntick 2\n"

    api.create_namespaced_pod(ns, python_pod("sleeper", "import time; time.sleep(300)"))
    wait_for(lambda: phase_in(api, ns, "sleeper", "Running"), "sleeper to run")
    # gone long before its 300 s sleep ends: the delete killed its process
    api.delete_namespaced_pod("sleeper", ns)
    wait_for(lambda: pod_gone(api, ns, "sleeper"), "sleeper deletion", timeout=15)


def test_gpu_capacity_and_unschedulable_pods(kube_testbed):
    api = kube_testbed.api()
    node = api.read_node(kube_testbed.node_name)
    assert node.status.capacity["nvidia.com/gpu"] == "1"
    ns = new_namespace(api, "tb")

    def gpu_pod(name: str, count: int) -> client.V1Pod:
        res = client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(count)})
        return python_pod(name, "print('gpu ok')", resources=res)

    api.create_namespaced_pod(ns, gpu_pod("one-gpu", 1))
    api.create_namespaced_pod(ns, gpu_pod("two-gpus", 2))
    wait_for(lambda: phase_in(api, ns, "one-gpu", "Succeeded"), "1-GPU pod to succeed")

    def unschedulable():
        conds = api.read_namespaced_pod("two-gpus", ns).status.conditions or []
        return next((c for c in conds if c.reason == "Unschedulable"), None)

    cond = wait_for(unschedulable, "2-GPU pod to be marked unschedulable")
    assert "Insufficient nvidia.com/gpu" in cond.message
    assert api.read_namespaced_pod("two-gpus", ns).status.phase == "Pending"


# --------------------------------------------------------------------------------------------
# Airflow 3 KubernetesPodOperator through dag.test()
# --------------------------------------------------------------------------------------------


def airflow_env(home: Path, kubeconfig: Path, namespace: str, deferrable: bool) -> dict[str, str]:
    """Environment for an isolated Airflow (temp home, SQLite) pointed at the testbed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.pop("KUBECONFIG", None)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        DRIFTLINE_TESTBED_KUBECONFIG=str(kubeconfig),
        DRIFTLINE_TESTBED_NAMESPACE=namespace,
        DRIFTLINE_TESTBED_OK_LINE=OK_LINE,
        DRIFTLINE_TESTBED_FAIL_LINE=FAIL_LINE,
        DRIFTLINE_TESTBED_DEFERRABLE="1" if deferrable else "0",
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    return env


def run_kpo_dag(home: Path, env: dict[str, str]) -> tuple[dict, str]:
    """``airflow db migrate``, then run kpo_dag.py (``dag.test()``); return result and output."""
    (home / "dags").mkdir(parents=True)
    dag_file = home / "dags" / "kpo_dag.py"
    shutil.copy(HERE / "kpo_dag.py", dag_file)
    migrate = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    proc = subprocess.run(
        [sys.executable, str(dag_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=home,
    )
    output = proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("DRIFTLINE_RESULT ")]
    assert lines, f"dag.test() gave no result (exit {proc.returncode}):\n{output[-5000:]}"
    return json.loads(lines[-1].split(" ", 1)[1]), output


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_kubernetes_pod_operator_dag_test(kube_testbed, tmp_path, deferrable):
    api = kube_testbed.api()
    ns = new_namespace(api, "kpo")
    env = airflow_env(tmp_path / "airflow", kube_testbed.kubeconfig, ns, deferrable)

    result, output = run_kpo_dag(tmp_path / "airflow", env)

    (tmp_path / "dag_test_output.log").write_text(output)
    assert result["tasks"] == {"pod_ok": "success", "pod_exit3": "failed"}, output[-5000:]
    prefix = "[base] logs: " if deferrable else "[base] "  # how each mode logs pod output
    assert f"{prefix}{OK_LINE}" in output
    assert f"{prefix}{FAIL_LINE}" in output
    assert "returned a failure" in output
    wait_for(lambda: not api.list_namespaced_pod(ns).items, "the KPO pods to be deleted")


# --------------------------------------------------------------------------------------------
# one testbed per session, however many conftest.py files import the fixture
# --------------------------------------------------------------------------------------------


def test_one_testbed_per_session(kube_testbed, tmp_path_factory):
    """tests/plugins/conftest.py imports the fixture too: both must share this testbed."""
    made = tmp_path_factory.getbasetemp().glob("k8s-testbed*")
    assert [p for p in made if not p.is_symlink()] == [kube_testbed.workdir]  # not ...current


def test_taints_and_node_selector_are_checked_against_the_live_node(kube_testbed):
    """The agent schedules against the Node as it is now: a test may label or taint it."""
    api = kube_testbed.api()
    ns = new_namespace(api, "tb")
    key, label = "example.com/dedicated", {"example.com/pool": "gpu"}
    taint = {"key": key, "value": "gpu", "effect": "NoSchedule"}
    gpu_pool = {"metadata": {"labels": label}, "spec": {"taints": [taint]}}
    api.patch_node(kube_testbed.node_name, gpu_pool)
    try:

        def toleration(value: str) -> client.V1Toleration:
            return client.V1Toleration(key=key, operator="Equal", value=value, effect="NoSchedule")

        pods = {name: python_pod(name, "pass") for name in ("plain", "tolerates", "wrong-value")}
        pods["tolerates"].spec.tolerations = [toleration("gpu")]
        pods["tolerates"].spec.node_selector = label
        pods["wrong-value"].spec.tolerations = [toleration("cpu")]
        for pod in pods.values():
            api.create_namespaced_pod(ns, pod)

        wait_for(lambda: phase_in(api, ns, "tolerates", "Succeeded"), "tolerating pod to run")

        def refused(name: str):
            conds = api.read_namespaced_pod(name, ns).status.conditions or []
            return next((c for c in conds if c.reason == "Unschedulable"), None)

        for name in ("plain", "wrong-value"):
            cond = wait_for(lambda n=name: refused(n), f"{name} to be unschedulable")
            assert f"had taint {{{key}=gpu: NoSchedule}}" in cond.message
    finally:
        unlabel = {"metadata": {"labels": dict.fromkeys(label)}, "spec": {"taints": None}}
        api.patch_node(kube_testbed.node_name, unlabel)


# --------------------------------------------------------------------------------------------
# kube-controller-manager: Deployments, ReplicaSets, Endpoints; readiness probes; restarts
# --------------------------------------------------------------------------------------------


def test_deployment_gets_ready_pods_endpoints_and_a_service_proxy(kube_testbed):
    """The real Deployment, ReplicaSet and Endpoints controllers, a readiness probe that
    gates Ready, and the apiserver's service proxy reaching the pod."""
    from driftline.serving.probe import free_ports

    api_client = kube_testbed.api_client()
    api, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    ns = new_namespace(api, "deploy")
    [port] = free_ports(1)
    labels = {"app": "web"}
    # serves only after 1.5 s: Ready must wait for the probe, not for the process
    code = (
        "import http.server, time; time.sleep(1.5); "
        f"http.server.test(http.server.SimpleHTTPRequestHandler, port={port}, bind='0.0.0.0')"
    )
    probe = client.V1Probe(http_get=client.V1HTTPGetAction(path="/", port="http"), period_seconds=1)
    container = client.V1Container(
        name="web",
        image="python:3.11-slim",
        command=["python", "-c", code],
        ports=[client.V1ContainerPort(name="http", container_port=port)],
        readiness_probe=probe,
    )
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
    )
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(
            selector=labels, ports=[client.V1ServicePort(name="http", port=80, target_port="http")]
        ),
    )
    apps.create_namespaced_deployment(ns, deployment)
    api.create_namespaced_service(ns, service)

    def running_not_ready():
        pods = api.list_namespaced_pod(ns, label_selector="app=web").items
        return next((p for p in pods if p.status.phase == "Running"), None)

    pod = wait_for(running_not_ready, "the ReplicaSet's pod to run")
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    assert pod.status.pod_ip == kube_testbed.pod_ip

    def rolled_out():
        dep = apps.read_namespaced_deployment("web", ns)
        return dep if (dep.status.ready_replicas or 0) == 1 else None

    wait_for(rolled_out, "the Deployment to be ready", timeout=30)
    ready = {
        c.type: c.status for c in api.read_namespaced_pod(pod.metadata.name, ns).status.conditions
    }
    assert ready["Ready"] == "True"
    endpoints = api.read_namespaced_endpoints("web", ns)
    assert [a.ip for a in endpoints.subsets[0].addresses] == [kube_testbed.pod_ip]
    response = api.connect_get_namespaced_service_proxy_with_path(
        "web:http", ns, "", _preload_content=False
    )
    assert response.status == 200 and b"Directory listing" in response.data

    apps.delete_namespaced_deployment("web", ns, propagation_policy="Foreground")
    wait_for(lambda: not api.list_namespaced_pod(ns).items, "the GC to delete the pod")


def test_crashing_container_is_restarted_with_backoff(kube_testbed):
    api = kube_testbed.api()
    ns = new_namespace(api, "tb")
    pod = python_pod("crasher", "import sys; print('crash', flush=True); sys.exit(4)")
    pod.spec.restart_policy = "Always"
    api.create_namespaced_pod(ns, pod)

    def backing_off():
        statuses = api.read_namespaced_pod("crasher", ns).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return statuses[0] if waiting and waiting.reason == "CrashLoopBackOff" else None

    status = wait_for(backing_off, "CrashLoopBackOff")
    assert status.restart_count == 1 and status.ready is False
    assert status.last_state.terminated.exit_code == 4
    assert api.read_namespaced_pod("crasher", ns).status.phase == "Running"
    api.delete_namespaced_pod("crasher", ns)
    wait_for(lambda: pod_gone(api, ns, "crasher"), "pod deletion", timeout=15)
