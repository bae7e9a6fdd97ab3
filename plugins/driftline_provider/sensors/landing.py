"""Sensor that waits for the upstream feed to drop a day's landing file."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseSensorOperator

from driftline_provider.hooks.driftline import DriftlineHook


class LandingFileSensor(BaseSensorOperator):
    """Succeed once the landing file for ``day`` exists (upstream drops it after midnight).

    :param day: the day (templated, default the run's ``ds``).
    :param driftline_conn_id: connection naming driftline's state.
    """

    template_fields = ("day",)

    def __init__(self, *, day: str = "{{ ds }}",
                 driftline_conn_id: str = DriftlineHook.default_conn_name, **kwargs: Any):
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.day = day
        self.driftline_conn_id = driftline_conn_id

    def poke(self, context) -> bool:
        from driftline.sources import landing_path

        settings = DriftlineHook(self.driftline_conn_id).get_settings()
        path = landing_path(settings.landing_dir, dt.date.fromisoformat(self.day))
        self.log.info("waiting for %s: %s", path, "present" if path.exists() else "not yet")
        return path.exists()
