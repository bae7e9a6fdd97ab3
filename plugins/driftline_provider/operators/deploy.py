"""Blue-green deploy and rollback of registry versions behind the router."""

from __future__ import annotations

from typing import Any

from driftline_provider.assets import champion_asset
from driftline_provider.links import DriftlineReportLink
from driftline_provider.operators.base import DriftlineBaseOperator


class BlueGreenDeployOperator(DriftlineBaseOperator):
    """Start the candidate in the idle slot, verify it, switch traffic, keep the old slot.

    On success the registry's ``champion`` alias moves to the candidate and the pack's
    champion Asset event is published. Redeploying the live version changes nothing.

    :param pack: the dataset pack.
    :param candidate: the training result (an XComArg) naming the version.
    :param reason: why, recorded in the deploy history (templated).
    """

    template_fields = ("candidate", "reason")
    operator_extra_links = (DriftlineReportLink(),)

    def __init__(self, *, pack: str, candidate: Any, reason: str = "", **kwargs: Any):
        self.asset = champion_asset(pack)
        super().__init__(pack=pack, outlets=[self.asset], **kwargs)
        self.candidate = candidate
        self.reason = reason

    def report_link(self, ti_key) -> str:
        """The pack's serving history on the driftline page."""
        return f"packs/{self.pack}#serving"

    def execute(self, context) -> dict:
        from driftline.registry import Registry
        from driftline.serving.backend import serving_backend

        ws = self.workspace
        registry = Registry(ws.registry_dir, ws.model_name)
        version = registry.get(self.candidate["version"])
        reason = self.reason or f"gate passed in {context['run_id']}"
        state = serving_backend(ws).deploy(version, reason)
        registry.set_alias("champion", version.version, reason)
        self.log.info("%s %s is live in slot %s", ws.name, version.version, state["live"])
        context["outlet_events"][self.asset].extra = {
            "version": version.version, "slot": state["live"], "metric": ws.pack.metric,
            "value": version.metrics.get(ws.pack.metric)}
        return state


class RollbackOperator(DriftlineBaseOperator):
    """Switch traffic back to the previous slot and move the champion alias with it.

    :param pack: the dataset pack.
    :param reason: why (templated; e.g. from a manual trigger's Param).
    """

    template_fields = ("reason",)
    operator_extra_links = (DriftlineReportLink(),)

    def __init__(self, *, pack: str, reason: str, **kwargs: Any):
        super().__init__(pack=pack, **kwargs)
        self.reason = reason

    def report_link(self, ti_key) -> str:
        """The pack's serving history on the driftline page."""
        return f"packs/{self.pack}#serving"

    def execute(self, context) -> dict:
        from driftline.registry import Registry
        from driftline.serving.backend import serving_backend

        ws = self.workspace
        state = serving_backend(ws).rollback(self.reason)
        live_version = state["slots"][state["live"]]["version"]
        Registry(ws.registry_dir, ws.model_name).set_alias(
            "champion", live_version, f"rollback: {self.reason}")
        self.log.info("rolled back: %s is live in slot %s", live_version, state["live"])
        return state
