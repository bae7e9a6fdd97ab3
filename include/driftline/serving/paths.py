"""Where each serving part lives: slots, ports, sockets and log files."""

from __future__ import annotations

from pathlib import Path

from driftline.settings import Settings

SLOTS = ("blue", "green")
LIVE_LINK = "live.sock"


def check_slot(slot: str) -> str:
    """:raises ValueError: ``slot`` is neither blue nor green."""
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}; expected one of {SLOTS}")
    return slot


def other_slot(slot: str) -> str:
    """The slot that is not ``slot``."""
    return SLOTS[1 - SLOTS.index(check_slot(slot))]


def slot_port(settings: Settings, slot: str) -> int:
    """The loopback TCP port of ``slot``'s server."""
    return settings.serving.blue_port if check_slot(slot) == "blue" else settings.serving.green_port


def run_dir(settings: Settings) -> Path:
    """Directory of the unix sockets and the ``live.sock`` symlink."""
    return settings.serving_dir / "run"


def slot_socket(settings: Settings, slot: str) -> Path:
    """The unix socket of ``slot``'s server."""
    return run_dir(settings) / f"{check_slot(slot)}.sock"


def live_link(settings: Settings) -> Path:
    """The symlink the router connects through; it points at the live slot's socket."""
    return run_dir(settings) / LIVE_LINK


def logs_dir(settings: Settings) -> Path:
    return settings.serving_dir / "logs"


def slot_log(settings: Settings, slot: str) -> Path:
    """stdout and stderr of ``slot``'s server process."""
    return logs_dir(settings) / f"{check_slot(slot)}.log"


def predictions_dir(serving_dir: Path) -> Path:
    """Root of the prediction log."""
    return Path(serving_dir) / "predictions"


def slot_url(settings: Settings, slot: str) -> str:
    """Base URL of ``slot``'s server on loopback TCP."""
    return f"http://{settings.serving.host}:{slot_port(settings, slot)}"


def router_url(settings: Settings) -> str:
    """Base URL of the router (nginx)."""
    return f"http://{settings.serving.host}:{settings.serving.router_port}"
