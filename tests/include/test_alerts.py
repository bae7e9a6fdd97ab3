"""Alerts built from driftline's real records (``lifecycle_home``: a crossing drift report, a
refused gate, a quarantined file, live quality): the subject and body carry the record's
figures and a link to the report in the UI; nothing to say gives no alert."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from driftline import alerts
from driftline.settings import AlertsSettings, load_settings
from driftline.workspace import open_workspace

from tests.helpers import LIFECYCLE_RUN, PACKS, TEST_CONFIG, with_quality_limit

UI = "http://airflow.example.test:8080/"
JULY = (dt.date(2013, 7, 1), dt.date(2013, 7, 3))


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "driftline.toml"
    path.write_text(f"{TEST_CONFIG.read_text()}\n[packs.flights.alerts]\n"
                    f"email_to = [\"ops@example.test\"]\nui_base_url = \"{UI}\"\n{extra}")
    return path


def workspace(home: Path, cfg: Path):
    return open_workspace("flights", load_settings(home=home, config=cfg, packs_dir=PACKS))


@pytest.fixture
def ws(lifecycle_home, tmp_path):
    return workspace(lifecycle_home, config(tmp_path))


def served_path(link: str) -> str:
    """The report path a link names under the UI's /driftline/reports/flights/ route."""
    prefix = "http://airflow.example.test:8080/driftline/reports/flights/"
    assert link.startswith(prefix), link
    return link.removeprefix(prefix)


# -- settings ------------------------------------------------------------------------------------
def test_alerts_are_off_by_default_and_every_event_is_on_once_configured(lifecycle_home):
    from tests.helpers import workspace_at

    default = workspace_at(lifecycle_home)
    assert default.alerts == AlertsSettings()
    assert default.alerts.email_to == [] and default.alerts.webhook_conn_id == ""
    assert not alerts.configured(default) and not alerts.wanted(default, "drift")
    assert set(AlertsSettings().events) == set(alerts_events())


def alerts_events():
    from driftline.settings import ALERT_EVENTS

    return ALERT_EVENTS


def test_a_pack_override_turns_alerts_on_for_chosen_events_only(lifecycle_home, tmp_path):
    ws = workspace(lifecycle_home, config(tmp_path, 'events = ["gate_refused"]\n'
                                                    'webhook_conn_id = "hooks"\n'))
    assert alerts.configured(ws)
    assert alerts.wanted(ws, "gate_refused") and not alerts.wanted(ws, "drift")
    assert workspace(lifecycle_home, config(tmp_path)).alerts.events == list(alerts_events())


def test_an_unknown_event_is_refused_naming_the_section(lifecycle_home, tmp_path):
    with pytest.raises(ValueError, match=r"\[packs.flights.alerts\].*events"):
        workspace(lifecycle_home, config(tmp_path, 'events = ["drfit"]\n'))


# -- drift ---------------------------------------------------------------------------------------
def test_a_crossing_drift_report_alerts_with_its_share_threshold_columns_and_link(ws):
    summary = json.loads((ws.reports_dir / "drift" / "drift_2013-07-01_2013-07-03"
                          / "summary.json").read_text())
    assert summary["crossed"]
    alert = alerts.drift_alert(ws, summary["report_id"])
    assert alert.event == "drift" and alert.pack == "flights"
    drifted = sorted({c for d in summary["datasets"].values() for c in d["drifted"]})
    assert drifted
    assert alert.subject == (f"[driftline] flights: drift {summary['share']:.2f} over "
                             f"threshold {summary['threshold']:.2f} in 2013-07-01..2013-07-03 "
                             f"({len(drifted)} columns drifted)")
    assert (f"Drift share {summary['share']:.3f} >= threshold {summary['threshold']:.3f}"
            in alert.text)
    lake = summary["datasets"]["lake"]
    for column in lake["drifted"]:
        assert f"{column} ({lake['columns'][column]:.3g})" in alert.text
    assert (ws.reports_dir / served_path(alert.link)).is_file()
    assert alert.link in alert.text
    payload = alert.payload
    assert payload["figures"]["share"] == summary["share"]
    assert payload["figures"]["drifted_columns"] == drifted
    assert payload["figures"]["model_version"] == summary["model_version"] == "v0001"
    json.dumps(payload)  # JSON as it is


