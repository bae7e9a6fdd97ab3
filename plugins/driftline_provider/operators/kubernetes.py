"""Training in a Kubernetes pod: the cncf-kubernetes KubernetesPodOperator, configured.

The pod runs the same entrypoint with the same arguments as the local path
(``python`` + :func:`driftline.planning.pod_training_command`). Designed
around known traps:

- GPUs are requested as a *limit* (``nvidia.com/gpu``); Kubernetes ignores GPU requests alone.
- Tainted GPU nodes need the toleration *and* a node selector, or the pod lands elsewhere.
- No XCom sidecar: with ``deferrable=True`` a failing pod can hang the sidecar
  (apache/airflow#37298). The result is the entrypoint's last log line, read on completion.
- DVC remote credentials come from a Kubernetes Secret (``env_from``), never the DAG/image.
- Non-root ``securityContext``, no privilege escalation, all capabilities dropped.
- A failed pod fails the task with the container's exit code and last log line.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.common.compat.sdk import XCOM_RETURN_KEY
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from driftline.planning import PlanError, pod_training_command
from driftline.serving.kubernetes.manifests import config_map_mount
from driftline.settings import KubernetesSettings
from kubernetes.client import models as k8s

from driftline_provider.hooks.driftline import DriftlineHook

LOG_TAIL_LINES = 200


def parse_training_result(log_text: str) -> dict | None:
    """The training result: the last log line that is a JSON object with a ``version``."""
    for line in reversed(log_text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(result, dict) and "version" in result:
                return result
    return None


def container_exit_code(pod: k8s.V1Pod | None, container: str) -> int | None:
    """Exit code of a terminated container of ``pod``; None while it has not terminated."""
    statuses = (pod.status.container_statuses if pod and pod.status else None) or []
    status = next((s for s in statuses if s.name == container), None)
    terminated = status.state.terminated if status and status.state else None
    return terminated.exit_code if terminated else None


class TrainingResultCallback(KubernetesPodOperatorCallback):
    """Read the training result and exit code from the pod before the pod is cleaned up."""

    @staticmethod
    def on_pod_completion(*, pod: k8s.V1Pod, client, mode: str, operator=None, **kwargs):
        if operator is None or pod is None:
            return
        operator.training_exit_code = container_exit_code(pod, operator.base_container_name)
        # _preload_content=False: kubernetes 36.0.3 returns str(bytes) otherwise
        # (kubernetes-client/python#2596)
        response = client.read_namespaced_pod_log(
            name=pod.metadata.name, namespace=pod.metadata.namespace,
            container=operator.base_container_name, tail_lines=LOG_TAIL_LINES,
            _preload_content=False)
        text = response.data.decode(errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        operator.training_last_line = lines[-1] if lines else ""
        operator.training_result = parse_training_result(text)


STATIC_POD_OPTIONS: dict[str, Any] = {
    "cmds": ["python"],
    "get_logs": True,
    "do_xcom_push": False,
    "on_finish_action": "delete_pod",
    "durable": True,  # reattach to a running pod after a worker restart
    "log_events_on_failure": True,
    # a real kubelet then reports the log tail as the termination message on failure
    "termination_message_policy": "FallbackToLogsOnError",
}
"""KubernetesPodOperator arguments that do not depend on driftline's settings."""
POD_LABELS = {"app.kubernetes.io/name": "driftline", "app.kubernetes.io/component": "training"}


