"""The model server app in-process (FastAPI TestClient), its CLI and the prediction log."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest

with warnings.catch_warnings():  # starlette's notice that httpx2 is preferred
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from driftline.registry import ArtifactIntegrityError
from driftline.scoring import request_rows
from driftline.serving.app import bind_unix, create_app
from driftline.serving.bluegreen import settings_toml
from driftline.serving.paths import slot_client, slot_socket
from driftline.serving.prediction_log import PredictionLogger, read_served_inputs
from driftline.serving.probe import free_ports
from driftline.settings import load_settings
from driftline.training import SMOKE_ROWS
from driftline.workspace import open_workspace

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def version(registry):
    return registry.get("v0001")


@pytest.fixture
def client(version, ws):
    with TestClient(create_app(version, "blue", ws)) as test_client:
        yield test_client


def smoke_row(version) -> dict:
    return dict(version.metadata["smoke"]["rows"][0])


def local_date(time_hour: str) -> str:
    """The New York date of a UTC time, computed here (not by the code under test)."""
    return dt.datetime.fromisoformat(time_hour).astimezone(NEW_YORK).date().isoformat()


def test_health_ready_version(client, version):
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["sha256"] == version.metadata["artifact"]["sha256"]
    assert client.get("/version").json() == {
        "pack": "flights", "model_name": "flights", "model_version": "v0001", "slot": "blue",
        "sha256": version.metadata["artifact"]["sha256"],
        "data_version": version.data_version, "predictor": "xgboost", "pid": os.getpid(),
        "worker_pid": os.getpid()}


def test_ready_is_503_without_a_model(client):
    client.app.state.model = None
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200
    assert client.post("/predict", json={"rows": []}).status_code == 503


def test_create_app_refuses_a_tampered_model(version, ws, tamper):
    tamper("v0001")
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        create_app(version, "blue", ws)


def test_predictions_equal_training(client, version, ws, reference_probabilities):
    smoke = version.metadata["smoke"]
    assert len(smoke["rows"]) == len(smoke["predictions"]) == SMOKE_ROWS == 20
    assert list(smoke["rows"][0]) == ws.pack.request_columns  # time_hour first
    # the independent computation reproduces what training recorded
    np.testing.assert_allclose(reference_probabilities(version, smoke["rows"]),
                               smoke["predictions"], rtol=0, atol=1e-6)
    body = client.post("/predict", json={"rows": smoke["rows"]}).json()
    assert body["pack"] == "flights"
    assert body["model_version"] == "v0001" and body["slot"] == "blue"
    got = [p["late_probability"] for p in body["predictions"]]
    np.testing.assert_allclose(got, smoke["predictions"], rtol=0, atol=1e-6)
    assert [p["late"] for p in body["predictions"]] == [p >= 0.5 for p in got]

    holdout = version.holdout().head(300)
    rows = request_rows(ws.pack, holdout)
    assert len(rows) == 300 and "time_hour" in rows[0]
    body = client.post("/predict", json={"rows": rows}).json()
    expected = reference_probabilities(version, holdout)  # not driftline's feature path
    assert len(body["predictions"]) == 300
    np.testing.assert_allclose([p["late_probability"] for p in body["predictions"]], expected,
                               rtol=0, atol=1e-6)


TIME_REASON = "is not an ISO 8601 time"
BAD_ROWS = [
    ("missing", lambda r: {k: v for k, v in r.items() if k != "dest"}, "rows[1].dest",
     "missing required field"),
    ("missing time", lambda r: {k: v for k, v in r.items() if k != "time_hour"},
     "rows[1].time_hour", "missing required field"),
    ("extra", lambda r: {**r, "tailnum": "N1"}, "rows[1].tailnum", "unknown field"),
    ("text for number", lambda r: {**r, "distance": "far"}, "rows[1].distance",
     "Expected `float`, got `str`"),
    ("numeric string", lambda r: {**r, "distance": "1400"}, "rows[1].distance",
     "Expected `float`, got `str`"),
    ("bool for number", lambda r: {**r, "temp": True}, "rows[1].temp",
     "Expected `float | null`, got `bool`"),
    ("number for text", lambda r: {**r, "carrier": 5}, "rows[1].carrier",
     "Expected `str`, got `int`"),
    ("empty text", lambda r: {**r, "carrier": ""}, "rows[1].carrier", "length >= 1"),
    ("null in a non-nullable column", lambda r: {**r, "day": None}, "rows[1].day",
     "Expected `float`, got `null`"),
    ("null time", lambda r: {**r, "time_hour": None}, "rows[1].time_hour",
     "Expected `str`, got `null`"),
    ("number for time", lambda r: {**r, "time_hour": 1357034400}, "rows[1].time_hour",
     "Expected `str`, got `int`"),
    ("no such date", lambda r: {**r, "time_hour": "2013-02-30T10:00:00Z"},
     "rows[1].time_hour", f"'2013-02-30T10:00:00Z' {TIME_REASON}"),
    ("no such hour", lambda r: {**r, "time_hour": "2013-01-01T25:00:00Z"},
     "rows[1].time_hour", f"'2013-01-01T25:00:00Z' {TIME_REASON}"),
    ("not a time", lambda r: {**r, "time_hour": "yesterday"}, "rows[1].time_hour",
     f"'yesterday' {TIME_REASON}"),
    ("infinite number", lambda r: {**r, "temp": "<1e999>"}, "rows[1].temp", "out of range"),
]


@pytest.mark.parametrize(("case", "change", "field", "reason"), BAD_ROWS,
                         ids=[case[0] for case in BAD_ROWS])
def test_bad_rows_are_422_naming_field_and_reason(client, version, case, change, field,
                                                  reason):
    rows = [smoke_row(version), change(smoke_row(version))]  # the bad row is rows[1]
    body = json.dumps({"rows": rows}).replace('"<1e999>"', "1e999")  # JSON can say it
    response = client.post("/predict", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1 and errors[0]["field"] == field, errors
    assert reason in errors[0]["reason"], errors
    assert response.json()["detail"] == f"{field}: {errors[0]['reason']}"
    assert client.post("/predict", json={"rows": [smoke_row(version)]}).status_code == 200


def test_bad_bodies_are_4xx_and_the_server_stays_up(client, version, ws):
    row = smoke_row(version)
    limit = ws.serving.max_batch_rows
    assert limit == 500  # the serving tests' configuration
    cases = [
        (b"{not json", 422, "malformed JSON"),
        (b"", 422, "body: malformed JSON: Input data was truncated"),
        (b'{"rows": [{"temp": NaN}]}', 422, "malformed JSON"),
        (json.dumps({"rows": []}).encode(), 422, "rows: Expected `array` of length >= 1"),
        (json.dumps({"rows": {"a": 1}}).encode(), 422, "rows: Expected `array`, got `object`"),
        (json.dumps({"rows": [row], "x": 1}).encode(), 422, "x: Object contains unknown field"),
        (json.dumps([row]).encode(), 422, "body: Expected `object`, got `array`"),
        (json.dumps({"rows": [row] * (limit + 1)}).encode(), 413,
         f"rows: batch is over the limit of {limit} rows"),
    ]
    for content, status, reason in cases:
        response = client.post("/predict", content=content,
                               headers={"content-type": "application/json"})
        assert response.status_code == status, (content[:40], response.text)
        assert reason in response.json()["detail"], response.json()
    at_limit = client.post("/predict", json={"rows": [row] * limit})
    assert at_limit.status_code == 200 and len(at_limit.json()["predictions"]) == limit
    assert client.get("/health").status_code == 200


def test_nulls_in_optional_fields_are_served(client, version, reference_probabilities):
    row = {**smoke_row(version), "wind_gust": None, "temp": None, "dest": "NEVER-SEEN"}
    body = client.post("/predict", json={"rows": [row]}).json()
    got = body["predictions"][0]["late_probability"]
    np.testing.assert_allclose(got, reference_probabilities(version, [row]), rtol=0, atol=1e-6)
    # the nulls reached the model as missing values: not the complete row's recorded answer
    assert got != pytest.approx(version.metadata["smoke"]["predictions"][0], abs=1e-4)


def test_prediction_log_written_and_readable(version, ws):
    rows = version.metadata["smoke"]["rows"]
    with TestClient(create_app(version, "green", ws)) as client:
        served = client.post("/predict", json={"rows": rows}).json()["predictions"]
    # leaving the client ran the app's shutdown, which drains the log
    dates = sorted({local_date(r["time_hour"]) for r in rows})
    partitions = sorted(p.name for p in (ws.serving_dir / "predictions").glob("date=*"))
    assert partitions == [f"date={d}" for d in dates]
    first, last = dt.date.fromisoformat(dates[0]), dt.date.fromisoformat(dates[-1])
    logged = read_served_inputs(ws.pack, ws.serving_dir, first, last)
    assert len(logged) == len(rows) == 20
    columns = ws.pack.request_columns
    assert list(logged.columns) == [*columns, "prediction", "model_version", "slot",
                                    "served_at"]
    assert set(logged["model_version"]) == {"v0001"} and set(logged["slot"]) == {"green"}
    assert sorted(logged["time_hour"]) == sorted(r["time_hour"] for r in rows)
    np.testing.assert_allclose(sorted(logged["prediction"]),
                               sorted(p["late_probability"] for p in served))
    files = list((ws.serving_dir / "predictions").glob("date=*/green-*.jsonl"))
    assert files and all(f.name == f"green-{os.getpid()}.jsonl" for f in files)
    assert read_served_inputs(ws.pack, ws.serving_dir, dt.date(2014, 1, 1),
                              dt.date(2014, 1, 2)).empty


def test_prediction_log_drops_and_counts_when_full(version, ws):
    logger = PredictionLogger(ws.serving_dir, "blue", "m", "v1", max_batches=1,
                              start=False)  # no writer: the queue fills up
    row = smoke_row(version)
    assert logger.submit([row], [0.1], ["2013-01-05"]) is True
    assert logger.submit([row, row], [0.1, 0.2], ["2013-01-05"] * 2) is False
    assert logger.stats()["dropped_rows"] == 2


def test_prediction_log_keeps_recent_days_and_stops_at_its_size_cap(version, ws):
    row = smoke_row(version)
    on = lambda day: {**row, "time_hour": f"2013-01-{day:02d}T15:00:00Z"}  # noqa: E731
    logger = PredictionLogger(ws.serving_dir, "blue", "m", "v1", keep_days=2)
    for day in (1, 2, 5, 3):
        logger.submit([on(day)], [0.5], [f"2013-01-{day:02d}"])
    logger.close()
    kept = sorted(p.name for p in (ws.serving_dir / "predictions").glob("date=*"))
    # 01-05 expired 01-01 and 01-02; 01-03, served later, is written (expiry runs when a
    # newer date arrives)
    assert kept == ["date=2013-01-03", "date=2013-01-05"]

    size = sum(p.stat().st_size for p in ws.serving_dir.glob("predictions/*/*"))
    capped = PredictionLogger(ws.serving_dir, "green", "m", "v1", max_bytes=size + 2000)
    capped.submit([on(5)] * 100, [0.5] * 100, ["2013-01-05"] * 100)  # far over 2000 bytes
    capped.submit([on(5)], [0.5], ["2013-01-05"])
    capped.close()
    stats = capped.stats()
    assert stats["written_rows"] == 1 and stats["dropped_rows"] == 100


def test_concurrent_requests_are_predicted_together_each_getting_its_own(
        version, ws, reference_probabilities):
    import asyncio

    app = create_app(version, "blue", ws)
    holdout = version.holdout().head(60)
    rows = request_rows(ws.pack, holdout)
    expected = reference_probabilities(version, holdout)

    async def send_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://slot") as client:
            return await asyncio.gather(*(client.post("/predict", json={"rows": [row]})
                                          for row in rows))

    responses = asyncio.run(send_all())
    got = [r.json()["predictions"][0]["late_probability"] for r in responses]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    stats = app.batcher.stats()
    assert stats["rows"] == 60 and stats["calls"] < 60, stats
    app.prediction_log.close()


def test_read_served_inputs_skips_a_line_being_written(version, ws):
    logger = PredictionLogger(ws.serving_dir, "blue", "m", "v1")
    row = smoke_row(version)
    day = local_date(row["time_hour"])
    logger.submit([row], [0.25], [day])
    logger.close()
    path = next((ws.serving_dir / "predictions").glob(f"date={day}/blue-*.jsonl"))
    with open(path, "a") as fh:
        fh.write('{"time_hour": "2013-01-05T1')  # a writer's half-written line
    logged = read_served_inputs(ws.pack, ws.serving_dir, dt.date.fromisoformat(day),
                                dt.date.fromisoformat(day))
    assert logged["prediction"].tolist() == [0.25]
    assert logged["time_hour"].tolist() == [row["time_hour"]]


def test_settings_toml_round_trips(ws, tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text(settings_toml(ws))
    loaded = load_settings(home=ws.home, config=config, packs_dir=ws.settings.packs_dir)
    again = open_workspace("flights", loaded)
    assert again.serving == ws.serving and again.model_name == ws.model_name == "flights"
    assert again.serving.max_batch_rows == 500 and again.serving.post_switch_watch_s == 1.0
    assert loaded.serving.router_port == ws.settings.serving.router_port
    assert again.serving_dir == ws.serving_dir
    assert again.registry_dir == ws.registry_dir


def _env(ws) -> dict:
    config = ws.home / "settings.toml"
    config.write_text(settings_toml(ws))
    return {**os.environ, "DRIFTLINE_HOME": str(ws.home), "DRIFTLINE_CONFIG": str(config),
            "DRIFTLINE_PACKS": str(ws.settings.packs_dir)}


def _serve(ws, *args):
    return subprocess.run([sys.executable, "-m", "driftline.serving.app", *args],
                          env=_env(ws), capture_output=True, text=True, timeout=120)


def test_main_refuses_to_start_on_a_checksum_mismatch(ws, tamper):
    tamper("v0001")
    result = _serve(ws, "--pack", "flights", "--slot", "blue", "--version", "v0001")
    assert result.returncode == 2
    assert "refusing to start" in result.stderr and "sha256" in result.stderr
    assert not slot_socket(ws.serving_dir, "blue").exists()


def test_main_refuses_an_unknown_version(ws):
    result = _serve(ws, "--pack", "flights", "--slot", "green", "--version", "v0099")
    assert result.returncode == 2
    assert "refusing to start flights v0099" in result.stderr
    assert not slot_socket(ws.serving_dir, "green").exists()


def test_main_refuses_an_unknown_pack(ws):
    result = _serve(ws, "--pack", "nosuchpack", "--slot", "blue", "--version", "v0001")
    assert result.returncode == 2
    assert "refusing to start nosuchpack" in result.stderr and "no such pack" in result.stderr


def test_main_serves_on_its_unix_socket_and_on_a_port_when_asked(ws, version):
    [port] = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "driftline.serving.app", "--pack", "flights", "--slot", "blue",
         "--version", "v0001", "--port", str(port)],
        env=_env(ws), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        with slot_client(ws.serving_dir, "blue", timeout=2) as over_socket:
            while True:
                assert process.poll() is None, process.stderr.read()
                try:
                    if over_socket.get("/ready").json().get("ready"):
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the slot server was not ready in 60s"
                time.sleep(0.1)
            smoke = version.metadata["smoke"]
            answers = [over_socket.post("/predict", json={"rows": smoke["rows"]}).json(),
                       httpx.post(f"http://127.0.0.1:{port}/predict",
                                  json={"rows": smoke["rows"]}, timeout=10).json()]
        for body in answers:
            assert (body["pack"], body["model_version"], body["slot"]) == (
                "flights", "v0001", "blue")
            np.testing.assert_allclose([p["late_probability"] for p in body["predictions"]],
                                       smoke["predictions"], rtol=0, atol=1e-6)
    finally:
        process.terminate()
        process.wait(30)
    assert process.returncode == -15  # uvicorn shuts down, then dies of the signal
    assert not slot_socket(ws.serving_dir, "blue").exists()  # it removed its socket


def test_bind_unix_replaces_only_a_stale_socket(tmp_path):
    path = tmp_path / "slot.sock"
    listening = bind_unix(path)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(OSError, match="another server is listening"):
        bind_unix(path)
    listening.close()  # the file stays behind, as after a crash
    assert path.is_socket()
    bind_unix(path).close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try as another user")
def test_another_user_cannot_connect_to_a_slot_socket():
    """Issue 9: slot sockets were 0666, so any local user could call a model directly. The
    control (the same socket made 0666) shows the other user could reach it otherwise."""
    import shutil
    import tempfile

    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n")
    python = shutil.which("python3", path="/usr/bin:/bin")

    def connect(path, **user) -> int:
        return subprocess.run([python, "-I", "-c", probe, str(path)], capture_output=True,
                              text=True, timeout=60, **user).returncode

    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        os.chmod(directory, 0o755)  # traversable by everyone: only the socket's mode decides
        path = Path(directory) / "slot.sock"
        listening = bind_unix(path)
        try:
            assert connect(path, user="nobody") == 13
            assert connect(path) == 0
            os.chmod(path, 0o666)
            assert connect(path, user="nobody") == 0
        finally:
            listening.close()
