"""The Kubernetes serving backend's objects, rendered offline and validated strictly.

``kubernetes-validate`` checks the JSON the client would send against the official schemas
(unknown fields are errors); the other tests pin what the deploy logic relies on: every name
and selector carries the pack, so two packs in one namespace never share an object or a pod.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
from driftline.packs import load_pack
from driftline.serving.kubernetes import KubernetesBlueGreen
from driftline.serving.kubernetes.manifests import (
    LABEL_NAME,
    LABEL_PACK,
    LABEL_SLOT,
    LABEL_VERSION,
    ROLES,
    deployment_name,
    live_service,
    live_service_name,
    object_name,
    slot_deployment,
    slot_service,
    state_name,
    switch_patch,
)
from driftline.settings import KubernetesServingSettings, Settings
from driftline.workspace import Workspace
from kubernetes.client import ApiClient

from tests.helpers import PACKS, with_value

K8S_VERSIONS = ["1.30", ".".join(kubernetes_validate.latest_version().split(".")[:2])]
SETTINGS = Settings(
    home=Path("/srv/driftline"),
    serving_kubernetes=KubernetesServingSettings(
        image="registry.example/driftline-serve:0.1.0", namespace="ml-serving",
        service="delay-api", replicas=3, cpu_request="500m", memory_request="512Mi",
        memory_limit="1Gi", run_as_user=10001, home="/data/driftline",
        home_pvc="driftline-home", config_map="driftline-config"),
    # the pack's resolved [serving] drives the startup probe: not the embedded 60 s
    pack_overrides={"flights": {"serving": {"start_timeout_s": 90.0}}})


def render(obj) -> dict:
    return ApiClient().sanitize_for_serialization(obj)


def pack_named(root: Path, name: str):
    """A copy of the flights pack under another name (loaded and validated)."""
    shutil.copytree(PACKS / "flights", root / name,
                    ignore=shutil.ignore_patterns("__pycache__"))
    spec = root / name / "pack.toml"
    text = spec.read_text()
    assert text.count('name = "flights"\n') == 1
    spec.write_text(text.replace('name = "flights"\n', f'name = "{name}"\n'))
    return load_pack(root / name)


@pytest.fixture(scope="module")
def ws(flights_pack) -> Workspace:
    return Workspace(SETTINGS, flights_pack)


@pytest.fixture(scope="module")
def bare(flights_pack) -> Workspace:
    """Defaults: no PVC, no ConfigMap."""
    return Workspace(Settings(home=Path("/srv/driftline")), flights_pack)


@pytest.fixture(scope="module")
def deployment(ws) -> dict:
    return render(slot_deployment(ws, "green", "v0007"))


@pytest.fixture(scope="module")
def container(deployment: dict) -> dict:
    [main] = deployment["spec"]["template"]["spec"]["containers"]
    return main


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", ["deployment", "slot service", "live service", "bare"])
def test_rendered_objects_are_valid_in_strict_mode(ws, bare, name, version):
    obj = {"deployment": lambda: slot_deployment(ws, "blue", "v0001"),
           "slot service": lambda: slot_service(ws, "blue"),
           "live service": lambda: live_service(ws, "green"),
           "bare": lambda: slot_deployment(bare, "green", "v0002")}[name]()
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
    assert deployment["metadata"]["name"] == "delay-api-flights-green"
    assert deployment["metadata"]["namespace"] == "ml-serving"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"] == {
        "matchLabels": {LABEL_NAME: "delay-api", LABEL_PACK: "flights", LABEL_SLOT: "green"}}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels[LABEL_NAME] == "delay-api" and labels[LABEL_SLOT] == "green"
    assert labels[LABEL_PACK] == "flights" and labels[LABEL_VERSION] == "v0007"
    assert deployment["metadata"]["labels"][LABEL_VERSION] == "v0007"
    # the version is not in the (immutable) selector, so a slot can change versions
    assert LABEL_VERSION not in deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_container_runs_the_packs_slot_server_on_a_fixed_port(ws, container):
    assert container["image"] == "registry.example/driftline-serve:0.1.0"
    assert container["command"] == ["python", "-m", "driftline.serving.app"]
    assert container["args"] == ["--pack", "flights", "--slot", "green", "--version", "v0007",
                                 "--host", "0.0.0.0", "--port", "8080",
                                 "--uds", "/tmp/$(POD_NAME).sock"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    blue = render(slot_deployment(ws, "blue", "v0001"))["spec"]["template"]["spec"]
    assert blue["containers"][0]["ports"][0]["containerPort"] == 8080  # own network per pod
    # where pods share one network, each slot's port is set apart, and both follow it
    apart = dataclasses.replace(ws.settings, serving_kubernetes=dataclasses.replace(
        ws.settings.serving_kubernetes, blue_port=18081, green_port=18082))
    for slot, port in (("blue", 18081), ("green", 18082)):
        [main] = render(slot_deployment(Workspace(apart, ws.pack), slot, "v0001"))[
            "spec"]["template"]["spec"]["containers"]
        assert main["ports"][0]["containerPort"] == port
        assert main["args"][main["args"].index("--port") + 1] == str(port)


def test_probes(container):
    ready, live, startup = (container[k] for k in ("readinessProbe", "livenessProbe",
                                                    "startupProbe"))
    assert ready["httpGet"] == {"path": "/ready", "port": "http"}
    assert live["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    # the startup probe allows the pack's whole start timeout for loading the model
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 90


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
    assert env["DRIFTLINE_PACKS"] == "/opt/driftline/packs"  # where the image has them
    assert env["DRIFTLINE_CONFIG"] == "/etc/driftline/driftline.toml"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data/driftline"]["readOnly"] is True
    # only the pack's own prediction log is writable, at the pod's home
    log_mount = mounts["/data/driftline/serving/flights/predictions"]
    assert log_mount["subPath"] == "serving/flights/predictions"
    assert not log_mount.get("readOnly")
    assert mounts["/etc/driftline"]["readOnly"] is True
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["driftline-home"]["persistentVolumeClaim"] == {"claimName": "driftline-home"}
    assert volumes["driftline-config"]["configMap"] == {"name": "driftline-config"}


def test_the_packs_dir_of_the_pods_is_a_setting(ws):
    moved = dataclasses.replace(ws.settings, serving_kubernetes=dataclasses.replace(
        ws.settings.serving_kubernetes, packs_dir="/mnt/packs"))
    [main] = render(slot_deployment(Workspace(moved, ws.pack), "blue", "v0001"))[
        "spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in main["env"]}["DRIFTLINE_PACKS"] == "/mnt/packs"


def test_without_pvc_or_configmap_nothing_is_mounted_but_tmp(bare):
    rendered = render(slot_deployment(bare, "blue", "v0001"))
    [main] = rendered["spec"]["template"]["spec"]["containers"]
    assert [m["mountPath"] for m in main["volumeMounts"]] == ["/tmp"]
    assert "DRIFTLINE_CONFIG" not in {e["name"] for e in main["env"]}


def test_services_and_the_switch_patch(ws):
    slot = render(slot_service(ws, "blue"))
    live = render(live_service(ws, "blue"))
    assert slot["metadata"]["name"] == "delay-api-flights-blue"
    assert live["metadata"]["name"] == live_service_name(ws) == "delay-api-flights-live"
    for svc in (slot, live):
        assert svc["spec"]["selector"] == {LABEL_NAME: "delay-api", LABEL_PACK: "flights",
                                           LABEL_SLOT: "blue"}
        assert svc["metadata"]["labels"][LABEL_PACK] == "flights"
        # a named target port: the slots' pods may listen on different ports
        assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                         "protocol": "TCP"}]
    assert switch_patch("green") == {"spec": {"selector": {LABEL_SLOT: "green"}}}
    with pytest.raises(ValueError, match="unknown slot"):
        switch_patch("live")


def test_two_packs_never_share_a_name_or_a_pod(ws, tmp_path):
    """Pack names may hold ``_``; ``flights_live`` must not take ``flights``'s live Service
    (``delay-api-flights-live``), nor may one pack's Service select the other's pods."""
    names, selectors, pods = {}, {}, {}
    for pack in (ws.pack, pack_named(tmp_path, "flights_live"),
                 pack_named(tmp_path, "flights_blue")):
        other = Workspace(ws.settings, pack)
        names[pack.name] = {object_name(other, role) for role in ROLES}
        assert {deployment_name(other, "blue"), state_name(other)} <= names[pack.name]
        for slot in ("blue", "green"):
            selectors[pack.name, slot] = render(live_service(other, slot))["spec"]["selector"]
            pods[pack.name, slot] = render(slot_deployment(other, slot, "v0001"))["spec"][
                "template"]["metadata"]["labels"]
    assert names["flights_live"] == {"delay-api-flights-live-blue", "delay-api-flights-live-green",
                                     "delay-api-flights-live-live",
                                     "delay-api-flights-live-state"}
    every = [n for group in names.values() for n in group]
    assert len(every) == len(set(every)) == 3 * len(ROLES)
    for key, sel in selectors.items():  # a live Service selects one pack's one slot's pods
        assert [k for k, labels in pods.items() if sel.items() <= labels.items()] == [key]


def test_names_that_kubernetes_would_refuse_are_refused_up_front(ws, tmp_path):
    long = dataclasses.replace(ws.settings, serving_kubernetes=dataclasses.replace(
        ws.settings.serving_kubernetes, service="s" * 50))
    with pytest.raises(ValueError, match="not a valid Kubernetes name"):
        KubernetesBlueGreen(Workspace(long, ws.pack))
    trailing = Workspace(ws.settings, pack_named(tmp_path, "flights_"))
    with pytest.raises(ValueError, match="not a valid Kubernetes label value"):
        KubernetesBlueGreen(trailing)
