"""Sensor that waits for the upstream feed to drop a data interval's landing file."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseSensorOperator

from driftline_provider.hooks.driftline import DriftlineHook


class LandingFileSensor(BaseSensorOperator):
    """Succeed once the pack's landing file for the interval exists.

    :param pack: the dataset pack.
    :param start: the interval's first day (templated, default the run's interval start).
    :param driftline_conn_id: connection naming driftline's state.
    """

    template_fields = ("start",)

    def __init__(self, *, pack: str, start: str = "{{ data_interval_start | ds }}",
                 driftline_conn_id: str = DriftlineHook.default_conn_name, **kwargs: Any):
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.pack = pack
        self.start = start
        self.driftline_conn_id = driftline_conn_id

    def poke(self, context) -> bool:
        ws = DriftlineHook(self.driftline_conn_id).get_workspace(self.pack)
        path = ws.landing_path(dt.date.fromisoformat(self.start))
        self.log.info("waiting for %s: %s", path.name, "present" if path.exists() else "not yet")
        return path.exists()
