"""Real alert sinks on loopback for the alert tests: an SMTP server (aiosmtpd, with AUTH)
that keeps every message it receives, and an HTTP server that keeps every JSON body POSTed to
it. Each runs on a free port for one test; import the fixtures into a test module."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from driftline.serving.probe import free_ports

SMTP_LOGIN = "alerts-bot"
SMTP_PASSWORD = "smtp-pa55-never-in-a-message"
WEBHOOK_TOKEN = "webhook-t0ken-never-in-a-message"


@dataclass
class ReceivedMail:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_to: list[str]
    message: email.message.EmailMessage
    raw: str

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html", "plain"))
        return part.get_content() if part is not None else ""


@dataclass
class SmtpSink:
    """A loopback SMTP server that accepts ``SMTP_LOGIN``/``SMTP_PASSWORD`` (AUTH without
    TLS: loopback only) and keeps what it receives."""

    port: int
    messages: list[ReceivedMail] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    def connection(self, **extra) -> str:
        """The Airflow connection (JSON, for ``AIRFLOW_CONN_<ID>``) of this server."""
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "login": SMTP_LOGIN, "password": SMTP_PASSWORD,
                           "extra": {"disable_ssl": True, "disable_tls": True,
                                     "from_email": "driftline@example.test",
                                     "retry_limit": 0, "timeout": 10, **extra}})

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)

    # aiosmtpd's handler and authenticator
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        raw = raw if isinstance(raw, bytes) else raw.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos),
                                          message, raw.decode("utf-8", "replace")))
        return "250 Message accepted for delivery"

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == SMTP_LOGIN
              and auth_data.password.decode() == SMTP_PASSWORD)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture
def smtp_sink():
    """A running loopback SMTP server; stopped after the test."""
    from aiosmtpd.controller import Controller

    [port] = free_ports(1)
    sink = SmtpSink(port)
    controller = Controller(sink, hostname="127.0.0.1", port=port, authenticator=sink,
                            auth_require_tls=False)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class HttpSink:
    """A loopback HTTP server that keeps each POST's path, headers and JSON body."""

    port: int
    requests: list[dict] = field(default_factory=list)
    status: int = 200

    def connection(self, endpoint: str = "/hooks/driftline") -> str:
        """The Airflow HTTP connection (JSON, for ``AIRFLOW_CONN_<ID>``) of this server,
        with a bearer token in its extra headers."""
        return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": self.port,
                           "schema": "http",
                           "extra": {"endpoint": endpoint,
                                     "headers": {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}}})

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.requests)


@pytest.fixture
def http_sink():
    """A running loopback HTTP server collecting POSTed JSON; stopped after the test."""
    [port] = free_ports(1)
    sink = HttpSink(port)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            sink.requests.append({"path": self.path, "headers": dict(self.headers),
                                  "raw": body.decode("utf-8", "replace"),
                                  "json": json.loads(body)})
            self.send_response(sink.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
