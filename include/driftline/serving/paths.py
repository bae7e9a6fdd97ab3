"""Where each serving part lives: the shared router, and per pack its slots, sockets, state,
logs and prediction log.

Layout under ``settings.serving_dir``::

    nginx/nginx.conf                       the one router for every pack (config, pid, logs)
    <pack>/state.json                      live slot, each slot's version and pid, history
    <pack>/run/blue.sock, green.sock       each slot's unix socket (slots listen on nothing else)
    <pack>/run/live.sock -> blue.sock      the symlink the router connects through (the switch)
    <pack>/run/standby.sock -> green.sock  the router's fallback while the live slot is down
    <pack>/logs/blue.log, green.log        each slot server's stdout and stderr
    <pack>/predictions/date=YYYY-MM-DD/<slot>-<pid>.jsonl   the pack's prediction log
"""

from __future__ import annotations

from pathlib import Path

import httpx

SLOTS = ("blue", "green")
LIVE_LINK = "live.sock"
STANDBY_LINK = "standby.sock"


def check_slot(slot: str) -> str:
    """:raises ValueError: ``slot`` is neither blue nor green."""
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}; expected one of {SLOTS}")
    return slot


def other_slot(slot: str) -> str:
    """The slot that is not ``slot``."""
    return SLOTS[1 - SLOTS.index(check_slot(slot))]


def run_dir(serving_dir: Path) -> Path:
    """Directory of a pack's unix sockets and its ``live.sock`` symlink."""
    return Path(serving_dir) / "run"


def slot_socket(serving_dir: Path, slot: str) -> Path:
    """The unix socket of ``slot``'s server."""
    return run_dir(serving_dir) / f"{check_slot(slot)}.sock"


def live_link(serving_dir: Path) -> Path:
    """The symlink the router connects through; it points at the live slot's socket."""
    return run_dir(serving_dir) / LIVE_LINK


def standby_link(serving_dir: Path) -> Path:
    """The router's backup: a symlink to the previous live slot's socket, which still runs
    the version it served, verified at its own deploy (absent while none is ready)."""
    return run_dir(serving_dir) / STANDBY_LINK


def logs_dir(serving_dir: Path) -> Path:
    return Path(serving_dir) / "logs"


def slot_log(serving_dir: Path, slot: str) -> Path:
    """stdout and stderr of ``slot``'s server process."""
    return logs_dir(serving_dir) / f"{check_slot(slot)}.log"


def predictions_dir(serving_dir: Path) -> Path:
    """Root of a pack's prediction log."""
    return Path(serving_dir) / "predictions"


def slot_client(serving_dir: Path, slot: str, timeout: float = 30.0) -> httpx.Client:
    """An HTTP client to ``slot``'s server over its unix socket (base URL ``http://slot``)."""
    transport = httpx.HTTPTransport(uds=str(slot_socket(serving_dir, slot)))
    return httpx.Client(transport=transport, base_url="http://slot", timeout=timeout)


def router_url(settings, pack: str | None = None) -> str:
    """Base URL of the router (nginx), or of one pack's endpoint behind it."""
    base = f"http://{settings.serving.host}:{settings.serving.router_port}"
    return f"{base}/{pack}" if pack else base
