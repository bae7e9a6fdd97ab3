"""Trigger that waits in the triggerer for a drift report crossing a threshold."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class DriftReportTrigger(BaseTrigger):
    """Fire when an unclaimed drift report's drifted-column share reaches ``threshold``.

    :param reports_root: directory of drift report folders.
    :param threshold: drifted-column share that counts as drift.
    :param poke_interval: seconds between looks.
    """

    def __init__(self, reports_root: str, threshold: float, poke_interval: float = 5.0):
        super().__init__()
        self.reports_root = reports_root
        self.threshold = threshold
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"reports_root": self.reports_root, "threshold": self.threshold,
                 "poke_interval": self.poke_interval})

    async def run(self):
        from driftline.monitoring import find_unclaimed_crossing

        while True:
            report = await asyncio.to_thread(find_unclaimed_crossing, self.reports_root,
                                             self.threshold)
            if report:
                self.log.info("drift report %s crossed: share %.3f >= %.3f",
                              report["report_id"], report["share"], self.threshold)
                yield TriggerEvent({"status": "crossed", "report_id": report["report_id"]})
                return
            await asyncio.sleep(self.poke_interval)
