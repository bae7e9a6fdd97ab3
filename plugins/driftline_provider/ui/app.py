"""The driftline pages inside the Airflow UI, mounted at ``/driftline``.

Routes (every one needs a logged-in Airflow user, through Airflow's own auth manager):

- ``/``: every pack at a glance, Airflow's component health, what needs attention.
- ``/packs/{pack}``: one pack's model history, drift, gates, serving history, lineage and
  stage times, with the Evidently reports and Airflow runs behind them.
- ``/reports/{pack}/{path}``: a report file (HTML or JSON) from the pack's report
  directory, nothing outside it.
- ``/api/overview`` and ``/api/packs/{pack}``: the same data as JSON, for scripts.
"""

from __future__ import annotations

from functools import cache

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from driftline_provider.hooks.driftline import DriftlineHook
from driftline_provider.ui.airflow_state import component_state, pack_runs
from driftline_provider.ui.pages import pack_page as pack_page_context

# Airflow mounts plugin apps without its own auth: every route depends on get_user (the
# UI's session cookie or a bearer token). No anonymous OpenAPI docs either.
app = FastAPI(title="driftline", description="driftline model lifecycle state",
              dependencies=[Depends(get_user)], docs_url=None, redoc_url=None,
              openapi_url=None)

REPORT_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
# A report is shown as a sandboxed document: its scripts run (Evidently's charts need them)
# but in an opaque origin, so they cannot read the Airflow session or call its API.
REPORT_HEADERS = {"Content-Security-Policy": "sandbox allow-scripts",
                  "X-Content-Type-Options": "nosniff"}


@cache
def _templates():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("driftline_provider.ui", "templates"),
                      autoescape=select_autoescape(["html"]))
    env.filters["seconds"] = lambda v: "-" if v is None else f"{v:.1f} s"
    env.filters["num"] = lambda v: "n/a" if v is None else f"{v:.4f}"
    env.filters["figures"] = figures
    return env


def figures(details: dict, prefix: str = "") -> str:
    """``k=v; ...`` of a history record's figures, nested ones as ``shadow.rows=500``."""
    parts = []
    for key, value in details.items():
        if isinstance(value, dict):
            parts.append(figures(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={value}")
    return "; ".join(p for p in parts if p)


def _render(template: str, **context) -> HTMLResponse:
    return HTMLResponse(_templates().get_template(template).render(**context))


@app.exception_handler(401)
async def _login_first(request: Request, exc: HTTPException) -> Response:
    """A browser without a session goes to Airflow's login page and comes back; scripts get
    the 401."""
    if "text/html" not in request.headers.get("accept", ""):
        return Response(status_code=401, content='{"detail":"Not authenticated"}',
                        media_type="application/json")
    from airflow.api_fastapi.app import get_auth_manager

    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)),
                            status_code=303)


def _workspaces():
    from driftline.workspace import open_workspaces

    return open_workspaces(DriftlineHook().get_settings())


def _workspace(pack: str):
    workspaces, _ = _workspaces()
    if pack not in workspaces:
        raise HTTPException(404, f"no pack named {pack!r}")
    return workspaces[pack]


def _view() -> dict:
    from driftline.overview import collect_all

    view = collect_all(DriftlineHook().get_settings())
    view["airflow"] = component_state()
    return view


def _pack_view(pack: str) -> tuple[dict, dict]:
    from driftline.overview import collect

    return collect(_workspace(pack)), pack_runs(pack)


@app.get("/api/overview")
def overview() -> dict:
    """Machine-readable state per pack: models, champion, gate verdicts, drift, slots,
    quarantine, validation and ``summary``; Airflow's components under ``airflow``; and the
    packs that do not load, with their errors."""
    return _view()


@app.get("/api/packs/{pack}")
def pack_api(pack: str) -> dict:
    """One pack's view plus ``runs``: its recent DAG runs with task states and durations,
    median seconds per stage, and the runs that made each data and model version."""
    view, runs = _pack_view(pack)
    return {**view, "runs": runs}


@app.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    return _render("index.html", root="../", **_view())


@app.get("/packs/{pack}", response_class=HTMLResponse)
def pack_page(pack: str) -> HTMLResponse:
    view, runs = _pack_view(pack)
    return _render("pack.html", **pack_page_context(view, runs, root="../../"))


@app.get("/reports/{pack}/{path:path}")
def report(pack: str, path: str) -> FileResponse:
    """A file of the pack's report directory; 404 for anything that resolves outside it
    (``..``, an absolute path, a symlink pointing out) or is not an HTML/JSON report."""
    root = _workspace(pack).reports_dir.resolve()
    target = (root / path).resolve()
    if (not target.is_relative_to(root) or not target.is_file()
            or target.suffix not in REPORT_TYPES):
        raise HTTPException(404, f"no report {path!r} for pack {pack!r}")
    return FileResponse(target, media_type=REPORT_TYPES[target.suffix],
                        headers=REPORT_HEADERS)

