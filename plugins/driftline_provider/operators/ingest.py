"""Ingest one data interval's landing file into the pack's DVC-versioned lake and publish an
Asset event."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from driftline_provider.assets import data_asset
from driftline_provider.operators.base import DriftlineBaseOperator


class IngestPartitionOperator(DriftlineBaseOperator):
    """Validate the interval's landing file, write its Parquet partition, version it with DVC.

    The Asset event's extra carries the partition's ``data_version`` (git commit of the data
    repository), ``md5``, ``rows`` and ``day`` (the interval's first day). A file that fails
    validation is quarantined and the task fails without retrying (retrying cannot fix the
    file); a file that has not arrived yet fails normally, so the task's retries wait for it.

    :param pack: the dataset pack.
    :param start: the interval's first day (templated, default the run's interval start).
    """

    template_fields = ("start",)

    def __init__(self, *, pack: str, start: str = "{{ data_interval_start | ds }}",
                 **kwargs: Any):
        self.asset = data_asset(pack)
        super().__init__(pack=pack, outlets=[self.asset], **kwargs)
        self.start = start

    def execute(self, context) -> dict:
        from driftline.ingest import ingest_interval
        from driftline.validation import DataValidationError

        start = dt.date.fromisoformat(self.start)
        try:
            with self.hook.remote_credentials():
                version = ingest_interval(self.workspace, start)
        except DataValidationError as exc:
            raise AirflowFailException(str(exc)) from exc
        context["outlet_events"][self.asset].extra = version.to_dict()
        return version.to_dict()
