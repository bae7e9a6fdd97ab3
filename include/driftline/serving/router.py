"""nginx as the router: one loopback port in front of every pack's live slot.

Each pack has its own location: ``/<pack>/predict`` goes to ``/predict`` on
``unix:<serving_dir>/<pack>/run/live.sock``, a symlink to that pack's ``blue.sock`` or
``green.sock``; the kernel resolves the symlink at each ``connect()``. A switch of one pack
touches only that pack's symlink.
Switching traffic is one atomic ``rename(2)`` of the symlink: no nginx reload, so client
keep-alive connections to nginx stay open across the switch. ``standby.sock`` points at the
previous live slot (which keeps running its verified version for rollback) and is the
upstream's ``backup`` server: if the live slot's server dies, connecting to it fails at once
and nginx sends the request to the standby, so clients get the previous version instead of
502s until the live slot is back (:mod:`driftline.serving.supervisor` restarts it).

nginx keeps up to 64 idle upstream connections (a fresh connection per request costs the
Python server more than the prediction). Those lead to the old slot after a switch, so the
switch then tells the old slot to drain (``SIGUSR1``): it closes its idle connections and
ends each busy one after its response. A request that nginx sends on a kept connection at
the moment the old slot closes it is retried: on another kept connection, at last on a
fresh one, which goes to the new slot (``proxy_next_upstream error non_idempotent``: safe
here, since the old slot closes only idle connections, so it never saw the request).
Requests already sent to the old slot finish there (the old slot keeps running).

nginx runs as a daemon with its own prefix under ``serving_dir/nginx/`` (config, pid, logs,
temp paths), so it outlives the process that started it. A new config is checked with
``nginx -t`` before it replaces the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from driftline.serving.paths import (
    check_slot,
    live_link,
    router_url,
    run_dir,
    slot_socket,
    standby_link,
)
from driftline.serving.processes import process_alive, process_cmdline
from driftline.settings import Settings

log = logging.getLogger(__name__)

NGINX = os.environ.get("DRIFTLINE_NGINX", "/usr/sbin/nginx")
MAX_UNIX_PATH = 107  # sun_path is 108 bytes with the terminating NUL


class RouterError(RuntimeError):
    """nginx could not be configured, started, stopped or switched."""


def routed_packs(settings: Settings) -> list[str]:
    """Packs the router has a location for: every pack directory, and every pack that has
    serving state (so a pack removed from the packs directory keeps serving)."""
    names = {p.parent.name for p in Path(settings.packs_dir).glob("*/pack.toml")}
    names |= {p.parent.name for p in settings.serving_dir.glob("*/state.json")}
    return sorted(names)


class Router:
    """The one nginx router of an installation.

    :param settings: driftline settings (``serving.host``, ``serving.router_port``).
    :param nginx: the nginx binary.
    """

    def __init__(self, settings: Settings, nginx: str = NGINX):
        self.settings = settings
        self.nginx = nginx
        self.prefix = settings.serving_dir / "nginx"
        self.conf_path = self.prefix / "nginx.conf"
        self.pid_path = self.prefix / "nginx.pid"
        self.error_log = self.prefix / "logs" / "error.log"
        self.access_log = self.prefix / "logs" / "access.log"

    @property
    def url(self) -> str:
        return router_url(self.settings)

    # -- configuration -----------------------------------------------------------------
    def _locations(self) -> tuple[str, str]:
        upstreams, locations = [], []
        for pack in routed_packs(self.settings):
            link = live_link(self.settings.serving_dir / pack)
            if len(str(link)) > MAX_UNIX_PATH:
                raise RouterError(f"socket path {link} is longer than {MAX_UNIX_PATH} bytes, "
                                  "the unix socket limit; use a shorter DRIFTLINE_HOME")
            standby = standby_link(self.settings.serving_dir / pack)
            upstreams.append(f"""\
    upstream {pack}_live {{
        server unix:{link} max_fails=0;
        server unix:{standby} backup;
        keepalive 64;
        keepalive_timeout 30s;
    }}
