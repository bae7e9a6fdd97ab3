"""The Kubernetes objects of one pack's blue-green serving, built but not applied.

Names are ``<service>-<pack>-<role>`` (:func:`object_name`); labels select by service, pack
and slot (:func:`selector`); :func:`slot_deployment`, :func:`slot_service` and
:func:`live_service` are the bodies :mod:`~driftline.serving.kubernetes.cluster` applies, and
:func:`switch_patch` is the one change a switch makes. Pure functions of the workspace's
settings: no API calls here.
"""

from __future__ import annotations

import math
import re

from kubernetes import client

from driftline.serving.paths import SLOTS, check_slot, predictions_dir
from driftline.settings import KubernetesServingSettings
from driftline.workspace import Workspace

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


def config_map_mount(config_map: str) -> tuple[client.V1Volume, client.V1VolumeMount,
                                                client.V1EnvVar]:
    """``driftline.toml`` from the ConfigMap ``config_map``, read-only at
    :data:`CONFIG_DIR`, and the ``DRIFTLINE_CONFIG`` that names it (serving and training
    pods alike)."""
    return (client.V1Volume(name="driftline-config", config_map=(
                client.V1ConfigMapVolumeSource(name=config_map))),
            client.V1VolumeMount(name="driftline-config", mount_path=CONFIG_DIR,
                                 read_only=True),
            client.V1EnvVar(name="DRIFTLINE_CONFIG", value=f"{CONFIG_DIR}/driftline.toml"))


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
        volume, mount, config_env = config_map_mount(cfg.config_map)
        volumes.append(volume)
        mounts.append(mount)
        env.append(config_env)
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

