"""The model server of one pack's slot: FastAPI on uvicorn, on a unix socket (and a loopback
port only when asked).

Run it as::

    python -m driftline.serving.app --pack flights --slot blue --version v0001 \
        [--uds PATH] [--port N]

Settings come from :func:`~driftline.settings.load_settings` (``$DRIFTLINE_HOME``,
``$DRIFTLINE_CONFIG``, ``$DRIFTLINE_PACKS``). The model is loaded through
:meth:`ModelVersion.load_booster`, which checks its sha256 first; a model that fails to
verify or load stops the process with a non-zero exit status and the reason on stderr,
before any socket is opened.

Endpoints: ``GET /health`` (the process is up), ``GET /ready`` (model loaded and verified,
503 otherwise), ``GET /version`` and ``POST /predict`` (body ``{"rows": [...]}``, see
:mod:`driftline.serving.schema`; concurrent requests are predicted together, see
:mod:`driftline.serving.batcher`).
"""

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from driftline.features import FeatureSchema
from driftline.registry import ModelVersion, Registry
from driftline.scoring import predict
from driftline.serving.batcher import MicroBatcher
from driftline.serving.compiled import (
    PendingTrees,
    cached,
    first_predictor,
    start_build,
    when_built,
)
from driftline.serving.paths import SLOTS, check_slot, live_link, slot_socket
from driftline.serving.prediction_log import PredictionLogger
from driftline.serving.schema import RequestDecoder, RequestError, prediction_items
from driftline.serving.verify import VERIFY_HEADER
from driftline.serving.workers import fork_workers, stop_workers, worker_count
from driftline.workspace import Workspace, open_workspace

log = logging.getLogger(__name__)

JSON_HEADERS = [(b"content-type", b"application/json")]
CLOSE_HEADER = (b"connection", b"close")
VERIFY_HEADER_BYTES = VERIFY_HEADER.encode()


@dataclass
class ServedModel:
    """A verified, loaded model version."""

    version: ModelVersion
    booster: Any
    schema: FeatureSchema
    sha256: str
    predictor: str = "xgboost"
    """What predicts: ``xgboost``, or the compiled trees (:mod:`driftline.serving.compiled`)."""


class ModelServer:
    """The slot's ASGI app: ``POST /predict`` is served here directly (msgspec decoding,
    micro-batched prediction, no framework on the hot path); everything else, lifespan
    included, goes to a FastAPI app (``/health``, ``/ready``, ``/version``, ``/docs``).

    :param api: the FastAPI app for the other routes; its ``state.model`` is the
        :class:`ServedModel` (None: not ready, ``/predict`` answers 503).
    """

    def __init__(self, api: FastAPI, decoder: RequestDecoder, batcher: MicroBatcher,
                 prediction_log: PredictionLogger, identity: dict):
        self.pack = decoder.pack
        self.api = api
        self.state = api.state
        self.decoder = decoder
        self.batcher = batcher
        self.prediction_log = prediction_log
        self.identity = identity
        self._encode = msgspec.json.Encoder().encode
        # set by main(): the uvicorn server's open connections
        self.connections: Callable[[], Iterable[Any]] | None = None
        # set by main(): whether the router's live link points here
        self.is_live: Callable[[], bool] | None = None
        self.draining = False

    def drain(self) -> None:
        """Close idle keep-alive connections and end busy ones after their response: the
        router has switched away from this slot (sent ``SIGUSR1``). Until the router
        points here again, every later connection is closed after its response too: one
        the router opened just before the switch may be accepted only now."""
        self.draining = True
        connections = list(self.connections()) if self.connections else []
        fresh = 0
        for connection in connections:
            if getattr(connection, "cycle", False) is None:
                # accepted, no request read yet: the router opened it before the switch and
                # has sent a request on it; closing it unread would fail that request (as a
                # fresh connection, nginx does not retry it). It is answered, then closed.
                fresh += 1
                continue
            connection.shutdown()
        log.info("draining: closed or closing %d connections (%d not yet read from are "
                 "answered first)", len(connections) - fresh, fresh)

    async def __call__(self, scope, receive, send) -> None:
        if self.draining and scope["type"] == "http":
            if self.is_live is not None and self.is_live():
                self.draining = False
                log.info("live again: connections are kept alive")
            else:
                send = _closing(send)
        if scope["type"] == "http" and scope["path"] == "/predict":
            await self.predict(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    async def _respond(self, send, status: int, body: dict) -> None:
        payload = self._encode(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*JSON_HEADERS, (b"content-length", b"%d" % len(payload))]})
        await send({"type": "http.response.body", "body": payload})

    async def predict(self, scope, receive, send) -> None:
        if scope["method"] != "POST":
            return await self._respond(send, 405, {"detail": "use POST /predict"})
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if self.state.model is None:
            return await self._respond(send, 503, {"detail": "no verified model loaded"})
        try:
            rows, dates = self.decoder.decode(chunks[0] if len(chunks) == 1
                                              else b"".join(chunks))
        except RequestError as exc:
            return await self._respond(send, exc.status, exc.body())
        outputs = (await self.batcher.submit(self.decoder.columns_of(rows), len(rows))).tolist()
        if not any(name == VERIFY_HEADER_BYTES for name, _ in scope["headers"]):
            self.prediction_log.submit(rows, outputs, dates)
        await self._respond(send, 200, {**self.identity,
                                        "predictions": prediction_items(self.pack, outputs)})


