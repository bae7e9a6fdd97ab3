"""The model server of one slot: FastAPI on uvicorn, on a loopback port and a unix socket.

Run it as::

    python -m driftline.serving.app --slot blue --version v0001 [--port N] [--uds PATH]

Settings come from :func:`~driftline.settings.load_settings` (``$DRIFTLINE_HOME``,
``$DRIFTLINE_CONFIG``). The model is loaded through :meth:`ModelVersion.load_booster`, which
checks its sha256 first; a model that fails to verify or load stops the process with a
non-zero exit status and the reason on stderr, before any socket is opened.

Endpoints: ``GET /health`` (the process is up), ``GET /ready`` (model loaded and verified,
503 otherwise), ``GET /version`` and ``POST /predict`` (body ``{"rows": [...]}``, see
:mod:`driftline.serving.schema`).
"""

import argparse
import logging
import os
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from driftline.features import INPUT_COLUMNS, FeatureSchema
from driftline.registry import ModelVersion, Registry
from driftline.serving.paths import SLOTS, check_slot, slot_port, slot_socket
from driftline.serving.prediction_log import PredictionLogger
from driftline.serving.schema import BATCH_TOO_LARGE, predict_request_model
from driftline.settings import Settings, load_settings
from driftline.training import predict_proba

log = logging.getLogger(__name__)

MAX_LISTED_ERRORS = 20


@dataclass
class ServedModel:
    """A verified, loaded model version."""

    version: ModelVersion
    booster: Any
    schema: FeatureSchema
    sha256: str


def _field_name(loc: tuple) -> str:
    """``("body", "rows", 0, "distance")`` -> ``rows[0].distance``."""
    name = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for e in exc.errors():
        if e["type"] == "json_invalid":  # loc is ("body", <character position>)
            reason = f"{e['msg']} at character {e['loc'][-1]}: {e.get('ctx', {}).get('error')}"
            errors.append({"field": "body", "reason": reason, "type": e["type"]})
        else:
            errors.append({"field": _field_name(tuple(e["loc"])), "reason": e["msg"],
                           "type": e["type"]})
    status = 413 if any(e["type"] == BATCH_TOO_LARGE for e in errors) else 422
    shown = errors[:MAX_LISTED_ERRORS]
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in shown)
    if len(errors) > len(shown):
        detail += f"; ... {len(errors) - len(shown)} more"
    return JSONResponse(status_code=status, content={"detail": detail, "errors": shown})


def create_app(model_version: ModelVersion, slot: str, settings: Settings,
               booster: Any = None) -> FastAPI:
    """The model server app for ``model_version`` in ``slot``.

    :param booster: the already loaded booster; default: load (and verify) it here.
    :raises ArtifactIntegrityError: the model file does not match its registered sha256.
    """
    check_slot(slot)
    if booster is None:
        booster = model_version.load_booster()
    served = ServedModel(model_version, booster,
                         FeatureSchema.from_dict(model_version.metadata["feature_schema"]),
                         model_version.metadata["artifact"]["sha256"])
    prediction_log = PredictionLogger(settings.serving_dir, slot, model_version.name,
                                      model_version.version)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("serving %s %s in slot %s (pid %d)", model_version.name,
                 model_version.version, slot, os.getpid())
        yield
        prediction_log.close()
        log.info("prediction log closed: %s", prediction_log.stats())

    app = FastAPI(title=f"driftline {model_version.name} ({slot})", lifespan=lifespan)
    app.state.model = served
    app.state.prediction_log = prediction_log
    app.add_exception_handler(RequestValidationError, _invalid_request)
    PredictRequest = predict_request_model(settings.serving.max_batch_rows)

    def identity(model: ServedModel) -> dict:
        return {"model_name": model.version.name, "model_version": model.version.version,
                "slot": slot}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "slot": slot, "pid": os.getpid(),
                "prediction_log": prediction_log.stats()}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        model = app.state.model
        if model is None:
            return JSONResponse(status_code=503, content={"ready": False, "slot": slot,
                                                          "reason": "no verified model loaded"})
        return JSONResponse({"ready": True, **identity(model), "sha256": model.sha256,
                             "pid": os.getpid()})

    @app.get("/version")
    async def version() -> JSONResponse:
        model = app.state.model
        if model is None:
            return JSONResponse(status_code=503, content={"slot": slot, "model_version": None})
        return JSONResponse({**identity(model), "sha256": model.sha256,
                             "data_version": model.version.data_version, "pid": os.getpid()})

    @app.post("/predict")  # a plain def: FastAPI runs it in a worker thread, off the loop
    def predict(body: PredictRequest) -> JSONResponse:  # type: ignore[valid-type]
        model = app.state.model
        if model is None:
            return JSONResponse(status_code=503, content={"detail": "no verified model loaded"})
        rows = [row.model_dump() for row in body.rows]
        frame = pd.DataFrame.from_records(rows, columns=INPUT_COLUMNS)
        probabilities = predict_proba(model.booster, frame, model.schema).tolist()
        prediction_log.submit(rows, probabilities)
        return JSONResponse({
            **identity(model),
            "predictions": [{"late_probability": p, "late": p >= 0.5} for p in probabilities],
        })

    return app


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def bind_unix(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, mode 0666; a stale socket file there is replaced.

    :raises OSError: a server still listens on ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens: left behind by a server that died
        else:
            raise OSError(f"another server is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o666)
    sock.listen(1024)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftline.serving.app",
                                     description="Serve one model version in one slot.")
    parser.add_argument("--slot", required=True, choices=SLOTS)
    parser.add_argument("--version", required=True, help="registered model version, e.g. v0001")
    parser.add_argument("--host", default=None, help="default: settings' serving host")
    parser.add_argument("--port", type=int, default=None, help="default: the slot's port")
    parser.add_argument("--uds", type=Path, default=None,
                        help="unix socket path; default: <serving_dir>/run/<slot>.sock")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    prefix = f"driftline serving [{args.slot}]"
    try:
        model_version = Registry(settings.registry_dir, settings.model_name).get(args.version)
        booster = model_version.load_booster()
        app = create_app(model_version, args.slot, settings, booster=booster)
    except Exception as exc:  # any failure to verify or load the model refuses to start
        print(f"{prefix}: refusing to start {settings.model_name} {args.version}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    host = args.host or settings.serving.host
    port = args.port or slot_port(settings, args.slot)
    uds = args.uds or slot_socket(settings, args.slot)
    try:
        sockets = [bind_tcp(host, port), bind_unix(uds)]
    except OSError as exc:
        print(f"{prefix}: cannot listen on {host}:{port} and {uds}: {exc}", file=sys.stderr,
              flush=True)
        return 3
    uds_inode = os.stat(uds).st_ino
    log.info("%s: listening on http://%s:%d and unix:%s", prefix, host, port, uds)

    import uvicorn

    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on",
                            access_log=False, log_level="info", timeout_graceful_shutdown=10)
    try:
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        try:
            if os.stat(uds).st_ino == uds_inode:  # still ours, not a newer server's
                uds.unlink()
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
