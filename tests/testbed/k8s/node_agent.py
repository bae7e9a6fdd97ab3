"""A tiny stand-in for a kubelet, for tests against a real kube-apiserver.

It registers a Node, binds unscheduled pods to it (a one-node "scheduler" that checks
``nodeSelector`` against the Node's current labels, its ``NoSchedule``/``NoExecute`` taints
against the pod's tolerations, and resource requests against the node's allocatable), runs
each container's ``command`` + ``args`` as a local process (images are ignored), reports pod
and container status, serves ``/containerLogs/{ns}/{pod}/{container}`` over HTTPS (the
apiserver proxies ``pods/log`` there) and kills a pod's processes when the pod is deleted.

Pods get ``--pod-ip`` as their IP (all share the host's network). A container is Ready once
its ``readinessProbe`` (``httpGet`` or ``tcpSocket``, probed on the pod IP as a kubelet does)
passes, or as soon as it runs if it has none. Containers of pods with ``restartPolicy``
``Always``/``OnFailure`` are restarted after a crash with the kubelet's back-off (10 s,
doubling, at most 5 min), shown as ``CrashLoopBackOff`` with ``lastState`` and
``restartCount``.

Out of scope: exec/attach/port-forward (so no XCom sidecar), volumes, liveness and startup
probes, exec probes (a container with only those is Ready while it runs).

Run: ``python node_agent.py --kubeconfig K --port P --tls-cert C --tls-key K --client-ca CA``
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

log = logging.getLogger("node_agent")

NODE_CAPACITY = {
    "cpu": "2",
    "memory": "8Gi",
    "pods": "110",
    "ephemeral-storage": "20Gi",
    "nvidia.com/gpu": "1",
}
TERMINAL_PHASES = ("Succeeded", "Failed")
LOCAL_IP = "127.0.0.1"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
BACKOFF_S = (10.0, 300.0)  # the kubelet's crash back-off: first delay, cap


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339nano(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def parse_rfc3339(text: str) -> dt.datetime:
    text = re.sub(r"(\.\d{6})\d*", r"\1", text.replace("Z", "+00:00"))
    return dt.datetime.fromisoformat(text)


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


def expand_refs(text: str, env: dict[str, str]) -> str:
    """Expand Kubernetes ``$(VAR)`` references (``$$`` escapes), as the kubelet does."""

    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, text)


def field_ref_value(pod: client.V1Pod, path: str, pod_ip: str = LOCAL_IP) -> str:
    """Resolve the few ``fieldRef`` paths that make sense without a real runtime."""
    values = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": pod.metadata.uid,
        "spec.nodeName": pod.spec.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.hostIP": LOCAL_IP,
        "status.podIP": pod_ip,
    }
    return values.get(path) or ""


def container_env(
    pod: client.V1Pod, container: client.V1Container, home: str, pod_ip: str = LOCAL_IP
) -> dict[str, str]:
    """Build a container's environment: a minimal base plus the spec's ``env`` values."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "HOSTNAME": pod.metadata.name,
        "LANG": "C.UTF-8",
    }
    for var in container.env or []:
        if var.value is not None:
            env[var.name] = expand_refs(var.value, env)
        elif var.value_from is not None and var.value_from.field_ref is not None:
            env[var.name] = field_ref_value(pod, var.value_from.field_ref.field_path, pod_ip)
        else:
            env[var.name] = ""
    return env


