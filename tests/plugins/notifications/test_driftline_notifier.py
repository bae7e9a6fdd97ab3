"""The alert notifier sending through real sinks on loopback (an SMTP server with AUTH, an
HTTP server) via Airflow connections from ``AIRFLOW_CONN_*``: what the sinks received (subject,
body figures, JSON fields), nothing when alerts are off, a dead sink never fails the task, no
secret in a message or the log; and a real task failure under ``dag.test()`` sending its
alert."""

from __future__ import annotations

import datetime as dt
import faulthandler
import json
import types
from pathlib import Path

import pytest
from driftline_provider.notifications.driftline import DriftlineNotifier

from tests.alert_sinks import (  # noqa: F401 (fixtures)
    SMTP_LOGIN,
    SMTP_PASSWORD,
    WEBHOOK_TOKEN,
    http_sink,
    smtp_sink,
)
from tests.helpers import (
    LIFECYCLE_RUN,
    TEST_CONFIG,
    kill_green_after_the_switch,
    with_quality_limit,
)

UI = "http://airflow.example.test:8080"
RUN_ID = "manual__2013-07-04T00:00:00+00:00"  # its report directory is LIFECYCLE_RUN
SECRETS = (SMTP_PASSWORD, WEBHOOK_TOKEN)


def alerts_config(tmp_path: Path, alerts: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(f"{TEST_CONFIG.read_text()}\n[packs.flights.alerts]\n{alerts}\n")
    return path


def point_alerts_at(monkeypatch, home: Path, config: Path, smtp, webhook) -> None:
    """The flights pack's alert connections on both sinks, and driftline on ``home`` with
    ``config``."""
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", smtp.connection())
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_HOOK", webhook.connection())
    monkeypatch.setenv("DRIFTLINE_HOME", str(home))
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(config))


@pytest.fixture
def sinks(smtp_sink, http_sink, monkeypatch, tmp_path, lifecycle_home):  # noqa: F811
    """Both sinks as the flights pack's alert connections, on ``lifecycle_home``."""
    point_alerts_at(monkeypatch, lifecycle_home, alerts_config(tmp_path, (
        'email_to = ["ops@example.test", "ml@example.test"]\nsmtp_conn_id = "smtp_alerts"\n'
        f'webhook_conn_id = "alerts_hook"\nui_base_url = "{UI}"')), smtp_sink, http_sink)
    return smtp_sink, http_sink


DAGS = {"ingest_partition": "flights_ingest", "gate": "flights_train",
        "deploy": "flights_train", "drift_report": "flights_monitor",
        "live_quality": "flights_monitor"}


def context(task, run_id: str = RUN_ID, exception: BaseException | None = None,
            started: dt.datetime | None = None) -> dict:
    """The callback context Airflow hands a notifier: the task, its instance (of the task's
    DAG in the factory), the error."""
    ti = types.SimpleNamespace(dag_id=DAGS[task.task_id], run_id=run_id,
                               task_id=task.task_id, start_date=started)
    return {"task": task, "ti": ti, "task_instance": ti, "run_id": run_id,
            "exception": exception}


def gate_task():
    from driftline_provider.operators.gate import ModelGateOperator

    return ModelGateOperator(task_id="gate", pack="flights", candidate={"version": "v0002"})


