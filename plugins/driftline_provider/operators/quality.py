"""Live quality of the model that was live in a data interval, once its outcomes landed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from driftline_provider.assets import quality_asset
from driftline_provider.links import DriftlineReportLink, report_path
from driftline_provider.operators.base import DriftlineBaseOperator


class LiveQualityOperator(DriftlineBaseOperator):
    """Measure the live model on ``[start, end]``'s outcomes and publish the summary.

    Earlier intervals still pending (outcomes not landed then) are measured again first. An
    interval whose outcomes have not landed is recorded as pending, not failed. Skips while
    no model was live.

    :param pack: the dataset pack.
    :param start: first day (templated, default the interval's start).
    :param end: last day, inclusive (templated, default the day before the interval's end).
    """

    template_fields = ("start", "end")
    operator_extra_links = (DriftlineReportLink(),)

    def __init__(self, *, pack: str, start: str = "{{ data_interval_start | ds }}",
                 end: str = "{{ macros.ds_add(data_interval_end | ds, -1) }}", **kwargs: Any):
        self.asset = quality_asset(pack)
        super().__init__(pack=pack, outlets=[self.asset], **kwargs)
        self.start = start
        self.end = end

    def report_link(self, ti_key) -> str | None:
        """The interval's Evidently quality report (none while it is pending)."""
        from driftline.outcomes import quality_dir, report_id_for

        report_id = report_id_for(dt.date.fromisoformat(self.start),
                                  dt.date.fromisoformat(self.end))
        if not (quality_dir(self.workspace) / report_id / "quality.html").exists():
            return None
        return report_path(self.pack, "quality", report_id, "quality.html")

    def execute(self, context) -> dict:
        from driftline.outcomes import measure_interval_and_pending

        try:
            results = measure_interval_and_pending(self.workspace,
                                                   dt.date.fromisoformat(self.start),
                                                   dt.date.fromisoformat(self.end))
        except LookupError as exc:  # no model was live yet
            raise AirflowSkipException(str(exc)) from exc
        for summary in results:
            if summary["status"] == "pending":
                self.log.info("%s: pending: %s", summary["report_id"], summary["reason"])
            else:
                self.log.info("%s: %s %.4f on %d %s rows, holdout %.4f, drop %+.4f (limit "
                              "%s): %s", summary["report_id"], summary["metric"],
                              summary["value"], summary["rows"], summary["source"],
                              summary["baseline"], summary["drop"], summary["limit"],
                              "CROSSED" if summary["crossed"] else "within")
        summary = results[-1]
        context["outlet_events"][self.asset].extra = {
            k: summary.get(k) for k in ("report_id", "status", "metric", "value", "baseline",
                                        "drop", "crossed")}
        return summary
