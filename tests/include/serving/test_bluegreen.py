"""Blue-green deploys with real slot servers and a real nginx router on loopback."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from driftline.registry import Registry
from driftline.scoring import request_rows
from driftline.serving.bluegreen import BlueGreen, DeployError, stop_serving
from driftline.serving.paths import router_url, slot_client, slot_log, slot_socket
from driftline.serving.probe import PredictionProbe
from driftline.serving.router import Router, RouterError
from driftline.serving.workers import worker_count
from driftline.workspace import Workspace, open_workspace
from statsmodels.stats.proportion import proportion_confint

from tests.helpers import (
    kill_green_after_the_switch,
    process_gone,
    socket_inodes,
    tree_socket_inodes,
    wait_until,
)

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


def stop_and_check(settings) -> None:
    """Stop every pack's slots and the router; no serving process may outlive that."""
    stop_serving(settings)
    deadline = time.monotonic() + 10
    while serving_processes(settings.serving_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert serving_processes(settings.serving_dir) == [], "a serving process outlived the stop"


@pytest.fixture
def bluegreen(ws):
    bg = BlueGreen(ws)
    yield bg
    stop_and_check(ws.settings)


def with_serving(ws: Workspace, **fields) -> Workspace:
    """``ws`` with some of its pack's ``[serving]`` settings changed (as a
    ``[packs.<name>.serving]`` table would)."""
    overrides = json.loads(json.dumps(ws.settings.pack_overrides))
    overrides.setdefault(ws.name, {}).setdefault("serving", {}).update(fields)
    changed = Workspace(dataclasses.replace(ws.settings, pack_overrides=overrides), ws.pack)
    assert all(getattr(changed.serving, k) == v for k, v in fields.items())
    return changed


def router_get(ws, path: str) -> dict:
    return httpx.get(f"{router_url(ws.settings, ws.name)}{path}", timeout=5).json()


def router_predict(ws, rows: list[dict]) -> httpx.Response:
    return httpx.post(f"{router_url(ws.settings, ws.name)}/predict", json={"rows": rows},
                      timeout=30)


def assert_serves_smoke(ws, model_version) -> None:
    smoke = model_version.metadata["smoke"]
    assert len(smoke["rows"]) == 20
    body = router_predict(ws, smoke["rows"]).json()
    assert body["pack"] == ws.name and body["model_version"] == model_version.version
    np.testing.assert_allclose([p["late_probability"] for p in body["predictions"]],
                               smoke["predictions"], rtol=0, atol=1e-6)


def test_deploy_switch_rollback_through_the_router(bluegreen, ws, registry):
    v1, v2 = registry.get("v0001"), registry.get("v0002")
    assert bluegreen.url == f"http://127.0.0.1:{ws.settings.serving.router_port}/flights"

    first = bluegreen.deploy(v1, "first model")
    assert first["changed"] and first["live"] == "blue" and first["pack"] == "flights"
    assert first["switch"]["to_slot"] == "blue" and first["switch"]["from_slot"] is None
    assert router_get(ws, "/version")["model_version"] == "v0001"
    assert_serves_smoke(ws, v1)

    second = bluegreen.deploy(v2, "retrained")
    assert second["live"] == "green" and second["slots"]["green"]["version"] == "v0002"
    switch = second["switch"]
    assert (switch["from_slot"], switch["to_slot"]) == ("blue", "green")
    assert (switch["version"], switch["previous_version"]) == ("v0002", "v0001")
    version = router_get(ws, "/version")
    assert version.pop("predictor").startswith(("compiled", "xgboost"))
    assert version | {"pid": 0, "worker_pid": 0} == {
        "pack": "flights", "model_name": "flights", "model_version": "v0002", "slot": "green",
        "sha256": v2.metadata["artifact"]["sha256"], "data_version": v2.data_version, "pid": 0,
        "worker_pid": 0}
    assert_serves_smoke(ws, v2)
    status = bluegreen.status()
    assert status["live"] == "green" and status["router"]["running"]
    assert status["router"]["points_to"] == "green"
    assert status["slots"]["blue"]["running"] and status["slots"]["blue"]["version"] == "v0001"
    assert status["slots"]["green"]["running"] and status["slots"]["green"]["version"] == "v0002"
    # it started at nice +10 (yielding to the live slot), and runs at ours once ready
    green = status["slots"]["green"]["pid"]
    nice = {os.getpriority(os.PRIO_PROCESS, int(t.name))
            for t in Path(f"/proc/{green}/task").glob("*")}
    assert nice == {os.getpriority(os.PRIO_PROCESS, 0)}
    # slots listen on their unix sockets only: no TCP socket of theirs is listening
    assert status["slots"]["green"]["socket"] == str(ws.serving_dir / "run" / "green.sock")
    assert listening_tcp_ports(green) == set()

    back = bluegreen.rollback("v0002 misbehaves")
    assert back["live"] == "blue" and back["slots"]["blue"]["version"] == "v0001"
    switch = back["switch"]
    assert (switch["action"], switch["from_slot"], switch["to_slot"]) == (
        "rollback", "green", "blue")
    assert (switch["version"], switch["previous_version"]) == ("v0001", "v0002")
    assert_serves_smoke(ws, v1)

    history = json.loads((ws.serving_dir / "state.json").read_text())["history"]
    assert [(h["action"], h["to_slot"], h["version"]) for h in history] == [
        ("deploy", "blue", "v0001"), ("deploy", "green", "v0002"), ("rollback", "blue", "v0001")]
    assert all({"at", "from_slot", "previous_version", "reason"} <= set(h) for h in history)

    # bad input through the router is refused by the slot, which keeps serving
    row = dict(v1.metadata["smoke"]["rows"][0])
    refused = router_predict(ws, [{**row, "distance": "far"}])
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "rows[0].distance"
    bad_time = router_predict(ws, [row, {**row, "time_hour": "2013-02-30T10:00:00Z"}])
    assert bad_time.status_code == 422
    assert bad_time.json()["errors"][0]["field"] == "rows[1].time_hour"
    assert router_predict(ws, [row]).status_code == 200
    # an unknown pack is the router's 404
    assert httpx.post(f"{router_url(ws.settings)}/nosuchpack/predict",
                      json={"rows": [row]}).status_code == 404
    # the slots logged what they served
    logs = list((ws.serving_dir / "predictions").glob("date=*/*.jsonl"))
    assert {p.name.split("-")[0] for p in logs} == {"blue", "green"}


def wait_for_answers(probes, since: float, count: int = 3) -> None:
    """Wait until each probe has ``count`` answers to requests it sent at or after the
    wall-clock time ``since`` (the probes stamp their requests with ``time.time()``)."""
    wait_until(lambda: all(sum(sent >= since for sent, *_ in list(p.results)) >= count
                           for p in probes), f"{count} answers from every probe")


def listening_tcp_ports(pid: int) -> set[int]:
    """TCP ports ``pid`` listens on (from its socket inodes and /proc/net/tcp{,6})."""
    inodes = socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_a_slot_switched_away_from_closes_each_connection_until_it_is_live_again(
        bluegreen, ws, registry):
    v1, v2 = registry.get("v0001"), registry.get("v0002")
    rows = v1.metadata["smoke"]["rows"][:1]

    def connection_headers(slot: str) -> set:
        """The Connection header of a slot's answers on a connection made to it now."""
        with slot_client(ws.serving_dir, slot) as client:
            answers = [client.get("/ready"), client.post("/predict", json={"rows": rows})]
        assert all(a.status_code == 200 for a in answers)
        return {a.headers.get("connection") for a in answers}

    bluegreen.deploy(v1, "first")
    assert connection_headers("blue") == {None}  # live: kept alive
    bluegreen.deploy(v2, "second")
    # blue was drained; a connection it accepts now (as one nginx opened just before the
    # switch and blue accepted late) is closed after its answer, so none stays with blue
    assert connection_headers("blue") == {"close"}
    assert connection_headers("green") == {None}
    bluegreen.rollback("back")
    assert connection_headers("blue") == {None}  # live again: kept alive again
    assert connection_headers("green") == {"close"}


def test_a_connection_opened_before_the_switch_is_answered_by_the_old_slot(bluegreen, ws,
                                                                           registry):
    """nginx may open a connection to the old slot just before a switch and send its request
    on it after the drain began: the old slot answers it (then closes it), instead of
    closing it unread, which would fail the request (nginx retries only kept connections)."""
    v1, v2 = registry.get("v0001"), registry.get("v0002")
    bluegreen.deploy(v1, "first")
    blue = bluegreen.status()["slots"]["blue"]["pid"]
    before = tree_socket_inodes(blue)  # nothing talks to blue now: a new socket is ours
    early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    early.settimeout(30)
    early.connect(str(slot_socket(ws.serving_dir, "blue")))
    wait_until(lambda: tree_socket_inodes(blue) - before,
               "one of blue's workers to accept the connection")
    # accepted (uvicorn tracks it from its accept), nothing sent yet
    try:
        bluegreen.deploy(v2, "switch while a connection to blue is open")  # drains blue
        body = json.dumps({"rows": v1.metadata["smoke"]["rows"][:1]}).encode()
        early.sendall(b"POST /predict HTTP/1.1\r\nHost: slot\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        answer = b""
        while chunk := early.recv(65536):  # until the server closes the connection
            answer += chunk
    finally:
        early.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b"connection: close" in head.lower()
    assert json.loads(payload)["model_version"] == "v0001"
    assert bluegreen.status()["live"] == "green"
    drains = [line for line in slot_log(ws.serving_dir, "blue").read_text().splitlines()
              if "draining:" in line]
    last_drain = drains[-worker_count(ws.serving.workers):]  # one line from each worker
    assert [line.endswith("(1 not yet read from are answered first)")
            for line in last_drain].count(True) == 1, drains


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
    elsewhere = Registry(model_home / "registry", "flights").get("v0001")
    with pytest.raises(DeployError, match="slot servers load from"):
        bluegreen.deploy(elsewhere, "wrong registry")
    assert bluegreen.status()["live"] is None


def test_checksum_mismatch_is_refused_and_live_keeps_serving(bluegreen, ws, registry, tamper):
    bluegreen.deploy(registry.get("v0001"), "first")
    tamper("v0002")
    with pytest.raises(DeployError, match="sha256"):
        bluegreen.deploy(registry.get("v0002"), "tampered")
    status = bluegreen.status()
    assert status["live"] == "blue" and not status["slots"]["green"]["running"]
    assert not (ws.serving_dir / "logs" / "green.log").exists()  # never started
    assert_serves_smoke(ws, registry.get("v0001"))


def test_candidate_that_never_gets_ready_fails_and_live_is_unchanged(bluegreen, ws, registry,
                                                                      corrupt):
    bluegreen.deploy(registry.get("v0001"), "first")
    corrupt("v0002")
    with pytest.raises(DeployError) as failure:
        bluegreen.deploy(registry.get("v0002"), "corrupt candidate")
    message = str(failure.value)
    assert "slot green" in message and "exited with status 2" in message
    assert "refusing to start flights v0002" in message  # the server log's tail
    status = bluegreen.status()
    assert status["live"] == "blue" and status["router"]["points_to"] == "blue"
    assert not status["slots"]["green"]["running"] and status["slots"]["green"]["pid"] is None
    assert len(status["history"]) == 1
    assert_serves_smoke(ws, registry.get("v0001"))


def test_candidate_with_different_smoke_predictions_is_not_switched_to(bluegreen, ws,
                                                                       registry):
    bluegreen.deploy(registry.get("v0001"), "first")
    meta_path = registry.get("v0002").path / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["smoke"]["predictions"][3] += 0.01
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DeployError, match=r"smoke predictions .* differ .* in 1 of 20 rows "
                                          r"\(row 3: "):
        bluegreen.deploy(registry.get("v0002"), "changed smoke expectations")
    status = bluegreen.status()
    assert status["live"] == "blue" and not status["slots"]["green"]["running"]
    assert_serves_smoke(ws, registry.get("v0001"))


def test_candidate_not_ready_in_time_is_stopped(bluegreen, ws, registry):
    impatient = with_serving(ws, start_timeout_s=0.3)
    with pytest.raises(DeployError, match=r"slot blue: v0001 failed to start: it was not "
                                          r"ready after 0.3s"):
        BlueGreen(impatient).deploy(registry.get("v0001"), "impatient")
    status = bluegreen.status()
    assert status["live"] is None and not status["slots"]["blue"]["running"]
    assert serving_processes(ws.settings.serving_dir) == []  # no slot, and no router yet


def test_rollback_with_nothing_to_roll_back_to(bluegreen, registry):
    with pytest.raises(DeployError, match="nothing is live"):
        bluegreen.rollback("no deploy yet")
    bluegreen.deploy(registry.get("v0001"), "first")
    with pytest.raises(DeployError, match="slot green runs no model"):
        bluegreen.rollback("only one version")
    assert bluegreen.status()["live"] == "blue"


def test_failing_config_test_keeps_the_old_config(bluegreen, ws, registry):
    bluegreen.deploy(registry.get("v0001"), "first")
    settings = ws.settings
    router = Router(settings)
    good = router.conf_path.read_text()
    assert "location /flights/" in good
    broken = dataclasses.replace(settings, serving=dataclasses.replace(
        settings.serving, router_port=70000))
    with pytest.raises(RouterError, match=r"config test failed.*invalid port"):
        Router(broken).write_config()
    assert router.conf_path.read_text() == good
    assert router_get(ws, "/version")["model_version"] == "v0001"


def test_switch_under_load_loses_no_request(bluegreen, ws, registry):
    v1, v2 = registry.get("v0001"), registry.get("v0002")
    bluegreen.deploy(v1, "first")
    row = v1.metadata["smoke"]["rows"][0]
    body = json.dumps({"rows": [row]})
    clients = [PredictionProbe(ws.settings.serving.router_port, body, keep_alive=k,
                               path="/flights/predict", pack="flights") for k in (True, False)]
    for client in clients:
        client.start()
    wait_for_answers(clients, since=0)
    deployed = bluegreen.deploy(v2, "under load")
    deployed_at = time.time()
    wait_for_answers(clients, since=deployed_at)
    rolled_back = bluegreen.rollback("under load")
    rolled_back_at = time.time()
    wait_for_answers(clients, since=rolled_back_at)
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


def test_slot_dying_after_the_switch_is_rolled_back_automatically(bluegreen, ws, registry):
    """Failure injection: once the router is switched to green and answers with v0002,
    green's server is killed, before the post-switch watch begins."""
    v1, v2 = registry.get("v0001"), registry.get("v0002")
    bluegreen.deploy(v1, "first")
    kill_green_after_the_switch(bluegreen)
    with pytest.raises(DeployError, match=r"v0002 failed its post-switch check through the "
                                          r"router .* rolled back automatically to v0001"):
        bluegreen.deploy(v2, "dies right after the switch")
    status = bluegreen.status()
    assert status["live"] == "blue" and status["router"]["points_to"] == "blue"
    assert not status["slots"]["green"]["running"]
    deploy, auto = status["history"][-2:]
    assert deploy["action"] == "deploy" and deploy["version"] == "v0002"
    assert auto["action"] == "auto-rollback" and auto["to_slot"] == "blue"
    assert auto["version"] == "v0001" and "post-switch check of v0002 failed" in auto["reason"]
    assert_serves_smoke(ws, v1)


def test_candidate_hanging_on_health_is_refused_while_live_serves(bluegreen, ws, registry):
    """Failure injection: the candidate's server is frozen (SIGSTOP) as soon as it is
    started, so it never answers ``/ready``; it is stopped all the same."""
    v1 = registry.get("v0001")
    bluegreen.deploy(v1, "first")
    probe = PredictionProbe(ws.settings.serving.router_port,
                            json.dumps({"rows": [v1.metadata["smoke"]["rows"][0]]}),
                            keep_alive=True, interval_s=0.01, path="/flights/predict",
                            pack="flights")
    probe.start()
    hanging = BlueGreen(with_serving(ws, start_timeout_s=8.0))
    start_slot = hanging._start_slot
    frozen = []

    def start_then_freeze(slot, version):
        process, offset = start_slot(slot, version)
        os.kill(process.pid, signal.SIGSTOP)
        frozen.append(process.pid)
        return process, offset

    hanging._start_slot = start_then_freeze
    with pytest.raises(DeployError, match=r"slot green: v0002 failed to start: it was not "
                                          r"ready after 8s"):
        hanging.deploy(registry.get("v0002"), "hangs")
    assert len(frozen) == 1 and process_gone(frozen[0])  # the frozen candidate was stopped
    probe.stop.set()
    probe.join(15)
    outcomes = [o for _, _, o, _ in probe.results]
    assert outcomes and set(outcomes) == {"v0001"}  # every request answered by the live slot
    status = bluegreen.status()
    assert status["live"] == "blue" and not status["slots"]["green"]["running"]


def _logged_rows(ws) -> int:
    return sum(len(p.read_text().splitlines())
               for p in ws.serving_dir.glob("predictions/*/*.jsonl"))


def _serve_through_router(ws, rows: list[dict]) -> None:
    """Send ``rows`` as real traffic and wait until the prediction log holds them."""
    assert router_predict(ws, rows).status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _logged_rows(ws) >= len(rows):
            return
        time.sleep(0.05)
    raise AssertionError(f"only {_logged_rows(ws)} of {len(rows)} served rows were logged")


def test_shadow_comparison_on_served_rows_gates_the_switch(bluegreen, ws, registry,
                                                           reference_probabilities):
    v1, v2 = registry.get("v0001"), registry.get("v0002")
    holdout = v1.holdout()
    p1 = reference_probabilities(v1, holdout)
    p2 = reference_probabilities(v2, holdout)
    differ = np.flatnonzero((p1 >= 0.5) != (p2 >= 0.5))
    same = np.flatnonzero((p1 >= 0.5) == (p2 >= 0.5))
    assert differ.size >= 2, "v1 and v2 must disagree somewhere for this test"
    picked = np.concatenate([differ[:2], same[:18]])  # 2 of 20 rows disagree: 10%
    rows = request_rows(ws.pack, holdout.iloc[picked])
    assert len(rows) == 20 and list(rows[0]) == ws.pack.request_columns
    bluegreen.deploy(v1, "first")
    _serve_through_router(ws, rows)

    # 10% on 20 rows: 95% Wilson interval 2.79% to 30.10% (statsmodels); only a limit under
    # its lower bound refuses, a limit under the point estimate alone does not
    low, high = (float(b) for b in proportion_confint(2, 20, alpha=0.05, method="wilson"))
    strict = with_serving(ws, shadow_max_disagreement=0.02)
    with pytest.raises(DeployError, match=re.escape(
            f"shadow comparison failed: its call differs from the live slot's on 2 of 20 "
            f"recent served rows (10.00%, 95% CI {low:.2%} to {high:.2%}: its lower bound "
            f"{low:.2%} > 2.00% allowed, over by {low - 0.02:.2%})")):
        BlueGreen(strict).deploy(v2, "disagrees too much")
    assert bluegreen.status()["live"] == "blue"
    assert router_get(ws, "/version")["model_version"] == "v0001"

    lenient = with_serving(ws, shadow_max_disagreement=0.05)
    switch = BlueGreen(lenient).deploy(v2, "within the limit")["switch"]
    shadow = switch["shadow"]
    assert shadow["rows"] == 20 and shadow["disagreement"] == 0.1
    assert shadow["threshold"] == 0.05 < shadow["disagreement"]
    assert (shadow["ci_low"], shadow["ci_high"]) == (round(low, 4), round(high, 4))
    np.testing.assert_allclose(shadow["mean_abs_diff"], np.mean(np.abs(p1 - p2)[picked]),
                               rtol=0, atol=1e-4)
    # smoke, shadow and watch requests are not logged as served traffic
    assert _logged_rows(ws) == len(rows)


def test_two_packs_behind_one_router_switch_independently(two_pack_settings):
    settings = two_pack_settings
    flights, other = open_workspace("flights", settings), open_workspace("flights2", settings)
    ours, theirs = BlueGreen(flights), BlueGreen(other)
    f1, f2 = (Registry(flights.registry_dir, "flights").get(v) for v in ("v0001", "v0002"))
    o1 = Registry(other.registry_dir, "flights2").get("v0001")
    try:
        ours.deploy(f1, "flights, first")
        theirs.deploy(o1, "flights2, first")
        port = settings.serving.router_port
        assert (ours.url, theirs.url) == (f"http://127.0.0.1:{port}/flights",
                                          f"http://127.0.0.1:{port}/flights2")
        conf = Router(settings).conf_path.read_text()
        assert conf.count("listen ") == 1  # one nginx, one port
        assert "location /flights/ " in conf and "location /flights2/ " in conf
        # each endpoint answers with its own pack's model
        for ws, version in ((flights, f1), (other, o1)):
            answer = router_get(ws, "/version")
            assert (answer["pack"], answer["model_name"], answer["model_version"]) == (
                ws.name, ws.name, "v0001")
            assert answer["sha256"] == version.metadata["artifact"]["sha256"]
            assert_serves_smoke(ws, version)
        assert f1.metadata["artifact"]["sha256"] != o1.metadata["artifact"]["sha256"]

        state_path = other.serving_dir / "state.json"
        state_before = state_path.read_bytes()
        status_before = theirs.status()
        row = o1.metadata["smoke"]["rows"][0]
        probes = [PredictionProbe(port, json.dumps({"rows": [row]}), keep_alive=k,
                                  path="/flights2/predict", pack="flights2")
                  for k in (True, False)]
        witness = PredictionProbe(port, json.dumps({"rows": [row]}), keep_alive=True,
                                  path="/flights/predict", pack="flights")
        every = (*probes, witness)
        for probe in every:
            probe.start()
        wait_for_answers(every, since=0)
        deployed = ours.deploy(f2, "flights, retrained")
        wait_for_answers(every, since=time.time())  # flights switched: the witness sees v0002
        rolled = ours.rollback("flights, back")
        wait_for_answers(every, since=time.time())
        for probe in every:
            probe.stop.set()
            probe.join(15)

        switches = (deployed["switch"]["switched_at"], rolled["switch"]["switched_at"])
        # flights switched under the witness's eyes: it saw both versions
        assert {o for *_, o, _ in witness.results} == {"v0001", "v0002"}
        for probe in probes:
            outcomes = [o for _, _, o, _ in probe.results]
            # every request to flights2 answered by flights2's own version: no failure
            assert outcomes and set(outcomes) == {"v0001"}, set(outcomes)
            during = [o for sent, _, o, _ in probe.results
                      if switches[0] <= sent <= switches[1]]
            assert during, "no flights2 request was sent between the two flights switches"
        assert probes[0].connections == 1
        # flights2's serving state was not touched: same bytes, same processes
        assert state_path.read_bytes() == state_before
        status_after = theirs.status()
        assert status_after["slots"] == status_before["slots"]
        assert status_after["live"] == "blue" and status_after["router"]["points_to"] == "blue"
        assert [h["version"] for h in status_after["history"]] == ["v0001"]
        assert router_get(other, "/version")["model_version"] == "v0001"
        assert ours.status()["live"] == "blue"
        assert [h["action"] for h in ours.status()["history"]] == ["deploy", "deploy",
                                                                    "rollback"]
    finally:
        stop_and_check(settings)
