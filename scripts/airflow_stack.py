"""Run a real Airflow 3 (scheduler, dag-processor, triggerer, api-server) and drive it by REST.

Used by the demo (``make demo`` / ``make up``), the benchmark and the end-to-end test. Every
component is a real Airflow process on loopback; nothing here calls DAG code directly.

Two tiers (``DRIFTLINE_TIER``), the same DAGs on both: ``sqlite`` (the embedded default:
LocalExecutor on SQLite in the Airflow home) and ``postgres-celery`` (CeleryExecutor with
:data:`CELERY_WORKERS` workers, PostgreSQL as the metadata database and Celery's result
backend, Redis as the broker; both services from ``services.py``, in the Airflow home).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from services import running_services, services_of, start_services, stop_services

# Every component on loopback. The scheduler's and triggerer's log servers would listen on
# all interfaces (Airflow hard-codes the host) and are not needed: with LocalExecutor the
# api-server reads task logs from the shared log folder.
COMPONENTS = {
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
    "api-server": ["api-server", "--host", "127.0.0.1"],
}
PRIVATE = 0o077
"""umask of the Airflow processes: the metadata database, logs and everything their tasks
create (slot sockets, reports) are readable by this user only."""
TERMINAL = {"success", "failed"}
WATCHDOG = "watchdog"
RESTART_BACKOFF_S = (1, 2, 5, 10, 30, 60)
"""Delays before restarting a component that died, one step longer per death in a row."""
STABLE_S = 120
"""A component up this long counts as recovered: its next death waits the shortest delay."""
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
TIERS = ("sqlite", "postgres-celery")
DEFAULT_TIER = "sqlite"
TIER_FILE = "tier"
CELERY_WORKERS = 2
CELERY_CONCURRENCY = 2
"""Task slots per Celery worker: 2 workers x 2 = ``[core] parallelism`` (4)."""


def components(tier: str) -> dict[str, list[str]]:
    """The Airflow processes of ``tier``, by name: :data:`COMPONENTS`, plus the Celery
    workers on ``postgres-celery`` (each its own Celery hostname, no log server: the
    api-server reads the shared log folder)."""
    if tier != "postgres-celery":
        return dict(COMPONENTS)
    workers = {f"celery-worker-{n}": ["celery", "worker", "--celery-hostname",
                                      f"driftline-{n}@%h", "--concurrency",
                                      str(CELERY_CONCURRENCY), "--skip-serve-logs"]
               for n in range(1, CELERY_WORKERS + 1)}
    return {**COMPONENTS, **workers}


def tier_of(env: dict) -> str:
    """``env``'s ``DRIFTLINE_TIER`` (default :data:`DEFAULT_TIER`).

    :raises ValueError: naming the variable and the tiers when it is another value.
    """
    tier = env.get("DRIFTLINE_TIER") or DEFAULT_TIER
    if tier not in TIERS:
        raise ValueError(f"DRIFTLINE_TIER={tier!r}: expected one of {', '.join(TIERS)}")
    return tier


def recorded_tier(airflow_home: Path) -> str | None:
    """The tier the stack in ``airflow_home`` was last started on (None: never started)."""
    path = airflow_home / TIER_FILE
    return path.read_text().strip() if path.exists() else None


def tier_env(tier: str, airflow_home: Path) -> dict[str, str]:
    """The settings that make ``tier``: its executor and, on ``postgres-celery``, the
    metadata database, broker and result backend of the services recorded for the home."""
    if tier != "postgres-celery":
        return {"DRIFTLINE_TIER": tier, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}
    services = services_of(airflow_home)
    return {"DRIFTLINE_TIER": tier, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": services.sql_alchemy_conn,
            "AIRFLOW__CELERY__BROKER_URL": services.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": services.result_backend,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CELERY_CONCURRENCY)}


def airflow_env(root: Path, airflow_home: Path, driftline_home: Path, port: int = 8080,
                extra: dict | None = None, tier: str | None = None) -> dict:
    """The environment every Airflow process of this project runs with.

    :param tier: one of :data:`TIERS`; default ``$DRIFTLINE_TIER``, else ``sqlite``.
    """
    env = dict(os.environ)
    tier = tier_of({"DRIFTLINE_TIER": tier} if tier else env)
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW_CONFIG": str(root / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(airflow_home / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / "passwords.json"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "DRIFTLINE_HOME": str(driftline_home),
        "DRIFTLINE_PACKS": env.get("DRIFTLINE_PACKS") or str(root / "packs"),
        "PYTHONPATH": str(root / "config"),
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    })
    env["AIRFLOW__API_AUTH__JWT_SECRET"] = _shared_secret(airflow_home / "jwt_secret")
    env["AIRFLOW__CORE__FERNET_KEY"] = _shared_secret(airflow_home / "fernet_key", _fernet_key)
    env.update(tier_env(tier, airflow_home))
    env.update(extra or {})
    return env


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _shared_secret(path: Path, make=lambda: secrets.token_urlsafe(32)) -> str:
    """A secret every component shares, made once and kept readable by this user only: the
    JWT secret (each component would otherwise make its own, and task processes would be
    refused by the execution API with 'Invalid auth token') and the Fernet key that encrypts
    connection passwords in the metadata database."""
    if not path.exists():
        _private_dir(path.parent)
        _write_private(path, make())
    return path.read_text().strip()


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` created with mode 0600 (never readable by others, not even
    for a moment)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class AirflowStack:
    """Airflow's processes for one ``AIRFLOW_HOME``, started detached and stopped by pid file.

    :param env: from :func:`airflow_env`.
    """

    def __init__(self, env: dict, user: str = "admin", password: str = "admin"):
        self.env = env
        self.home = Path(env["AIRFLOW_HOME"])
        self.port = int(env["AIRFLOW__API__PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.user, self.password = user, password
        self.pid_dir = self.home / "pids"
        self.log_dir = self.home / "logs"
        self.tier = tier_of(env)
        self.components = components(self.tier)

    def _airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env,
                              check=check, capture_output=True, text=True, umask=PRIVATE)

    def init(self) -> None:
        """Create the metadata database and the admin login; on ``postgres-celery`` start
        PostgreSQL and Redis first (their URLs in :attr:`env` follow the ports they got)."""
        _private_dir(self.home)
        for sub in ("plugins", "pids", "logs"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        if self.tier == "postgres-celery":
            start_services(self.home)
            self.env.update(tier_env(self.tier, self.home))
        _write_private(self.home / "passwords.json", json.dumps({self.user: self.password}))
        self._airflow("db", "migrate")
        for db in self.home.glob("airflow.db*"):
            db.chmod(0o600)

    def running(self) -> dict[str, int]:
        """The components (and the watchdog) whose process is alive, by name, whichever
        tier started them. A component that died (``kill -9``, a crash) has what it left
        behind reaped: its LocalExecutor workers would otherwise sit idle at ~330 MB each,
        holding the old scheduler's resources."""
        alive = {}
        for name in (*components("postgres-celery"), WATCHDOG):
            pid_file = self.pid_dir / f"{name}.pid"
            if not pid_file.exists():
                continue
            pid = int(pid_file.read_text())
            if _alive(pid):
                alive[name] = pid
                continue
            self._reap(name, pid)
            # the watchdog (another process) may have reaped and restarted it meanwhile
            with contextlib.suppress(FileNotFoundError):
                if int(pid_file.read_text()) == pid:
                    pid_file.unlink()
        return alive

    def _reap(self, name: str, pgid: int) -> None:
        """Stop the processes still in the dead ``name``'s process group that run with this
        ``AIRFLOW_HOME`` (the group id alone could have been reused)."""
        leftovers = group_members(pgid, self.home)
        if not leftovers:
            return
        print(f"{name} (pid {pgid}) is gone; stopping the {len(leftovers)} processes it left "
              f"behind: {leftovers}", file=sys.stderr)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5  # idle LocalExecutor workers ignore SIGTERM
        while time.monotonic() < deadline and any(_alive(p) for p in leftovers):
            time.sleep(0.2)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5  # SIGKILL is delivered asynchronously
        while time.monotonic() < deadline and group_members(pgid, self.home):
            time.sleep(0.05)

    def start(self) -> list[str]:
        """Start every component that is not running yet, detached from this process.

        :return: the names of the components started.
        :raises RuntimeError: when components of another tier run in this home.
        """
        alive = self.running()
        other = recorded_tier(self.home)
        if alive and other not in (None, self.tier):
            raise RuntimeError(f"the stack in {self.home} runs tier {other}, not {self.tier}: "
                               "stop it first (make stop)")
        _write_private(self.home / TIER_FILE, self.tier)
        started = [name for name in self.components if name not in alive]
        for name in started:
            self._spawn(name, [sys.executable, "-m", "airflow", *self.components[name]])
        return started

    def _spawn(self, name: str, argv: list[str]) -> int:
        fd = os.open(self.log_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                     0o600)
        log = os.fdopen(fd, "a")
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, umask=PRIVATE)
        log.close()  # the child has its own copy
        _write_private(self.pid_dir / f"{name}.pid", str(proc.pid))  # atomic: read by others
        return proc.pid

    def start_watchdog(self) -> None:
        """Start the watchdog (:meth:`watch`, in its own process) unless it runs already."""
        if WATCHDOG not in self.running():
            self._spawn(WATCHDOG, [sys.executable, str(Path(__file__).resolve()), "watch"])

    def watch(self, poll_s: float = 2.0) -> None:
        """Restart any component that dies, with back-off, and say so; until SIGTERM.

        A component that stayed up :data:`STABLE_S` seconds starts again from the shortest
        delay. Each restart is a line in ``logs/watchdog.log`` and a count in
        ``watchdog.json`` (read by the driftline page).
        """
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        failures: dict[str, int] = {}  # deaths in a row, per component
        due: dict[str, float] = {}  # when a dead component is restarted
        restarted_at: dict[str, float] = {}
        state = self.watchdog_state()
        while not stopping:
            alive = self.running()
            now = time.monotonic()
            for name in self.components:
                if name in alive:
                    if now - restarted_at.get(name, now) > STABLE_S:
                        failures[name] = 0
                    continue
                if name not in due:
                    delay = RESTART_BACKOFF_S[min(failures.get(name, 0),
                                                  len(RESTART_BACKOFF_S) - 1)]
                    due[name] = now + delay
                    print(f"{_now()} {name} is down; restarting it in {delay} s", flush=True)
                elif now >= due.pop(name):
                    failures[name] = failures.get(name, 0) + 1
                    pid = self._spawn(name, [sys.executable, "-m", "airflow",
                                             *self.components[name]])
                    entry = state.setdefault(name, {"restarts": 0})
                    entry.update(restarts=entry["restarts"] + 1, last_restart=_now(), pid=pid)
                    restarted_at[name] = time.monotonic()
                    _write_private(self.home / "watchdog.json", json.dumps(state))
                    print(f"{_now()} restarted {name} (pid {pid}, restart "
                          f"{entry['restarts']})", flush=True)
            time.sleep(poll_s)

    def watchdog_state(self) -> dict:
        """Restarts per component so far, as :meth:`watch` records them."""
        path = self.home / "watchdog.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def stop(self) -> None:
        """Stop the watchdog, then every component (their whole process groups), and wait
        for them to exit; then PostgreSQL and Redis, if this home runs them (whatever the
        tier now: ``make stop`` takes no tier)."""
        alive = self.running()
        watchdog = alive.pop(WATCHDOG, None)
        if watchdog:
            _terminate(watchdog)
        for pid in alive.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for pid in alive.values():
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
        for pid_file in self.pid_dir.glob("*.pid"):
            pid_file.unlink()
        stop_services(self.home)

    def pids(self) -> dict[str, int]:
        """The process (group leader) of every component, the watchdog and service that
        runs, by name."""
        return {**self.running(), **running_services(self.home)}

    def health(self) -> dict[str, str]:
        """Each component's state: Airflow's own health check (``metadatabase``,
        ``scheduler``, ``triggerer``, ``dag_processor``: healthy or unhealthy, from their
        heartbeats), ``api-server`` (down when it does not answer) and each Celery worker
        (healthy while its process runs); a component whose process is gone is ``down``
        whatever its last heartbeat says."""
        processes = self.running()
        try:
            report = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
            states = {"api-server": "healthy"}
            states.update({c: report.get(c, {}).get("status") or "unknown"
                           for c in HEALTH_COMPONENTS})
        except (httpx.HTTPError, ValueError):
            states = {"api-server": "down", **{c: "unknown" for c in HEALTH_COMPONENTS}}
        for name in self.components:
            if name not in processes:
                states[{"dag-processor": "dag_processor"}.get(name, name)] = "down"
            elif name.startswith("celery-worker"):
                states[name] = "healthy"
        return states

    def wait_healthy(self, timeout: float = 180) -> dict[str, str]:
        """Wait until every component is healthy.

        :return: :meth:`health`'s answer.
        :raises TimeoutError: naming the components that are not healthy.
        """
        deadline = time.monotonic() + timeout
        while True:
            states = self.health()
            if all(state == "healthy" for state in states.values()):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"Airflow not healthy after {timeout}s: {describe(states)}; "
                                   f"logs in {self.log_dir}")
            time.sleep(1)

    def api(self) -> AirflowApi:
        return AirflowApi(self.url, self.user, self.password)


