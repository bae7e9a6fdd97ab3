"""A small page inside the Airflow UI: models, gates, live slot and drift at a glance."""

from __future__ import annotations

import html

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from driftline_provider.hooks.driftline import DriftlineHook

# Every route needs a logged-in Airflow user (the UI's session cookie or a bearer token):
# Airflow mounts plugin apps without its own auth. No anonymous OpenAPI docs either.
app = FastAPI(title="driftline", description="driftline model lifecycle state",
              dependencies=[Depends(get_user)], docs_url=None, redoc_url=None,
              openapi_url=None)


def _view() -> dict:
    from driftline.overview import collect_all

    return collect_all(DriftlineHook().get_settings())


@app.get("/api/overview")
def overview() -> dict:
    """Machine-readable state per pack: models, champion, gate verdicts, drift, slots; and
    the packs that do not load, with their errors."""
    return _view()


@app.get("/", response_class=HTMLResponse)
def page() -> str:
    from driftline.overview import render_text

    view = _view()
    sections = [f"<h2>{html.escape(name)}</h2><pre style='font-size:13px'>"
                f"{html.escape(render_text(pack))}</pre>" for name, pack in view["packs"].items()]
    sections += [f"<h2>{html.escape(name)} (does not load)</h2><pre>{html.escape(error)}</pre>"
                 for name, error in view["broken"].items()]
    return (f"<!doctype html><title>driftline</title><h1>driftline</h1>{''.join(sections)}"
            f"<p><a href='api/overview'>JSON</a></p>")


class DriftlinePlugin(AirflowPlugin):
    """Mounts the driftline page at ``/driftline`` and links it from the Browse menu."""

    name = "driftline"
    fastapi_apps = [{"app": app, "url_prefix": "/driftline", "name": "driftline"}]
    external_views = [{"name": "driftline", "href": "/driftline/", "destination": "nav",
                       "category": "browse"}]
