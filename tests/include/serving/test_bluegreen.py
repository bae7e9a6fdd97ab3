"""Blue-green deploys with real slot servers and a real nginx router on loopback."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from driftline.features import INPUT_COLUMNS, FeatureSchema
from driftline.serving.bluegreen import BlueGreen, DeployError
from driftline.serving.probe import PredictionProbe
from driftline.serving.router import Router, RouterError
from driftline.training import predict_proba

pytestmark = pytest.mark.nginx


def serving_processes(serving_dir: Path) -> list[int]:
    """Pids whose command line names this serving directory (slot servers, nginx master)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(serving_dir) in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def bluegreen(settings):
    bg = BlueGreen(settings)
    yield bg
    bg.stop_all()
    deadline = time.monotonic() + 10
    while serving_processes(settings.serving_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert serving_processes(settings.serving_dir) == [], "a serving process outlived stop_all"


def router_get(settings, path: str) -> dict:
    return httpx.get(f"http://127.0.0.1:{settings.serving.router_port}{path}", timeout=5).json()


def router_predict(settings, rows: list[dict]) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{settings.serving.router_port}/predict",
                      json={"rows": rows}, timeout=30)


def assert_serves_smoke(settings, model_version) -> None:
    smoke = model_version.metadata["smoke"]
    body = router_predict(settings, smoke["rows"]).json()
    assert body["model_version"] == model_version.version
    np.testing.assert_allclose([p["late_probability"] for p in body["predictions"]],
                               smoke["predictions"], rtol=0, atol=1e-6)


def test_deploy_switch_rollback_through_the_router(bluegreen, settings, registry):
    v1, v2 = registry.get("v0001"), registry.get("v0002")

    first = bluegreen.deploy(v1, "first model")
    assert first["changed"] and first["live"] == "blue"
    assert first["switch"]["to_slot"] == "blue" and first["switch"]["from_slot"] is None
    assert router_get(settings, "/version")["model_version"] == "v0001"
    assert_serves_smoke(settings, v1)

    second = bluegreen.deploy(v2, "retrained")
    assert second["live"] == "green" and second["slots"]["green"]["version"] == "v0002"
    switch = second["switch"]
    assert (switch["from_slot"], switch["to_slot"]) == ("blue", "green")
    assert (switch["version"], switch["previous_version"]) == ("v0002", "v0001")
    assert router_get(settings, "/version") | {"pid": 0} == {
        "model_name": "flight_delay", "model_version": "v0002", "slot": "green",
        "sha256": v2.metadata["artifact"]["sha256"], "data_version": v2.data_version, "pid": 0}
    assert_serves_smoke(settings, v2)
    status = bluegreen.status()
    assert status["live"] == "green" and status["router"]["running"]
    assert status["slots"]["blue"]["running"] and status["slots"]["blue"]["version"] == "v0001"
    assert status["slots"]["green"]["running"] and status["slots"]["green"]["version"] == "v0002"
    # it started at nice +10 (yielding to the live slot), and runs at ours once ready
    green = status["slots"]["green"]["pid"]
    nice = {os.getpriority(os.PRIO_PROCESS, int(t.name))
            for t in Path(f"/proc/{green}/task").glob("*")}
    assert nice == {os.getpriority(os.PRIO_PROCESS, 0)}

    back = bluegreen.rollback("v0002 misbehaves")
    assert back["live"] == "blue" and back["slots"]["blue"]["version"] == "v0001"
    switch = back["switch"]
    assert (switch["action"], switch["from_slot"], switch["to_slot"]) == (
        "rollback", "green", "blue")
    assert (switch["version"], switch["previous_version"]) == ("v0001", "v0002")
    assert_serves_smoke(settings, v1)

    history = json.loads((settings.serving_dir / "state.json").read_text())["history"]
    assert [(h["action"], h["to_slot"], h["version"]) for h in history] == [
        ("deploy", "blue", "v0001"), ("deploy", "green", "v0002"), ("rollback", "blue", "v0001")]
    assert all({"at", "from_slot", "previous_version", "reason"} <= set(h) for h in history)

    # bad input through the router is refused by the slot, which keeps serving
    row = dict(v1.metadata["smoke"]["rows"][0])
    assert router_predict(settings, [{**row, "distance": "far"}]).status_code == 422
    assert router_predict(settings, [row]).status_code == 200
    # the slots logged what they served
    logs = list((settings.serving_dir / "predictions").glob("date=*/*.jsonl"))
    assert {p.name.split("-")[0] for p in logs} == {"blue", "green"}