def settings_options(cfg: KubernetesSettings) -> dict[str, Any]:
    """KubernetesPodOperator arguments derived from driftline's ``[kubernetes]`` settings."""
    limits = {"memory": cfg.memory_limit}
    if cfg.gpus:
        limits["nvidia.com/gpu"] = str(cfg.gpus)
    env = [k8s.V1EnvVar(name="DRIFTLINE_HOME", value=cfg.home),
           k8s.V1EnvVar(name="DRIFTLINE_PACKS", value=cfg.packs_dir),
           k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1")]
    volumes, mounts = [], []
    if cfg.home_pvc:
        volumes.append(k8s.V1Volume(name="driftline-home", persistent_volume_claim=(
            k8s.V1PersistentVolumeClaimVolumeSource(claim_name=cfg.home_pvc))))
        mounts.append(k8s.V1VolumeMount(name="driftline-home", mount_path=cfg.home))
    if cfg.config_map:
        volume, mount, config_env = config_map_mount(cfg.config_map)
        volumes.append(volume)
        mounts.append(mount)
        env.append(config_env)
    options: dict[str, Any] = {
        "image": cfg.image,
        "namespace": cfg.namespace,
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": cfg.cpu_request, "memory": cfg.memory_request}, limits=limits),
        "node_selector": dict(cfg.node_selector) if cfg.gpus else {},
        "tolerations": [k8s.V1Toleration(**t) for t in cfg.tolerations] if cfg.gpus else [],
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=cfg.run_as_user, run_as_group=cfg.run_as_user,
            fs_group=cfg.run_as_user, seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        "container_security_context": k8s.V1SecurityContext(
            allow_privilege_escalation=False, run_as_non_root=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"])),
        "env_vars": env,
        "env_from": [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(
            name=cfg.remote_secret, optional=True))] if cfg.remote_secret else [],
        "volumes": volumes,
        "volume_mounts": mounts,
        "startup_timeout_seconds": cfg.startup_timeout_s,
        "in_cluster": cfg.in_cluster,
        "deferrable": cfg.deferrable,
        "service_account_name": cfg.service_account or None,
        "config_file": cfg.config_file or None,
        "cluster_context": cfg.cluster_context or None,
    }
    return options


def pod_options(cfg: KubernetesSettings) -> dict[str, Any]:
    """Every KubernetesPodOperator argument driftline sets, for ``cfg``."""
    return {**STATIC_POD_OPTIONS, "labels": dict(POD_LABELS), **settings_options(cfg)}


class KubernetesTrainOperator(KubernetesPodOperator):
    """Run ``python -m driftline.training`` for a plan in a (GPU) pod and return its result.

    The pod's image, namespace, resources and the rest come from the ``[kubernetes]``
    settings of the driftline connection, resolved when the task runs (not when the DAG is
    parsed), like every other driftline operator's settings.

    :param pack: the dataset pack (its spec must be in the image's packs directory).
    :param plan: the plan from :class:`PlanTrainingOperator` (an XComArg).
    :param settings: ``[kubernetes]`` settings; default: the connection's.
    :param driftline_conn_id: the driftline connection (see
        :class:`~driftline_provider.hooks.driftline.DriftlineHook`).
    :param kwargs: anything KubernetesPodOperator takes; overrides the settings.
    """

    template_fields = (*KubernetesPodOperator.template_fields, "plan")

    def __init__(self, *, pack: str, plan: Any, settings: KubernetesSettings | None = None,
                 driftline_conn_id: str = DriftlineHook.default_conn_name, **kwargs: Any):
        self.pack = pack
        self.kubernetes_settings = settings
        self.driftline_conn_id = driftline_conn_id
        self.explicit_options = set(kwargs)
        labels = {**POD_LABELS, "driftline.io/pack": pack}
        options = {**STATIC_POD_OPTIONS, "labels": labels,
                   "name": f"driftline-train-{pack.replace('_', '-')}", **kwargs}
        callbacks = options.pop("callbacks", [])
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        super().__init__(callbacks=[TrainingResultCallback, *callbacks], **options)
        self.plan = plan
        self.training_result: dict | None = None
        self.training_exit_code: int | None = None
        self.training_last_line = ""

    def resolved_settings(self) -> KubernetesSettings:
        """The ``[kubernetes]`` settings, applied to the pod's arguments on first use (the
        operator's own keyword arguments win)."""
        if self.kubernetes_settings is None:
            hook = DriftlineHook(driftline_conn_id=self.driftline_conn_id)
            self.kubernetes_settings = hook.get_settings().kubernetes
        if not getattr(self, "_settings_applied", False):
            for key, value in settings_options(self.kubernetes_settings).items():
                if key not in self.explicit_options:
                    setattr(self, key, value)
            self._settings_applied = True
        return self.kubernetes_settings

    def training_arguments(self, plan: dict) -> list[str]:
        """The container's args (:func:`driftline.planning.pod_training_command`).

        :raises AirflowFailException: the plan is another pack's (not retried).
        """
        cfg = self.resolved_settings()
        try:
            return pod_training_command(plan, self.pack, cfg.gpus, cfg.data_repo_url)
        except PlanError as exc:
            raise AirflowFailException(str(exc)) from exc

    def build_pod_request_obj(self, context=None, *, dry_run: bool = False) -> k8s.V1Pod:
        self.resolved_settings()
        if isinstance(self.plan, dict):  # rendered; an unrendered XComArg in a dry run
            self.arguments = self.training_arguments(self.plan)
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def execute(self, context):
        self.resolved_settings()
        super().execute(context)
        return self._result(context)

    def trigger_reentry(self, context, event):
        self.resolved_settings()  # a new process after the deferral
        super().trigger_reentry(context, event)
        return self._result(context)

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None) -> None:
        """Delete the pod as configured; on failure, name the exit code and last log line."""
        try:
            super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result,
                            context=context)
        except AirflowException as exc:
            if self.training_exit_code is None:
                raise
            message = (f"training pod {pod.metadata.name} exited with code "
                       f"{self.training_exit_code}: {self.training_last_line or '(no log)'}")
            self.log.error("%s", message)
            raise AirflowException(message) from exc

    def _result(self, context) -> dict:
        """The pod's result, pushed as this task's return value for the gate and deploy.

        Pushed explicitly: ``do_xcom_push=False`` (no sidecar) also stops Airflow from
        pushing what ``execute`` returns.
        """
        if not self.training_result:
            raise AirflowException("the training pod finished without printing its result line")
        result = self.training_result
        self.log.info("model %s %s trained in the pod on device %s (%s)",
                      result["model_name"], result["version"], result["device"],
                      {k: v for k, v in result["metrics"].items() if k in ("auc", "rmse")})
        context["ti"].xcom_push(key=XCOM_RETURN_KEY, value=result)
        return result
