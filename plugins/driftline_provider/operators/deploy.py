"""Blue-green deploy and rollback of registry versions behind the router."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

from driftline_provider.assets import CHAMPION
from driftline_provider.operators.base import DriftlineBaseOperator


class BlueGreenDeployOperator(DriftlineBaseOperator):
    """Start the candidate in the idle slot, verify it, switch traffic, keep the old slot.

    On success the registry's ``champion`` alias moves to the candidate and a
    :data:`CHAMPION` Asset event is published. Redeploying the live version changes nothing.

    :param candidate: the training result (an XComArg) naming the version.
    :param reason: why, recorded in the deploy history (templated).
    """

    template_fields = ("candidate", "reason")

    def __init__(self, *, candidate: Any, reason: str = "", asset: Asset = CHAMPION,
                 **kwargs: Any):
        super().__init__(outlets=[asset], **kwargs)
        self.candidate = candidate
        self.reason = reason
        self.asset = asset

    def execute(self, context) -> dict:
        from driftline.registry import Registry
        from driftline.serving.backend import serving_backend

        settings = self.settings
        registry = Registry(settings.registry_dir, settings.model_name)
        version = registry.get(self.candidate["version"])
        reason = self.reason or f"gate passed in {context['run_id']}"
        state = serving_backend(settings).deploy(version, reason)
        registry.set_alias("champion", version.version, reason)
        self.log.info("%s is live in slot %s", version.version, state["live"])
        context["outlet_events"][self.asset].extra = {
            "version": version.version, "slot": state["live"],
            "auc": version.metrics.get("auc")}
        return state


class RollbackOperator(DriftlineBaseOperator):
    """Switch traffic back to the previous slot and move the champion alias with it.

    :param reason: why (templated; e.g. from a manual trigger's Param).
    """

    template_fields = ("reason",)

    def __init__(self, *, reason: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.reason = reason

    def execute(self, context) -> dict:
        from driftline.registry import Registry
        from driftline.serving.backend import serving_backend

        settings = self.settings
        state = serving_backend(settings).rollback(self.reason)
        live_version = state["slots"][state["live"]]["version"]
        Registry(settings.registry_dir, settings.model_name).set_alias(
            "champion", live_version, f"rollback: {self.reason}")
        self.log.info("rolled back: %s is live in slot %s", live_version, state["live"])
        return state
