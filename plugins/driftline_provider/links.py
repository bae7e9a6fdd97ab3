"""Operator extra links: from a gate, monitor or deploy task instance in the Airflow UI to
the driftline report or page that task wrote, in one click."""

from __future__ import annotations

from urllib.parse import quote, urlparse

from airflow.sdk import BaseOperatorLink


def driftline_url(path: str) -> str:
    """``/driftline/<path>`` under the api-server's ``[api] base_url`` path (behind a proxy
    prefix too)."""
    from airflow.configuration import conf

    prefix = urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{prefix}/driftline/{path}"


def report_path(pack: str, *parts: str) -> str:
    """``reports/<pack>/<parts...>``, each part URL-quoted (the UI's report route)."""
    return "/".join(["reports", quote(pack, safe=""), *(quote(p, safe="") for p in parts)])


class DriftlineReportLink(BaseOperatorLink):
    """The report the task wrote (the operator's ``report_link(ti_key)``), falling back to
    the pack's driftline page."""

    name = "driftline report"

    def get_link(self, operator, *, ti_key) -> str:
        link = getattr(operator, "report_link", None)
        path = link(ti_key) if link else None
        return driftline_url(path or f"packs/{quote(operator.pack, safe='')}")