class ContainerRun:
    """One container run as a local process; its output goes to a timestamped log file."""

    def __init__(self, name: str, image: str, log_path: Path):
        self.name, self.image, self.log_path = name, image, log_path
        self.proc: subprocess.Popen | None = None
        self.started_at: dt.datetime | None = None
        self.finished_at: dt.datetime | None = None
        self.exit_code: int | None = None
        self.reason = ""
        self.message = ""
        self.done = threading.Event()
        self.restart_count = 0
        self.last_terminated: dict | None = None
        self.backoff_until: float | None = None  # set while waiting to be restarted
        self.probe_ready: bool | None = None  # None: no readiness probe, ready while running
        log_path.touch()

    @property
    def container_id(self) -> str:
        return f"driftline://{self.proc.pid}" if self.proc else ""

    @property
    def running(self) -> bool:
        return self.started_at is not None and not self.done.is_set()

    @property
    def ready(self) -> bool:
        return self.running and self.probe_ready is not False

    def terminated_state(self) -> dict:
        return {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "message": self.message or None,
            "startedAt": rfc3339(self.started_at),
            "finishedAt": rfc3339(self.finished_at),
            "containerID": self.container_id or None,
        }

    def prepare_restart(self, backoff: float) -> None:
        """Keep the finished run as ``lastState``; wait ``backoff`` s (CrashLoopBackOff)."""
        self.last_terminated = self.terminated_state()
        self.restart_count += 1
        self.backoff_until = time.monotonic() + backoff

    def start(self, argv: list[str], env: dict[str, str], cwd: str) -> None:
        """Start the process, or record a StartError (exit code 128) if that is impossible."""
        self.proc, self.finished_at, self.exit_code = None, None, None
        self.reason = self.message = ""
        self.backoff_until = None
        if self.probe_ready is not None:
            self.probe_ready = False  # not ready until the probe passes again
        self.done.clear()
        self.started_at = utcnow()
        try:
            if not argv:
                raise ValueError("no command: images are not run, the container needs `command`")
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            self._append(f"driftline node agent: cannot start {argv!r}: {exc}\n".encode())
            self._finish(128, "StartError", str(exc))
            return
        threading.Thread(target=self._pump, name=f"pump-{self.name}", daemon=True).start()

    def _append(self, line: bytes) -> None:
        if not line.endswith(b"\n"):
            line += b"\n"
        with self.log_path.open("ab") as fh:
            fh.write(rfc3339nano(utcnow()).encode() + b" " + line)

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self._append(line)
        code = self.proc.wait()
        code = 128 - code if code < 0 else code  # killed by signal N -> 128 + N
        self._finish(code, "Completed" if code == 0 else "Error")

    def _finish(self, code: int, reason: str, message: str = "") -> None:
        self.exit_code, self.reason, self.message = code, reason, message
        self.finished_at = utcnow()
        self.done.set()

    def kill(self, grace: float = 2.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        if self.proc is None or self.done.is_set():
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            if self.done.wait(wait):
                return

    def status(self) -> dict:
        """The container's entry in ``status.containerStatuses``."""
        if self.done.is_set() and self.backoff_until is not None:
            left = max(0, round(self.backoff_until - time.monotonic()))
            message = f"back-off {left}s restarting failed container={self.name}"
            state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        elif self.done.is_set():
            state = {"terminated": self.terminated_state()}
        elif self.started_at:
            state = {"running": {"startedAt": rfc3339(self.started_at)}}
        else:
            state = {"waiting": {"reason": "PodInitializing"}}
        running = "running" in state
        return {
            "name": self.name,
            "image": self.image,
            "imageID": f"driftline-agent://{self.image}",
            "containerID": self.container_id or None,
            "ready": self.ready,
            "started": running,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }


# --------------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------------


class PodRun:
    """Runs one pod: init containers in order, then all containers in parallel, each
    restarted as its ``restartPolicy`` says and probed for readiness."""

    def __init__(self, agent: NodeAgent, pod: client.V1Pod):
        self.agent, self.pod = agent, pod
        self.ns, self.name, self.uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.ns}_{self.name}_", dir=agent.workdir))
        self.init = [self._container(c) for c in pod.spec.init_containers or []]
        self.main = [self._container(c) for c in pod.spec.containers]
        self.specs = {c.name: c for c in (pod.spec.init_containers or []) + pod.spec.containers}
        self.restart_policy = pod.spec.restart_policy or "Always"
        self.started_at = utcnow()
        self.deleted = threading.Event()
        self.finished = threading.Event()
        self.phase = "Pending"
        self.report_lock = threading.Lock()

    def _container(self, spec: client.V1Container) -> ContainerRun:
        return ContainerRun(spec.name, spec.image or "", self.dir / f"{spec.name}.log")

    def container(self, name: str) -> ContainerRun | None:
        return next((c for c in self.init + self.main if c.name == name), None)

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True).start()

    def _launch(self, run: ContainerRun) -> None:
        spec = self.specs[run.name]
        cwd = self.dir / f"{run.name}.cwd"
        cwd.mkdir(exist_ok=True)
        env = container_env(self.pod, spec, str(cwd), self.agent.pod_ip)
        argv = [expand_refs(a, env) for a in (spec.command or []) + (spec.args or [])]
        run.start(argv, env, str(cwd))
        if run.reason == "StartError":
            self.agent.event(self.pod, "Failed", f"Error: {run.message}", "Warning")
        else:
            self.agent.event(self.pod, "Started", f"Started container {run.name}")

    def _run(self) -> None:
        self._report("Pending")
        for run in self.init:
            self._launch(run)
            self._report("Pending")
            run.done.wait()
            if run.exit_code != 0 or self.deleted.is_set():
                return self._report("Failed")
        supervisors = [
            threading.Thread(target=self._supervise, args=(run,), daemon=True) for run in self.main
        ]
        for run in self.main:
            probe = self.specs[run.name].readiness_probe
            if probe is not None and (probe.http_get or probe.tcp_socket):
                run.probe_ready = False
                threading.Thread(target=self._probe_loop, args=(run, probe), daemon=True).start()
        for th in supervisors:
            th.start()
        self._report("Running")
        for th in supervisors:
            th.join()
        self.finished.set()
        codes = {r.name: r.exit_code for r in self.main}
        failed = any(codes.values())
        kind = "Warning" if failed else "Normal"
        self.agent.event(self.pod, "Completed", f"containers exited: {codes}", kind)
        self._report("Failed" if failed else "Succeeded")

    def _supervise(self, run: ContainerRun) -> None:
        """Run one container until it ends for good, restarting it with back-off."""
        backoff = BACKOFF_S[0]
        while True:
            self._launch(run)
            self._report("Running")
            run.done.wait()
            restart = self.restart_policy == "Always" or (
                self.restart_policy == "OnFailure" and run.exit_code != 0
            )
            if self.deleted.is_set() or not restart:
                return
            run.prepare_restart(backoff)
            self.agent.event(
                self.pod, "BackOff", f"Back-off restarting failed container {run.name}", "Warning"
            )
            self._report("Running")
            if self.deleted.wait(backoff):
                return
            backoff = min(2 * backoff, BACKOFF_S[1])

    def _probe_loop(self, run: ContainerRun, probe: client.V1Probe) -> None:
        """Probe ``run`` every ``periodSeconds``; flip its readiness after the thresholds."""
        period = max(1, probe.period_seconds or 10)
        delay = probe.initial_delay_seconds or 0
        success, failure = probe.success_threshold or 1, probe.failure_threshold or 3
        passed = failed = 0
        while not (self.deleted.is_set() or self.finished.is_set()):
            ready = run.probe_ready
            if not run.running:
                ready, passed, failed = False, 0, 0
            elif (utcnow() - run.started_at).total_seconds() >= delay:
                if self._probe(run, probe):
                    passed, failed = passed + 1, 0
                    ready = True if passed >= success else ready
                else:
                    passed, failed = 0, failed + 1
                    ready = False if failed >= failure else ready
            if ready != run.probe_ready:
                run.probe_ready = ready
                log.info("pod %s/%s container %s ready=%s", self.ns, self.name, run.name, ready)
                self._report("Running")
            self.deleted.wait(period)

    def _probe(self, run: ContainerRun, probe: client.V1Probe) -> bool:
        """One probe of ``run`` on the pod IP: an HTTP GET (2xx/3xx passes) or a TCP connect."""
        action = probe.http_get or probe.tcp_socket
        port = action.port
        if isinstance(port, str) and not port.isdigit():
            ports = {p.name: p.container_port for p in self.specs[run.name].ports or []}
            port = ports.get(port)
            if port is None:
                return False
        host = action.host or self.agent.pod_ip
        timeout = probe.timeout_seconds or 1
        if probe.tcp_socket:
            try:
                socket.create_connection((host, int(port)), timeout=timeout).close()
                return True
            except OSError:
                return False
        scheme = (probe.http_get.scheme or "HTTP").lower()
        url = f"{scheme}://{host}:{int(port)}/{(probe.http_get.path or '/').lstrip('/')}"
        context = ssl._create_unverified_context() if scheme == "https" else None
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
                return 200 <= resp.status < 400
        except (OSError, ValueError):  # URLError and HTTPError (>= 400) are OSErrors
            return False

    def _report(self, phase: str) -> None:
        with self.report_lock:
            if self.phase in TERMINAL_PHASES or self.deleted.is_set():
                return
            if self.phase == "Running" and phase == "Pending":
                phase = "Running"
            self.phase = phase
            self.agent.patch_pod_status(self.ns, self.name, self.status(phase))

    def status(self, phase: str) -> dict:
        """The pod's ``status`` for ``phase``."""
        t = rfc3339(utcnow())
        ready = "True" if phase == "Running" and all(c.ready for c in self.main) else "False"
        inited = "False" if phase == "Pending" else "True"

        def cond(kind: str, value: str) -> dict:
            reason = None
            if value == "False" and kind in ("Ready", "ContainersReady"):
                reason = "PodCompleted" if phase in TERMINAL_PHASES else "ContainersNotReady"
            return {"type": kind, "status": value, "lastTransitionTime": t, "reason": reason}

        return {
            "phase": phase,
            "hostIP": LOCAL_IP,
            "podIP": self.agent.pod_ip,
            "podIPs": [{"ip": self.agent.pod_ip}],
            "startTime": rfc3339(self.started_at),
            "conditions": [
                cond("PodScheduled", "True"),
                cond("Initialized", inited),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ],
            "initContainerStatuses": [c.status() for c in self.init] or None,
            "containerStatuses": [c.status() for c in self.main],
        }

    def kill(self, grace: float) -> None:
        self.deleted.set()
        threads = [threading.Thread(target=c.kill, args=(grace,)) for c in self.init + self.main]
        for th in threads:
            th.start()
        for th in threads:
            th.join()


