"""The Kubernetes serving backend's objects, rendered offline and validated strictly.

``kubernetes-validate`` checks the JSON the client would send against the official schemas
(unknown fields are errors); the other tests pin what the deploy logic relies on.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from driftline.serving.kubernetes import (
    LABEL_NAME,
    LABEL_SLOT,
    LABEL_VERSION,
    live_service,
    slot_deployment,
    slot_service,
    switch_patch,
)
from driftline.settings import KubernetesServingSettings, ServingSettings, Settings
from kubernetes.client import ApiClient

from tests.helpers import with_value

K8S_VERSIONS = ["1.30", ".".join(kubernetes_validate.latest_version().split(".")[:2])]
SETTINGS = Settings(
    home=Path("/srv/driftline"),
    serving=ServingSettings(blue_port=8781, green_port=8782, start_timeout_s=60.0),
    serving_kubernetes=KubernetesServingSettings(
        image="registry.example/driftline-serve:0.1.0", namespace="ml-serving",
        service="delay-api", replicas=3, cpu_request="500m", memory_request="512Mi",
        memory_limit="1Gi", run_as_user=10001, home="/data/driftline",
        home_pvc="driftline-home", config_map="driftline-config"))


def render(obj) -> dict:
    return ApiClient().sanitize_for_serialization(obj)


@pytest.fixture(scope="module")
def deployment() -> dict:
    return render(slot_deployment(SETTINGS, "green", "v0007"))


@pytest.fixture(scope="module")
def container(deployment: dict) -> dict:
    [main] = deployment["spec"]["template"]["spec"]["containers"]
    return main


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", ["deployment", "slot service", "live service", "bare"])
def test_rendered_objects_are_valid_in_strict_mode(name, version):
    bare = Settings(home=Path("/srv/driftline"))  # defaults: no PVC, no ConfigMap
    obj = {"deployment": slot_deployment(SETTINGS, "blue", "v0001"),
           "slot service": slot_service(SETTINGS, "blue"),
           "live service": live_service(SETTINGS, "green"),
           "bare": slot_deployment(bare, "green", "v0002")}[name]
    assert kubernetes_validate.validate(render(obj), version, strict=True) == version


@pytest.mark.parametrize("path, value", [
    (("spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "url"), "/"),
    (("spec", "template", "spec", "securityContext", "runAsNonRoot"), "yes"),
    (("spec", "strategy", "type"), 7),
])
def test_strict_validation_rejects_a_bad_field(deployment, path, value):
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(with_value(deployment, path, value), "1.30", strict=True)


def test_deployment_names_labels_and_selector(deployment):
    assert deployment["metadata"]["name"] == "delay-api-green"
    assert deployment["metadata"]["namespace"] == "ml-serving"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"] == {
        "matchLabels": {LABEL_NAME: "delay-api", LABEL_SLOT: "green"}}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels[LABEL_NAME] == "delay-api" and labels[LABEL_SLOT] == "green"
    assert labels[LABEL_VERSION] == "v0007"
    assert deployment["metadata"]["labels"][LABEL_VERSION] == "v0007"
    # the version is not in the (immutable) selector, so a slot can change versions
    assert LABEL_VERSION not in deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_container_runs_the_slot_server_on_the_slot_port(container):
    assert container["image"] == "registry.example/driftline-serve:0.1.0"
    assert container["command"] == ["python", "-m", "driftline.serving.app"]
    assert container["args"][:8] == ["--slot", "green", "--version", "v0007",
                                     "--host", "0.0.0.0", "--port", "8782"]
    assert container["ports"] == [{"name": "http", "containerPort": 8782, "protocol": "TCP"}]
    blue = render(slot_deployment(SETTINGS, "blue", "v0001"))
    assert blue["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8781


def test_probes(container):
    ready, live, startup = (container[k] for k in ("readinessProbe", "livenessProbe",
                                                    "startupProbe"))
    assert ready["httpGet"] == {"path": "/ready", "port": "http"}
    assert live["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    # the startup probe allows the whole start timeout for loading the model
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_security_context(deployment, container):
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_resources_env_and_volumes(deployment, container):
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                      "limits": {"memory": "1Gi"}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DRIFTLINE_HOME"] == "/data/driftline"
    assert env["DRIFTLINE_CONFIG"] == "/etc/driftline/driftline.toml"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data/driftline"]["readOnly"] is True
    log_mount = mounts["/data/driftline/serving/predictions"]
    assert log_mount["subPath"] == "serving/predictions" and not log_mount.get("readOnly")
    assert mounts["/etc/driftline"]["readOnly"] is True
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["driftline-home"]["persistentVolumeClaim"] == {"claimName": "driftline-home"}
    assert volumes["driftline-config"]["configMap"] == {"name": "driftline-config"}


def test_without_pvc_or_configmap_nothing_is_mounted_but_tmp():
    bare = render(slot_deployment(Settings(home=Path("/x")), "blue", "v0001"))
    [main] = bare["spec"]["template"]["spec"]["containers"]
    assert [m["mountPath"] for m in main["volumeMounts"]] == ["/tmp"]
    assert "DRIFTLINE_CONFIG" not in {e["name"] for e in main["env"]}


def test_services_and_the_switch_patch():
    slot = render(slot_service(SETTINGS, "blue"))
    live = render(live_service(SETTINGS, "blue"))
    assert slot["metadata"]["name"] == "delay-api-blue"
    assert live["metadata"]["name"] == "delay-api"
    for svc in (slot, live):
        assert svc["spec"]["selector"] == {LABEL_NAME: "delay-api", LABEL_SLOT: "blue"}
        # a named target port: blue and green pods listen on different ports
        assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                         "protocol": "TCP"}]
    assert switch_patch("green") == {"spec": {"selector": {LABEL_SLOT: "green"}}}