def test_redeploying_the_live_version_changes_nothing(bluegreen, registry):
    bluegreen.deploy(registry.get("v0001"), "first")
    before = bluegreen.status()
    again = bluegreen.deploy(registry.get("v0001"), "retry of the same task")
    after = bluegreen.status()
    assert again["changed"] is False and again["switch"] is None
    assert again["live"] == "blue" and again["slots"]["blue"]["version"] == "v0001"
    assert after["slots"] == before["slots"] and len(after["history"]) == 1
    assert not after["slots"]["green"]["running"]


def test_version_from_another_registry_is_refused(bluegreen, model_home):
    from driftline.registry import Registry

    elsewhere = Registry(model_home / "registry", "flight_delay").get("v0001")
    with pytest.raises(DeployError, match="slot servers load from"):
        bluegreen.deploy(elsewhere, "wrong registry")
    assert bluegreen.status()["live"] is None


def test_checksum_mismatch_is_refused_and_live_keeps_serving(bluegreen, settings, registry,
                                                              tamper):
    bluegreen.deploy(registry.get("v0001"), "first")
    tamper("v0002")
    with pytest.raises(DeployError, match="sha256"):
        bluegreen.deploy(registry.get("v0002"), "tampered")
    status = bluegreen.status()
    assert status["live"] == "blue" and not status["slots"]["green"]["running"]
    assert not (settings.serving_dir / "logs" / "green.log").exists()  # never started
    assert_serves_smoke(settings, registry.get("v0001"))


def test_candidate_that_never_gets_ready_fails_and_live_is_unchanged(bluegreen, settings,
                                                                      registry, corrupt):
    bluegreen.deploy(registry.get("v0001"), "first")
    corrupt("v0002")
    with pytest.raises(DeployError) as failure:
        bluegreen.deploy(registry.get("v0002"), "corrupt candidate")
    message = str(failure.value)
    assert "slot green" in message and "exited with status 2" in message
    assert "refusing to start" in message  # the server log's tail
    status = bluegreen.status()
    assert status["live"] == "blue" and status["router"]["points_to"] == "blue"
    assert not status["slots"]["green"]["running"] and status["slots"]["green"]["pid"] is None
    assert len(status["history"]) == 1
    assert_serves_smoke(settings, registry.get("v0001"))


def test_candidate_with_different_smoke_predictions_is_not_switched_to(bluegreen, settings,
                                                                       registry):
    bluegreen.deploy(registry.get("v0001"), "first")
    meta_path = registry.get("v0002").path / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["smoke"]["predictions"][3] += 0.01
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DeployError, match=r"smoke predictions .* differ .* in 1 of 20 rows"):
        bluegreen.deploy(registry.get("v0002"), "changed smoke expectations")
    status = bluegreen.status()
    assert status["live"] == "blue" and not status["slots"]["green"]["running"]
    assert_serves_smoke(settings, registry.get("v0001"))


def test_candidate_not_ready_in_time_is_stopped(bluegreen, settings, registry):
    impatient = dataclasses.replace(settings, serving=dataclasses.replace(
        settings.serving, start_timeout_s=0.3))
    with pytest.raises(DeployError, match=r"slot blue: v0001 failed to start: it was not "
                                          r"ready after 0.3s"):
        BlueGreen(impatient).deploy(registry.get("v0001"), "impatient")
    status = bluegreen.status()
    assert status["live"] is None and not status["slots"]["blue"]["running"]
    assert serving_processes(settings.serving_dir) == []


