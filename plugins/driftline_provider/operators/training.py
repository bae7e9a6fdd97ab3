"""Plan and run a training run through the one training entrypoint.

The plan says exactly what to train on (data version, window, hyperparameters, reason) and
comes from whichever started the run: ingest Asset events, a manual trigger's Params, or the
retrain policy sensor's conf. Training itself is ``python -m driftline.training`` run here as
a child process (the embedded default) or in a Kubernetes pod (see :mod:`.kubernetes`), so
both paths run the same code with the same arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from driftline_provider.assets import data_asset
from driftline_provider.operators.base import DriftlineBaseOperator


class PlanTrainingOperator(DriftlineBaseOperator):
    """Decide what this run trains on (:func:`driftline.planning.plan_training`), or skip it
    when retraining is not due.

    Priority: explicit Params/conf (manual trigger or the retrain policy sensor) → the
    newest ingest Asset event → the data repository's head. Asset-triggered runs train when
    no champion is live yet (bootstrap) or when the cadence rule is due (``[retrain]
    cadence_days`` or the ``retrain_every_days`` Param, counted from the champion's window
    end); manual and policy-triggered runs always train. A conf the planner refuses (unknown
    key, unknown data version, window outside the data) fails the task without retries.
    """

    def execute(self, context) -> dict:
        from driftline.planning import NotDue, PlanError, plan_training
        from driftline.versioning import DataRepo

        events = context["triggering_asset_events"].get(data_asset(self.pack), [])
        ws = self.workspace
        try:
            plan = plan_training(ws, DataRepo.of(ws), dict(context["params"]),
                                 dict(context["dag_run"].conf or {}),
                                 [dict(e.extra) for e in events], log=self.log)
        except PlanError as exc:
            raise AirflowFailException(str(exc)) from exc
        except NotDue as exc:
            raise AirflowSkipException(str(exc)) from exc
        self.log.info("training plan: %s", json.dumps(plan))
        return plan


class TrainModelOperator(DriftlineBaseOperator):
    """Run ``python -m driftline.training`` for a plan here, streaming its log.

    :param pack: the dataset pack.
    :param plan: the plan from :class:`PlanTrainingOperator` (an XComArg).
    """

    template_fields = ("plan",)

    def __init__(self, *, pack: str, plan: Any, **kwargs: Any):
        super().__init__(pack=pack, **kwargs)
        self.plan = plan

    def execute(self, context) -> dict:
        ws = self.workspace
        from driftline.planning import training_command

        command = [sys.executable, *training_command(self.plan)]
        env = {**_base_env(), "DRIFTLINE_HOME": str(ws.home),
               "DRIFTLINE_PACKS": str(ws.settings.packs_dir), **self.hook.remote_env()}
        if ws.settings.config_file:
            env["DRIFTLINE_CONFIG"] = ws.settings.config_file
        self.log.info("running %s", " ".join(command))
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip())
            self.log.info("%s", line.rstrip())
        if proc.wait() != 0:
            raise RuntimeError(f"training exited with code {proc.returncode}: {lines[-1:]}")
        result = json.loads(lines[-1])
        metric = ws.pack.metric
        self.log.info("model %s %s: %s %.4f on %s (device %s)", result["model_name"],
                      result["version"], metric, result["metrics"][metric],
                      result["data_version"][:12], result["device"])
        return result


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}


# Where the training entrypoint runs, by name ($DRIFTLINE_TRAINING_BACKEND): a class path,
# imported only when chosen (the Kubernetes one imports the cncf-kubernetes provider).
TRAINING_BACKENDS = {
    "local": "driftline_provider.operators.training.TrainModelOperator",
    "kubernetes": "driftline_provider.operators.kubernetes.KubernetesTrainOperator",
}


def training_operator(*, task_id: str, pack: str, plan: Any,
                      **kwargs: Any) -> DriftlineBaseOperator:
    """The training task for the configured backend.

    ``$DRIFTLINE_TRAINING_BACKEND`` selects ``local`` (default: a child process on the
    worker) or ``kubernetes`` (a pod, see :mod:`driftline_provider.operators.kubernetes`).
    Both run the same entrypoint with the same arguments; the DAG does not change.
    """
    from airflow.sdk.module_loading import import_string

    backend = os.environ.get("DRIFTLINE_TRAINING_BACKEND", "local")
    if backend not in TRAINING_BACKENDS:
        raise ValueError(f"DRIFTLINE_TRAINING_BACKEND={backend!r}; expected one of "
                         f"{list(TRAINING_BACKENDS)}")
    operator = import_string(TRAINING_BACKENDS[backend])
    return operator(task_id=task_id, pack=pack, plan=plan, **kwargs)
