"""What the operators that report on one data interval share: the templated ``[start,
end]``, the Asset they publish to, and the extra link to the report they wrote."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset

from driftline_provider.links import DriftlineReportLink, report_path
from driftline_provider.operators.base import DriftlineBaseOperator


class IntervalReportOperator(DriftlineBaseOperator):
    """Base for a task that writes ``reports/<pack>/<report_kind>/<id>/`` for one interval.

    Subclasses set ``report_kind`` and ``report_file`` (the page the extra link opens) and
    implement :meth:`report_id`.

    :param pack: the dataset pack.
    :param asset: the Asset the task publishes its summary to.
    :param start: first day (templated, default the interval's start).
    :param end: last day, inclusive (templated, default the day before the interval's end).
    """

    template_fields = ("start", "end")
    operator_extra_links = (DriftlineReportLink(),)
    report_kind = ""
    report_file = ""

    def __init__(self, *, pack: str, asset: Asset,
                 start: str = "{{ data_interval_start | ds }}",
                 end: str = "{{ macros.ds_add(data_interval_end | ds, -1) }}", **kwargs: Any):
        self.asset = asset
        super().__init__(pack=pack, outlets=[asset], **kwargs)
        self.start = start
        self.end = end

    @property
    def start_day(self) -> dt.date:
        return dt.date.fromisoformat(self.start)

    @property
    def end_day(self) -> dt.date:
        return dt.date.fromisoformat(self.end)

    def report_id(self) -> str:
        """The deterministic id of this interval's report."""
        raise NotImplementedError

    def report_link(self, ti_key) -> str | None:
        """The interval's report page (none when the task wrote none: skipped, pending)."""
        report_id = self.report_id()
        folder = self.workspace.reports_dir / self.report_kind / report_id
        if not (folder / self.report_file).exists():
            return None
        return report_path(self.pack, self.report_kind, report_id, self.report_file)
