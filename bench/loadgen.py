"""An open-loop HTTP/1.1 load generator for loopback benchmarks.

Requests leave on a fixed schedule (``rate`` per second) whatever the server does, and
each one's latency is measured from its *scheduled* time, so queueing anywhere (server,
nginx, or this generator waiting for a free connection) shows up as latency instead of as
fewer requests (no coordinated omission; ``wrk`` is closed-loop and wrk2 is not in Debian).
Connections are keep-alive and pooled: a request goes out on an idle connection, or on a new
one while fewer than ``max_connections`` are open, else it waits (and that wait counts).

It runs on uvloop with raw asyncio protocols (no HTTP library), about 15 us of CPU per
request, so it can drive thousands of requests per second from one core. It talks to a TCP
port (the router: ``--path /<pack>/predict``) or to a unix socket (a slot, as nginx does)::

    python bench/loadgen.py --port 8780 --path /flights/predict --rate 2000 --body-file row.json
    python bench/loadgen.py --uds .driftline/serving/flights/run/blue.sock --rate 2000 \
        --body-file row.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from pathlib import Path


class _Connection(asyncio.Protocol):
    def __init__(self, generator: OpenLoop):
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.scheduled: float | None = None  # the request in flight on this connection

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.generator._ready(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            if at < 0:  # chunked or unframed: not what a benchmark target should send
                self.generator._record(self.scheduled, "response without Content-Length")
                self.scheduled = None
                self.transport.close()
                return
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15:line_end if line_end > 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            version = None
            if self.generator.versions is not None:
                at = self.buffer.find(b'"model_version":"', end, end + 4 + length)
                if at >= 0:
                    version = bytes(self.buffer[at + 17:self.buffer.find(b'"', at + 17)]).decode()
            del self.buffer[:end + 4 + length]
            status = int(head[9:12])
            self.generator._answered(self, status, b"connection: close" in head, version)

    def connection_lost(self, exc) -> None:
        self.generator._lost(self, exc)


class OpenLoop:
    """Send ``request`` (raw HTTP bytes) to ``127.0.0.1:port`` (or the unix socket ``uds``)
    at ``rate`` per second.

    :param port: a loopback TCP port; ignored when ``uds`` is set.
    :param uds: a unix socket path to connect to instead of the port.
    :param warmup: seconds sent first and left out of the figures.
    :param max_connections: connections the pool may open.
    :param timeout: seconds after the last scheduled request to wait for answers.
    :param track_versions: keep ``(scheduled, answered, model_version)`` of every 200
        answer in ``versions`` (times from ``time.perf_counter``).
    :param stop: an event; once set, the schedule ends early (``duration`` then is a limit).
    """

    def __init__(self, port: int | None, request: bytes, rate: float, duration: float,
                 warmup: float = 1.0, max_connections: int = 256, timeout: float = 10.0,
                 track_versions: bool = False, uds: str | None = None, stop=None):
        self.port, self.uds, self.request, self.rate = port, uds, request, rate
        self.stop = stop  # an Event: once set, nothing more is sent
        self.duration, self.warmup = duration, warmup
        self.max_connections, self.timeout = max_connections, timeout
        self.idle: list[_Connection] = []
        self.backlog: deque[float] = deque()
        self.opening = 0
        self.opened = 0
        self.open = 0
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.outstanding = 0
        self.measure_from = 0.0
        self.last_answer = 0.0
        self.versions: list[tuple[float, float, str | None]] | None = (
            [] if track_versions else None)

    # -- connection callbacks ------------------------------------------------------------
    def _ready(self, conn: _Connection) -> None:
        self.opening -= 1
        self.open += 1
        self.opened += 1
        self._next(conn)

    def _next(self, conn: _Connection) -> None:
        if self.backlog:
            conn.scheduled = self.backlog.popleft()
            conn.transport.write(self.request)
        else:
            conn.scheduled = None
            self.idle.append(conn)

    def _record(self, scheduled: float, outcome: str | None) -> None:
        self.outstanding -= 1
        if scheduled < self.measure_from:
            return
        if outcome is None:
            self.last_answer = time.perf_counter()
            self.latencies.append(self.last_answer - scheduled)
        else:
            self.errors[outcome] = self.errors.get(outcome, 0) + 1

    def _answered(self, conn: _Connection, status: int, close: bool,
                  version: str | None = None) -> None:
        scheduled, conn.scheduled = conn.scheduled, None
        self._record(scheduled, None if status == 200 else f"HTTP {status}")
        if self.versions is not None and status == 200:
            self.versions.append((scheduled, time.perf_counter(), version))
        if close:
            conn.transport.close()  # connection_lost takes it out of the pool
        else:
            self._next(conn)

    def _lost(self, conn: _Connection, exc) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.scheduled is not None:
            self._record(conn.scheduled, f"connection lost: {exc!r}")
            conn.scheduled = None

    # -- sending --------------------------------------------------------------------------
    def _send(self, scheduled: float) -> None:
        self.outstanding += 1
        if self.idle:
            conn = self.idle.pop()
            conn.scheduled = scheduled
            conn.transport.write(self.request)
            return
        self.backlog.append(scheduled)
        if self.open + self.opening < self.max_connections and self.opening < len(self.backlog):
            self.opening += 1
            self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            if self.uds:
                await self.loop.create_unix_connection(lambda: _Connection(self), self.uds)
            else:
                await self.loop.create_connection(lambda: _Connection(self), "127.0.0.1",
                                                  self.port)
        except OSError as exc:
            self.opening -= 1
            if self.backlog:
                self._record(self.backlog.popleft(), f"connect failed: {exc!r}")

    async def run(self) -> dict:
        """Send the whole schedule, wait for the answers, return the figures."""
        self.loop = asyncio.get_running_loop()
        total = int(self.rate * (self.warmup + self.duration))
        start = time.perf_counter() + 0.05  # uvloop's loop.time() has 1 ms resolution
        self.measure_from = start + self.warmup
        sent = 0
        while sent < total:
            now = time.perf_counter()
            while sent < total and start + sent / self.rate <= now:
                self._send(start + sent / self.rate)
                sent += 1
            if self.stop is not None and self.stop.is_set():
                self.duration = max(0.0, now - self.measure_from)
                break
            if sent < total:
                await asyncio.sleep(max(0.0, min(start + sent / self.rate - now, 0.001)))
        deadline = self.loop.time() + self.timeout
        while self.outstanding and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for scheduled in self.backlog:
            self._record(scheduled, "not sent before the timeout")
        lost = self.outstanding
        for conn in list(self.idle):
            conn.transport.close()
        return self.figures(lost)

    def figures(self, unanswered: int) -> dict:
        latencies = sorted(self.latencies)

        def pct(q: float) -> float:
            if not latencies:
                return float("nan")
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3, 2)

        errors = dict(self.errors)
        if unanswered:
            errors["unanswered"] = unanswered
        return {"rate": self.rate, "duration_s": self.duration, "ok": len(latencies),
                "errors": sum(errors.values()), "error_kinds": errors,
                # answers per second from the first measured send to the last answer: below
                # ``rate`` when the server fell behind, even if every answer came in the end
                "achieved_rps": round(len(latencies) / max(
                    self.duration, self.last_answer - self.measure_from), 1),
                "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
                "p999_ms": pct(0.999), "max_ms": pct(1.0), "connections": self.opened}


def post_request(body: bytes, path: str = "/predict") -> bytes:
    """The raw bytes of a keep-alive ``POST`` of a JSON ``body``."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def run(port: int | None, body: bytes, rate: float, duration: float, path: str = "/predict",
        **kwargs) -> dict:
    """Run one open-loop measurement of ``POST path`` on a fresh (uv)loop; see
    :class:`OpenLoop` (``uds=`` for a unix socket)."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(OpenLoop(port, post_request(body, path), rate, duration, **kwargs).run())


def _child(conn, port, body: bytes, rate: float, duration: float, path: str, kwargs) -> None:
    generator = OpenLoop(port, post_request(body, path), rate, duration, **kwargs)
    conn.send("started")
    try:
        import uvloop

        figures = uvloop.run(generator.run())
    except ImportError:
        figures = asyncio.run(generator.run())
    conn.send((figures, generator.versions))
    conn.close()


class InProcess:
    """One open-loop run in a process of its own (spawned), so that the process it is
    measuring next to (a deployer) cannot starve it of the GIL. ``time.perf_counter`` is
    the system's monotonic clock, so its times compare with the caller's.

    :param kwargs: :class:`OpenLoop`'s keyword arguments.
    """

    def __init__(self, port: int | None, body: bytes, rate: float, duration: float,
                 path: str = "/predict", **kwargs):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe(duplex=False)
        self.stop = context.Event()
        self.process = context.Process(target=_child, daemon=True, name="loadgen", args=(
            child, port, body, rate, duration, path, {**kwargs, "stop": self.stop}))
        self.process.start()
        child.close()
        if not self._conn.poll(60) or self._conn.recv() != "started":
            self.process.kill()
            raise TimeoutError("the load generator did not start in 60s")

    def result(self, timeout: float) -> tuple[dict, list | None]:
        """Stop sending; the figures and, with ``track_versions``, every answer's
        ``(scheduled, answered, version)``.

        :raises TimeoutError: no result within ``timeout`` seconds (the process is killed).
        """
        self.stop.set()
        if not self._conn.poll(timeout):
            self.process.kill()
            raise TimeoutError(f"the load generator gave no result in {timeout:g}s")
        figures, versions = self._conn.recv()
        self.process.join(10)
        return figures, versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--port", type=int, help="loopback TCP port (e.g. the router's)")
    target.add_argument("--uds", help="unix socket path (e.g. a slot's)")
    parser.add_argument("--path", default="/predict",
                        help="endpoint: /<pack>/predict on the router, /predict on a slot")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--max-connections", type=int, default=256)
    args = parser.parse_args(argv)
    figures = run(args.port, args.body_file.read_bytes(), args.rate, min(args.duration, 120),
                  path=args.path, warmup=args.warmup, max_connections=args.max_connections,
                  uds=args.uds)
    print(json.dumps(figures))
    return 0 if figures["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