# --------------------------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------------------------


def pod_requests(pod: client.V1Pod) -> dict[str, float]:
    """Per-resource requests of a pod (limits count as requests when requests are absent)."""
    total: dict[str, float] = {}
    for c in pod.spec.containers:
        res = c.resources or client.V1ResourceRequirements()
        wanted = {**(res.limits or {}), **(res.requests or {})}
        for key, qty in wanted.items():
            total[key] = total.get(key, 0) + float(parse_quantity(qty))
    return total


def tolerates(toleration: client.V1Toleration, taint: client.V1Taint) -> bool:
    """Whether ``toleration`` tolerates ``taint`` (the scheduler's matching rules)."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if not toleration.key:  # empty key with Exists tolerates everything
        return toleration.operator == "Exists"
    if toleration.key != taint.key:
        return False
    if toleration.operator == "Exists":
        return True
    return (toleration.value or "") == (taint.value or "")


def unschedulable_reason(
    pod: client.V1Pod, labels: dict[str, str], taints: list[client.V1Taint] = ()
) -> str | None:
    """Why this node cannot take the pod, in the scheduler's words, or None if it fits."""
    selector = pod.spec.node_selector or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return "0/1 nodes are available: 1 node(s) didn't match node selector."
    tolerations = pod.spec.tolerations or []
    for taint in taints:
        if taint.effect in ("NoSchedule", "NoExecute") and not any(
            tolerates(t, taint) for t in tolerations
        ):
            value = f"={taint.value}" if taint.value else ""
            return (
                "0/1 nodes are available: 1 node(s) had taint "
                f"{{{taint.key}{value}: {taint.effect}}}, that the pod didn't tolerate."
            )
    for key, amount in pod_requests(pod).items():
        if amount > float(parse_quantity(NODE_CAPACITY.get(key, "0"))):
            return f"0/1 nodes are available: 1 Insufficient {key}."
    return None


