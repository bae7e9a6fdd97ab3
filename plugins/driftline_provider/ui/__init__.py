"""The driftline pages inside the Airflow UI (see :mod:`.app`), registered as an Airflow
plugin through the ``airflow.plugins`` entry point."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from driftline_provider.ui.app import app


class DriftlinePlugin(AirflowPlugin):
    """Mounts the driftline pages at ``/driftline`` and links them from the Browse menu."""

    name = "driftline"
    fastapi_apps = [{"app": app, "url_prefix": "/driftline", "name": "driftline"}]
    external_views = [{"name": "driftline", "href": "/driftline/", "destination": "nav",
                       "category": "browse"}]
