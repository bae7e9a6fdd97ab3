"""Trigger that waits in the triggerer until the retrain policy names an interval."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class RetrainPolicyTrigger(BaseTrigger):
    """Fire when :func:`driftline.retraining.next_trigger` names an interval to retrain on.

    The trigger finds; it does not claim (the sensor does, on a worker), so a second
    trigger firing on the same interval starts nothing.

    :param pack: the dataset pack.
    :param home: driftline's state directory (``Settings.home``).
    :param packs_dir: the packs directory.
    :param config_file: driftline's TOML file, if any.
    :param poke_interval: seconds between looks.
    :param wait_first: seconds to wait before the first look (a train run was active).
    """

    def __init__(self, pack: str, home: str, packs_dir: str, config_file: str | None,
                 poke_interval: float = 5.0, wait_first: float = 0.0):
        super().__init__()
        self.pack = pack
        self.home = home
        self.packs_dir = packs_dir
        self.config_file = config_file
        self.poke_interval = poke_interval
        self.wait_first = wait_first

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"pack": self.pack, "home": self.home, "packs_dir": self.packs_dir,
                 "config_file": self.config_file, "poke_interval": self.poke_interval,
                 "wait_first": self.wait_first})

    def _next(self) -> dict | None:
        from driftline.retraining import next_trigger
        from driftline.settings import load_settings
        from driftline.workspace import open_workspace

        settings = load_settings(self.home, self.config_file, self.packs_dir)
        decision = next_trigger(open_workspace(self.pack, settings))
        return decision and {"start": decision.start, "end": decision.end,
                             "reason": decision.reason}

    async def run(self):
        await asyncio.sleep(self.wait_first)
        while True:
            found = await asyncio.to_thread(self._next)
            if found:
                self.log.info("%s: %s..%s is due: %s", self.pack, found["start"],
                              found["end"], found["reason"])
                yield TriggerEvent({"status": "due", **found})
                return
            await asyncio.sleep(self.poke_interval)