def _closing(send):
    """``send`` with ``Connection: close`` added to the response: the server closes the
    connection after it."""

    async def closing_send(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), CLOSE_HEADER]}
        await send(message)

    return closing_send


async def adopt_compiled(served: ServedModel, pack, booster, compiled, rows: list[dict]) -> None:
    """Serve the compiled trees once built, if ``compiled`` is a build in progress (they are
    checked against XGBoost first)."""
    if isinstance(compiled, PendingTrees):
        served.booster, served.predictor = first_predictor(
            pack, booster, await when_built(compiled), rows, served.schema)


def create_app(model_version: ModelVersion, slot: str, ws: Workspace,
               booster: Any = None, compiled: Path | PendingTrees | str | None = None,
               server_pid: int | None = None) -> ModelServer:
    """The model server app for ``model_version`` of ``ws``'s pack in ``slot``.

    :param booster: the already loaded booster; default: load (and verify) it here.
    :param compiled: the compiled trees built from ``booster`` (:func:`compiled_trees`),
        served if they match it on the smoke rows (if still building: XGBoost serves until
        they are built); a text: why there are none (XGBoost serves); None: XGBoost serves.
    :param server_pid: the slot server's main process (``pid`` in ``/ready``); default this
        process.
    :raises ArtifactIntegrityError: the model file does not match its registered sha256.
    """
    check_slot(slot)
    if booster is None:
        booster = model_version.load_booster()
    booster.set_param({"nthread": 1})  # one prediction at a time; OpenMP only adds overhead
    schema = FeatureSchema.from_dict(model_version.metadata["feature_schema"])
    smoke_rows = model_version.metadata.get("smoke", {}).get("rows", [])
    served = ServedModel(model_version, booster, schema,
                         model_version.metadata["artifact"]["sha256"])
    served.booster, served.predictor = first_predictor(ws.pack, booster, compiled, smoke_rows,
                                                       schema)

    main_pid = server_pid or os.getpid()
    pack, serving = ws.pack, ws.serving
    prediction_log = PredictionLogger(
        ws.serving_dir, slot, model_version.name, model_version.version,
        keep_days=serving.prediction_log_keep_days,
        max_bytes=serving.prediction_log_max_mb * 2**20)
    batcher = MicroBatcher(lambda columns: predict(pack, served.booster, columns, served.schema),
                           max_rows=max(4096, serving.max_batch_rows))
    identity = {"pack": pack.name, "model_name": model_version.name,
                "model_version": model_version.version, "slot": slot}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("serving %s %s in slot %s (pid %d)", model_version.name,
                 model_version.version, slot, os.getpid())
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, server.drain)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
            log.debug("no SIGUSR1 drain handler outside the main thread")
        adopting = asyncio.create_task(adopt_compiled(served, ws.pack, booster, compiled,
                                                      smoke_rows))
        yield
        adopting.cancel()
        batcher.close()
        prediction_log.close()
        log.info("prediction log closed: %s; batching: %s", prediction_log.stats(),
                 batcher.stats())

    api = FastAPI(title=f"driftline {model_version.name} ({slot})", lifespan=lifespan)
    api.state.model = served

    @api.get("/health")
    async def health() -> dict:
        return {"status": "ok", "slot": slot, "pid": main_pid, "worker_pid": os.getpid(),
                "prediction_log": prediction_log.stats(), "batching": batcher.stats()}

    @api.get("/ready")
    async def ready() -> JSONResponse:
        model = api.state.model
        if model is None:
            return JSONResponse(status_code=503, content={"ready": False, "slot": slot,
                                                          "reason": "no verified model loaded"})
        return JSONResponse({"ready": True, **identity, "sha256": model.sha256,
                             "predictor": model.predictor, "pid": main_pid,
                             "worker_pid": os.getpid()})

    @api.get("/version")
    async def version() -> JSONResponse:
        model = api.state.model
        if model is None:
            return JSONResponse(status_code=503, content={"slot": slot, "model_version": None})
        return JSONResponse({**identity, "sha256": model.sha256,
                             "data_version": model.version.data_version,
                             "predictor": model.predictor, "pid": main_pid,
                             "worker_pid": os.getpid()})

    server = ModelServer(api, RequestDecoder(pack, serving.max_batch_rows), batcher,
                         prediction_log, identity)
    return server


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def bind_unix(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600: only its owner (the router's nginx
    workers run as the same user, or as root) may connect. A stale socket file there is
    replaced.

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
    umask = os.umask(0o177)  # never briefly connectable by others (before any thread starts)
    try:
        sock.bind(str(path))
    finally:
        os.umask(umask)
    os.chmod(path, 0o600)
    sock.listen(1024)
    return sock


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m driftline.serving.app",
                                     description="Serve one model version in one slot.")
    parser.add_argument("--pack", required=True, help="dataset pack name")
    parser.add_argument("--slot", required=True, choices=SLOTS)
    parser.add_argument("--version", required=True, help="registered model version, e.g. v0001")
    parser.add_argument("--uds", type=Path, default=None,
                        help="unix socket path; default: <pack serving dir>/run/<slot>.sock")
    parser.add_argument("--host", default=None, help="with --port: default the serving host")
    parser.add_argument("--port", type=int, default=None,
                        help="also listen on this loopback TCP port (default: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prefix = f"driftline serving [{args.pack}/{args.slot}]"
    # one thread per prediction; and no OpenMP thread team before the workers fork
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        ws = open_workspace(args.pack)
        model_version = Registry(ws.registry_dir, ws.model_name).get(args.version)
        booster = model_version.load_booster()
        compiled = compiled_trees(ws, model_version, booster)
    except Exception as exc:  # any failure to verify or load the model refuses to start
        print(f"{prefix}: refusing to start {args.pack} {args.version}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    uds = args.uds or slot_socket(ws.serving_dir, args.slot)
    host = args.host or ws.settings.serving.host
    try:
        sockets = [bind_unix(uds)]
        if args.port:
            sockets.append(bind_tcp(host, args.port))
    except OSError as exc:
        print(f"{prefix}: cannot listen on {uds} (port {args.port}): {exc}", file=sys.stderr,
              flush=True)
        return 3
    log.info("%s: listening on unix:%s%s", prefix, uds,
             f" and http://{host}:{args.port}" if args.port else "")

    import uvicorn  # noqa: F401  (imported once, before the workers fork)

    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until the app's drain handler is in place
    main_pid = os.getpid()

    def serve() -> None:
        app = create_app(model_version, args.slot, ws, booster=booster, compiled=compiled,
                         server_pid=main_pid)
        run_uvicorn(app, sockets, ws.serving_dir, uds)

    workers = fork_workers(worker_count(ws.serving.workers) - 1, serve)
    if isinstance(compiled, PendingTrees):
        workers.append(compiled.builder_pid)  # stopped and reaped with the workers

    remove_socket = socket_remover(uds)

    def stopped_by(signum, frame) -> None:
        # uvicorn shuts down on SIGTERM/SIGINT, restores these handlers and raises the
        # signal again: stop the other workers, remove the socket, then die of the signal
        stop_workers(workers)
        remove_socket()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stopped_by)
    try:
        serve()
    except Exception as exc:
        print(f"{prefix}: cannot serve {args.pack} {args.version}: {type(exc).__name__}: "
              f"{exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        stop_workers(workers)
        remove_socket()
    return 0


def socket_remover(uds: Path) -> Callable[[], None]:
    """A function that removes the socket file at ``uds`` if it is still this one (not a
    newer server's)."""
    inode = os.stat(uds).st_ino

    def remove_socket() -> None:
        try:
            if os.stat(uds).st_ino == inode:
                uds.unlink()
        except FileNotFoundError:
            pass

    return remove_socket


def compiled_trees(ws: Workspace, model_version: ModelVersion,
                   booster) -> Path | PendingTrees | str | None:
    """The compiled trees of the verified ``booster``: reused from the pack's serving
    directory, or being built there by a forked low-priority process (XGBoost serves
    meanwhile); a text saying why there are none; None when the pack's ``serving.predictor``
    is ``xgboost``. Call it before any thread starts."""
    if ws.serving.predictor != "compiled":
        return None
    try:
        import tl2cgen  # noqa: F401
        import treelite  # noqa: F401
    except ImportError as exc:
        return f"no compiled trees: {exc}"
    if shutil.which("gcc") is None:
        return "no compiled trees: gcc not found"
    sha256 = model_version.metadata["artifact"]["sha256"]
    cache_dir = ws.serving_dir / "compiled"
    lib = cached(sha256, cache_dir)
    if lib is not None:
        return lib
    cache_dir.mkdir(parents=True, exist_ok=True)
    pid = start_build(booster, sha256, cache_dir)
    log.info("building compiled trees in pid %d; XGBoost serves until they are ready", pid)
    return PendingTrees(sha256, cache_dir, pid)


def run_uvicorn(app: ModelServer, sockets: list[socket.socket], serving_dir: Path,
                uds: Path) -> None:
    """Serve ``app`` on the listening ``sockets`` until uvicorn is told to stop."""
    import uvicorn

    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on",
                            access_log=False, log_level="info", timeout_graceful_shutdown=10,
                            proxy_headers=False)
    server = uvicorn.Server(config)
    app.connections = lambda: server.server_state.connections
    link, own = live_link(serving_dir), os.path.realpath(uds)
    app.is_live = lambda: os.path.realpath(link) == own
    server.run(sockets=sockets)


if __name__ == "__main__":
    sys.exit(main())
