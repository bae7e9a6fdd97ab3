"""The UI page is registered through the ``airflow.plugins`` entry point, so Airflow's
``plugins_folder`` can stay an empty directory (pointed at ``plugins/`` it would import every
``.py`` there as a loose module). Each check runs Airflow's own plugins manager, and the
api-server's own app, in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from tests.helpers import ROOT, workspace_at

PROBE = """
import json, sys, warnings
warnings.simplefilter("ignore")
from airflow import plugins_manager, settings
plugins, errors = plugins_manager._get_plugins()
result = {"folder": settings.PLUGINS_FOLDER, "errors": errors,
          "plugins": [{"name": p.name, "source": type(p.source).__name__,
                       "prefixes": [a["url_prefix"] for a in p.fastapi_apps]} for p in plugins]}
if sys.argv[1:] == ["serve"]:
    from fastapi.testclient import TestClient
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    with TestClient(create_app(apps="core")) as client:
        anonymous = client.get("/driftline/api/overview").status_code
        admin = SimpleAuthManagerUser(username="admin", role="ADMIN")
        token = get_auth_manager().generate_jwt(admin)
        client.headers["Authorization"] = f"Bearer {token}"
        overview, page = client.get("/driftline/api/overview"), client.get("/driftline/")
    result.update(anonymous=anonymous, overview=[overview.status_code, overview.json()],
                  page=[page.status_code, page.text])
print("RESULT " + json.dumps(result))
"""


def probe(env: dict, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


def test_the_entry_point_names_the_ui_plugin_of_the_installed_provider():
    from airflow.plugins_manager import AirflowPlugin
    from driftline_provider.ui import DriftlinePlugin

    (ep,) = [e for e in entry_points(group="airflow.plugins") if e.name == "driftline"]
    assert ep.dist.name == "airflow-provider-driftline"
    assert ep.value == "driftline_provider.ui:DriftlinePlugin"
    plugin = ep.load()
    assert plugin is DriftlinePlugin and issubclass(plugin, AirflowPlugin)


def test_airflow_mounts_the_page_from_the_entry_point_with_an_empty_plugins_folder(
        airflow_db, home_copy):
    folder = Path(os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"])
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert not folder.resolve().is_relative_to(ROOT / "plugins")
    result = probe({**os.environ, "DRIFTLINE_HOME": str(home_copy)}, "serve")

    assert result["folder"] == str(folder) and result["errors"] == {}
    assert result["plugins"] == [{"name": "driftline", "source": "EntryPointSource",
                                  "prefixes": ["/driftline"]}]
    assert result["anonymous"] == 401  # the page needs a logged-in Airflow user
    status, overview = result["overview"]
    assert status == 200 and overview["home"] == str(home_copy)
    from driftline.registry import Registry

    ws = workspace_at(home_copy)
    versions = [v.version for v in Registry(ws.registry_dir, "flights").versions()]
    assert versions == ["v0001"]
    assert [m["version"] for m in overview["packs"]["flights"]["models"]] == versions
    assert set(overview["packs"]) == {"flights", "bikes"} and overview["broken"] == {}
    status, page = result["page"]
    assert status == 200
    assert '<a href="packs/flights">flights</a>' in page and '<a href="packs/bikes">' in page


def test_a_plugins_folder_at_plugins_would_load_loose_modules_and_the_plugin_twice():
    """Why the folder stays empty: pointed at ``plugins/``, Airflow imports the provider's
    files as loose modules (``operators/kubernetes.py`` shadows the ``kubernetes`` package)
    and then refuses the entry point's plugin as already registered."""
    result = probe({**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins")})
    assert [p["source"] for p in result["plugins"] if p["name"] == "driftline"] == [
        "PluginsDirectorySource"]
    errors = result["errors"]
    assert any("group='airflow.plugins'" in k and "already registered" in v
               for k, v in errors.items()), errors
    assert str(ROOT / "plugins" / "driftline_provider" / "operators" / "kubernetes.py") in errors


def test_every_airflow_this_project_starts_uses_a_plugins_folder_outside_plugins(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from airflow_stack import airflow_env
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    env = airflow_env(ROOT, tmp_path / "airflow", tmp_path / "driftline")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(tmp_path / "airflow" / "plugins")
    makefile = (ROOT / "Makefile").read_text()
    assert "export AIRFLOW__CORE__PLUGINS_FOLDER := $(AIRFLOW_HOME)/plugins" in makefile
    assert "AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/plugins" in (
        ROOT / "Dockerfile.airflow").read_text()


def test_eager_provider_discovery_registers_the_page_once(airflow_db):
    """The page is registered by the entry point only (the provider info names no plugin),
    so Airflow does not try to load it twice when providers are discovered eagerly."""
    result = probe({**os.environ, "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": "False"})
    assert result["errors"] == {}
    assert [p["name"] for p in result["plugins"]] == ["driftline"]
