"""Training in a Kubernetes pod: the cncf-kubernetes KubernetesPodOperator, configured.

The pod runs the same entrypoint with the same arguments as the local path
(``python`` + :func:`driftline.planning.training_command`). Designed
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
from airflow.sdk.exceptions import AirflowException
from driftline.planning import training_command
from driftline.settings import KubernetesSettings, load_settings
from kubernetes.client import models as k8s

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


CONFIG_DIR = "/etc/driftline"


def pod_options(cfg: KubernetesSettings) -> dict[str, Any]:
    """KubernetesPodOperator arguments derived from driftline's ``[kubernetes]`` settings."""
    limits = {"memory": cfg.memory_limit}
    if cfg.gpus:
        limits["nvidia.com/gpu"] = str(cfg.gpus)
    options: dict[str, Any] = {
        "image": cfg.image,
        "namespace": cfg.namespace,
        "cmds": ["python"],
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
        "env_vars": [k8s.V1EnvVar(name="DRIFTLINE_HOME", value=cfg.home),
                     k8s.V1EnvVar(name="DRIFTLINE_PACKS", value=cfg.packs_dir),
                     k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1")],
        "env_from": [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(
            name=cfg.remote_secret, optional=True))] if cfg.remote_secret else [],
        "labels": {"app.kubernetes.io/name": "driftline",
                   "app.kubernetes.io/component": "training"},
        "startup_timeout_seconds": cfg.startup_timeout_s,
        "in_cluster": cfg.in_cluster,
        "get_logs": True,
        "do_xcom_push": False,
        "on_finish_action": "delete_pod",
        "durable": True,  # reattach to a running pod after a worker restart
        "log_events_on_failure": True,
        # a real kubelet then reports the log tail as the termination message on failure
        "termination_message_policy": "FallbackToLogsOnError",
        "deferrable": cfg.deferrable,
    }
    volumes, mounts = [], []
    if cfg.home_pvc:
        volumes.append(k8s.V1Volume(name="driftline-home", persistent_volume_claim=(
            k8s.V1PersistentVolumeClaimVolumeSource(claim_name=cfg.home_pvc))))
        mounts.append(k8s.V1VolumeMount(name="driftline-home", mount_path=cfg.home))
    if cfg.config_map:
        volumes.append(k8s.V1Volume(name="driftline-config", config_map=(
            k8s.V1ConfigMapVolumeSource(name=cfg.config_map))))
        mounts.append(k8s.V1VolumeMount(name="driftline-config", mount_path=CONFIG_DIR,
                                        read_only=True))
        options["env_vars"].append(k8s.V1EnvVar(name="DRIFTLINE_CONFIG",
                                                value=f"{CONFIG_DIR}/driftline.toml"))
    options["volumes"], options["volume_mounts"] = volumes, mounts
    if cfg.service_account:
        options["service_account_name"] = cfg.service_account
    if cfg.config_file:
        options["config_file"] = cfg.config_file
    if cfg.cluster_context:
        options["cluster_context"] = cfg.cluster_context
    return options


class KubernetesTrainOperator(KubernetesPodOperator):
    """Run ``python -m driftline.training`` for a plan in a (GPU) pod and return its result.

    :param pack: the dataset pack (its spec must be in the image's packs directory).
    :param plan: the plan from :class:`PlanTrainingOperator` (an XComArg).
    :param settings: ``[kubernetes]`` settings; default from driftline's configuration.
    :param kwargs: anything KubernetesPodOperator takes; overrides the settings.
    """

    template_fields = (*KubernetesPodOperator.template_fields, "plan")

    def __init__(self, *, pack: str, plan: Any, settings: KubernetesSettings | None = None,
                 **kwargs: Any):
        cfg = settings or load_settings().kubernetes
        self.pack = pack
        self.data_repo_url = cfg.data_repo_url
        self.gpus = cfg.gpus
        options = pod_options(cfg)
        options["labels"] = {**options["labels"], "driftline.io/pack": pack}
        options = {**options, "name": f"driftline-train-{pack.replace('_', '-')}", **kwargs}
        callbacks = options.pop("callbacks", [])
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        super().__init__(callbacks=[TrainingResultCallback, *callbacks], **options)
        self.plan = plan
        self.training_result: dict | None = None
        self.training_exit_code: int | None = None
        self.training_last_line = ""

    def training_arguments(self, plan: dict) -> list[str]:
        """The container's args: the local path's, plus ``--data-repo`` when configured.

        A pod that is given GPUs trains on ``cuda`` unless the plan names a device, so a
        GPU pod never quietly trains on its CPU (the entrypoint fails if no GPU is visible).

        :raises AirflowException: the plan is another pack's (the pod is named and labelled
            after this task's pack).
        """
        if plan.get("pack") != self.pack:
            raise AirflowException(f"the plan is for pack {plan.get('pack')!r}, but this task "
                                   f"trains pack {self.pack!r}")
        if self.gpus and "device" not in (plan.get("params") or {}):
            plan = {**plan, "params": {**(plan.get("params") or {}), "device": "cuda"}}
        args = training_command(plan)
        if self.data_repo_url:
            args += ["--data-repo", self.data_repo_url]
        return args

    def build_pod_request_obj(self, context=None, *, dry_run: bool = False) -> k8s.V1Pod:
        if isinstance(self.plan, dict):  # rendered; an unrendered XComArg in a dry run
            self.arguments = self.training_arguments(self.plan)
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def execute(self, context):
        super().execute(context)
        return self._result(context)

    def trigger_reentry(self, context, event):
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
