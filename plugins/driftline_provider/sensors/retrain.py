"""Sensor that waits for the retrain policy to name an interval, and claims it."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from driftline_provider.hooks.driftline import DriftlineHook
from driftline_provider.triggers.retrain import RetrainPolicyTrigger

ACTIVE = ["queued", "running"]


class RetrainPolicySensor(BaseSensorOperator):
    """Wait until the pack's retrain policy (:mod:`driftline.retraining`) says an interval
    should retrain, and no run of ``<pack>_train`` is queued or running; then claim the
    interval and return the train DAG's conf (reason, report ids, window end) as XCom.

    The claim is an exclusive file create, so one interval starts at most one retraining,
    whatever reruns or concurrent sensors do.

    :param pack: the dataset pack.
    :param train_dag_id: the DAG whose active runs hold a retrain back (default
        ``<pack>_train``).
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param busy_recheck_s: while a train run is active, seconds between checks.
    :param driftline_conn_id: connection naming driftline's state.
    """

    def __init__(self, *, pack: str, train_dag_id: str | None = None, deferrable: bool = True,
                 busy_recheck_s: float = 30.0,
                 driftline_conn_id: str = DriftlineHook.default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.pack = pack
        self.train_dag_id = train_dag_id or f"{pack}_train"
        self.deferrable = deferrable
        self.busy_recheck_s = busy_recheck_s
        self.driftline_conn_id = driftline_conn_id

    def _workspace(self):
        return DriftlineHook(self.driftline_conn_id).get_workspace(self.pack)

    def _active_train_runs(self, context) -> int:
        return context["ti"].get_dr_count(dag_id=self.train_dag_id, states=ACTIVE)

    def poke(self, context) -> PokeReturnValue:
        from driftline.retraining import claim_interval, next_trigger, train_conf

        ws = self._workspace()
        decision = next_trigger(ws)
        if decision is None:
            return PokeReturnValue(is_done=False)
        active = self._active_train_runs(context)
        if active:
            self.log.info("%s..%s is due (%s), but %d %s run(s) are queued or running: no "
                          "second retrain while one runs; waiting", decision.start,
                          decision.end, decision.reason, active, self.train_dag_id)
            return PokeReturnValue(is_done=False)
        if not claim_interval(ws, decision, claimant=context["run_id"]):
            self.log.info("%s..%s was claimed by another run", decision.start, decision.end)
            return PokeReturnValue(is_done=False)
        self.log.info("retraining on %s..%s: %s", decision.start, decision.end,
                      decision.reason)
        return PokeReturnValue(is_done=True, xcom_value=train_conf(decision))

    def execute(self, context):
        if not self.deferrable:
            return super().execute(context)
        return self._poke_or_defer(context, wait_first=0.0)

    def execute_complete(self, context, event: dict) -> dict | None:
        """The trigger found a due interval: claim it here, or wait again (a train run is
        active, or another run claimed it first)."""
        return self._poke_or_defer(context, wait_first=self.busy_recheck_s)

    def _poke_or_defer(self, context, wait_first: float) -> dict | None:
        result = self.poke(context)
        if result.is_done:
            return result.xcom_value
        ws = self._workspace()
        settings = ws.settings
        self.defer(trigger=RetrainPolicyTrigger(
            self.pack, str(settings.home), str(settings.packs_dir), settings.config_file,
            poke_interval=ws.monitor.poke_interval_s, wait_first=wait_first),
            method_name="execute_complete", timeout=self.timeout)
        return None
