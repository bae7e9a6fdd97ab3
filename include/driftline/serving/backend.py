"""One deploy interface over the two serving backends.

Both backends offer ``deploy(model_version, reason)``, ``rollback(reason)`` and
``status()`` and return the same shape: ``live`` (the live slot), ``slots`` (each slot's
``version``), ``history`` (switch records with their reasons), plus ``changed`` and
``switch`` from ``deploy``/``rollback``. Failures raise
:class:`~driftline.serving.bluegreen.DeployError` and leave the live slot serving.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from driftline.registry import ModelVersion
from driftline.workspace import Workspace

BACKENDS = ("local", "kubernetes")


class ServingBackend(Protocol):
    def deploy(self, model_version: ModelVersion, reason: str) -> dict: ...

    def rollback(self, reason: str) -> dict: ...

    def status(self) -> dict: ...


def utc_now() -> str:
    """Now, as an ISO 8601 UTC timestamp to the millisecond (state and history records)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def switch_record(action: str, from_slot: str | None, to_slot: str, version: str,
                  previous_version: str | None, reason: str, switched_at: float,
                  **extra) -> dict:
    """One history entry of either backend: a deploy, rollback or auto-rollback.

    :param switched_at: wall-clock time of the switch (``time.time()``).
    :param extra: backend-specific figures (how long confirming took, shadow results).
    """
    return {"at": utc_now(), "action": action, "from_slot": from_slot, "to_slot": to_slot,
            "version": version, "previous_version": previous_version, "reason": reason,
            "switched_at": round(switched_at, 6), **extra}


def serving_backend(ws: Workspace) -> ServingBackend:
    """The backend named by ``[serving] backend``, for one pack.

    :raises ValueError: an unknown backend name.
    """
    name = ws.settings.serving.backend
    if name == "local":
        from driftline.serving.bluegreen import BlueGreen

        return BlueGreen(ws)
    if name == "kubernetes":
        from driftline.serving.kubernetes import KubernetesBlueGreen

        return KubernetesBlueGreen(ws)
    raise ValueError(f"[serving] backend = {name!r}: expected one of {list(BACKENDS)}")