def logged(capfd) -> str:
    """What was logged since the last call (the task log goes to the process's output)."""
    out, err = capfd.readouterr()
    return out + err


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_a_refused_gate_is_emailed_and_posted_with_its_failed_checks(sinks, lifecycle_home,
                                                                     capfd):
    smtp, hook = sinks
    verdict = json.loads((lifecycle_home / "reports" / "flights" / "gates" / "flights_train"
                          / LIFECYCLE_RUN / "verdict.json").read_text())
    failed = [c for c in verdict["checks"] if not c["passed"]]
    link = (f"{UI}/driftline/reports/flights/gates/flights_train/{LIFECYCLE_RUN}/"
            "verdict.html")
    DriftlineNotifier(event="gate_refused")(context(gate_task()))
    log = logged(capfd)

    (mail,) = smtp.wait_for(1)
    (post,) = hook.wait_for(1)
    subject = f"[driftline] flights: gate refused v0002 ({len(failed)} failed checks)"
    assert mail.subject == subject
    assert sorted(mail.rcpt_to) == ["ml@example.test", "ops@example.test"]
    assert mail.mail_from == "driftline@example.test" and smtp.logins == [SMTP_LOGIN]
    assert mail.message["X-Driftline-Event"] == "gate_refused"
    for check in failed:
        assert check["name"] in mail.html
    stats = next(c["statistics"] for c in failed if c["statistics"])
    assert f"[{stats['low']:+.4f}, {stats['high']:+.4f}]" in mail.html
    assert f'<a href="{link}">' in mail.html
    assert f"Airflow: flights_train / {RUN_ID} / gate" in mail.html

    assert post["path"] == "/hooks/driftline"
    assert post["headers"]["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    body = post["json"]
    assert body["event"] == "gate_refused" and body["pack"] == "flights"
    assert body["subject"] == subject and body["link"] == link
    assert body["figures"]["candidate"] == "v0002" and body["figures"]["champion"] == "v0001"
    assert [c["margin"] for c in body["figures"]["failed_checks"]] == [c["margin"]
                                                                      for c in failed]
    assert body["airflow"] == {"dag_id": "flights_train", "run_id": RUN_ID, "task_id": "gate"}
    assert_no_secret(mail.raw, post["raw"], log)
    assert "sent by email" in log and "sent by webhook" in log
    show("gate refused", mail, post)


def test_a_crossing_drift_report_alerts_on_success_and_a_passing_one_does_not(sinks,
                                                                                capfd):
    from driftline_provider.operators.monitor import DriftReportOperator

    smtp, hook = sinks
    crossing = DriftReportOperator(task_id="drift_report", pack="flights", start="2013-07-01",
                                   end="2013-07-03")
    DriftlineNotifier(event="drift")(context(crossing, "scheduled__2013-07-01"))
    (mail,) = smtp.wait_for(1)
    (post,) = hook.wait_for(1)
    assert mail.subject.startswith("[driftline] flights: drift ")
    assert "in 2013-07-01..2013-07-03" in mail.subject
    figures = post["json"]["figures"]
    assert figures["share"] >= figures["threshold"] == 0.4
    for column in figures["drifted_columns"]:
        assert column in mail.html
    assert post["json"]["link"] == (f"{UI}/driftline/reports/flights/drift/"
                                    "drift_2013-07-01_2013-07-03/lake.html")

    no_report = DriftReportOperator(task_id="drift_report", pack="flights",
                                    start="2013-08-01", end="2013-08-31")
    DriftlineNotifier(event="drift")(context(no_report, "scheduled__2013-08-01"))
    assert "nothing to alert about" in logged(capfd)
    assert len(smtp.wait_for(2, timeout=1)) == 1 and len(hook.requests) == 1
    show("drift", mail, post)


def test_a_quarantined_file_is_alerted_only_if_quarantined_in_this_try(sinks, lifecycle_home):
    from driftline_provider.operators.ingest import IngestPartitionOperator

    smtp, hook = sinks
    task = IngestPartitionOperator(task_id="ingest_partition", pack="flights",
                                   start="2013-07-05")
    reason = json.loads(next((lifecycle_home / "quarantine" / "flights")
                             .glob("*.reason.json")).read_text())
    quarantined = dt.datetime.fromisoformat(reason["quarantined_at"])
    DriftlineNotifier(event="quarantine")(
        context(task, started=quarantined + dt.timedelta(seconds=1)))
    assert smtp.wait_for(1, timeout=1) == [] and hook.requests == []  # an older quarantine
    DriftlineNotifier(event="quarantine")(
        context(task, started=quarantined - dt.timedelta(seconds=1)))
    (mail,) = smtp.wait_for(1)
    assert mail.subject.startswith("[driftline] flights: quarantined ")
    for failure in reason["failed"]:
        assert failure in mail.html
    assert hook.wait_for(1)[0]["json"]["figures"]["failed"] == reason["failed"]


def test_nothing_is_sent_when_alerts_are_off_or_the_event_is_not_chosen(
        smtp_sink, http_sink, monkeypatch, tmp_path, lifecycle_home, capfd):  # noqa: F811
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", smtp_sink.connection())
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_HOOK", http_sink.connection())
    monkeypatch.setenv("DRIFTLINE_HOME", str(lifecycle_home))
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(TEST_CONFIG))  # no [alerts]: the default
    DriftlineNotifier(event="gate_refused")(context(gate_task()))
    assert "alerts are off for flights" in logged(capfd)
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(alerts_config(tmp_path, (
        'events = ["drift"]\nemail_to = ["ops@example.test"]\nsmtp_conn_id = "smtp_alerts"\n'
        'webhook_conn_id = "alerts_hook"'))))
    DriftlineNotifier(event="gate_refused")(context(gate_task()))
    assert "is not in [alerts] events" in logged(capfd)
    assert smtp_sink.wait_for(1, timeout=1) == [] and http_sink.requests == []