def _sqlite_locked(response: httpx.Response) -> bool:
    """SQLite's lock, as the api-server reports it: 503, "database is locked", or a 500
    "Database error" whose cause it hides."""
    return (response.status_code == 503 or (response.status_code >= 400
                                            and "locked" in response.text)
            or (response.status_code == 500 and "Database error" in response.text))


def group_members(pgid: int, airflow_home: Path) -> list[int]:
    """Airflow's processes in process group ``pgid``: those whose environment has
    ``AIRFLOW_HOME`` = ``airflow_home``, or whose title Airflow set (``airflow worker -- …``:
    ``setproctitle`` overwrites the environment block ``/proc`` shows). Read from ``/proc``;
    a process that exits meanwhile is skipped."""
    marker = f"AIRFLOW_HOME={airflow_home}".encode()
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # the fields after the command's ")": state, ppid, pgrp, ...
            state, _, pgrp = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) != pgid or state in ("Z", "X"):
                continue
            titled = (proc / "cmdline").read_bytes().startswith(b"airflow ")
            if titled or marker in (proc / "environ").read_bytes().split(b"\0"):
                members.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(members)


def describe(states: dict[str, str]) -> str:
    """``scheduler down, triggerer healthy, ...``, the ones not healthy first."""
    order = sorted(states, key=lambda c: states[c] == "healthy")
    return ", ".join(f"{c} {states[c]}" for c in order)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _terminate(pgid: int, timeout: float = 10) -> None:
    """SIGTERM a process group and wait for its leader to exit (SIGKILL after ``timeout``)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pgid):
        time.sleep(0.1)
    if _alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet waited for, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state != "Z":
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # ours: reap it
    return False


class AirflowApi:
    """The few REST v2 calls the demo needs, with a bearer token."""

    def __init__(self, url: str, user: str, password: str):
        self.url = url
        token = httpx.post(f"{url}/auth/token", json={"username": user, "password": password},
                           timeout=30).raise_for_status().json()["access_token"]
        self.client = httpx.Client(base_url=f"{url}/api/v2", timeout=60,
                                   headers={"Authorization": f"Bearer {token}"})

    def _call(self, method: str, path: str, **kwargs) -> dict:
        """One REST call. An idempotent one (GET, PATCH, PUT) is retried for up to 60 s
        while SQLite's lock makes the api-server answer 503 or a 500 "Database error", and
        once when it answered nothing within the client's timeout (it waited on the lock)."""
        idempotent = method in ("GET", "PATCH", "PUT")
        deadline = time.monotonic() + 60
        timed_out = False
        while True:
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.TimeoutException:
                if not idempotent or timed_out:
                    raise
                timed_out = True
                continue
            if not (idempotent and _sqlite_locked(response) and time.monotonic() < deadline):
                break
            time.sleep(1)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else {}

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed ``dag_id``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.get(f"/dags/{dag_id}").status_code == 200:
                return
            time.sleep(1)
        errors = self.client.get("/importErrors").text
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout}s; import errors: {errors}")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self._call("POST", f"/dags/{dag_id}/dagRuns",
                         json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def backfill(self, dag_id: str, start: str, end: str, max_active_runs: int = 4,
                 timeout: float = 600) -> dict:
        """Create a backfill, robustly on SQLite: pause, create (retrying while the database
        is locked or the previous backfill is still open), then unpause."""
        self.set_paused(dag_id, True)
        body = {"dag_id": dag_id, "from_date": f"{start}T00:00:00Z",
                "to_date": f"{end}T00:00:00Z", "max_active_runs": max_active_runs,
                "reprocess_behavior": "completed"}
        deadline = time.monotonic() + timeout
        unsure = False  # an earlier try failed in a way that may have created it
        try:
            while True:
                try:
                    response = self.client.post("/backfills", json=body)
                except httpx.TimeoutException:  # the api-server waited on SQLite's lock
                    if time.monotonic() > deadline:
                        raise
                    unsure = True  # it may have been created all the same
                    continue
                if response.status_code < 400:
                    return response.json()
                locked = _sqlite_locked(response)
                if response.status_code == 409 and unsure:
                    created = self._open_backfill(dag_id, start, end)
                    if created:
                        return created
                unsure = unsure or locked
                retriable = response.status_code == 409 or locked
                if not retriable or time.monotonic() > deadline:
                    raise RuntimeError(f"backfill {dag_id} {start}..{end}: "
                                       f"{response.status_code} {response.text}")
                time.sleep(2)
        finally:
            self.set_paused(dag_id, False)

    def backfills(self, dag_id: str) -> list[dict]:
        """The latest 100 backfills of ``dag_id``, newest first."""
        return self._call("GET", "/backfills", params={
            "dag_id": dag_id, "limit": 100, "order_by": "-id"}).get("backfills", [])

    def _open_backfill(self, dag_id: str, start: str, end: str) -> dict | None:
        """The open backfill of ``dag_id`` over exactly ``start..end``, if there is one."""
        for backfill in self.backfills(dag_id):
            if (backfill.get("completed_at") is None
                    and str(backfill.get("from_date", "")).startswith(start)
                    and str(backfill.get("to_date", "")).startswith(end)):
                return backfill
        return None

    def runs(self, dag_id: str, **params) -> list[dict]:
        """All runs matching ``params`` (the API pages at 100 runs; this reads every page)."""
        runs: list[dict] = []
        while True:
            page = self._call("GET", f"/dags/{dag_id}/dagRuns",
                              params={**params, "limit": 100, "offset": len(runs)})
            runs += page["dag_runs"]
            if not page["dag_runs"] or len(runs) >= page["total_entries"]:
                return runs

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")[
            "task_instances"]

    def extra_links(self, dag_id: str, run_id: str, task_id: str) -> dict:
        """The task instance's operator extra links (name: URL), as Airflow's UI reads
        them."""
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                          "/links").get("extra_links", {})

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        entry = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                                  "/xcomEntries/return_value", params={"deserialize": True})
        return entry.get("value")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in TERMINAL:
                return run
            time.sleep(2)
        raise TimeoutError(f"{dag_id} run {run_id} not finished after {timeout}s")

    def wait_runs(self, dag_id: str, logical_dates: set[str], timeout: float = 1800,
                  progress=None) -> list[dict]:
        """Wait until a run exists and has finished for each logical date (YYYY-MM-DD)."""
        deadline = time.monotonic() + timeout
        window = {"logical_date_gte": f"{min(logical_dates)}T00:00:00Z",
                  "logical_date_lte": f"{max(logical_dates)}T23:59:59Z"}
        while time.monotonic() < deadline:
            runs = [r for r in self.runs(dag_id, **window)
                    if (r.get("logical_date") or "")[:10] in logical_dates]
            done = [r for r in runs if r["state"] in TERMINAL]
            if progress:
                progress(len(done), len(logical_dates))
            if len(done) >= len(logical_dates):
                return done
            time.sleep(3)
        raise TimeoutError(f"{dag_id}: runs for {len(logical_dates)} dates not done "
                           f"after {timeout}s")


def main(argv: list[str]) -> None:
    """``watch``: run the watchdog (the environment is the stack's). ``airflow ARGS...``: run
    the ``airflow`` command against this checkout's stack (``make airflow ARGS=...``), on
    ``$DRIFTLINE_TIER``, else the tier the stack was last started on."""
    if argv[:1] == ["watch"]:
        AirflowStack(dict(os.environ)).watch()
    elif argv[:1] == ["airflow"]:
        root = Path(__file__).resolve().parent.parent
        home = Path(os.environ.get("AIRFLOW_HOME", root / ".airflow"))
        env = airflow_env(root, home, Path(os.environ.get("DRIFTLINE_HOME", root / ".driftline")),
                          tier=os.environ.get("DRIFTLINE_TIER") or recorded_tier(home))
        os.execve(sys.executable, [sys.executable, "-m", "airflow", *argv[1:]], env)
    else:
        sys.exit("usage: airflow_stack.py watch | airflow ARGS...")


if __name__ == "__main__":
    main(sys.argv[1:])