""")
            locations.append(f"""\
        location /{pack}/ {{
            proxy_pass http://{pack}_live/;
            include {self.prefix / "proxy.conf"};
        }}
""")
        return "".join(upstreams), "".join(locations)

    def render_config(self) -> str:
        """The nginx.conf text: one upstream and one location per pack."""
        upstreams, locations = self._locations()
        temp = self.prefix / "temp"
        serving = self.settings.serving
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the sockets
        return f"""\
# Generated by driftline.serving.router; rewritten on every start.
{user}daemon on;
worker_processes 1;
pid {self.pid_path};
error_log {self.error_log} warn;

events {{
    worker_connections 4096;
}}

http {{
    log_format driftline '$remote_addr [$time_iso8601] "$request" $status '
                         '$body_bytes_sent $request_time $upstream_response_time';
    access_log {self.access_log} driftline buffer=64k flush=1s;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    server_tokens off;

{upstreams}
    server {{
        listen {serving.host}:{serving.router_port};

{locations}
        location / {{
            return 404 '{{"detail": "no such pack; use /<pack>/predict"}}';
        }}
    }}
}}
"""

    PROXY_CONF = """\
# Generated by driftline.serving.router: how every pack's location proxies.
proxy_http_version 1.1;
proxy_set_header Connection "";
# a kept connection closed by a draining old slot: retry; nginx counts no try for a kept
# connection, so it moves on through the kept ones, then one new one
proxy_next_upstream error non_idempotent;
proxy_next_upstream_tries 0;
proxy_next_upstream_timeout 5s;
proxy_set_header Host $host;
proxy_set_header X-Forwarded-For $remote_addr;
proxy_connect_timeout 2s;
proxy_read_timeout 60s;
proxy_send_timeout 60s;
"""

    def _nginx(self, *args: str, conf: Path | None = None) -> subprocess.CompletedProcess:
        if not Path(self.nginx).exists():
            raise RouterError(f"nginx not found at {self.nginx} (set DRIFTLINE_NGINX)")
        command = [self.nginx, "-p", f"{self.prefix}/", "-e", str(self.error_log),
                   "-c", str(conf or self.conf_path), *args]
        # stderr goes to a file: a daemonising nginx may keep a pipe open.
        with tempfile.TemporaryFile() as err:
            result: subprocess.CompletedProcess[Any] = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                timeout=30, start_new_session=True, check=False)
            err.seek(0)
            result.stderr = err.read().decode(errors="replace").strip()
        return result

    def write_config(self) -> bool:
        """Write and test the config; it replaces the old one only if ``nginx -t`` passes.

        :return: whether the config changed.
        :raises RouterError: ``nginx -t`` failed (its message included); the old config stays.
        """
        for sub in ("logs", "temp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        for pack in routed_packs(self.settings):
            run_dir(self.settings.serving_dir / pack).mkdir(parents=True, exist_ok=True)
        proxy_conf = self.prefix / "proxy.conf"
        if not proxy_conf.exists() or proxy_conf.read_text() != self.PROXY_CONF:
            proxy_conf.write_text(self.PROXY_CONF)
        text = self.render_config()
        if self.conf_path.exists() and self.conf_path.read_text() == text:
            return False
        candidate = self.prefix / f".nginx.conf.{os.getpid()}.candidate"
        candidate.write_text(text)
        result = self._nginx("-t", "-q", conf=candidate)
        if result.returncode != 0:
            candidate.unlink(missing_ok=True)
            raise RouterError(f"nginx config test failed, keeping the old config: "
                              f"{result.stderr}")
        os.replace(candidate, self.conf_path)
        log.info("router config written to %s", self.conf_path)
        return True

    # -- process -----------------------------------------------------------------------
    def pid(self) -> int | None:
        """The nginx master's pid, if nginx runs from this prefix."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if process_alive(pid) and str(self.conf_path) in process_cmdline(pid):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        """Test the config and start nginx as a daemon.

        :raises RouterError: the config test or the start failed (nginx's message included).
        """
        self.write_config()
        if self.is_running():
            log.info("router already running (pid %s)", self.pid())
            return
        self._reap_orphans()
        result = self._nginx()
        if result.returncode != 0:
            raise RouterError(f"nginx did not start: {result.stderr}")
        deadline = time.monotonic() + 10
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RouterError(f"nginx started but no master process runs; see "
                                  f"{self.error_log}")
            time.sleep(0.05)
        log.info("router started on %s (nginx pid %s)", self.url, self.pid())

    def _reap_orphans(self) -> None:
        """Kill the workers a killed nginx master left behind: they still hold the port."""
        try:
            old = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                pgrp = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2])
                title = (proc / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if pgrp == old and title.startswith(b"nginx: "):
                log.warning("killing nginx pid %s left behind by master %d", proc.name, old)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
                int(p.name) != os.getpid() and _in_group(p, old) for p in
                Path("/proc").glob("[0-9]*")):
            time.sleep(0.05)

    def ensure_running(self) -> None:
        """Start nginx, or reload it if its config changed (never needed for a switch)."""
        if not self.is_running():
            self.start()
            return
        if self.write_config():
            result = self._nginx("-s", "reload")
            if result.returncode != 0:
                raise RouterError(f"nginx reload failed: {result.stderr}")
            log.info("router config changed; nginx reloaded")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop nginx: graceful quit, then terminate, then kill."""
        pid = self.pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 5.0),
                          (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not process_alive(pid):
                    log.info("router stopped (nginx pid %d)", pid)
                    return
                time.sleep(0.05)
        raise RouterError(f"nginx pid {pid} did not stop")

    # -- switching ---------------------------------------------------------------------
    def switch(self, serving_dir: Path, slot: str) -> None:
        """Send all new requests of one pack to ``slot``: atomically repoint its
        ``live.sock``.

        :param serving_dir: the pack's serving directory.
        :raises RouterError: ``slot`` has no socket to switch to.
        """
        target = slot_socket(serving_dir, check_slot(slot))
        if not target.is_socket():
            raise RouterError(f"slot {slot} has no socket at {target}; is its server running?")
        link = live_link(serving_dir)
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(target.name, tmp)  # relative: resolved inside run/
        os.replace(tmp, link)
        log.info("router switched: %s -> %s", link, target.name)

    def set_standby(self, serving_dir: Path, slot: str | None) -> None:
        """Point a pack's ``standby.sock`` at ``slot``'s socket, the router's fallback when
        the live slot does not answer; None removes it (no verified fallback now)."""
        link = standby_link(serving_dir)
        if slot is None:
            link.unlink(missing_ok=True)
            return
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(slot_socket(serving_dir, check_slot(slot)).name, tmp)
        os.replace(tmp, link)
        log.info("router fallback for %s: %s", serving_dir.name, slot)

    def standby_slot(self, serving_dir: Path) -> str | None:
        """The slot a pack's ``standby.sock`` points at, if any."""
        try:
            name = os.readlink(standby_link(serving_dir))
        except OSError:
            return None
        slot = Path(name).name.removesuffix(".sock")
        return slot if slot in ("blue", "green") else None

    def live_slot(self, serving_dir: Path) -> str | None:
        """The slot a pack's ``live.sock`` points at, if any."""
        try:
            name = os.readlink(live_link(serving_dir))
        except (FileNotFoundError, OSError):
            return None
        slot = Path(name).name.removesuffix(".sock")
        return slot if slot in ("blue", "green") else None


def _in_group(proc: Path, pgid: int) -> bool:
    """Whether ``/proc/<pid>`` is a live nginx process of process group ``pgid``."""
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[2]) == pgid and fields[0] not in {"Z", "X"} and (
            proc / "cmdline").read_bytes().startswith(b"nginx: ")
    except (OSError, ValueError, IndexError):
        return False