# --------------------------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------------------------


class NodeAgent:
    """Registers the node, schedules and runs pods, and serves their logs."""

    def __init__(
        self,
        api: client.CoreV1Api,
        node_name: str,
        port: int,
        workdir: Path,
        pod_ip: str = LOCAL_IP,
    ):
        self.api, self.node, self.port, self.workdir = api, node_name, port, workdir
        self.pod_ip = pod_ip
        self.labels = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "driftline.dev/node-agent": "true",
        }
        self.runs: dict[str, PodRun] = {}
        self.handled: set[str] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    # -- node ---------------------------------------------------------------------------------
    def register_node(self, timeout: float = 120.0) -> None:
        """Create the Node and its status, retrying while the apiserver is still starting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._register()
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                log.debug("apiserver not ready yet: %s", exc)
                time.sleep(0.2)

    def _register(self) -> None:
        try:
            self.api.create_node({"metadata": {"name": self.node, "labels": self.labels}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.api.patch_node_status(self.node, {"status": self.node_status()})
        # The apiserver's TaintNodesByCondition admission taints every new Node
        # not-ready:NoSchedule; the node lifecycle controller removes it once the node reports
        # Ready. That controller is not run (the agent sends no heartbeats), so do it here.
        taints = self.api.read_node(self.node).spec.taints or []
        kept = [t for t in taints if t.key != NOT_READY_TAINT]
        if len(kept) != len(taints):
            self.api.patch_node(self.node, {"spec": {"taints": kept}})
        log.info("node %s registered, kubelet endpoint %s:%s", self.node, LOCAL_IP, self.port)

    def node_status(self) -> dict:
        t = rfc3339(utcnow())
        return {
            "capacity": NODE_CAPACITY,
            "allocatable": NODE_CAPACITY,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "driftline node agent is ready",
                    "lastHeartbeatTime": t,
                    "lastTransitionTime": t,
                },
            ],
            "addresses": [
                {"type": "InternalIP", "address": LOCAL_IP},
                {"type": "Hostname", "address": self.node},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "machineID": "driftline",
                "systemUUID": "driftline",
                "bootID": "driftline",
                "kernelVersion": os.uname().release,
                "osImage": "driftline node agent",
                "containerRuntimeVersion": "driftline://0.1",
                "kubeletVersion": "v1.20.2",
                "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    # -- API helpers --------------------------------------------------------------------------
    def patch_pod_status(self, ns: str, name: str, status: dict) -> None:
        try:
            self.api.patch_namespaced_pod_status(name, ns, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status update of %s/%s failed: %s", ns, name, exc.reason)

    def event(self, pod: client.V1Pod, reason: str, message: str, kind: str = "Normal") -> None:
        """Record a core/v1 Event on the pod (best effort)."""
        now = utcnow()
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{pod.metadata.name}."),
            involved_object=client.V1ObjectReference(
                kind="Pod",
                api_version="v1",
                namespace=pod.metadata.namespace,
                name=pod.metadata.name,
                uid=pod.metadata.uid,
            ),
            reason=reason,
            message=message,
            type=kind,
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=client.V1EventSource(component="driftline-node-agent", host=self.node),
        )
        try:
            self.api.create_namespaced_event(pod.metadata.namespace, body)
        except ApiException as exc:
            log.debug("event %s on %s failed: %s", reason, pod.metadata.name, exc.reason)

    # -- pod lifecycle ------------------------------------------------------------------------
    def handle(self, pod: client.V1Pod, kind: str = "MODIFIED") -> None:
        """React to one observed pod state."""
        uid = pod.metadata.uid
        if kind == "DELETED":
            self._forget(uid)
        elif pod.metadata.deletion_timestamp is not None:
            if pod.spec.node_name == self.node:
                self._once(f"delete:{uid}", self._finalize_delete, pod)
        elif not pod.spec.node_name:
            self._once(f"bind:{uid}:{pod.metadata.resource_version}", self._schedule, pod)
        elif pod.spec.node_name == self.node and pod.status.phase not in TERMINAL_PHASES:
            self._once(f"run:{uid}", self._start, pod)

    def _once(self, key: str, fn, pod: client.V1Pod) -> None:
        with self.lock:
            if key in self.handled:
                return
            self.handled.add(key)
        threading.Thread(target=fn, args=(pod,), daemon=True).start()

    def _schedule(self, pod: client.V1Pod) -> None:
        labels, taints = self.labels, []
        try:  # the Node as it is now: tests may label or taint it
            node = self.api.read_node(self.node)
            labels, taints = node.metadata.labels or labels, node.spec.taints or []
        except ApiException as exc:
            log.warning("reading node %s failed: %s", self.node, exc.reason)
        reason = unschedulable_reason(pod, labels, taints)
        if reason:
            return self._mark_unschedulable(pod, reason)
        target = client.V1ObjectReference(kind="Node", api_version="v1", name=self.node)
        body = client.V1Binding(metadata=client.V1ObjectMeta(name=pod.metadata.name), target=target)
        try:
            self.api.create_namespaced_pod_binding(
                pod.metadata.name, pod.metadata.namespace, body, _preload_content=False
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("binding %s failed: %s", pod.metadata.name, exc.reason)
            return
        self.event(
            pod,
            "Scheduled",
            f"Successfully assigned {pod.metadata.namespace}/{pod.metadata.name} to {self.node}",
        )

    def _mark_unschedulable(self, pod: client.V1Pod, reason: str) -> None:
        conds = pod.status.conditions or []
        if any(c.type == "PodScheduled" and c.message == reason for c in conds):
            return
        self.event(pod, "FailedScheduling", reason, "Warning")
        cond = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": reason,
            "lastTransitionTime": rfc3339(utcnow()),
        }
        self.patch_pod_status(pod.metadata.namespace, pod.metadata.name, {"conditions": [cond]})

    def _start(self, pod: client.V1Pod) -> None:
        run = PodRun(self, pod)
        with self.lock:
            self.runs[pod.metadata.uid] = run
        log.info("running pod %s/%s", run.ns, run.name)
        run.start()

    def _finalize_delete(self, pod: client.V1Pod) -> None:
        """Kill the pod's processes, then remove the object as a kubelet does (grace 0)."""
        with self.lock:
            run = self.runs.get(pod.metadata.uid)
        if run:
            grace = pod.metadata.deletion_grace_period_seconds or 0
            run.kill(min(float(grace), 2.0))
        opts = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=pod.metadata.uid)
        )
        try:
            self.api.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, body=opts)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("final delete of %s failed: %s", pod.metadata.name, exc.reason)

    def _forget(self, uid: str) -> None:
        with self.lock:
            run = self.runs.pop(uid, None)
        if run:
            threading.Thread(target=run.kill, args=(0.5,), daemon=True).start()

    def find(self, ns: str, name: str) -> PodRun | None:
        with self.lock:
            runs = [r for r in self.runs.values() if (r.ns, r.name) == (ns, name)]
        return runs[-1] if runs else None

    def watch_pods(self) -> None:
        """List then watch all pods, forever; re-list after every watch window or error."""
        while not self.stopping.is_set():
            try:
                pods = self.api.list_pod_for_all_namespaces()
                for pod in pods.items:
                    self.handle(pod)
                stream = watch.Watch().stream(
                    self.api.list_pod_for_all_namespaces,
                    resource_version=pods.metadata.resource_version,
                    timeout_seconds=15,
                )
                for ev in stream:
                    self.handle(ev["object"], ev["type"])
            except Exception as exc:
                log.warning("pod watch interrupted: %s", exc)
                time.sleep(0.5)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            run.kill(0.5)


