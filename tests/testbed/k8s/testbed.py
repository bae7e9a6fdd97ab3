"""A real Kubernetes API on loopback: etcd, kube-apiserver, kube-controller-manager (the
Deployment, ReplicaSet, Endpoints and garbage-collector controllers) and the driftline node
agent.

Library use::

    tb = testbed.start()          # builds (cached) and starts everything
    tb.kubeconfig, tb.api_url     # a kubeconfig file and https://127.0.0.1:<port>
    tb.stop()                     # kills everything, removes the work directory

Manual use::

    python tests/testbed/k8s/testbed.py up     # prints `export KUBECONFIG=...`
    python tests/testbed/k8s/testbed.py down
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from driftline.serving.probe import free_ports

HERE = Path(__file__).resolve().parent
BUILD_SH = HERE / "build.sh"
NODE_AGENT = HERE / "node_agent.py"
LOOPBACK = "127.0.0.1"
DEFAULT_UP_DIR = Path(tempfile.gettempdir()) / "driftline-k8s-testbed"
SERVICE_CIDR = "10.0.0.0/24"
# Controllers that make Deployments and Services work. Left out on purpose: nodelifecycle
# (the agent sends no heartbeats; it would taint the node and evict pods), serviceaccount and
# its token controller (the ServiceAccount admission plugin is off), and the rest.
CONTROLLERS = "deployment,replicaset,endpoint,garbagecollector"
AGENT_READY_LINE = "node agent ready"  # printed by node_agent.py once its Node is registered


class TestbedUnavailable(RuntimeError):
    """The testbed cannot be built or started on this machine."""

    __test__ = False  # not a pytest test class


# --------------------------------------------------------------------------------------------
# build, certificates, ports
# --------------------------------------------------------------------------------------------


def build() -> Path:
    """Run build.sh (a no-op when cached) and return the directory holding the binaries.

    Raises ``TestbedUnavailable`` when build.sh says the build is impossible here (exit 3),
    ``RuntimeError`` for any other failure.
    """
    proc = subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True)
    tail = "\n".join(proc.stderr.splitlines()[-25:])
    if proc.returncode == 3:
        reason = [
            ln.split("UNAVAILABLE: ", 1)[1] for ln in tail.splitlines() if "UNAVAILABLE: " in ln
        ]
        raise TestbedUnavailable(f"{' '.join(reason)}\n{tail}")
    if proc.returncode != 0:
        raise RuntimeError(f"build.sh failed (exit {proc.returncode}):\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def new_key(path: Path) -> None:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))


def issue_cert(pki: Path, name: str, subject: str, ext: str) -> None:
    """Make ``name.key`` and ``name.crt`` signed by ``pki/ca``, with x509v3 extensions ``ext``."""
    key, csr, crt, extfile = (pki / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    new_key(key)
    extfile.write_text(ext + "\n")
    openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    signing = ["-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"), "-CAcreateserial"]
    files = ["-in", str(csr), "-extfile", str(extfile), "-out", str(crt)]
    openssl("x509", "-req", *files, *signing, "-days", "30")


def make_pki(pki: Path) -> None:
    """CA, apiserver serving cert, apiserver->node client cert, node and controller-manager
    serving certs, SA keys."""
    pki.mkdir(parents=True, exist_ok=True)
    new_key(pki / "ca.key")
    ca_files = ["-key", str(pki / "ca.key"), "-out", str(pki / "ca.crt")]
    openssl("req", "-x509", "-new", *ca_files, "-subj", "/CN=driftline-testbed-ca", "-days", "30")
    server = "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
    client = "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
    api_names = "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
    issue_cert(pki, "apiserver", "/CN=kube-apiserver", f"{server}subjectAltName={api_names}")
    issue_cert(pki, "kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", client)
    issue_cert(pki, "node", "/CN=driftline-node", f"{server}subjectAltName=IP:127.0.0.1")
    issue_cert(
        pki,
        "controller-manager",
        "/CN=kube-controller-manager",
        f"{server}subjectAltName=IP:127.0.0.1",
    )
    new_key(pki / "sa.key")
    openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def pod_ip() -> str:
    """The host's outbound IPv4 address (no packet is sent), used as every pod's IP.

    Endpoints may not hold loopback addresses (the apiserver's validation refuses them), so
    with ``127.0.0.1`` no Service would ever get endpoints. Falls back to ``127.0.0.1``
    on a machine without a route.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            return LOOPBACK
    return ip if not ip.startswith("127.") else LOOPBACK


def kubeconfig_doc(api_url: str, ca: Path, token: str) -> dict:
    """A kubeconfig (JSON is valid YAML) with a system:masters bearer token."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "driftline", "cluster": {"server": api_url, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "driftline-admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": "driftline",
                "context": {
                    "cluster": "driftline",
                    "user": "driftline-admin",
                    "namespace": "default",
                },
            }
        ],
        "current-context": "driftline",
    }


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


def spawn(argv: list[str], logfile: Path, detached: bool) -> subprocess.Popen:
    """Start a process in its own session with output to ``logfile``.

    Unless ``detached``, it gets SIGTERM when this process dies (``setpriv --pdeathsig``), so
    a killed pytest leaves nothing behind.
    """
    if not detached and shutil.which("setpriv"):
        argv = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
    with logfile.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it if it is still there after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:  # reap it if it is our child; otherwise just probe it
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                if not pid_alive(pid):
                    return
            time.sleep(0.05)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until(check, what: str, timeout: float, proc: subprocess.Popen, logfile: Path) -> None:
    """Poll ``check()`` until it is true; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TestbedUnavailable(
                f"{what}: process exited with {proc.returncode}\n{log_tail(logfile)}"
            )
        if check():
            return
        time.sleep(0.1)
    raise TestbedUnavailable(f"{what}: not ready after {timeout}s\n{log_tail(logfile)}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0


def http_ok(url: str, ca: Path, token: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


# --------------------------------------------------------------------------------------------
# the testbed
# --------------------------------------------------------------------------------------------


@dataclass
class Testbed:
    """A running testbed; ``stop()`` ends it. Its state is saved in ``workdir/state.json``."""

    __test__ = False  # not a pytest test class

    workdir: Path
    api_url: str
    kubeconfig: Path
    token: str
    ca_cert: Path
    node_name: str
    pod_ip: str = LOOPBACK
    pids: dict[str, int] = field(default_factory=dict)
    startup_seconds: float = 0.0
    remove_workdir: bool = True
    detached: bool = False  # processes outlive the starting process (the CLI's `up`)

    def api_client(self):
        """A new ``kubernetes.client.ApiClient`` for this testbed."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def api(self):
        """A ``kubernetes.client.CoreV1Api`` for this testbed."""
        from kubernetes import client

        return client.CoreV1Api(self.api_client())

    def save(self) -> None:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        (self.workdir / "state.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, workdir: Path) -> Testbed:
        data = json.loads((Path(workdir) / "state.json").read_text())
        for key in ("workdir", "kubeconfig", "ca_cert"):
            data[key] = Path(data[key])
        return cls(**data)

    def running(self) -> bool:
        return bool(self.pids) and all(pid_alive(p) for p in self.pids.values())

    def stop(self) -> None:
        """Stop the node agent, the controller-manager, kube-apiserver and etcd (in that
        order); remove the work dir."""
        for name in ("node_agent", "kube_controller_manager", "kube_apiserver", "etcd"):
            pid = self.pids.pop(name, None)
            if pid:
                terminate(pid)
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def etcd_argv(bin_dir: Path, data: Path, client_port: int, peer_port: int) -> list[str]:
    client_url, peer_url = f"http://{LOOPBACK}:{client_port}", f"http://{LOOPBACK}:{peer_port}"
    return [
        str(bin_dir / "etcd"),
        "--name=driftline",
        f"--data-dir={data}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=driftline={peer_url}",
        "--log-level=warn",
        "--logger=zap",
    ]


def apiserver_argv(bin_dir: Path, work: Path, port: int, etcd_port: int) -> list[str]:
    pki = work / "pki"
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://{LOOPBACK}:{etcd_port}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={port}",
        "--insecure-port=0",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--token-auth-file={work / 'tokens.csv'}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--disable-admission-plugins=ServiceAccount",
        "--endpoint-reconciler-type=none",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(bin_dir: Path, work: Path, port: int) -> list[str]:
    pki = work / "pki"
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={work / 'kubeconfig'}",
        f"--authentication-kubeconfig={work / 'kubeconfig'}",
        f"--authorization-kubeconfig={work / 'kubeconfig'}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        "--port=0",
        f"--tls-cert-file={pki / 'controller-manager.crt'}",
        f"--tls-private-key-file={pki / 'controller-manager.key'}",
        f"--controllers={CONTROLLERS}",
        "--leader-elect=false",
        "--use-service-account-credentials=false",
        "--profiling=false",
        "--v=1",
    ]


def agent_argv(
    work: Path, kubeconfig: Path, port: int, node_name: str, pod_ip: str = LOOPBACK
) -> list[str]:
    pki = work / "pki"
    return [
        sys.executable,
        str(NODE_AGENT),
        f"--kubeconfig={kubeconfig}",
        f"--node-name={node_name}",
        f"--port={port}",
        f"--tls-cert={pki / 'node.crt'}",
        f"--tls-key={pki / 'node.key'}",
        f"--client-ca={pki / 'ca.crt'}",
        f"--workdir={work / 'pods'}",
        f"--pod-ip={pod_ip}",
    ]


def _launch(tb: Testbed, bin_dir: Path, ports: list[int], timeout: float) -> None:
    """Start etcd, then kube-apiserver and the node agent together (the agent retries until
    the apiserver answers, which hides its slow ``import kubernetes``), then the
    controller-manager once the apiserver is ready: it reads the request-header CA from a
    ConfigMap once at startup and exits 1 if the apiserver is not answering yet."""
    work = tb.workdir
    api_port, etcd_port, peer_port, agent_port, cm_port = ports
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "node-agent")
    logs = {name: work / f"{name}.log" for name in names}

    etcd = spawn(etcd_argv(bin_dir, work / "etcd", etcd_port, peer_port), logs["etcd"], tb.detached)
    tb.pids["etcd"] = etcd.pid
    wait_until(lambda: port_open(etcd_port), "etcd", timeout, etcd, logs["etcd"])

    api = spawn(
        apiserver_argv(bin_dir, work, api_port, etcd_port), logs["kube-apiserver"], tb.detached
    )
    tb.pids["kube_apiserver"] = api.pid
    agent = spawn(
        agent_argv(work, tb.kubeconfig, agent_port, tb.node_name, tb.pod_ip),
        logs["node-agent"],
        tb.detached,
    )
    tb.pids["node_agent"] = agent.pid

    def api_ready() -> bool:
        return http_ok(f"{tb.api_url}/readyz", tb.ca_cert, tb.token)

    def agent_ready() -> bool:
        return AGENT_READY_LINE in log_tail(logs["node-agent"])

    wait_until(api_ready, "kube-apiserver /readyz", timeout, api, logs["kube-apiserver"])
    cm = spawn(
        controller_manager_argv(bin_dir, work, cm_port),
        logs["kube-controller-manager"],
        tb.detached,
    )
    tb.pids["kube_controller_manager"] = cm.pid
    wait_until(agent_ready, "node agent", timeout, agent, logs["node-agent"])

    def cm_healthy() -> bool:
        return http_ok(f"https://{LOOPBACK}:{cm_port}/healthz", tb.ca_cert, tb.token)

    wait_until(
        cm_healthy, "kube-controller-manager /healthz", timeout, cm, logs["kube-controller-manager"]
    )


def start(
    workdir: str | Path | None = None,
    *,
    bin_dir: Path | None = None,
    node_name: str = "driftline-node",
    timeout: float = 90.0,
    detached: bool = False,
) -> Testbed:
    """Build (cached) and start a testbed in ``workdir`` (a new temp dir by default).

    ``detached=True`` lets the processes outlive this one (then end them with ``stop()`` or
    ``testbed.py down``); otherwise they get SIGTERM if this process dies.
    """
    bin_dir = bin_dir or build()
    t0 = time.monotonic()
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="driftline-k8s-"))
    work.mkdir(parents=True, exist_ok=True)
    make_pki(work / "pki")
    token = secrets.token_hex(24)
    (work / "tokens.csv").write_text(f'{token},driftline-admin,driftline-admin,"system:masters"\n')
    ports = free_ports(5)
    tb = Testbed(
        workdir=work,
        api_url=f"https://{LOOPBACK}:{ports[0]}",
        kubeconfig=work / "kubeconfig",
        token=token,
        ca_cert=work / "pki" / "ca.crt",
        node_name=node_name,
        pod_ip=pod_ip(),
        detached=detached,
    )
    tb.kubeconfig.write_text(json.dumps(kubeconfig_doc(tb.api_url, tb.ca_cert, token), indent=2))
    try:
        _launch(tb, bin_dir, ports, timeout)
    except BaseException:
        tb.remove_workdir = False  # keep the logs for diagnosis
        tb.stop()
        raise
    tb.startup_seconds = round(time.monotonic() - t0, 2)
    tb.save()
    return tb


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="driftline Kubernetes testbed (loopback only)")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--workdir", type=Path, default=DEFAULT_UP_DIR)
    args = p.parse_args(argv)
    state = args.workdir / "state.json"
    if args.action == "up":
        if state.exists() and Testbed.load(args.workdir).running():
            print(f"already up: export KUBECONFIG={args.workdir / 'kubeconfig'}")
            return 0
        shutil.rmtree(args.workdir, ignore_errors=True)
        tb = start(args.workdir, detached=True)
        print(f"testbed up in {tb.startup_seconds}s: {tb.api_url} (node {tb.node_name})")
        print(f"export KUBECONFIG={tb.kubeconfig}")
        return 0
    if not state.exists():
        print(f"no testbed in {args.workdir}")
        return 0 if args.action == "down" else 1
    tb = Testbed.load(args.workdir)
    if args.action == "status":
        print(f"{'running' if tb.running() else 'not running'}: {tb.api_url} pids={tb.pids}")
        return 0 if tb.running() else 1
    tb.remove_workdir = True
    tb.stop()
    print("testbed down")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