def test_rollback_with_nothing_to_roll_back_to(bluegreen, registry):
    with pytest.raises(DeployError, match="nothing is live"):
        bluegreen.rollback("no deploy yet")
    bluegreen.deploy(registry.get("v0001"), "first")
    with pytest.raises(DeployError, match="slot green runs no model"):
        bluegreen.rollback("only one version")
    assert bluegreen.status()["live"] == "blue"


def test_failing_config_test_keeps_the_old_config(bluegreen, settings, registry):
    bluegreen.deploy(registry.get("v0001"), "first")
    router = Router(settings)
    good = router.conf_path.read_text()
    broken = dataclasses.replace(settings, serving=dataclasses.replace(
        settings.serving, router_port=70000))
    with pytest.raises(RouterError, match=r"config test failed.*invalid port"):
        Router(broken).write_config()
    assert router.conf_path.read_text() == good
    assert router_get(settings, "/version")["model_version"] == "v0001"


def test_switch_under_load_loses_no_request(bluegreen, settings, registry):
    v1, v2 = registry.get("v0001"), registry.get("v0002")
    bluegreen.deploy(v1, "first")
    row = v1.metadata["smoke"]["rows"][0]
    body = json.dumps({"rows": [row]})
    clients = [PredictionProbe(settings.serving.router_port, body, keep_alive=k)
               for k in (True, False)]
    for client in clients:
        client.start()
    time.sleep(0.5)
    deployed = bluegreen.deploy(v2, "under load")
    deployed_at = time.time()
    time.sleep(0.5)
    rolled_back = bluegreen.rollback("under load")
    rolled_back_at = time.time()
    time.sleep(0.5)
    for client in clients:
        client.stop.set()
        client.join(15)

    keep_alive, fresh = clients
    assert keep_alive.connections == 1  # one connection to nginx across both switches
    assert fresh.connections == len(fresh.results)
    rollback_switched_at = rolled_back["switch"]["switched_at"]
    for client in clients:
        outcomes = [o for _, _, o, _ in client.results]
        assert set(outcomes) == {"v0001", "v0002"}, set(outcomes) - {"v0001", "v0002"}
        # once a switch is confirmed, no request reaches the old version (a request answered
        # before the rollback's rename certainly went through before it)
        after_deploy = [o for sent, done, o, _ in client.results
                        if sent >= deployed_at and done < rollback_switched_at]
        after_rollback = [o for sent, _, o, _ in client.results if sent >= rolled_back_at]
        assert after_deploy and set(after_deploy) == {"v0002"}
        assert after_rollback and set(after_rollback) == {"v0001"}
    assert deployed["switch"]["switched_at"] < deployed_at


def _when(condition, then, timeout: float = 30.0) -> threading.Thread:
    """Run ``then()`` on a thread as soon as ``condition()`` holds (polled every 5 ms)."""

    def run():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                then()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _slot_pid(bluegreen, slot: str) -> int | None:
    return bluegreen.status()["slots"][slot]["pid"]


def test_slot_dying_after_the_switch_is_rolled_back_automatically(bluegreen, settings,
                                                                  registry):
    v1, v2 = registry.get("v0001"), registry.get("v0002")
    bluegreen.deploy(v1, "first")
    switched = lambda: bluegreen.status()["history"][-1]["version"] == "v0002"  # noqa: E731
    # killed once the switch is confirmed: during the post-switch watch
    killer = _when(switched, lambda: os.kill(_slot_pid(bluegreen, "green"), signal.SIGKILL))
    with pytest.raises(DeployError, match=r"v0002 failed its post-switch check through the "
                                          r"router .* rolled back automatically to v0001"):
        bluegreen.deploy(v2, "dies right after the switch")
    killer.join()
    status = bluegreen.status()
    assert status["live"] == "blue" and status["router"]["points_to"] == "blue"
    assert not status["slots"]["green"]["running"]
    deploy, auto = status["history"][-2:]
    assert deploy["action"] == "deploy" and deploy["version"] == "v0002"
    assert auto["action"] == "auto-rollback" and auto["to_slot"] == "blue"
    assert auto["version"] == "v0001" and "post-switch check of v0002 failed" in auto["reason"]
    assert_serves_smoke(settings, v1)


