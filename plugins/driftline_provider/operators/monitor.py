"""Drift report of a data interval against the live model's reference data."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from driftline_provider.assets import drift_asset
from driftline_provider.operators.interval import IntervalReportOperator


class DriftReportOperator(IntervalReportOperator):
    """Write the Evidently drift report for ``[start, end]`` and publish its summary.

    Skips (rather than fails) while no champion is live: there is nothing to drift from.

    :param pack: the dataset pack.
    :param start: first day (templated, default the interval's start).
    :param end: last day, inclusive (templated, default the day before the interval's end).
    """

    report_kind = "drift"
    report_file = "lake.html"

    def __init__(self, *, pack: str, **kwargs: Any):
        super().__init__(pack=pack, asset=drift_asset(pack), **kwargs)

    def report_id(self) -> str:
        from driftline.monitoring import report_id_for

        return report_id_for(self.start_day, self.end_day)

    def execute(self, context) -> dict:
        from driftline.monitoring import run_drift_report
        from driftline.registry import Registry

        ws = self.workspace
        if Registry(ws.registry_dir, ws.model_name).champion() is None:
            raise AirflowSkipException(f"no {ws.name} champion model is live yet; nothing to "
                                       "monitor")
        try:
            summary = run_drift_report(ws, self.start_day, self.end_day)
        except LookupError as exc:  # no partitions in this interval (e.g. a future month)
            raise AirflowSkipException(str(exc)) from exc
        self.log.info("drift share %.3f vs threshold %.3f (%s); report %s", summary["share"],
                      summary["threshold"], "CROSSED" if summary["crossed"] else "below",
                      summary["report_dir"])
        context["outlet_events"][self.asset].extra = {
            k: summary[k] for k in ("report_id", "share", "threshold", "crossed")}
        return summary
