"""The promotion gate: candidate vs live champion, with Evidently reports kept per run."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from driftline_provider.links import DriftlineReportLink, report_path
from driftline_provider.operators.base import DriftlineBaseOperator, run_slug, slug


class ModelGateOperator(DriftlineBaseOperator):
    """Refuse a candidate that is worse than the champion by more than the configured limits,
    or (``[gate] significance``) significantly worse, or not significantly better.

    The verdict (each check's value, limit and margin) is logged as a table and kept with
    the HTML reports in ``reports/<pack>/gates/<dag_id>/<run_id>/``. A refused candidate fails the
    task without retrying, so the deploy does not run and the live model stays.

    :param pack: the dataset pack.
    :param candidate: the training result (an XComArg) naming the candidate version.
    """

    template_fields = ("candidate",)
    operator_extra_links = (DriftlineReportLink(),)

    def __init__(self, *, pack: str, candidate: Any, **kwargs: Any):
        super().__init__(pack=pack, **kwargs)
        self.candidate = candidate

    def report_link(self, ti_key) -> str | None:
        """The gate's verdict page for this run, linking Evidently's reports (none when
        there was nothing to gate)."""
        parts = ("gates", ti_key.dag_id, slug(ti_key.run_id))
        if not (self.workspace.reports_dir.joinpath(*parts) / "verdict.html").exists():
            return None
        return report_path(self.pack, *parts, "verdict.html")

    def execute(self, context) -> dict:
        from driftline.evaluation import run_gate
        from driftline.registry import Registry

        ws = self.workspace
        registry = Registry(ws.registry_dir, ws.model_name)
        candidate = registry.get(self.candidate["version"])
        champion = registry.champion()
        if champion and champion.version == candidate.version:
            self.log.info("%s is already the champion; nothing to gate", candidate.version)
            return {"candidate": candidate.version, "champion": champion.version,
                    "passed": True, "reason": "already live", "checks": []}
        report_dir = ws.reports_dir / "gates" / context["dag"].dag_id / run_slug(context)
        verdict = run_gate(ws.pack, candidate, champion, ws.gate, report_dir,
                           ws.monitor.column_drift_threshold)
        for line in verdict.table().splitlines():
            self.log.info("%s", line)
        self.log.info("gate reports: %s", report_dir)
        if not verdict.passed:
            registry.record("refused", candidate.version, verdict.reason(),
                            champion=verdict.champion, report_dir=str(report_dir))
            raise AirflowFailException(
                f"gate refused {candidate.version} (champion "
                f"{verdict.champion or 'none'} stays live): {verdict.reason()}")
        return verdict.to_dict()
