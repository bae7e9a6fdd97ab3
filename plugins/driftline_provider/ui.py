"""A small page inside the Airflow UI: models, gates, live slot and drift at a glance."""

from __future__ import annotations

import html
import json
from pathlib import Path

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

    view = collect_all(DriftlineHook().get_settings())
    view["airflow"] = _airflow_state()
    return view


def _airflow_state() -> dict:
    """Airflow's components as its health check sees them (a dead scheduler turns
    ``unhealthy`` once its heartbeat is stale), the watchdog's restarts, and what needs a
    person: backfill runs that cannot start because their DAG is paused."""
    from airflow.api.common.airflow_health import get_airflow_health
    from airflow.configuration import AIRFLOW_HOME
    from airflow.models import DagModel, DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    components = {name: (report or {}).get("status") or "not running"
                  for name, report in get_airflow_health().items()}
    with create_session() as session:
        waiting = dict(session.execute(
            select(DagRun.dag_id, func.count()).join(DagModel, DagModel.dag_id == DagRun.dag_id)
            .where(DagModel.is_paused.is_(True), DagRun.state == "queued",
                   DagRun.run_type == "backfill").group_by(DagRun.dag_id)).all())
    watchdog = Path(AIRFLOW_HOME) / "watchdog.json"
    restarts = ({name: entry.get("restarts", 0) for name, entry in
                 json.loads(watchdog.read_text()).items()} if watchdog.exists() else {})
    attention = [f"{name} is {state}" for name, state in components.items()
                 if state != "healthy"]
    attention += [f"{dag_id}: {count} backfill runs wait because the DAG is paused "
                  f"(unpause it to run them)" for dag_id, count in sorted(waiting.items())]
    return {"components": components, "restarts": restarts,
            "paused_backfill_runs": waiting, "attention": attention}


@app.get("/api/overview")
def overview() -> dict:
    """Machine-readable state per pack: models, champion, gate verdicts, drift, slots; and
    the packs that do not load, with their errors."""
    return _view()


@app.get("/", response_class=HTMLResponse)
def page() -> str:
    from driftline.overview import render_text

    view = _view()
    airflow = view["airflow"]
    status = ", ".join(f"{name} {state}" for name, state in airflow["components"].items())
    restarts = ", ".join(f"{name} {n}" for name, n in airflow["restarts"].items() if n)
    sections = [f"<h2>Airflow</h2><p>{html.escape(status)}"
                + (f"; restarted by the watchdog: {html.escape(restarts)}" if restarts else "")
                + "</p>"]
    if airflow["attention"]:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in airflow["attention"])
        sections.append(f"<h2>Needs attention</h2><ul>{items}</ul>")
    sections += [f"<h2>{html.escape(name)}</h2><pre style='font-size:13px'>"
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