def test_candidate_hanging_on_health_is_refused_while_live_serves(bluegreen, settings,
                                                                  registry):
    v1 = registry.get("v0001")
    bluegreen.deploy(v1, "first")
    probe = PredictionProbe(settings.serving.router_port,
                            json.dumps({"rows": [v1.metadata["smoke"]["rows"][0]]}),
                            keep_alive=True, interval_s=0.01)
    probe.start()
    hanging = dataclasses.replace(settings, serving=dataclasses.replace(
        settings.serving, start_timeout_s=8.0))
    freezer = _when(lambda: (_slot_pid(bluegreen, "green") or 0) > 0,
                    lambda: os.kill(_slot_pid(bluegreen, "green"), signal.SIGSTOP))
    with pytest.raises(DeployError, match=r"slot green: v0002 failed to start: it was not "
                                          r"ready after 8s"):
        BlueGreen(hanging).deploy(registry.get("v0002"), "hangs")
    freezer.join()
    probe.stop.set()
    probe.join(15)
    outcomes = [o for _, _, o, _ in probe.results]
    assert outcomes and set(outcomes) == {"v0001"}  # every request answered by the live slot
    status = bluegreen.status()
    assert status["live"] == "blue" and not status["slots"]["green"]["running"]


def _serve_through_router(settings, rows: list[dict]) -> None:
    """Send ``rows`` as real traffic and wait until the prediction log holds them."""
    assert router_predict(settings, rows).status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = sum(len(p.read_text().splitlines())
                     for p in settings.serving_dir.glob("predictions/*/*.jsonl"))
        if logged >= len(rows):
            return
        time.sleep(0.05)
    raise AssertionError(f"only {logged} of {len(rows)} served rows were logged")


def test_shadow_comparison_on_served_rows_gates_the_switch(bluegreen, settings, registry):
    v1, v2 = registry.get("v0001"), registry.get("v0002")
    holdout = v1.holdout()
    schema = FeatureSchema.from_dict(v1.metadata["feature_schema"])
    p1 = predict_proba(v1.load_booster(), holdout, schema)
    p2 = predict_proba(v2.load_booster(), holdout, schema)
    differ = np.flatnonzero((p1 >= 0.5) != (p2 >= 0.5))
    same = np.flatnonzero((p1 >= 0.5) == (p2 >= 0.5))
    assert differ.size >= 2, "v1 and v2 must disagree somewhere for this test"
    picked = np.concatenate([differ[:2], same[:18]])  # 2 of 20 rows disagree: 10%
    rows = json.loads(holdout.iloc[picked][INPUT_COLUMNS].to_json(orient="records"))
    bluegreen.deploy(v1, "first")
    _serve_through_router(settings, rows)

    strict = dataclasses.replace(settings, serving=dataclasses.replace(
        settings.serving, shadow_max_disagreement=0.05))
    with pytest.raises(DeployError, match=r"shadow comparison failed: .* differs from the live "
                                          r"slot's on 2 of 20 recent served rows \(10.00% > "
                                          r"5.00% allowed, over by 5.00%\)"):
        BlueGreen(strict).deploy(v2, "disagrees too much")
    assert bluegreen.status()["live"] == "blue"
    assert router_get(settings, "/version")["model_version"] == "v0001"

    lenient = dataclasses.replace(settings, serving=dataclasses.replace(
        settings.serving, shadow_max_disagreement=0.15))
    switch = BlueGreen(lenient).deploy(v2, "within the limit")["switch"]
    assert switch["shadow"]["rows"] == 20 and switch["shadow"]["disagreement"] == 0.1
    # smoke, shadow and watch requests are not logged as served traffic
    logged = sum(len(p.read_text().splitlines())
                 for p in settings.serving_dir.glob("predictions/*/*.jsonl"))
    assert logged == len(rows)
