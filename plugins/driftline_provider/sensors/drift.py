"""Sensor that waits for a drift report crossing the threshold and claims it."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from driftline_provider.hooks.driftline import DriftlineHook
from driftline_provider.triggers.drift import DriftReportTrigger


class DriftThresholdSensor(BaseSensorOperator):
    """Wait for a drift report whose drifted-column share crosses the threshold.

    The report found is *claimed* before the sensor succeeds, so the same report never
    starts two retrainings, even with several sensors or reruns. Returns (XCom) the report
    id, share, threshold and interval.

    :param pack: the dataset pack whose drift reports are watched.
    :param threshold: drifted-column share; default the pack's monitor threshold.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param driftline_conn_id: connection naming driftline's state.
    """

    def __init__(self, *, pack: str, threshold: float | None = None, deferrable: bool = True,
                 driftline_conn_id: str = DriftlineHook.default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.pack = pack
        self.threshold = threshold
        self.deferrable = deferrable
        self.driftline_conn_id = driftline_conn_id

    def _workspace(self):
        return DriftlineHook(self.driftline_conn_id).get_workspace(self.pack)

    def _threshold(self, ws) -> float:
        return ws.monitor.drift_share_threshold if self.threshold is None \
            else self.threshold

    def poke(self, context) -> PokeReturnValue:
        from driftline.monitoring import claim_report, drift_dir, find_unclaimed_crossing

        ws = self._workspace()
        report = find_unclaimed_crossing(drift_dir(ws), self._threshold(ws))
        if report and claim_report(drift_dir(ws), report["report_id"],
                                   claimant=context["run_id"]):
            return PokeReturnValue(is_done=True, xcom_value=self._result(report, ws))
        return PokeReturnValue(is_done=False)

    def execute(self, context):
        if not self.deferrable:
            return super().execute(context)
        result = self.poke(context)
        if result.is_done:
            return result.xcom_value
        self._defer()

    def _defer(self) -> None:
        from driftline.monitoring import drift_dir

        ws = self._workspace()
        self.defer(trigger=DriftReportTrigger(str(drift_dir(ws)), self._threshold(ws),
                                              ws.monitor.poke_interval_s),
                   method_name="execute_complete", timeout=self.timeout)

    def execute_complete(self, context, event: dict) -> dict:
        """Claim the report the trigger found; if another run claimed it first, wait again."""
        from driftline.monitoring import claim_report, drift_dir

        ws = self._workspace()
        if claim_report(drift_dir(ws), event["report_id"], claimant=context["run_id"]):
            report = next(r for r in _reports(ws) if r["report_id"] == event["report_id"])
            return self._result(report, ws)
        self.log.info("report %s was claimed by another run; waiting again", event["report_id"])
        self._defer()

    def _result(self, report: dict, ws) -> dict:
        self.log.info("drift report %s: share %.3f >= threshold %.3f: retraining",
                      report["report_id"], report["share"], self._threshold(ws))
        return {"report_id": report["report_id"], "share": report["share"],
                "threshold": self._threshold(ws), "start": report["start"],
                "end": report["end"], "data_version": report["data_version"]}


def _reports(ws):
    from driftline.monitoring import drift_dir, list_drift_reports

    return list_drift_reports(drift_dir(ws))
