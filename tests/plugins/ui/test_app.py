"""The driftline pages through the api-server's own app (Airflow's ``create_app`` with its
auth manager, in a fresh interpreter) on ``lifecycle_home``: anonymous clients are refused
(a browser is sent to Airflow's login), a logged-in user sees the pages, the plots and the
report links, and the report route serves only files of the pack's report directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.helpers import LIFECYCLE_RUN, workspace_at

PROBE = """
import json, sys, warnings
warnings.simplefilter("ignore")
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app, get_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
requests = json.loads(sys.argv[1])
out = []
with TestClient(create_app(apps="core"), follow_redirects=False) as client:
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin",
                                                                   role="ADMIN"))
    for who, path, accept in requests:
        headers = {"Accept": accept}
        if who == "admin":
            headers["Authorization"] = f"Bearer {token}"
        elif who == "cookie":
            client.cookies.set("_token", token)
        r = client.get(path, headers=headers)
        client.cookies.clear()
        out.append({"status": r.status_code, "headers": dict(r.headers), "text": r.text})
print("RESULT " + json.dumps(out))
"""
HTML = "text/html,application/xhtml+xml"
GATE = f"gates/flights_train/{LIFECYCLE_RUN}"


def fetch(home, *requests) -> list[dict]:
    env = {**os.environ, "DRIFTLINE_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(requests)],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture(scope="module")
def home(tmp_path_factory, lifecycle_home, airflow_db):
    """A copy of ``lifecycle_home`` with files outside the report directory that a
    traversal would reach: a secret beside it, and symlinks in it pointing out."""
    home = tmp_path_factory.mktemp("ui") / "home"
    shutil.copytree(lifecycle_home, home, symlinks=True)
    reports = workspace_at(home).reports_dir
    (home / "secret.json").write_text('{"password": "hunter2"}')
    (reports / "escape.json").symlink_to(home / "secret.json")
    (reports / "gates" / "escape").symlink_to(home)
    (reports / "notes.txt").write_text("not a report")
    return home


ROUTES = ["/driftline/", "/driftline/packs/flights", "/driftline/api/overview",
          "/driftline/api/packs/flights", f"/driftline/reports/flights/{GATE}/quality.html"]


def test_anonymous_clients_are_refused_and_browsers_sent_to_the_login(home):
    for accept in ("application/json", HTML):
        answers = fetch(home, *[("anonymous", path, accept) for path in ROUTES])
        for path, answer in zip(ROUTES, answers, strict=True):
            if accept == HTML:
                assert answer["status"] == 303, path
                assert "/auth/" in answer["headers"]["location"] and "login" in answer[
                    "headers"]["location"], path
                assert "flights" not in answer["text"]
            else:
                assert answer["status"] == 401, path
                assert "v0001" not in answer["text"]


def test_a_logged_in_user_sees_every_route(home):
    answers = fetch(home, *[("admin", path, HTML) for path in ROUTES],
                    ("cookie", "/driftline/packs/flights", HTML))
    assert [a["status"] for a in answers] == [200] * (len(ROUTES) + 1)
    assert answers[-1]["text"] == answers[1]["text"]  # the UI's session cookie is enough


def test_the_pack_page_plots_models_and_drift_and_links_every_report(home):
    ws = workspace_at(home)
    (page,) = fetch(home, ("admin", "/driftline/packs/flights", HTML))
    text = page["text"]
    svgs = [ET.fromstring(s[:s.index("</svg>") + 6])
            for s in ("<svg" + part for part in text.split("<svg")[1:])]
    classes = [s.get("class") for s in svgs]
    assert classes[:2] == ["chart models", "chart drift"] and "chart columns" in classes
    columns = svgs[classes.index("chart columns")]
    (line,) = columns.findall("{http://www.w3.org/2000/svg}line[@class='threshold']")
    assert line.find("{http://www.w3.org/2000/svg}title").text == (
        f"threshold {ws.monitor.column_drift_threshold:.3g}")
    ns = {"svg": "http://www.w3.org/2000/svg"}
    models = svgs[0].findall(".//svg:circle", ns)
    assert [c.get("class") for c in models] == ["point marked", "point"]  # v0001 champion
    saved = json.loads((ws.reports_dir / GATE / "verdict.json").read_text())
    for check in saved["checks"]:
        assert f"<td>{check['name']}</td>" in text
    (significance,) = [c for c in saved["checks"] if c.get("statistics")]
    assert f"<td>{significance['detail']}" in text  # the interval, p-value and rows
    assert "statistics=" not in text and "=None" not in text
    assert 'class="fail">REFUSED</span>\n v0002 vs v0001' in text
    for report in ("quality.html", "drift.html", "verdict.json"):
        assert f'href="../../driftline/reports/flights/{GATE}/{report}"' in text
    assert ('href="../../driftline/reports/flights/drift/drift_2013-07-01_2013-07-03/'
            'lake.html"') in text
    assert 'href="../../dags/flights_train"' in text  # retrain: the DAG's trigger
    assert 'href="../../dags/flights_rollback"' in text
    assert "flights_2013-07-05.csv" in text  # quarantined, with its checks
    assert "the last gate refused v0002" in text
    # live quality: the measured interval on the chart and in the table, the pending one
    # with its reason, never as a zero
    assert "chart quality" in classes
    assert ('href="../../driftline/reports/flights/quality/quality_2013-07-01_2013-07-03/'
            'quality.html"') in text
    pending = text[text.index('id="quality-quality_2013-07-04_2013-07-06"'):]
    assert "<td>pending</td>" in pending[:400] and "2013-07-06" in pending[:800]


def test_reports_are_served_from_the_report_directory_only(home):
    ws = workspace_at(home)
    base = "/driftline/reports/flights/"
    answers = fetch(home, *[("admin", base + path, HTML) for path in (
        f"{GATE}/quality.html",
        "validation/2013-07-04.json",
        "..%2F..%2Fsecret.json",
        "../../secret.json",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "escape.json",
        "gates/escape/secret.json",
        "notes.txt",
        f"{GATE}/../../../../../secret.json",
    )], ("admin", "/driftline/reports/nosuchpack/x.json", HTML))
    quality, validation, *refused = answers
    assert quality["status"] == 200
    assert quality["text"] == (ws.reports_dir / GATE / "quality.html").read_text()
    assert quality["headers"]["content-security-policy"] == "sandbox allow-scripts"
    assert json.loads(validation["text"]) == json.loads(
        (ws.reports_dir / "validation" / "2013-07-04.json").read_text())
    assert [a["status"] for a in refused] == [404] * len(refused)
    assert not any("hunter2" in a["text"] or "root:" in a["text"] for a in refused)