# --------------------------------------------------------------------------------------------
# /containerLogs over HTTPS
# --------------------------------------------------------------------------------------------


class LogOptions:
    """The kubelet's log query parameters that KubernetesPodOperator uses."""

    def __init__(self, query: str):
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        self.follow = q.get("follow") == "true"
        self.timestamps = q.get("timestamps") == "true"
        self.previous = q.get("previous") == "true"
        self.tail = int(q["tailLines"]) if "tailLines" in q else None
        self.limit = int(q["limitBytes"]) if "limitBytes" in q else None
        self.since: dt.datetime | None = None
        if "sinceSeconds" in q:
            self.since = utcnow() - dt.timedelta(seconds=int(q["sinceSeconds"]))
        elif "sinceTime" in q:
            self.since = parse_rfc3339(q["sinceTime"])

    def keep(self, line: bytes) -> bool:
        if self.since is None:
            return True
        return parse_rfc3339(line.split(b" ", 1)[0].decode()) >= self.since

    def render(self, line: bytes) -> bytes:
        return line if self.timestamps else line.split(b" ", 1)[1]


def read_complete_lines(fh) -> list[bytes]:
    """Read whole lines from ``fh``; leave a half-written last line for the next call."""
    lines = []
    while True:
        pos = fh.tell()
        line = fh.readline()
        if not line:
            return lines
        if not line.endswith(b"\n"):
            fh.seek(pos)
            return lines
        lines.append(line)


