"""Live quality of the model that was live in a data interval, once its outcomes landed."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from driftline_provider.assets import quality_asset
from driftline_provider.operators.interval import IntervalReportOperator


class LiveQualityOperator(IntervalReportOperator):
    """Measure the live model on ``[start, end]``'s outcomes and publish the summary.

    Earlier intervals still pending (outcomes not landed then) are measured again first. An
    interval whose outcomes have not landed is recorded as pending, not failed. Skips while
    no model was live.

    :param pack: the dataset pack.
    :param start: first day (templated, default the interval's start).
    :param end: last day, inclusive (templated, default the day before the interval's end).
    """

    report_kind = "quality"
    report_file = "quality.html"

    def __init__(self, *, pack: str, **kwargs: Any):
        super().__init__(pack=pack, asset=quality_asset(pack), **kwargs)

    def report_id(self) -> str:
        from driftline.outcomes import report_id_for

        return report_id_for(self.start_day, self.end_day)

    def execute(self, context) -> dict:
        from driftline.outcomes import measure_interval_and_pending

        try:
            results = measure_interval_and_pending(self.workspace, self.start_day,
                                                   self.end_day)
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
