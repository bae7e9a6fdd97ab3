"""The training pod as KubernetesTrainOperator renders it, validated offline (no cluster).

``build_pod_request_obj`` renders the V1Pod with the hook patched; ``kubernetes-validate``
checks it strictly (unknown fields are errors) against the official Kubernetes schemas.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from unittest import mock

import kubernetes_validate
import pytest
from airflow.sdk.exceptions import AirflowException
from driftline.planning import training_command
from driftline.settings import KubernetesSettings
from driftline_provider.operators.kubernetes import (
    KubernetesTrainOperator,
    TrainingResultCallback,
    parse_training_result,
)
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from tests.helpers import with_value

K8S_VERSIONS = ["1.30", ".".join(kubernetes_validate.latest_version().split(".")[:2])]
PLAN = {"pack": "flights", "data_version": "0123456789abcdef0123456789abcdef01234567",
        "start": "2013-01-01",
        "end": "2013-01-24", "params": {"max_depth": 4, "device": "cuda"},
        "reason": "drift report drift_2013-06-01_2013-06-30", "trigger": "drift"}
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
SETTINGS = KubernetesSettings(
    image="registry.example/driftline-train:0.1.0", namespace="ml-training", gpus=2,
    node_selector={"nvidia.com/gpu.present": "true"}, tolerations=[GPU_TAINT],
    cpu_request="3", memory_request="12Gi", memory_limit="24Gi", run_as_user=10001,
    remote_secret="driftline-dvc-remote", data_repo_url="https://git.example/data.git",
    home="/data/driftline", service_account="driftline-train")
RESULT = {"model_name": "flights", "pack": "flights", "version": "v0002", "device": "cpu",
          "metrics": {"auc": 0.71}, "data_version": PLAN["data_version"]}


def context() -> dict:
    """The few context keys ``build_pod_request_obj`` reads (pod labels)."""
    ti = SimpleNamespace(dag_id="flights_train", task_id="train", map_index=-1,
                         try_number=1)
    return {"ti": ti, "run_id": "manual__2013-01-24T00:00:00+00:00", "dag": SimpleNamespace()}


def render(settings: KubernetesSettings = SETTINGS, plan: dict = PLAN, pack: str = "flights",
           **kwargs) -> dict:
    """The pod the operator would create, as the JSON sent to the apiserver."""
    op = KubernetesTrainOperator(task_id="train", pack=pack, plan=plan, settings=settings,
                                 **kwargs)
    op.hook = mock.Mock(is_in_cluster=False)  # the cached hook: no kubeconfig, no cluster
    pod = op.build_pod_request_obj(context())
    return ApiClient().sanitize_for_serialization(pod)


@pytest.fixture(scope="module")
def pod() -> dict:
    return render()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_rendered_pod_is_valid_in_strict_mode(pod, version):
    assert kubernetes_validate.validate(pod, version, strict=True) == version


@pytest.mark.parametrize("path, value", [
    (("spec", "containers", 0, "resources", "gpus"), 1),  # unknown field
    (("spec", "securityContext", "runAsNonRoot"), "yes"),  # wrong type
    (("spec", "tolerations", 0, "tolerationSeconds"), "forever"),
])
def test_strict_validation_rejects_a_bad_field(pod, path, value):
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(with_value(pod, path, value), "1.30", strict=True)


def test_gpu_is_a_limit_with_cpu_and_memory_requests(pod):
    (container,) = pod["spec"]["containers"]
    resources = container["resources"]
    assert resources["limits"] == {"nvidia.com/gpu": "2", "memory": "24Gi"}
    assert resources["requests"] == {"cpu": "3", "memory": "12Gi"}


def test_tainted_gpu_nodes_need_toleration_and_node_selector(pod):
    assert pod["spec"]["tolerations"] == [GPU_TAINT]
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_without_gpus_there_is_no_gpu_limit_selector_or_toleration():
    cpu_only = render(KubernetesSettings(gpus=0))
    assert kubernetes_validate.validate(cpu_only, "1.30", strict=True)
    (container,) = cpu_only["spec"]["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert not cpu_only["spec"].get("nodeSelector") and not cpu_only["spec"].get("tolerations")


def test_the_pod_runs_as_non_root_without_privileges(pod):
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"}}
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}}


def test_dvc_credentials_come_from_the_secret_and_home_and_packs_from_settings(pod):
    (container,) = pod["spec"]["containers"]
    assert container["envFrom"] == [
        {"secretRef": {"name": "driftline-dvc-remote", "optional": True}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DRIFTLINE_HOME"] == "/data/driftline"
    assert env["DRIFTLINE_PACKS"] == "/opt/driftline/packs"  # the image's packs
    assert not any("SECRET" in name or "KEY" in name for name in env)
    from dataclasses import replace

    moved = render(replace(SETTINGS, packs_dir="/mnt/packs"))["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in moved["env"]}["DRIFTLINE_PACKS"] == "/mnt/packs"


def test_command_is_the_local_entrypoint_with_the_same_arguments(pod):
    (container,) = pod["spec"]["containers"]
    expected = ["python", *training_command(PLAN), "--data-repo", "https://git.example/data.git"]
    assert container["command"] + container["args"] == expected
    assert container["args"][:4] == ["-m", "driftline.training", "--pack", "flights"]
    assert json.loads(container["args"][container["args"].index("--params") + 1]) == {
        "max_depth": 4, "device": "cuda"}


def test_without_a_data_repo_url_the_args_are_exactly_the_local_ones():
    pod = render(KubernetesSettings(data_repo_url=""))
    (container,) = pod["spec"]["containers"]
    assert container["command"] + container["args"] == ["python", *training_command(PLAN)]


def test_no_xcom_sidecar_and_identifying_metadata(pod):
    assert [c["name"] for c in pod["spec"]["containers"]] == ["base"]
    assert not pod["spec"].get("initContainers") and not pod["spec"].get("volumes")
    meta = pod["metadata"]
    assert meta["namespace"] == "ml-training"
    assert meta["name"].startswith("driftline-train-flights-")
    assert meta["labels"]["app.kubernetes.io/component"] == "training"
    assert meta["labels"]["driftline.io/pack"] == "flights"
    assert meta["labels"]["dag_id"] == "flights_train"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"] == "driftline-train"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_a_pack_name_with_underscores_gives_a_valid_pod(version):
    pod = render(plan={**PLAN, "pack": "city_bikes"}, pack="city_bikes")
    assert kubernetes_validate.validate(pod, version, strict=True) == version
    assert pod["metadata"]["name"].startswith("driftline-train-city-bikes-")  # DNS-1123
    assert pod["metadata"]["labels"]["driftline.io/pack"] == "city_bikes"
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--pack") + 1] == "city_bikes"


def test_a_plan_of_another_pack_is_refused():
    with pytest.raises(AirflowException, match="the plan is for pack 'flights', but this "
                                               "task trains pack 'bikes'"):
        render(pack="bikes")


def test_operator_kwargs_override_settings():
    pod = render(image="other:1", namespace="elsewhere")
    assert pod["metadata"]["namespace"] == "elsewhere"
    assert pod["spec"]["containers"][0]["image"] == "other:1"


# --------------------------------------------------------------------------------------------
# the result line and failures
# --------------------------------------------------------------------------------------------


def test_parse_training_result_takes_the_last_result_line():
    older = {**RESULT, "version": "v0001"}
    log = "\n".join([
        "2013-01-24 INFO driftline.training: training on 1000 rows",
        json.dumps(older),
        "{not json at all",
        json.dumps({"metrics": {"auc": 0.5}}),  # JSON, but not a result
        "  " + json.dumps(RESULT) + "  ",
        "WARNING trailing noise after the result",
    ])
    assert parse_training_result(log) == RESULT


@pytest.mark.parametrize("log", ["", "no result here\n", "[1, 2, 3]", '{"version": ',
                                 json.dumps(["version"])])
def test_parse_training_result_is_none_without_a_result(log):
    assert parse_training_result(log) is None


def terminated_pod(exit_code: int) -> k8s.V1Pod:
    state = k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code))
    status = k8s.V1ContainerStatus(name="base", state=state, image="i", image_id="",
                                   ready=False, restart_count=0)
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="driftline-train-abc", namespace="ns"),
                     status=k8s.V1PodStatus(container_statuses=[status]))


def test_the_callback_reads_result_and_exit_code_from_the_pod_log():
    op = KubernetesTrainOperator(task_id="train", pack="flights", plan=PLAN, settings=SETTINGS)
    client = mock.Mock()
    client.read_namespaced_pod_log.return_value.data = (
        "INFO registered\n" + json.dumps(RESULT) + "\n").encode()

    TrainingResultCallback.on_pod_completion(pod=terminated_pod(0), client=client,
                                             mode="sync", operator=op)

    assert op.training_result == RESULT and op.training_exit_code == 0
    kwargs = client.read_namespaced_pod_log.call_args.kwargs
    assert kwargs["_preload_content"] is False and kwargs["container"] == "base"
    ti = mock.Mock()
    assert op._result({"ti": ti}) == RESULT
    ti.xcom_push.assert_called_once_with(key="return_value", value=RESULT)  # no sidecar


def test_a_failed_pod_fails_with_its_exit_code_and_last_line():
    op = KubernetesTrainOperator(task_id="train", pack="flights", plan=PLAN, settings=SETTINGS)
    client = mock.Mock()
    client.read_namespaced_pod_log.return_value.data = (
        b"Traceback (most recent call last):\n"
        b"driftline.training.GpuUnavailableError: asked for device 'cuda'\n")
    pod = terminated_pod(1)
    TrainingResultCallback.on_pod_completion(pod=pod, client=client, mode="sync", operator=op)
    assert op.training_result is None

    failure = AirflowException("Pod driftline-train-abc returned a failure.")
    with (mock.patch("airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator"
                     ".cleanup", side_effect=failure),
          pytest.raises(AirflowException, match=r"exited with code 1: .*GpuUnavailableError")):
        op.cleanup(pod=pod, remote_pod=pod)
    with pytest.raises(AirflowException, match="without printing its result"):
        op._result({"ti": mock.Mock()})


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_config_map_and_shared_home_are_mounted_and_the_pod_stays_valid(version):
    from dataclasses import replace

    rendered = render(replace(SETTINGS, home_pvc="driftline-home", config_map="driftline"))
    kubernetes_validate.validate(rendered, version, strict=True)
    spec = rendered["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["driftline-home"]["persistentVolumeClaim"]["claimName"] == "driftline-home"
    assert volumes["driftline-config"]["configMap"]["name"] == "driftline"
    container = spec["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["driftline-home"]["mountPath"] == "/data/driftline"
    assert mounts["driftline-config"]["readOnly"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DRIFTLINE_CONFIG"] == "/etc/driftline/driftline.toml"


def test_a_gpu_pod_trains_on_cuda_unless_the_plan_names_a_device():
    def params(settings, plan):
        args = render(settings, plan)["spec"]["containers"][0]["args"]
        return json.loads(args[args.index("--params") + 1])

    no_device = {**PLAN, "params": {"max_depth": 4}}
    assert params(SETTINGS, no_device) == {"max_depth": 4, "device": "cuda"}
    assert params(SETTINGS, {**PLAN, "params": {"device": "cpu"}}) == {"device": "cpu"}
    from dataclasses import replace

    assert params(replace(SETTINGS, gpus=0), no_device) == {"max_depth": 4}


def test_settings_come_from_the_connection_when_the_task_runs_not_at_parse_time(
        monkeypatch, tmp_path):
    """Constructing the operator (what DAG parsing does) reads no settings: a broken
    configuration file does not stop it. Rendering the pod resolves ``[kubernetes]`` through
    the driftline connection's config file; the operator's own arguments still win."""
    from airflow.models import Connection

    monkeypatch.setenv("DRIFTLINE_CONFIG", str(tmp_path / "missing.toml"))
    op = KubernetesTrainOperator(task_id="train", pack="flights", plan=PLAN,
                                 driftline_conn_id="driftline_k8s")
    assert op.kubernetes_settings is None and op.image is None and op.namespace is None

    config = tmp_path / "driftline.toml"
    config.write_text('[kubernetes]\nimage = "registry.example/from-connection:1"\n'
                      'namespace = "from-connection"\ngpus = 1\n')
    conn = Connection(conn_id="driftline_k8s", conn_type="driftline",
                      extra=json.dumps({"config": str(config)}))
    monkeypatch.setenv("AIRFLOW_CONN_DRIFTLINE_K8S", conn.as_json())
    op.hook = mock.Mock(is_in_cluster=False)
    pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context()))
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example/from-connection:1"
    assert pod["metadata"]["namespace"] == "from-connection"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"

    explicit = KubernetesTrainOperator(task_id="train", pack="flights", plan=PLAN,
                                       driftline_conn_id="driftline_k8s", namespace="mine")
    explicit.hook = mock.Mock(is_in_cluster=False)
    pod = ApiClient().sanitize_for_serialization(explicit.build_pod_request_obj(context()))
    assert pod["metadata"]["namespace"] == "mine"
    assert pod["spec"]["containers"][0]["image"] == "registry.example/from-connection:1"
