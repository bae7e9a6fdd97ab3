"""The serving backend named by ``[serving] backend``, chosen through a name → class map.

Every backend offers ``deploy(model_version, reason)``, ``rollback(reason)`` and ``status()``
and returns the same shape: ``live`` (the live slot), ``slots`` (each slot's ``version``),
``history`` (switch records with their reasons), plus ``changed`` and ``switch`` from
``deploy``/``rollback``. Failures raise :class:`~driftline.serving.verify.DeployError` and
leave the live slot serving. Both run :mod:`driftline.serving.deploy` over their own
:class:`~driftline.serving.deploy.SlotPlatform`; a third backend is one module and one line
in :data:`SERVING_BACKENDS`.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from driftline.registry import ModelVersion
from driftline.workspace import Workspace

SERVING_BACKENDS = {
    "local": "driftline.serving.bluegreen.BlueGreen",
    "kubernetes": "driftline.serving.kubernetes.platform.KubernetesBlueGreen",
}
"""Backend name → class path, imported only when chosen (the Kubernetes one needs the
``kubernetes`` client)."""


class ServingBackend(Protocol):
    def deploy(self, model_version: ModelVersion, reason: str) -> dict: ...

    def rollback(self, reason: str) -> dict: ...

    def status(self) -> dict: ...


def serving_backend(ws: Workspace) -> ServingBackend:
    """The backend named by ``[serving] backend``, for one pack.

    :raises ValueError: an unknown backend name.
    """
    name = ws.settings.serving.backend
    if name not in SERVING_BACKENDS:
        raise ValueError(f"[serving] backend = {name!r}: expected one of "
                         f"{list(SERVING_BACKENDS)}")
    module, _, cls = SERVING_BACKENDS[name].rpartition(".")
    return getattr(importlib.import_module(module), cls)(ws)