def test_dead_sinks_are_logged_without_secrets_and_never_raise(
        sinks, monkeypatch, capfd):
    from driftline.serving.probe import free_ports

    from tests.alert_sinks import HttpSink, SmtpSink

    smtp, hook = sinks
    dead_smtp, dead_http = free_ports(2)  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", SmtpSink(dead_smtp).connection())
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_HOOK", HttpSink(dead_http).connection())
    DriftlineNotifier(event="gate_refused")(context(gate_task()))  # does not raise
    log = logged(capfd)
    assert "email through connection 'smtp_alerts' failed" in log
    assert "webhook through connection 'alerts_hook' failed" in log
    assert_no_secret(log)
    assert smtp.messages == [] and hook.requests == []

    hook.status = 500  # a live webhook that refuses: logged by status only
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_HOOK", hook.connection())
    logged(capfd)  # what the dead sinks logged, read and dropped
    DriftlineNotifier(event="gate_refused")(context(gate_task()))
    assert len(hook.wait_for(1)) == 1
    log = logged(capfd)
    assert "HTTPStatusError: HTTP 500" in log
    assert_no_secret(log)


def test_a_deploy_that_fails_with_nothing_live_says_so(sinks):
    from driftline_provider.operators.deploy import BlueGreenDeployOperator

    smtp, hook = sinks
    task = BlueGreenDeployOperator(task_id="deploy", pack="flights",
                                   candidate={"version": "v0002"})
    error = RuntimeError("slot blue: deploying v0002 failed: no nginx\nsecond line")
    DriftlineNotifier(event="deploy")(context(task, exception=error))
    (mail,) = smtp.wait_for(1)
    (post,) = hook.wait_for(1)
    assert mail.subject == "[driftline] flights: deploy of v0002 failed (nothing is live)"
    assert "Error: slot blue: deploying v0002 failed: no nginx" in mail.html
    assert "second line" not in mail.html
    assert post["json"]["event"] == "deploy_failed"
    show("deploy failed", mail, post)


def show(what: str, mail, post) -> None:
    """Print an alert as the sinks received it (run with -s to read them)."""
    print(f"\n--- {what}: email as received ---\nSubject: {mail.subject}\n{mail.html}"
          f"\n--- {what}: webhook JSON as received ---\n{json.dumps(post['json'], indent=2)}")


