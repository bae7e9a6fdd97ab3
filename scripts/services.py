"""PostgreSQL and Redis for the ``postgres-celery`` tier, on loopback, kept in the Airflow home.

- PostgreSQL 15 (``initdb``, ``pg_ctl`` on PATH): a cluster made once in ``<home>/postgres``;
  user ``airflow`` logs in with a password (scram-sha-256) from 127.0.0.1 only; no Unix
  socket. PostgreSQL refuses to run as root: as root it runs in a user namespace
  (``unshare --user``) as an unprivileged uid that owns nothing outside it.
- Redis (Debian ``redis-server``): the Celery broker, ``requirepass``, no persistence.

The ports (free ones, chosen on the first start, new ones if they were taken meanwhile) and
the passwords are kept in ``<home>/services.json`` (mode 0600), so the URLs stay the same
across restarts. Logs: ``<home>/logs/postgres.log``, ``<home>/logs/redis.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from driftline.serving.probe import free_ports

SERVICES_FILE = "services.json"
DB_USER = DB_NAME = "airflow"
NAMESPACE_UID = 65534
"""The uid PostgreSQL runs as inside its user namespace when started by root."""
PRIVATE = 0o077


@dataclass(frozen=True)
class Services:
    """Where the tier's PostgreSQL and Redis listen, and their passwords."""

    postgres_port: int
    postgres_password: str
    redis_port: int
    redis_password: str

    @property
    def sql_alchemy_conn(self) -> str:
        return (f"postgresql+psycopg2://{DB_USER}:{self.postgres_password}@127.0.0.1:"
                f"{self.postgres_port}/{DB_NAME}")

    @property
    def result_backend(self) -> str:
        """Celery's result backend in the metadata database. ``+psycopg2`` is needed: from a
        plain ``postgresql://`` URL SQLAlchemy 2.1 picks psycopg 3, which is not installed."""
        return f"db+{self.sql_alchemy_conn}"

    @property
    def broker_url(self) -> str:
        return f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0"


def services_of(home: Path) -> Services:
    """The services recorded for ``home``, recorded now (free ports, new passwords) if
    there are none yet."""
    path = home / SERVICES_FILE
    if path.exists():
        return Services(**json.loads(path.read_text()))
    pg_port, redis_port = free_ports(2)
    return _record(home, Services(pg_port, secrets.token_urlsafe(24), redis_port,
                                  secrets.token_urlsafe(24)))


def _record(home: Path, services: Services) -> Services:
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    path = home / SERVICES_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(services), fh)
    os.replace(tmp, path)
    return services


def start_services(home: Path, timeout: float = 60) -> Services:
    """Start PostgreSQL and Redis for ``home`` unless they run already; wait until both
    answer a login.

    :return: where they listen (ports re-chosen when a recorded one is taken by another
        process).
    :raises RuntimeError: naming the service and its log when it does not come up.
    """
    services = services_of(home)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    pg_up, redis_up = _postgres_pid(home) is not None, _redis_pid(home) is not None
    pg_port, redis_port = services.postgres_port, services.redis_port
    if not pg_up and _port_taken(pg_port):
        [pg_port] = free_ports(1)
    if not redis_up and _port_taken(redis_port):
        [redis_port] = free_ports(1)
    if (pg_port, redis_port) != (services.postgres_port, services.redis_port):
        services = _record(home, Services(pg_port, services.postgres_password, redis_port,
                                          services.redis_password))
    if not pg_up:
        _start_postgres(home, services, timeout)
    if not redis_up:
        _start_redis(home, services, timeout)
    return services


def stop_services(home: Path, timeout: float = 30) -> None:
    """Stop the PostgreSQL and Redis of ``home`` (those that run; nothing if none)."""
    if _postgres_pid(home) is not None:
        _pg(home, "pg_ctl", "-D", str(home / "postgres"), "-m", "fast", "-w", "-t",
            str(int(timeout)), "stop")
    pid = _redis_pid(home)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _redis_pid(home) is not None:
            time.sleep(0.1)
        if _redis_pid(home) is not None:
            os.kill(pid, signal.SIGKILL)


