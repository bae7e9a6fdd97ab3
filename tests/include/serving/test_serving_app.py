"""The model server app in-process (FastAPI TestClient), its CLI and the prediction log."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():  # starlette's notice that httpx2 is preferred
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from driftline.features import INPUT_COLUMNS, FeatureSchema
from driftline.registry import ArtifactIntegrityError
from driftline.serving.app import bind_unix, create_app
from driftline.serving.bluegreen import settings_toml
from driftline.serving.prediction_log import PredictionLogger, read_served_inputs
from driftline.settings import load_settings
from driftline.training import predict_proba


@pytest.fixture
def version(registry):
    return registry.get("v0001")


@pytest.fixture
def client(version, settings):
    with TestClient(create_app(version, "blue", settings)) as test_client:
        yield test_client


def smoke_row(version) -> dict:
    return dict(version.metadata["smoke"]["rows"][0])


def test_health_ready_version(client, version):
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["sha256"] == version.metadata["artifact"]["sha256"]
    assert client.get("/version").json() == {
        "model_name": "flight_delay", "model_version": "v0001", "slot": "blue",
        "sha256": version.metadata["artifact"]["sha256"],
        "data_version": version.data_version, "pid": os.getpid()}


def test_ready_is_503_without_a_model(client):
    client.app.state.model = None
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200


def test_create_app_refuses_a_tampered_model(version, settings, tamper):
    tamper("v0001")
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        create_app(version, "blue", settings)


def test_predictions_equal_training(client, version):
    smoke = version.metadata["smoke"]
    body = client.post("/predict", json={"rows": smoke["rows"]}).json()
    assert body["model_version"] == "v0001" and body["slot"] == "blue"
    got = [p["late_probability"] for p in body["predictions"]]
    np.testing.assert_allclose(got, smoke["predictions"], rtol=0, atol=1e-6)
    assert [p["late"] for p in body["predictions"]] == [p >= 0.5 for p in got]

    holdout = version.holdout().head(300)
    rows = json.loads(holdout[INPUT_COLUMNS].to_json(orient="records"))
    body = client.post("/predict", json={"rows": rows}).json()
    expected = predict_proba(version.load_booster(), holdout,
                             FeatureSchema.from_dict(version.metadata["feature_schema"]))
    np.testing.assert_allclose([p["late_probability"] for p in body["predictions"]], expected,
                               rtol=0, atol=1e-6)


BAD_ROWS = [
    ("missing", lambda r: {k: v for k, v in r.items() if k != "dest"}, "rows[0].dest",
     "missing required field"),
    ("extra", lambda r: {**r, "tailnum": "N1"}, "rows[0].tailnum", "unknown field"),
    ("text for number", lambda r: {**r, "distance": "far"}, "rows[0].distance",
     "Expected `float | null`, got `str`"),
    ("numeric string", lambda r: {**r, "distance": "1400"}, "rows[0].distance",
     "Expected `float | null`, got `str`"),
    ("bool for number", lambda r: {**r, "temp": True}, "rows[0].temp",
     "Expected `float | null`, got `bool`"),
    ("number for text", lambda r: {**r, "carrier": 5}, "rows[0].carrier",
     "Expected `str`, got `int`"),
    ("empty text", lambda r: {**r, "carrier": ""}, "rows[0].carrier", "length >= 1"),
    ("null date", lambda r: {**r, "day": None}, "rows[0].day", "Expected `float`, got `null`"),
    ("no such date", lambda r: {**r, "month": 2.0, "day": 30.0}, "rows[0]",
     "2013/2/30 is not a calendar date"),
    ("fractional day", lambda r: {**r, "day": 1.5}, "rows[0]", "not a calendar date"),
    ("infinite number", lambda r: {**r, "temp": "<1e999>"}, "rows[0].temp", "out of range"),
]


@pytest.mark.parametrize(("case", "change", "field", "reason"), BAD_ROWS,
                         ids=[case[0] for case in BAD_ROWS])
def test_bad_rows_are_422_naming_field_and_reason(client, version, case, change, field,
                                                  reason):
    rows = [smoke_row(version), change(smoke_row(version))]
    rows[0], rows[1] = rows[1], rows[0]  # the bad row first, so it is rows[0]
    body = json.dumps({"rows": rows}).replace('"<1e999>"', "1e999")  # JSON can say it
    response = client.post("/predict", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert any(e["field"] == field and reason in e["reason"]
               for e in response.json()["errors"]), response.json()
    assert client.post("/predict", json={"rows": [smoke_row(version)]}).status_code == 200


def test_bad_bodies_are_4xx_and_the_server_stays_up(client, version, settings):
    row = smoke_row(version)
    cases = [
        (b"{not json", 422, "malformed JSON"),
        (b"", 422, "body: malformed JSON: Input data was truncated"),
        (b'{"rows": [{"temp": NaN}]}', 422, "malformed JSON"),
        (json.dumps({"rows": []}).encode(), 422, "rows: Expected `array` of length >= 1"),
        (json.dumps({"rows": {"a": 1}}).encode(), 422, "rows: Expected `array`, got `object`"),
        (json.dumps({"rows": [row], "x": 1}).encode(), 422, "x: Object contains unknown field"),
        (json.dumps([row]).encode(), 422, "body: Expected `object`, got `array`"),
        (json.dumps({"rows": [row] * (settings.serving.max_batch_rows + 1)}).encode(), 413,
         "over the limit"),
    ]
    for content, status, reason in cases:
        response = client.post("/predict", content=content,
                               headers={"content-type": "application/json"})
        assert response.status_code == status, (content[:40], response.text)
        assert reason in response.json()["detail"], response.json()
    at_limit = client.post("/predict", json={"rows": [row] * settings.serving.max_batch_rows})
    assert at_limit.status_code == 200
    assert client.get("/health").status_code == 200


def test_nulls_in_optional_fields_are_served(client, version):
    row = {**smoke_row(version), "wind_gust": None, "temp": None, "dest": "NEVER-SEEN"}
    body = client.post("/predict", json={"rows": [row]}).json()
    assert 0.0 <= body["predictions"][0]["late_probability"] <= 1.0


def test_prediction_log_written_and_readable(version, settings):
    rows = version.metadata["smoke"]["rows"]
    with TestClient(create_app(version, "green", settings)) as client:
        served = client.post("/predict", json={"rows": rows}).json()["predictions"]
    # leaving the client ran the app's shutdown, which drains the log
    dates = {dt.date(int(r["year"]), int(r["month"]), int(r["day"])) for r in rows}
    logged = read_served_inputs(settings.serving_dir, min(dates), max(dates))
    assert len(logged) == len(rows)
    assert list(logged.columns[:len(INPUT_COLUMNS)]) == INPUT_COLUMNS
    assert set(logged["model_version"]) == {"v0001"} and set(logged["slot"]) == {"green"}
    np.testing.assert_allclose(sorted(logged["late_probability"]),
                               sorted(p["late_probability"] for p in served))
    files = list((settings.serving_dir / "predictions").glob("date=*/green-*.jsonl"))
    assert files and all(f.name == f"green-{os.getpid()}.jsonl" for f in files)
    assert read_served_inputs(settings.serving_dir, dt.date(2014, 1, 1),
                              dt.date(2014, 1, 2)).empty


def test_prediction_log_drops_and_counts_when_full(version, settings):
    logger = PredictionLogger(settings.serving_dir, "blue", "m", "v1", max_batches=1,
                              start=False)  # no writer: the queue fills up
    row = smoke_row(version)
    assert logger.submit([row], [0.1]) is True
    assert logger.submit([row, row], [0.1, 0.2]) is False
    assert logger.stats()["dropped_rows"] == 2


def test_prediction_log_keeps_recent_days_and_stops_at_its_size_cap(version, settings):
    row = smoke_row(version)
    on = lambda day: {**row, "year": 2013.0, "month": 1.0, "day": float(day)}  # noqa: E731
    logger = PredictionLogger(settings.serving_dir, "blue", "m", "v1", keep_days=2)
    for day in (1, 2, 5, 3):
        logger.submit([on(day)], [0.5])
    logger.close()
    kept = sorted(p.name for p in (settings.serving_dir / "predictions").glob("date=*"))
    # 01-05 expired 01-01 and 01-02; 01-03, served later, is written (expiry runs when a
    # newer date arrives)
    assert kept == ["date=2013-01-03", "date=2013-01-05"]

    size = sum(p.stat().st_size for p in settings.serving_dir.glob("predictions/*/*"))
    capped = PredictionLogger(settings.serving_dir, "green", "m", "v1",
                              max_bytes=size + 2000)
    capped.submit([on(5)] * 100, [0.5] * 100)  # far more than 2000 bytes
    capped.submit([on(5)], [0.5])
    capped.close()
    stats = capped.stats()
    assert stats["written_rows"] == 1 and stats["dropped_rows"] == 100


def test_concurrent_requests_are_predicted_together_each_getting_its_own(version, settings):
    import asyncio

    import httpx

    app = create_app(version, "blue", settings)
    holdout = version.holdout().head(60)
    rows = json.loads(holdout[INPUT_COLUMNS].to_json(orient="records"))
    expected = predict_proba(version.load_booster(), holdout,
                             FeatureSchema.from_dict(version.metadata["feature_schema"]))

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


def test_read_served_inputs_skips_a_line_being_written(version, settings):
    logger = PredictionLogger(settings.serving_dir, "blue", "m", "v1")
    row = smoke_row(version)
    logger.submit([row], [0.25])
    logger.close()
    path = next((settings.serving_dir / "predictions").glob("date=*/blue-*.jsonl"))
    with open(path, "a") as fh:
        fh.write('{"year": 2013, "mon')  # a writer's half-written line
    day = dt.date(int(row["year"]), int(row["month"]), int(row["day"]))
    logged = read_served_inputs(settings.serving_dir, day, day)
    assert logged["late_probability"].tolist() == [0.25]


def test_settings_toml_round_trips(settings, tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text(settings_toml(settings))
    loaded = load_settings(home=settings.home, config=config)
    assert loaded.serving == settings.serving and loaded.model_name == settings.model_name
    assert loaded.serving_dir == settings.serving_dir
    assert loaded.registry_dir == settings.registry_dir


def _serve(settings, *args):
    config = settings.home / "settings.toml"
    config.write_text(settings_toml(settings))
    env = {**os.environ, "DRIFTLINE_HOME": str(settings.home), "DRIFTLINE_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "driftline.serving.app", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_main_refuses_to_start_on_a_checksum_mismatch(settings, tamper):
    tamper("v0001")
    result = _serve(settings, "--slot", "blue", "--version", "v0001")
    assert result.returncode == 2
    assert "refusing to start" in result.stderr and "sha256" in result.stderr
    assert not (settings.serving_dir / "run" / "blue.sock").exists()


def test_main_refuses_an_unknown_version(settings):
    result = _serve(settings, "--slot", "green", "--version", "v0099")
    assert result.returncode == 2
    assert "v0099" in result.stderr


def test_bind_unix_replaces_only_a_stale_socket(tmp_path):
    path = tmp_path / "slot.sock"
    listening = bind_unix(path)
    assert path.stat().st_mode & 0o777 == 0o666
    with pytest.raises(OSError, match="another server is listening"):
        bind_unix(path)
    listening.close()  # the file stays behind, as after a crash
    assert path.is_socket()
    bind_unix(path).close()