def test_a_drift_report_below_its_threshold_gives_no_alert(lifecycle_home, tmp_path):
    from driftline.monitoring import run_drift_report

    home = tmp_path / "home"
    shutil.copytree(lifecycle_home, home, symlinks=True)
    cfg = config(tmp_path)
    text = cfg.read_text()
    assert text.count("drift_share_threshold = 0.4") == 1  # the test config's pack override
    cfg.write_text(text.replace("drift_share_threshold = 0.4", "drift_share_threshold = 0.99"))
    ws = workspace(home, cfg)
    summary = run_drift_report(ws, *JULY)
    assert not summary["crossed"] and summary["threshold"] == 0.99
    assert alerts.drift_alert(ws, summary["report_id"]) is None
    assert alerts.drift_alert(ws, "drift_1999-01-01_1999-01-31") is None  # no such report


# -- gate ----------------------------------------------------------------------------------------
def test_a_refused_gate_alerts_with_each_failed_check_by_how_much_and_the_interval(ws):
    report_dir = ws.reports_dir / "gates" / "flights_train" / LIFECYCLE_RUN
    verdict = json.loads((report_dir / "verdict.json").read_text())
    failed = [c for c in verdict["checks"] if not c["passed"]]
    assert not verdict["passed"] and failed
    alert = alerts.gate_alert(ws, report_dir)
    assert alert.event == "gate_refused"
    assert alert.subject == (f"[driftline] flights: gate refused {verdict['candidate']} "
                             f"({len(failed)} failed check{'s' if len(failed) > 1 else ''})")
    assert f"champion {verdict['champion']} stays live" in alert.text
    for check in failed:
        assert check["name"] in alert.text
        if check["value"] is not None:
            assert f"= {check['value']:.4f}, limit {check['op']} {check['threshold']}" in alert.text
            assert f"off by {abs(check['margin']):.4f}" in alert.text
    significance = [c for c in failed if c["statistics"]]
    assert significance, "the one-stump candidate is significantly worse: its CI check fails"
    stats = significance[0]["statistics"]
    assert f"[{stats['low']:+.4f}, {stats['high']:+.4f}]" in alert.text
    assert served_path(alert.link) == f"gates/flights_train/{LIFECYCLE_RUN}/verdict.html"
    assert (ws.reports_dir / served_path(alert.link)).is_file()
    assert [c["name"] for c in alert.payload["figures"]["failed_checks"]] == [
        c["name"] for c in failed]


def test_a_passed_gate_gives_no_alert(ws, tmp_path):
    verdict = json.loads((ws.reports_dir / "gates" / "flights_train" / LIFECYCLE_RUN
                          / "verdict.json").read_text())
    passed = tmp_path / "passed"
    passed.mkdir()
    (passed / "verdict.json").write_text(json.dumps({**verdict, "passed": True}))
    assert alerts.gate_alert(ws, passed) is None
    assert alerts.gate_alert(ws, tmp_path / "no-gate-ran") is None


# -- quarantine ----------------------------------------------------------------------------------
def test_a_quarantined_file_alerts_with_its_failed_checks(ws):
    name = ws.landing_path(dt.date(2013, 7, 5)).name
    reason = json.loads((ws.quarantine_dir / f"{name}.reason.json").read_text())
    alert = alerts.quarantine_alert(ws, name)
    assert alert.event == "quarantine"
    assert alert.subject == (f"[driftline] flights: quarantined {name} "
                             f"({len(reason['failed'])} failed checks)")
    assert len(reason["failed"]) > 1
    for failure in reason["failed"]:
        assert f"- {failure}" in alert.text
    assert str(ws.quarantine_dir / name) in alert.text
    assert alert.link == f"{UI}driftline/packs/flights#quarantine"
    assert alert.payload["figures"]["failed"] == reason["failed"]
    later = (dt.datetime.fromisoformat(reason["quarantined_at"])
             + dt.timedelta(seconds=1)).isoformat()
    assert alerts.quarantine_alert(ws, name, since=later) is None  # an older quarantine
    assert alerts.quarantine_alert(ws, "flights_2013-07-04.csv") is None  # ingested fine


