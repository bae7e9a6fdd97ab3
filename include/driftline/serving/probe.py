"""Probes for a running model server: free loopback ports and a prediction client that
records every answer, used to verify switches and rollbacks under load (tests, bench)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (held open together
    while choosing, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class PredictionProbe(threading.Thread):
    """Sends one prediction request after another to ``127.0.0.1:port`` until stopped (or
    ``max_requests``), reusing one keep-alive connection or opening a fresh one each time.

    ``results`` holds ``(sent, answered, model version or error, connection number)`` for
    every request; ``connections`` counts the connections opened.

    :param port: the router's (or a slot's) port.
    :param body: the JSON request body for ``POST path``.
    :param keep_alive: reuse one connection (True) or open one per request (False).
    :param max_requests: upper bound on requests, so a forgotten probe stops by itself.
    :param interval_s: pause between requests (0: back to back).
    :param path: the prediction endpoint: ``/<pack>/predict`` on the router, ``/predict``
        on a slot.
    :param pack: when set, an answer from another pack is recorded as ``pack <name>``
        instead of its model version.
    """

    def __init__(self, port: int, body: str, keep_alive: bool, max_requests: int = 50_000,
                 interval_s: float = 0.0, path: str = "/predict", pack: str | None = None):
        super().__init__(daemon=True, name="keep-alive" if keep_alive else "fresh-conn")
        self.port, self.body, self.keep_alive = port, body, keep_alive
        self.max_requests, self.interval_s = max_requests, interval_s
        self.path, self.pack = path, pack
        self.results: list[tuple[float, float, str, int]] = []
        self.connections = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stop.is_set() and len(self.results) < self.max_requests:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.connections += 1
            sent = time.time()
            try:
                conn.request("POST", self.path, self.body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                outcome = (self._outcome(json.loads(payload)) if response.status == 200
                           else f"HTTP {response.status}")
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                outcome = f"error {exc!r}"
                conn.close()
                conn = None
            self.results.append((sent, time.time(), outcome, self.connections))
            if not self.keep_alive and conn is not None:
                conn.close()
                conn = None
            if self.interval_s:
                time.sleep(self.interval_s)
        if conn is not None:
            conn.close()

    def _outcome(self, body: dict) -> str:
        if self.pack is not None and body.get("pack") != self.pack:
            return f"pack {body.get('pack')}"
        return body["model_version"]