def test_a_live_quality_crossing_is_alerted_with_metric_baseline_and_drop(
        smtp_sink, http_sink, monkeypatch, tmp_path, lifecycle_home):  # noqa: F811
    import shutil

    from driftline.outcomes import measure_live_quality
    from driftline.settings import load_settings
    from driftline.workspace import open_workspace
    from driftline_provider.operators.quality import LiveQualityOperator

    from tests.helpers import PACKS

    home = tmp_path / "home"
    shutil.copytree(lifecycle_home, home, symlinks=True)
    before = json.loads((home / "reports" / "flights" / "quality"
                         / "quality_2013-07-01_2013-07-03" / "summary.json").read_text())
    limit = round(before["drop"] - 0.01, 4)  # just under what the live model lost
    cfg = alerts_config(tmp_path, (
        'email_to = ["ops@example.test"]\nsmtp_conn_id = "smtp_alerts"\n'
        f'webhook_conn_id = "alerts_hook"\nui_base_url = "{UI}"'))
    with_quality_limit(cfg, limit)
    point_alerts_at(monkeypatch, home, cfg, smtp_sink, http_sink)
    ws = open_workspace("flights", load_settings(home=home, config=cfg, packs_dir=PACKS))
    summary = measure_live_quality(ws, dt.date(2013, 7, 1), dt.date(2013, 7, 3))
    assert summary["crossed"]
    task = LiveQualityOperator(task_id="live_quality", pack="flights", start="2013-07-01",
                               end="2013-07-03")
    DriftlineNotifier(event="quality")(context(task, "scheduled__2013-07-01"))
    (mail,) = smtp_sink.wait_for(1)
    (post,) = http_sink.wait_for(1)
    assert mail.subject == (f"[driftline] flights: live AUC {summary['value']:.4f} is "
                            f"{summary['drop']:.4f} worse than holdout "
                            f"{summary['baseline']:.4f} (limit {limit}) in "
                            "2013-07-01..2013-07-03")
    figures = post["json"]["figures"]
    assert (figures["value"], figures["baseline"], figures["drop"], figures["limit"]) == (
        summary["value"], summary["baseline"], summary["drop"], limit)
    assert post["json"]["link"] == (f"{UI}/driftline/reports/flights/quality/"
                                    "quality_2013-07-01_2013-07-03/quality.html")
    show("quality", mail, post)


@pytest.mark.nginx
def test_a_real_auto_rollback_is_alerted_from_the_serving_history(
        smtp_sink, http_sink, monkeypatch, tmp_path, home_copy):  # noqa: F811
    """v0001 live in blue, v0002 deployed to green whose server is killed right after the
    switch: the watch rolls back; the deploy task's failure callback says so."""

    from driftline.registry import Registry
    from driftline.serving.bluegreen import BlueGreen, DeployError, stop_serving
    from driftline.settings import load_settings
    from driftline.training import train
    from driftline.versioning import DataRepo
    from driftline.workspace import open_workspace
    from driftline_provider.operators.deploy import BlueGreenDeployOperator

    from tests.helpers import DATA_END, DATA_START, PACKS

    cfg = alerts_config(tmp_path, (
        'email_to = ["ops@example.test"]\nsmtp_conn_id = "smtp_alerts"\n'
        f'webhook_conn_id = "alerts_hook"\nui_base_url = "{UI}"'))
    point_alerts_at(monkeypatch, home_copy, cfg, smtp_sink, http_sink)
    ws = open_workspace("flights", load_settings(home=home_copy, config=cfg, packs_dir=PACKS))
    train(ws, DataRepo.of(ws).head(), DATA_START, DATA_END, reason="a second model",
          params={"num_boost_round": 5})
    registry = Registry(ws.registry_dir, ws.model_name)
    bluegreen = BlueGreen(ws)
    try:
        bluegreen.deploy(registry.get("v0001"), "first")
        kill_green_after_the_switch(bluegreen)
        started = dt.datetime.now(dt.UTC)
        with pytest.raises(DeployError, match="rolled back automatically") as failure:
            bluegreen.deploy(registry.get("v0002"), "dies right after the switch")
        task = BlueGreenDeployOperator(task_id="deploy", pack="flights",
                                       candidate={"version": "v0002"})
        DriftlineNotifier(event="deploy")(context(task, exception=failure.value,
                                                  started=started))
    finally:
        stop_serving(ws.settings)
    (mail,) = smtp_sink.wait_for(1)
    (post,) = http_sink.wait_for(1)
    assert mail.subject == "[driftline] flights: auto-rollback v0002 -> v0001"
    assert "From v0002 (slot green) back to v0001 (slot blue)" in mail.html
    figures = post["json"]["figures"]
    assert (figures["from_version"], figures["from_slot"], figures["to_version"],
            figures["to_slot"]) == ("v0002", "green", "v0001", "blue")
    assert figures["reason"].startswith("post-switch check of v0002 failed")
    assert post["json"]["event"] == "auto_rollback"
    show("auto-rollback", mail, post)


