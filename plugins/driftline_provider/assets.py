"""The Assets driftline's DAGs produce and consume: four per pack."""

from __future__ import annotations

from airflow.sdk import Asset


def data_asset(pack: str) -> Asset:
    """A partition of ``pack`` was ingested; extra: day, md5, rows, data_version."""
    return Asset(name=f"driftline_{pack}_data", uri=f"driftline://{pack}/lake",
                 group="driftline")


def champion_asset(pack: str) -> Asset:
    """A new model version of ``pack`` went live; extra: version, slot, metric value."""
    return Asset(name=f"driftline_{pack}_champion", uri=f"driftline://{pack}/registry/champion",
                 group="driftline")


def drift_asset(pack: str) -> Asset:
    """A drift report of ``pack`` was written; extra: report_id, share, threshold, crossed."""
    return Asset(name=f"driftline_{pack}_drift_reports", uri=f"driftline://{pack}/reports/drift",
                 group="driftline")


def quality_asset(pack: str) -> Asset:
    """A live-quality report of ``pack`` was written; extra: report_id, status, metric,
    value, baseline, drop, crossed."""
    return Asset(name=f"driftline_{pack}_quality_reports",
                 uri=f"driftline://{pack}/reports/quality", group="driftline")
