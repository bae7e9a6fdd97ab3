"""Plan and run a training run through the one training entrypoint.

The plan says exactly what to train on (data version, window, hyperparameters, reason) and
comes from whichever started the run: ingest Asset events, a manual trigger's Params, or the
drift sensor's conf. Training itself is ``python -m driftline.training`` run here as a child
process (the embedded default) or in a Kubernetes pod (see :mod:`.kubernetes`), so both paths
run the same code with the same arguments.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from driftline_provider.assets import data_asset
from driftline_provider.operators.base import DriftlineBaseOperator


def training_command(plan: dict) -> list[str]:
    """The entrypoint's arguments for a plan (shared by the local and Kubernetes paths)."""
    return ["-m", "driftline.training", "--pack", plan["pack"],
            "--data-version", plan["data_version"],
            "--start", plan["start"], "--end", plan["end"],
            "--params", json.dumps(plan.get("params") or {}), "--reason", plan.get("reason", "")]


def _last_day(pack, start: dt.date) -> dt.date:
    """The last day of the pack's data interval that starts on ``start``."""
    return pack.interval_end(start) - dt.timedelta(days=1)


class PlanTrainingOperator(DriftlineBaseOperator):
    """Decide what this run trains on, or skip it when retraining is not due.

    Priority: explicit Params/conf (manual trigger or drift sensor) → the newest ingest Asset
    event → the data repository's head. Asset-triggered runs train when no champion is live
    yet (bootstrap) or when ``retrain_every_days`` have passed since the champion's window
    end; manual and drift-triggered runs always train.
    """

    def execute(self, context) -> dict:
        from driftline.versioning import DataRepo

        params = dict(context["params"])
        conf = dict(context["dag_run"].conf or {})
        options = {**params, **{k: v for k, v in conf.items() if v is not None}}
        events = list(context["triggering_asset_events"].get(data_asset(self.pack), []))
        ws = self.workspace
        repo = DataRepo.of(ws)

        newest = max(events, key=lambda e: e.extra.get("day", "")) if events else None
        data_version = (options.get("data_version")
                        or (newest.extra.get("data_version") if newest else None)
                        or repo.head())
        available = repo.list_days(data_version)
        if not available:
            raise AirflowFailException(f"data version {data_version[:12]} has no partitions")
        newest_day = _last_day(ws.pack, available[-1])
        end = options.get("window_end")
        end = (dt.date.fromisoformat(end) if end else
               _last_day(ws.pack, dt.date.fromisoformat(newest.extra["day"])) if newest
               else newest_day)
        if end > newest_day:  # e.g. a drift report's month is still being ingested
            self.log.info("window end %s is past the newest partition's last day; using %s",
                          end, newest_day)
            end = newest_day
        window_days = int(options.get("window_days") or ws.training.window_days)
        start = (dt.date.fromisoformat(options["window_start"]) if options.get("window_start")
                 else end - dt.timedelta(days=window_days - 1))
        if start > end:
            raise AirflowFailException(f"window_start {start} is after window_end {end}")

        trigger = "asset" if events and not conf else ("drift" if conf.get("drift_report_id")
                                                      else "manual")
        if trigger == "asset":
            self._skip_unless_due(ws, end, options.get("retrain_every_days"))
        reason = options.get("reason") or {
            "asset": f"new data: {len(events)} partition event(s) up to {end}",
            "drift": f"drift report {conf.get('drift_report_id')}",
            "manual": "manual trigger",
        }[trigger]
        plan = {"pack": ws.name, "data_version": data_version, "start": start.isoformat(),
                "end": end.isoformat(), "params": options.get("hyperparameters") or {},
                "reason": reason, "trigger": trigger}
        self.log.info("training plan: %s", json.dumps(plan))
        return plan

    def _skip_unless_due(self, ws, end: dt.date, every_days) -> None:
        from driftline.registry import Registry

        champion = Registry(ws.registry_dir, ws.model_name).champion()
        if champion is None:
            return
        if every_days is None:
            raise AirflowSkipException(
                f"champion {champion.version} is live and scheduled retraining is off "
                "(set the retrain_every_days param); drift or a manual trigger retrains")
        trained_until = dt.date.fromisoformat(champion.metadata["window"]["end"])
        if (end - trained_until).days < int(every_days):
            raise AirflowSkipException(
                f"champion {champion.version} was trained up to {trained_until}; next "
                f"scheduled retraining after {trained_until + dt.timedelta(days=every_days)}")


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


TRAINING_BACKENDS = ("local", "kubernetes")


def training_operator(*, task_id: str, pack: str, plan: Any,
                      **kwargs: Any) -> DriftlineBaseOperator:
    """The training task for the configured backend.

    ``$DRIFTLINE_TRAINING_BACKEND`` selects ``local`` (default: a child process on the
    worker) or ``kubernetes`` (a pod, see :mod:`driftline_provider.operators.kubernetes`).
    Both run the same entrypoint with the same arguments; the DAG does not change.
    """
    backend = os.environ.get("DRIFTLINE_TRAINING_BACKEND", "local")
    if backend not in TRAINING_BACKENDS:
        raise ValueError(f"DRIFTLINE_TRAINING_BACKEND={backend!r}; expected one of "
                         f"{TRAINING_BACKENDS}")
    if backend == "kubernetes":
        from driftline_provider.operators.kubernetes import KubernetesTrainOperator

        return KubernetesTrainOperator(task_id=task_id, pack=pack, plan=plan, **kwargs)
    return TrainModelOperator(task_id=task_id, pack=pack, plan=plan, **kwargs)