# -- live quality --------------------------------------------------------------------------------
def test_a_quality_crossing_alerts_with_the_live_metric_baseline_and_drop(lifecycle_home,
                                                                          tmp_path):
    from driftline.outcomes import measure_live_quality, quality_drop

    home = tmp_path / "home"
    shutil.copytree(lifecycle_home, home, symlinks=True)
    measured = json.loads((home / "reports" / "flights" / "quality"
                           / "quality_2013-07-01_2013-07-03" / "summary.json").read_text())
    assert measured["status"] == "measured"
    within = workspace(home, with_quality_limit(config(tmp_path), None))
    measure_live_quality(within, *JULY)
    assert alerts.quality_alert(within, measured["report_id"]) is None  # no limit: no crossing
    limit = round(measured["drop"] - 0.01, 4)  # just under what the live model lost
    ws = workspace(home, with_quality_limit(config(tmp_path), limit))
    summary = measure_live_quality(ws, *JULY)
    assert summary["crossed"] and summary["limit"] == limit
    assert summary["drop"] == pytest.approx(quality_drop("auc", summary["value"],
                                                         summary["baseline"]))
    alert = alerts.quality_alert(ws, summary["report_id"])
    assert alert.event == "quality"
    assert alert.subject == (f"[driftline] flights: live AUC {summary['value']:.4f} is "
                             f"{summary['drop']:.4f} worse than holdout "
                             f"{summary['baseline']:.4f} (limit {limit}) in "
                             "2013-07-01..2013-07-03")
    assert f"over the limit {limit}" in alert.text
    assert f"{summary['rows']} labelled rows" in alert.text
    assert served_path(alert.link) == "quality/quality_2013-07-01_2013-07-03/quality.html"
    assert (ws.reports_dir / served_path(alert.link)).is_file()
    assert alert.payload["figures"]["drop"] == summary["drop"]
    assert alerts.quality_alert(ws, "quality_2013-07-04_2013-07-06") is None  # pending


# -- deploy --------------------------------------------------------------------------------------
def test_an_auto_rollback_alerts_with_from_and_to_versions_and_the_reason(ws):
    from driftline.serving.deploy import switch_record

    reason = "post-switch check of v0002 failed: the router (slot green): /ready answered 502"
    status = {"live": "blue", "slots": {"blue": {"version": "v0001"},
                                        "green": {"version": None}},
              "history": [switch_record("deploy", None, "blue", "v0001", None, "first", 1.0),
                          switch_record("deploy", "blue", "green", "v0002", "v0001", "retrain",
                                        2.0),
                          switch_record("auto-rollback", "green", "blue", "v0001", "v0002",
                                        reason, 3.0)]}
    alert = alerts.deploy_alert(ws, "v0002", "DeployError: v0002 failed", status=status)
    assert alert.event == "auto_rollback"
    assert alert.subject == "[driftline] flights: auto-rollback v0002 -> v0001"
    assert "From v0002 (slot green) back to v0001 (slot blue)" in alert.text
    assert f"Reason: {reason}" in alert.text
    assert alert.link == f"{UI}driftline/packs/flights#serving"
    figures = alert.payload["figures"]
    assert (figures["from_version"], figures["to_version"]) == ("v0002", "v0001")
    # an older auto-rollback of the same version is not this failure
    later = (dt.datetime.fromisoformat(status["history"][-1]["at"])
             + dt.timedelta(seconds=1)).isoformat()
    failed = alerts.deploy_alert(ws, "v0002", "DeployError: slot green did not start",
                                 since=later, status=status)
    assert failed.event == "deploy_failed"


def test_a_failed_deploy_alerts_with_the_error_and_what_stays_live(ws):
    error = "DeployError: slot blue: v0002 did not become ready in 60 s"
    alert = alerts.deploy_alert(ws, "v0002", error)  # the real (never started) serving state
    assert alert.event == "deploy_failed"
    assert alert.subject == "[driftline] flights: deploy of v0002 failed (nothing is live)"
    assert f"Error: {error}" in alert.text
    assert alert.payload["figures"] == {"version": "v0002", "error": error, "live_slot": None,
                                        "live_version": None}


def test_an_alert_names_the_airflow_task_that_raised_it(ws):
    alert = alerts.drift_alert(ws, "drift_2013-07-01_2013-07-03").from_task(
        "flights_monitor", "scheduled__2013-07-01", "drift_report")
    assert alert.text.endswith("Airflow: flights_monitor / scheduled__2013-07-01 / drift_report")
    assert alert.payload["airflow"] == {"dag_id": "flights_monitor",
                                        "run_id": "scheduled__2013-07-01",
                                        "task_id": "drift_report"}