def running_services(home: Path) -> dict[str, int]:
    """The pids of the services of ``home`` that run, by name (``postgres``, ``redis``)."""
    pids = {"postgres": _postgres_pid(home), "redis": _redis_pid(home)}
    return {name: pid for name, pid in pids.items() if pid is not None}


def _pg(home: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program; as root inside a user namespace (PostgreSQL refuses root)."""
    prefix = (["unshare", "--user", f"--map-user={NAMESPACE_UID}",
               f"--map-group={NAMESPACE_UID}"] if os.geteuid() == 0 else [])
    proc = subprocess.run([*prefix, *argv], capture_output=True, text=True, umask=PRIVATE,
                          cwd=home, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-2000:]} "
                           f"(log: {home / 'logs' / 'postgres.log'})")
    return proc


def _start_postgres(home: Path, services: Services, timeout: float) -> None:
    data = home / "postgres"
    if not (data / "PG_VERSION").exists():
        if shutil.which("initdb") is None:
            raise RuntimeError("initdb is not on PATH (PostgreSQL 15 server binaries needed "
                               "for the postgres-celery tier)")
        shutil.rmtree(data, ignore_errors=True)  # a half-made cluster from a failed initdb
        pwfile = home / ".postgres_password"
        pwfile.write_text(services.postgres_password)
        pwfile.chmod(0o600)
        try:
            _pg(home, "initdb", "-D", str(data), "-U", DB_USER, "-E", "UTF8", "--no-locale",
                "--auth=scram-sha-256", f"--pwfile={pwfile}")
        finally:
            pwfile.unlink()
        # password login from 127.0.0.1 only: no Unix socket, no other address
        (data / "pg_hba.conf").write_text("host all airflow 127.0.0.1/32 scram-sha-256\n")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\n# driftline (scripts/services.py)\nlisten_addresses = '127.0.0.1'\n"
                       "unix_socket_directories = ''\n")
    _pg(home, "pg_ctl", "-D", str(data), "-l", str(home / "logs" / "postgres.log"), "-w",
        "-t", str(int(timeout)), "-o", f"-p {services.postgres_port}", "start")
    _create_database(services, timeout)


def _create_database(services: Services, timeout: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=services.postgres_port,
                                    user=DB_USER, password=services.postgres_password,
                                    dbname="postgres", connect_timeout=5)
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE {DB_NAME}")
    finally:
        conn.close()


def _start_redis(home: Path, services: Services, timeout: float) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (Debian package redis-server, "
                           "`apt-get install redis-server`; make install installs it)")
    folder = home / "redis"
    folder.mkdir(mode=0o700, exist_ok=True)
    conf = folder / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:  # the password: this file is readable by this user only
        fh.write(f"bind 127.0.0.1\nport {services.redis_port}\nprotected-mode yes\n"
                 f"requirepass {services.redis_password}\nsave \"\"\nappendonly no\n"
                 f"dir {folder}\ndaemonize yes\npidfile {folder / 'redis.pid'}\n"
                 f"logfile {home / 'logs' / 'redis.log'}\n")
    subprocess.run([binary, str(conf)], check=True, umask=PRIVATE, stdin=subprocess.DEVNULL,
                   capture_output=True)
    import redis

    client = redis.Redis(host="127.0.0.1", port=services.redis_port,
                         password=services.redis_password, socket_timeout=2)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on 127.0.0.1:"
                                   f"{services.redis_port} within {timeout} s ({exc}); log: "
                                   f"{home / 'logs' / 'redis.log'}") from exc
            time.sleep(0.2)
        finally:
            client.close()


def _postgres_pid(home: Path) -> int | None:
    """The postmaster's pid from ``postmaster.pid``, when that process runs."""
    return _live_pid(home / "postgres" / "postmaster.pid")


def _redis_pid(home: Path) -> int | None:
    return _live_pid(home / "redis" / "redis.pid")


def _live_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
    return pid


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