# -- a real task failure under dag.test() --------------------------------------------------------
@pytest.fixture
def guard():
    """Kill the test process (with every thread's traceback) if a DAG run hangs."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def test_a_quarantined_landing_file_under_dag_test_sends_its_alert(
        guard, airflow_db, home_copy, flights, smtp_sink, http_sink, monkeypatch,  # noqa: F811
        tmp_path):
    from airflow.dag_processing.dagbag import DagBag
    from driftline.landing import replay

    from tests.helpers import ROOT, workspace_at

    point_alerts_at(monkeypatch, home_copy, alerts_config(tmp_path, (
        'email_to = ["ops@example.test"]\nsmtp_conn_id = "smtp_alerts"\n'
        f'webhook_conn_id = "alerts_hook"\nui_base_url = "{UI}"')), smtp_sink, http_sink)
    ws = workspace_at(home_copy)
    day = dt.date(2013, 1, 28)
    replay(ws, day, day, source=flights)
    path = ws.landing_path(day)
    path.write_text(path.read_text().replace(",", ";"))  # one column: every check fails

    dag = DagBag(dag_folder=str(ROOT / "dags" / "driftline_packs.py")).get_dag(
        "flights_ingest")
    dag_run = dag.test(logical_date=dt.datetime.combine(day + dt.timedelta(days=1), dt.time(),
                                                        dt.UTC))
    assert dag_run.state == "failed"
    (mail,) = smtp_sink.wait_for(1)
    (post,) = http_sink.wait_for(1)
    assert mail.subject.startswith(f"[driftline] flights: quarantined {path.name} (")
    reason = json.loads((ws.quarantine_dir / f"{path.name}.reason.json").read_text())
    assert post["json"]["figures"]["failed"] == reason["failed"] and reason["failed"]
    assert post["json"]["airflow"]["dag_id"] == "flights_ingest"
    assert post["json"]["airflow"]["task_id"] == "ingest_partition"
    assert post["json"]["link"] == f"{UI}/driftline/packs/flights#quarantine"
    assert_no_secret(mail.raw, post["raw"])
    show("quarantine (dag.test)", mail, post)


# -- wiring ----------------------------------------------------------------------------------------
def test_the_factory_wires_each_alert_to_its_task_and_callback(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from tests.helpers import ROOT

    bag = DagBag(dag_folder=str(ROOT / "dags" / "driftline_packs.py"), safe_mode=False)
    assert bag.import_errors == {}
    expected = {("ingest", "ingest_partition"): ("failure", "quarantine"),
                ("train", "gate"): ("failure", "gate_refused"),
                ("train", "deploy"): ("failure", "deploy"),
                ("monitor", "drift_report"): ("success", "drift"),
                ("monitor", "live_quality"): ("success", "quality")}
    for pack in ("flights", "bikes"):
        wired = {}
        for kind in ("ingest", "train", "monitor", "retrain_on_drift", "rollback"):
            for task in bag.dags[f"{pack}_{kind}"].tasks:
                for when in ("failure", "success"):
                    callbacks = getattr(task, f"on_{when}_callback") or []
                    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
                    for callback in callbacks:
                        assert isinstance(callback, DriftlineNotifier)
                        assert callback.pack == pack
                        wired[(kind, task.task_id)] = (when, callback.event)
        assert wired == expected


def test_the_notifier_is_listed_in_the_provider_info():
    from driftline_provider import get_provider_info

    assert get_provider_info()["notifications"] == [
        "driftline_provider.notifications.driftline.DriftlineNotifier"]


def test_an_unknown_event_is_refused_when_the_dag_is_built():
    with pytest.raises(ValueError, match="expected one of"):
        DriftlineNotifier(event="gate")
