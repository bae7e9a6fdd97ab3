"""The docker-compose tier's testbed: a private Docker daemon, the images build.sh makes from
Debian's packages, and ``docker-compose.yaml`` brought up on them.

The daemon (Debian's ``docker.io``, as root) gets its own socket, data root and exec root
under a temporary directory, no default bridge (``--bridge none``) and its own address pool:
nothing is shared with another daemon on the machine, and :meth:`DockerDaemon.stop` leaves
nothing behind. Images come from ``build.sh`` (cached in ``$DRIFTLINE_CACHE_DIR/compose``,
loaded on a warm run).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import ROOT

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build.sh"
OVERRIDE = HERE / "docker-compose.test.yaml"
IMAGES = {"DRIFTLINE_AIRFLOW_BASE": "driftline-testbed/debian:bookworm",
          "DRIFTLINE_POSTGRES_IMAGE": "driftline-testbed/postgres:15",
          "DRIFTLINE_REDIS_IMAGE": "driftline-testbed/redis:7"}
"""What docker-compose.yaml runs here instead of the official images it pulls elsewhere."""


ADDRESS_POOL = "10.213.0.0/16"
"""Where this daemon's networks get their subnets: not Docker's default 172.17-31.x, which
another daemon on the machine may be using."""


class ComposeUnavailable(RuntimeError):
    """The tier cannot run on this machine (no docker engine or compose, not root, or
    build.sh exited 3); the message says which."""


class BuildFailed(RuntimeError):
    """build.sh failed (any exit status but 0 and 3); the message ends with its log."""


def docker_problem() -> str | None:
    """Why the compose tier cannot run here; None when it can."""
    missing = [tool for tool in ("dockerd", "docker", "docker-compose", "debootstrap")
               if shutil.which(tool) is None]
    if missing:
        return (f"{', '.join(missing)} not found (apt-get install docker.io docker-compose "
                "debootstrap)")
    if os.geteuid() != 0:
        return "dockerd and debootstrap need root"
    return None


class DockerDaemon:
    """``dockerd`` on a private socket and data root under ``root``.

    :param root: an empty directory for the daemon's socket, data, exec root and log.
    """

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "docker.sock"
        self.log = root / "dockerd.log"
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment a docker or docker-compose client of this daemon runs with."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def start(self, timeout: float = 60) -> None:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["dockerd", "--data-root", str(self.root / "data"),
                 "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "pid"),
                 "-H", f"unix://{self.socket}", "--bridge", "none",
                 "--default-address-pool", f"base={ADDRESS_POOL},size=24"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.process.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            if subprocess.run(["docker", "version"], env=self.env, capture_output=True,
                              check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"dockerd not answering on {self.socket} after {timeout}s")

    def stop(self, timeout: float = 60) -> None:
        """Stop the daemon and delete its data root (the loaded images: ~5 GB)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        subprocess.run(["umount", str(self.root / "exec" / "netns" / "default")],
                       capture_output=True, check=False)
        shutil.rmtree(self.root / "data", ignore_errors=True)
        shutil.rmtree(self.root / "exec", ignore_errors=True)


def build_images(daemon: DockerDaemon) -> str:
    """Run build.sh against ``daemon``; its log (stderr). Raises :class:`ComposeUnavailable`
    on its exit status 3, :class:`BuildFailed` (with the log's end) on any other failure."""
    proc = subprocess.run(["bash", str(BUILD)], env=daemon.env, capture_output=True, text=True,
                          check=False)
    if proc.returncode == 3:
        raise ComposeUnavailable(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        raise BuildFailed(f"{BUILD} exited {proc.returncode}; the end of its log:\n"
                          f"{proc.stderr[-4000:]}")
    return proc.stderr


class ComposeStack:
    """``docker-compose.yaml`` (plus the test override) as one compose project.

    :param daemon: the Docker daemon it runs on.
    :param project: the compose project name (prefix of its containers, network, volumes).
    :param ports: host ports: ``DRIFTLINE_API_PORT`` and ``DRIFTLINE_ROUTER_PORT``.
    """

    def __init__(self, daemon: DockerDaemon, project: str, ports: dict[str, int]):
        self.project = project
        self.env = {**daemon.env, **IMAGES, **{k: str(v) for k, v in ports.items()}}
        self.api_url = f"http://127.0.0.1:{ports['DRIFTLINE_API_PORT']}"
        self.router_url = f"http://127.0.0.1:{ports['DRIFTLINE_ROUTER_PORT']}"

    def compose(self, *args: str, check: bool = True,
                timeout: float = 900) -> subprocess.CompletedProcess:
        """Run ``docker-compose -p <project> -f docker-compose.yaml -f <override> <args>``."""
        proc = subprocess.run(
            ["docker-compose", "-p", self.project, "-f", str(ROOT / "docker-compose.yaml"),
             "-f", str(OVERRIDE), *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout,
            check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)} exited {proc.returncode}: "
                               f"{proc.stderr[-3000:]}")
        return proc

    def up(self) -> None:
        self.compose("up", "-d", "--no-build")

    def exec(self, service: str, *argv: str) -> str:
        """Run ``argv`` in the running ``service`` container; its stdout."""
        return self.compose("exec", "-T", service, *argv).stdout

    def logs(self, tail: int = 40) -> str:
        return self.compose("logs", "--no-color", f"--tail={tail}", check=False).stdout

    def down(self) -> None:
        """Remove the containers, the network and the volumes."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
