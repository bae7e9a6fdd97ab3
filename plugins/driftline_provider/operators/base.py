"""What every driftline operator shares: the pack, the connection, and the workspace they
resolve to."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from driftline.workspace import Workspace

from driftline_provider.hooks.driftline import DriftlineHook


class DriftlineBaseOperator(BaseOperator):
    """Base for driftline operators.

    :param pack: the dataset pack the task works on.
    :param driftline_conn_id: connection naming driftline's state and DVC remote.
    """

    def __init__(self, *, pack: str, driftline_conn_id: str = DriftlineHook.default_conn_name,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.pack = pack
        self.driftline_conn_id = driftline_conn_id

    @cached_property
    def hook(self) -> DriftlineHook:
        return DriftlineHook(self.driftline_conn_id)

    @cached_property
    def workspace(self) -> Workspace:
        return self.hook.get_workspace(self.pack)


def run_slug(context) -> str:
    """A filesystem-safe name for this DAG run, for per-run report directories."""
    return slug(context["run_id"])


def slug(run_id: str) -> str:
    """``run_id`` with every run of characters outside ``[A-Za-z0-9_.-]`` as one ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
