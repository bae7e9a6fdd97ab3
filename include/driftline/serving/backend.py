"""One deploy interface over the two serving backends.

Both backends offer ``deploy(model_version, reason)``, ``rollback(reason)`` and
``status()`` and return the same shape: ``live`` (the live slot), ``slots`` (each slot's
``version``), ``history`` (switch records with their reasons), plus ``changed`` and
``switch`` from ``deploy``/``rollback``. Failures raise
:class:`~driftline.serving.bluegreen.DeployError` and leave the live slot serving.
"""

from __future__ import annotations

from typing import Protocol

from driftline.registry import ModelVersion
from driftline.settings import Settings

BACKENDS = ("local", "kubernetes")


class ServingBackend(Protocol):
    def deploy(self, model_version: ModelVersion, reason: str) -> dict: ...

    def rollback(self, reason: str) -> dict: ...

    def status(self) -> dict: ...


def serving_backend(settings: Settings) -> ServingBackend:
    """The backend named by ``settings.serving.backend``.

    :raises ValueError: an unknown backend name.
    """
    name = settings.serving.backend
    if name == "local":
        from driftline.serving.bluegreen import BlueGreen

        return BlueGreen(settings)
    if name == "kubernetes":
        from driftline.serving.kubernetes import KubernetesBlueGreen

        return KubernetesBlueGreen(settings)
    raise ValueError(f"[serving] backend = {name!r}: expected one of {list(BACKENDS)}")
