"""Training in a Kubernetes pod: the cncf-kubernetes KubernetesPodOperator, configured.

The pod runs the same entrypoint with the same arguments as the local path
(:func:`driftline_provider.operators.training.training_command`). Designed around known traps:

- GPUs are requested as a *limit* (``nvidia.com/gpu``); Kubernetes ignores GPU requests alone.
- Tainted GPU nodes need the toleration *and* a node selector, or the pod lands elsewhere.
- No XCom sidecar: with ``deferrable=True`` a failing pod can hang the sidecar
  (apache/airflow#37298). The result is the entrypoint's last log line, read on completion.
- DVC remote credentials come from a Kubernetes Secret (``env_from``), never the DAG/image.
- Non-root ``securityContext``, no privilege escalation, all capabilities dropped.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

from driftline.settings import KubernetesSettings, load_settings
from driftline_provider.operators.training import training_command


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


class TrainingResultCallback(KubernetesPodOperatorCallback):
    """Read the training result from the pod's log before the pod is cleaned up."""

    @staticmethod
    def on_pod_completion(*, pod: k8s.V1Pod, client, mode: str, operator=None, **kwargs):
        if operator is None or pod is None:
            return
        # _preload_content=False: kubernetes 36.0.3 returns str(bytes) otherwise
        # (kubernetes-client/python#2596)
        response = client.read_namespaced_pod_log(
            name=pod.metadata.name, namespace=pod.metadata.namespace,
            container=operator.base_container_name, tail_lines=200, _preload_content=False)
        operator.training_result = parse_training_result(response.data.decode())


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
        "reattach_on_restart": True,
        "deferrable": cfg.deferrable,
    }
    if cfg.service_account:
        options["service_account_name"] = cfg.service_account
    if cfg.config_file:
        options["config_file"] = cfg.config_file
    if cfg.cluster_context:
        options["cluster_context"] = cfg.cluster_context
    return options


class KubernetesTrainOperator(KubernetesPodOperator):
    """Run ``python -m driftline.training`` for a plan in a (GPU) pod and return its result.

    :param plan: the plan from :class:`PlanTrainingOperator` (an XComArg).
    :param settings: ``[kubernetes]`` settings; default from driftline's configuration.
    :param kwargs: anything KubernetesPodOperator takes; overrides the settings.
    """

    template_fields = (*KubernetesPodOperator.template_fields, "plan")

    def __init__(self, *, plan: Any, settings: KubernetesSettings | None = None,
                 **kwargs: Any):
        cfg = settings or load_settings().kubernetes
        self.data_repo_url = cfg.data_repo_url
        options = {**pod_options(cfg), "name": "driftline-train", **kwargs}
        callbacks = options.pop("callbacks", [])
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        super().__init__(callbacks=[TrainingResultCallback, *callbacks], **options)
        self.plan = plan
        self.training_result: dict | None = None

    def _set_arguments(self) -> None:
        args = training_command(self.plan)[1:]
        if self.data_repo_url:
            args += ["--data-repo", self.data_repo_url]
        self.arguments = args

    def execute(self, context):
        self._set_arguments()
        super().execute(context)
        return self._result()

    def trigger_reentry(self, context, event):
        super().trigger_reentry(context, event)
        return self._result()

    def _result(self) -> dict:
        if not self.training_result:
            raise RuntimeError("the training pod finished without printing its result line")
        result = self.training_result
        self.log.info("model %s %s trained in the pod on device %s (auc %.4f)",
                      result["model_name"], result["version"], result["device"],
                      result["metrics"]["auc"])
        return result