def iter_logs(run: ContainerRun, opts: LogOptions):
    """Yield rendered log lines; with ``follow`` keep going until the container exits."""
    with run.log_path.open("rb") as fh:
        lines = [ln for ln in read_complete_lines(fh) if opts.keep(ln)]
        if opts.tail is not None:
            lines = lines[-opts.tail :] if opts.tail > 0 else []
        yield from (opts.render(ln) for ln in lines)
        while opts.follow:
            finished = run.done.is_set()
            new = [ln for ln in read_complete_lines(fh) if opts.keep(ln)]
            yield from (opts.render(ln) for ln in new)
            if finished:
                return
            if not new:
                time.sleep(0.1)


class KubeletHandler(BaseHTTPRequestHandler):
    """Serves ``/healthz`` and ``/containerLogs/{ns}/{pod}/{container}``."""

    server_version = "driftline-node-agent/0.1"
    agent: NodeAgent  # set on the subclass made by ``serve``

    def log_message(self, fmt: str, *args) -> None:
        log.debug("http: " + fmt, *args)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if url.path == "/healthz":
            return self._text(200, "ok")
        if len(parts) == 4 and parts[0] == "containerLogs":
            return self._logs(parts[1], parts[2], parts[3], LogOptions(url.query))
        self._text(404, f"{url.path} is not served by the driftline node agent")

    def _text(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _logs(self, ns: str, pod: str, container: str, opts: LogOptions) -> None:
        pod_run = self.agent.find(ns, pod)
        run = pod_run.container(container) if pod_run else None
        if run is None:
            return self._text(404, f'pod "{pod}" or container "{container}" not found in {ns}')
        if opts.previous:
            return self._text(400, f'previous terminated container "{container}" not found')
        if run.started_at is None:
            return self._text(
                400, f'container "{container}" in pod "{pod}" is waiting to start: PodInitializing'
            )
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        sent = 0
        try:
            for chunk in iter_logs(run, opts):
                if opts.limit is not None:
                    chunk = chunk[: max(opts.limit - sent, 0)]
                self.wfile.write(chunk)
                self.wfile.flush()
                sent += len(chunk)
                if opts.limit is not None and sent >= opts.limit:
                    break
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass


def serve(agent: NodeAgent, cert: str, key: str, client_ca: str) -> ThreadingHTTPServer:
    """Serve HTTPS on 127.0.0.1:agent.port; clients need a cert signed by ``client_ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(client_ca)
    handler = type("Handler", (KubeletHandler,), {"agent": agent})
    server = ThreadingHTTPServer((LOCAL_IP, agent.port), handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="https", daemon=True).start()
    return server


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def make_api(kubeconfig: str) -> client.CoreV1Api:
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    return client.CoreV1Api(client.ApiClient(cfg))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node-name", default="driftline-node")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-cert", required=True)
    p.add_argument("--tls-key", required=True)
    p.add_argument("--client-ca", required=True, help="CA that signs the apiserver's client cert")
    p.add_argument("--workdir", default=None, help="where pod dirs and logs go (default: temp)")
    p.add_argument(
        "--pod-ip",
        default=LOCAL_IP,
        help="the pods' IP; Endpoints refuse loopback, so Services need a non-loopback one",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="driftline-node-"))
    workdir.mkdir(parents=True, exist_ok=True)
    agent = NodeAgent(make_api(args.kubeconfig), args.node_name, args.port, workdir, args.pod_ip)
    server = serve(agent, args.tls_cert, args.tls_key, args.client_ca)
    agent.register_node()
    threading.Thread(target=agent.watch_pods, name="watch", daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("node agent ready", flush=True)
    while not stop.wait(0.5):
        pass
    log.info("stopping: killing pod processes")
    agent.shutdown()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
