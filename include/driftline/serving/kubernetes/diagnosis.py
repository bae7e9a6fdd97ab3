"""Why a slot's pods are not ready: a fatal pod state, and a report for the deploy's error."""

from __future__ import annotations

import datetime as dt

from kubernetes import client
from kubernetes.client.rest import ApiException

from driftline.serving.kubernetes.manifests import CONTAINER

EVENTS_SHOWN = 12
LOG_LINES_SHOWN = 20
FATAL_WAITING = {"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


def pod_failure(pods: list[client.V1Pod]) -> str | None:
    """Why one of ``pods`` cannot become ready by waiting longer, if so."""
    for pod in pods:
        name = pod.metadata.name
        if pod.status.phase == "Failed":
            return f"pod {name} failed: {pod.status.reason} {pod.status.message or ''}"
        for cs in (pod.status.init_container_statuses or []) + (
                pod.status.container_statuses or []):
            why = _container_failure(name, cs)
            if why:
                return why
    return None


def _container_failure(pod: str, cs: client.V1ContainerStatus) -> str | None:
    waiting = cs.state.waiting if cs.state else None
    if waiting and waiting.reason in FATAL_WAITING:
        last = cs.last_state.terminated if cs.last_state else None
        exit_info = f", last exit code {last.exit_code}" if last else ""
        return (f"pod {pod} container {cs.name}: {waiting.reason} "
                f"(restarted {cs.restart_count} times{exit_info}): {waiting.message or ''}")
    done = cs.state.terminated if cs.state else None
    if done and done.exit_code:
        return (f"pod {pod} container {cs.name} exited with code {done.exit_code} "
                f"({done.reason}): {(done.message or '')[-500:]}")
    return None


def diagnosis(core: client.CoreV1Api, ns: str, dep: client.V1Deployment,
              replica_sets: list[str], pods: list[client.V1Pod]) -> str:
    """The pods' phases, recent events of the Deployment, its ReplicaSets and pods, and the
    last log lines of a failed container (best effort: a failed read is named, not raised).

    :param replica_sets: names of the slot's ReplicaSets.
    """
    lines = [_pod_line(pod) for pod in pods]
    objects = [dep.metadata.name, *(p.metadata.name for p in pods), *replica_sets]
    try:
        events = [ev for name in objects[:10] for ev in core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={name}").items]
    except ApiException as exc:
        events = []
        lines.append(f"(events unavailable: {exc.status} {exc.reason})")
    events.sort(key=_when)
    if events:
        lines.append("recent events:")
    lines += [f"  {_when(ev):%H:%M:%S} {ev.type} {ev.reason} {ev.involved_object.kind}/"
              f"{ev.involved_object.name}: {ev.message}" for ev in events[-EVENTS_SHOWN:]]
    failed = next((p for p in pods if any(
        cs.restart_count or (cs.state and cs.state.terminated)
        for cs in p.status.container_statuses or [])), None)
    if failed is not None:
        lines += _last_log_lines(core, ns, failed.metadata.name)
    return "\n".join(lines)


def _pod_line(pod: client.V1Pod) -> str:
    states = []
    for cs in pod.status.container_statuses or []:
        state = cs.state.to_dict() if cs.state else {}
        kind = next((k for k, v in state.items() if v), "unknown")
        states.append(f"{cs.name}={kind} restarts={cs.restart_count}")
    states += [f"{c.type}=False: {c.message}" for c in pod.status.conditions or []
               if c.status == "False" and c.message]
    return f"pod {pod.metadata.name}: {pod.status.phase}; {'; '.join(states)}"


def _when(ev: client.CoreV1Event) -> dt.datetime:
    t = ev.last_timestamp or ev.event_time or ev.first_timestamp
    return t or dt.datetime.min.replace(tzinfo=dt.UTC)


def _last_log_lines(core: client.CoreV1Api, ns: str, pod: str) -> list[str]:
    try:
        text = core.read_namespaced_pod_log(
            pod, ns, container=CONTAINER, tail_lines=LOG_LINES_SHOWN,
            _preload_content=False).data.decode(errors="replace")
    except ApiException as exc:
        return [f"(log of {pod} unavailable: {exc.reason})"]
    return [f"last log lines of {pod}:", *(f"  {line}" for line in text.splitlines())]
