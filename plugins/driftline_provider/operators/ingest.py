"""Ingest one day's landing file into the DVC-versioned lake and publish an Asset event."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException

from driftline_provider.assets import FLIGHTS
from driftline_provider.operators.base import DriftlineBaseOperator


class IngestPartitionOperator(DriftlineBaseOperator):
    """Validate the day's landing file, write its Parquet partition, version it with DVC.

    The Asset event's extra carries the partition's ``data_version`` (git commit of the data
    repository), ``md5``, ``rows`` and ``day``. A file that fails validation is quarantined
    and the task fails without retrying (retrying cannot fix the file); a file that has not
    arrived yet fails normally, so the task's retries wait for it.

    :param day: the day to ingest (templated, default the run's ``ds``).
    :param asset: the Asset to publish to.
    """

    template_fields = ("day",)

    def __init__(self, *, day: str = "{{ ds }}", asset: Asset = FLIGHTS, **kwargs: Any):
        super().__init__(outlets=[asset], **kwargs)
        self.day = day
        self.asset = asset

    def execute(self, context) -> dict:
        from driftline.ingest import ingest_day
        from driftline.validation import DataValidationError

        day = dt.date.fromisoformat(self.day)
        try:
            with self.hook.remote_credentials():
                version = ingest_day(self.settings, day)
        except DataValidationError as exc:
            raise AirflowFailException(str(exc)) from exc
        context["outlet_events"][self.asset].extra = version.to_dict()
        return version.to_dict()
