"""Constants and helpers shared by test modules (import from here, never from conftest,
which pytest already imported: a second import would run it again)."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

from driftline.serving.probe import free_ports

ROOT = Path(__file__).resolve().parent.parent
PACKS = ROOT / "packs"
# One directory per test session, shared with the processes the tests start (inherited env).
SESSION = Path(os.environ.setdefault("DRIFTLINE_TEST_SESSION",
                                     tempfile.mkdtemp(prefix="driftline-tests-")))


def _session_config() -> Path:
    """The test configuration with a router port free for this session (written once)."""
    path = SESSION / "driftline-test.toml"
    if not path.exists():
        [port] = free_ports(1)
        source = (ROOT / "tests" / "driftline-test.toml").read_text()
        path.write_text(f"{source}\n[serving]\nrouter_port = {port}\n")
    return path


TEST_CONFIG = _session_config()

# Q1 2013 days used by the shared data: 24 days = 19 for training + 5 held out.
DATA_START = dt.date(2013, 1, 1)
DATA_END = dt.date(2013, 1, 24)
# the gate run of conftest.py's lifecycle_home (a per-run report directory name)
LIFECYCLE_RUN = "manual__2013-07-04T00_00_00_00_00"


def settings_at(home: Path, packs_dir: Path = PACKS):
    """driftline settings for a test home, with the small test configuration."""
    from driftline.settings import load_settings

    return load_settings(home=home, config=TEST_CONFIG, packs_dir=packs_dir)


def workspace_at(home: Path, pack: str = "flights", packs_dir: Path = PACKS):
    """The workspace of ``pack`` in a test home (the small test configuration)."""
    from driftline.workspace import open_workspace

    return open_workspace(pack, settings_at(home, packs_dir))


def with_value(obj: dict, path: tuple, value) -> dict:
    """A deep copy of the JSON object ``obj`` with the field at ``path`` set to ``value``
    (to prove a strict schema validator rejects it)."""
    changed = json.loads(json.dumps(obj))
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def tree_socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets ``pid`` and its child processes (a slot server's
    workers) hold open."""
    children = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return set().union(socket_inodes(pid), *(socket_inodes(c) for c in children))


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets ``pid`` holds open (from /proc/<pid>/fd)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 (as /proc shows)


def listening_sockets(pids: set[int]) -> set[tuple[str, int]]:
    """(address as /proc shows it, port) of every TCP socket in LISTEN state held by
    ``pids``."""
    inodes = set().union(*(socket_inodes(pid) for pid in pids))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.add((address, int(port, 16)))
    return found


def group_pids(leaders: list[int]) -> set[int]:
    """Every process in the process groups led by ``leaders``."""
    pids = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(proc.name)) in leaders:
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


def write_days(ws, flights, start, end, transform=None):
    """Version each day of ``[start, end]`` of the ``flights`` rows in the data repo
    (``transform`` changes a day's rows first)."""
    from driftline.packs.timeline import iter_intervals
    from driftline.versioning import DataRepo

    repo = DataRepo.of(ws)
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    for day in iter_intervals(start, end, "daily"):
        rows = flights[dates == (day.year, day.month, day.day)]
        repo.write_partition(day, transform(rows) if transform else rows)


def with_quality_limit(config: Path, limit: float | None) -> Path:
    """``config`` (a copy of the test configuration) with the flights pack's live AUC drop
    limit set to ``limit`` (None: no limit), overriding the pack's own."""
    text = config.read_text()
    header = "[packs.flights.monitor]\n"
    assert header in text, config
    value = "{}" if limit is None else f"{{auc = {limit}}}"
    config.write_text(text.replace(header, f"{header}max_quality_drop = {value}\n", 1))
    return config


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (gone, or a zombie whose sockets are closed)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                in {"Z", "X"})
    except OSError:
        return True


def kill_green_after_the_switch(bluegreen) -> None:
    """Failure injection into ``bluegreen``: once the router is switched to green, green's
    server is killed (SIGKILL, waited for) before the post-switch watch begins."""
    import os
    import signal

    switch = bluegreen._switch

    def switch_then_kill(slot, version):
        result = switch(slot, version)
        if slot == "green":
            pid = bluegreen.status()["slots"]["green"]["pid"]
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: process_gone(pid), "the killed green server to exit")
        return result

    bluegreen._switch = switch_then_kill


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    """Poll ``condition()`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.02)
