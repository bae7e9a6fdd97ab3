"""Drift report of a data interval against the live model's reference data."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from driftline_provider.assets import drift_asset
from driftline_provider.links import DriftlineReportLink, report_path
from driftline_provider.operators.base import DriftlineBaseOperator


class DriftReportOperator(DriftlineBaseOperator):
    """Write the Evidently drift report for ``[start, end]`` and publish its summary.

    Skips (rather than fails) while no champion is live: there is nothing to drift from.

    :param pack: the dataset pack.
    :param start: first day (templated, default the interval's start).
    :param end: last day, inclusive (templated, default the day before the interval's end).
    """

    template_fields = ("start", "end")
    operator_extra_links = (DriftlineReportLink(),)

    def __init__(self, *, pack: str, start: str = "{{ data_interval_start | ds }}",
                 end: str = "{{ macros.ds_add(data_interval_end | ds, -1) }}", **kwargs: Any):
        self.asset = drift_asset(pack)
        super().__init__(pack=pack, outlets=[self.asset], **kwargs)
        self.start = start
        self.end = end

    def report_link(self, ti_key) -> str | None:
        """The interval's drift report (none when the task skipped before writing one)."""
        from driftline.monitoring import drift_dir, report_id_for

        report_id = report_id_for(dt.date.fromisoformat(self.start),
                                  dt.date.fromisoformat(self.end))
        if not (drift_dir(self.workspace) / report_id / "lake.html").exists():
            return None
        return report_path(self.pack, "drift", report_id, "lake.html")

    def execute(self, context) -> dict:
        from driftline.monitoring import run_drift_report
        from driftline.registry import Registry

        ws = self.workspace
        if Registry(ws.registry_dir, ws.model_name).champion() is None:
            raise AirflowSkipException(f"no {ws.name} champion model is live yet; nothing to "
                                       "monitor")
        try:
            summary = run_drift_report(ws, dt.date.fromisoformat(self.start),
                                       dt.date.fromisoformat(self.end))
        except LookupError as exc:  # no partitions in this interval (e.g. a future month)
            raise AirflowSkipException(str(exc)) from exc
        self.log.info("drift share %.3f vs threshold %.3f (%s); report %s", summary["share"],
                      summary["threshold"], "CROSSED" if summary["crossed"] else "below",
                      summary["report_dir"])
        context["outlet_events"][self.asset].extra = {
            k: summary[k] for k in ("report_id", "share", "threshold", "crossed")}
        return summary
