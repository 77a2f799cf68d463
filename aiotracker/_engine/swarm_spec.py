"""Docker Swarm's services and tasks in the container terms of the engine boundary (pure).

A job on Swarm is a service of mode ``ReplicatedJob`` (one completion, no restart) whose
containers carry the job's labels; the tracker above sees it as a container whose id is the
service id. This module translates both ways and does no I/O: a container create config into a
service spec (or ``EngineCallError(501)`` for what Swarm cannot run), and a service with its
tasks into ``ContainerDetails`` and ``ContainerSummary``, and a task's progress into the
container events Docker would have sent (Swarm sends none for tasks: moby/moby#37403).

Names: Swarm's service names allow no dots and change with no update, where the tracker's
container names carry dots and marks (held, terminated) put there by a rename. The service is
named after the job's name without marks (``service_name``: unique per job name, as a container
name is), and the name with its marks lives in the ``NAME_LABEL`` of the service, which an
update can change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .._labels import base_name
from .._template_label import parse_go_time
from .base import ContainerDetails, ContainerSummary, EngineCallError, EngineInfo

NAME_LABEL = "aiotracker.swarm.name"  # the job's container name, marks included
RUN_LABEL = "aiotracker.swarm.run"  # the JobIteration of the job's run (set by its start)
# A constraint no node meets: a job made and not started (or held) waits on it, pending.
UNSTARTED = "node.labels.aiotracker.unstarted==1"
SERVICE_ID_RE = re.compile(r"[0-9a-z]{1,25}")
TASK_SERVICE = "com.docker.swarm.service.id"  # a task container's label: its service

_NEVER = datetime.min.replace(tzinfo=UTC)

# Task states (swarmkit api/types.proto): new, pending, assigned, accepted, ready, preparing
# and starting are before it runs (the job is queued); then running; then one of the ends.
_FAILED = ("rejected", "failed", "orphaned")
_ENDED = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")


def service_name(name: str) -> str:
    """The service name for a job's container name: its name without marks, hashed (Swarm
    allows no dots in names, at most 63 characters)."""
    return "aiotracker-" + hashlib.sha256(base_name(name).encode()).hexdigest()[:40]


def unsupported(what: str) -> EngineCallError:
    return EngineCallError(501, f"Docker Swarm cannot run {what}")


# HostConfig entries a job may carry and what Swarm makes of them (None: refused).
_REFUSED_HOST = {
    "Privileged": "privileged jobs (the privileged extension)",
    "PortBindings": "jobs with published ports (the ports extension)",
    "DeviceRequests": "jobs that ask for GPUs through device requests (gpu-devices)",
    "AutoRemove": "jobs removed at exit (the rm extension): a service is removed with delete",
    "IpcMode": "jobs in another IPC namespace (the ipc extension)",
    "PidMode": "jobs in another PID namespace (the pid extension)",
    "UTSMode": "jobs in another UTS namespace (the uts extension)",
    "ShmSize": "jobs with a /dev/shm size (the shm-size extension)",
}


def service_spec(config: Mapping[str, Any], name: str, *, started: bool) -> dict[str, Any]:
    """The body of ``POST /services/create`` for a container create config.

    Not ``started``: the job is made with a constraint no node meets, so that it waits (as a
    created container does) until ``start_update`` lifts it.
    """
    host = dict(config.get("HostConfig") or {})
    for key, what in _REFUSED_HOST.items():
        if host.get(key):
            raise unsupported(what)
    if host.get("NetworkMode") not in (None, "", "none", "default"):
        raise unsupported("jobs on a network (the net extension): Swarm jobs have none here")
    if (host.get("RestartPolicy") or {}).get("Name", "no") not in ("", "no"):
        raise unsupported("jobs with a restart policy (the restart extension)")
    if config.get("OpenStdin"):
        raise unsupported("jobs that read an input_path: a service has no stdin to write to")
    if config.get("ExposedPorts"):
        raise unsupported("jobs with exposed ports")
    labels = dict(config.get("Labels") or {})
    labels[NAME_LABEL] = name
    # A terminate is a SIGKILL, as Docker's kill is: no grace period after the SIGTERM.
    container: dict[str, Any] = {"Image": config["Image"], "Labels": labels, "TTY": False,
                                 "StopGracePeriod": 0}  # fmt: skip
    if config.get("Entrypoint"):
        container["Command"] = list(config["Entrypoint"])
    if config.get("Cmd") is not None:
        container["Args"] = list(config["Cmd"])
    for key, field in (("Env", "Env"), ("WorkingDir", "Dir"), ("User", "User")):
        if config.get(key):
            container[field] = config[key]
    if host.get("Ulimits"):
        container["Ulimits"] = list(host["Ulimits"])
    mounts = [_bind_mount(spec) for spec in host.get("Binds") or ()]
    if mounts:
        container["Mounts"] = mounts
    resources: dict[str, Any] = {}
    limits = {"NanoCPUs": host.get("NanoCpus"), "MemoryBytes": host.get("Memory")}
    if any(limits.values()):
        resources["Limits"] = {k: v for k, v in limits.items() if v}
    if host.get("MemoryReservation"):
        resources["Reservations"] = {"MemoryBytes": host["MemoryReservation"]}
    log_config = host.get("LogConfig") or {"Type": "local", "Config": {}}
    options = dict(log_config.get("Config") or {})
    if not options:
        # The whole output is read from the log (there is no attach): the local driver's
        # default of 5 files of 20 MB would keep only the last 100 MB of it.
        options = {"max-size": "100g", "max-file": "1", "compress": "false"}
    if (log_config.get("Type") or "local") == "local":
        # The output is the log: kept in one file, never rotated away (a max-size of the
        # template's own is kept, as a bound on the output).
        options = {"max-size": "100g", "compress": "false", **options, "max-file": "1"}
    log_driver = {"Name": log_config.get("Type") or "local", "Options": options}
    task: dict[str, Any] = {
        "ContainerSpec": container,
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Placement": {"Constraints": constraints(config, started=started)},
        "LogDriver": log_driver,
    }
    if resources:
        task["Resources"] = resources
    return {
        "Name": service_name(name),
        "Labels": labels,
        "TaskTemplate": task,
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
    }


def constraints(config: Mapping[str, Any], *, started: bool) -> list[str]:
    """The placement constraints of a job: its candidate machine (the config's ``Hostname``:
    a node's hostname, or a constraint of its own such as ``node.labels.zone==a``), and
    ``UNSTARTED`` until it is started."""
    out = []
    machine = str(config.get("Hostname") or "")
    if machine:
        out.append(machine if ("==" in machine or "!=" in machine) else f"node.hostname=={machine}")
    if not started:
        out.append(UNSTARTED)
    return out


def start_update(spec: Mapping[str, Any], run: int | None = None) -> dict[str, Any]:
    """The spec that starts a made job: the same, without ``UNSTARTED``; with ``run`` (the
    JobIteration the update makes), that iteration in ``RUN_LABEL``."""
    task = dict(spec["TaskTemplate"])
    placement = dict(task.get("Placement") or {})
    placement["Constraints"] = [c for c in placement.get("Constraints") or () if c != UNSTARTED]
    task["Placement"] = placement
    out = {**spec, "TaskTemplate": task}
    if run is not None:
        out["Labels"] = {**(spec.get("Labels") or {}), RUN_LABEL: str(run)}
    return out


def stop_update(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec that terminates a started job: ``UNSTARTED`` back (Swarm removes the run's
    task, and the next iteration's waits for ever). After the run has ended, any update of
    the job's spec needs it too, or Swarm runs the job again."""
    task = dict(spec["TaskTemplate"])
    placement = dict(task.get("Placement") or {})
    kept = [c for c in placement.get("Constraints") or () if c != UNSTARTED]
    placement["Constraints"] = [*kept, UNSTARTED]
    task["Placement"] = placement
    return {**spec, "TaskTemplate": task}


def is_started(spec: Mapping[str, Any]) -> bool:
    placement = (spec.get("TaskTemplate") or {}).get("Placement") or {}
    return UNSTARTED not in (placement.get("Constraints") or ())


def relabel(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The spec with the job's name (its marks) changed: the rename of a container."""
    labels = {**(spec.get("Labels") or {}), NAME_LABEL: name}
    return {**spec, "Labels": labels}


def _bind_mount(spec: str) -> dict[str, Any]:
    """A ``host:container[:ro]`` bind as a Swarm mount (the host path is the node's)."""
    source, _, rest = spec.partition(":")
    target, _, mode = rest.partition(":")
    return {"Type": "bind", "Source": source, "Target": target, "ReadOnly": "ro" in mode.split(",")}


# -- tasks -> container terms ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskView:
    """What one task of a job says: its state in container words, and its container."""

    task_id: str
    service_id: str
    state: str  # the task's own state word
    status: str  # created | running | exited: the container's
    exit_code: int | None
    error: str
    node_id: str
    container_id: str
    timestamp: datetime | None  # when the task reached its state
    iteration: int

    @property
    def ended(self) -> bool:
        return self.status == "exited"


def task_view(raw: Mapping[str, Any]) -> TaskView:
    status = raw.get("Status") or {}
    state = str(status.get("State") or "new")
    cstatus = status.get("ContainerStatus") or {}
    code = cstatus.get("ExitCode")
    word = "running" if state == "running" else "exited" if state in _ENDED else "created"
    if state == "rejected" or (state == "failed" and not cstatus.get("ContainerID")):
        code = 127 if code in (None, 0) else code  # never ran: the start failed
    elif state == "shutdown" and word == "exited" and not code:
        code = 143  # scaled down (terminated): SIGTERM, as the task was told
    elif state in ("orphaned", "failed") and not code:
        # Its node was down too long, or its container vanished ("No such container", a
        # node back from a crash): how it ended is unknown, and it is never DONE.
        code = 255
    return TaskView(
        task_id=str(raw.get("ID") or ""),
        service_id=str(raw.get("ServiceID") or ""),
        state=state,
        status=word,
        exit_code=int(code) if isinstance(code, int) else (0 if word == "exited" else None),
        error=str(
            status.get("Err")
            or (
                "its node was down too long: how it ended is unknown" if state == "orphaned" else ""
            )
        ),
        node_id=str(raw.get("NodeID") or ""),
        container_id=str(cstatus.get("ContainerID") or ""),
        timestamp=parse_go_time(status.get("Timestamp")),
        iteration=int(((raw.get("JobIteration") or {}).get("Index")) or 0),
    )


def latest(tasks: Sequence[TaskView]) -> TaskView | None:
    """The task of a job that says its state: the newest iteration's, the newest of those."""
    if not tasks:
        return None
    return max(tasks, key=lambda t: (t.iteration, t.timestamp or _NEVER, t.task_id))


def run_of(service: Mapping[str, Any]) -> int | None:
    """The ``JobIteration`` of a job's run (``RUN_LABEL``); None: not started."""
    text = ((service.get("Spec") or {}).get("Labels") or {}).get(RUN_LABEL)
    return int(text) if text and text.isdigit() else None


def run_task(service: Mapping[str, Any], tasks: Sequence[TaskView]) -> TaskView | None:
    """The task of a job's run (not the pending one after it); not started: its pending task."""
    run = run_of(service)
    if run is None:
        return latest(tasks)
    return latest([t for t in tasks if t.iteration == run])


def details(
    service: Mapping[str, Any], task: TaskView | None, *, started_at: datetime | None = None
) -> ContainerDetails:
    """A job's service and its latest task as the inspect of a container would say it."""
    spec = service.get("Spec") or {}
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    labels = dict(container.get("Labels") or spec.get("Labels") or {})
    name = str((spec.get("Labels") or {}).get(NAME_LABEL) or spec.get("Name") or "")
    # Started: its start set the run's iteration (a terminate, or a rename after the end,
    # puts UNSTARTED back so that the next iteration waits for ever), or it has no such label
    # (made by another tool) and nothing holds it back.
    run = RUN_LABEL in (spec.get("Labels") or {})
    stopped = run and not is_started(spec)
    if task is None:
        status = "exited" if stopped else "created"  # stopped with no task: removed by a kill
    elif not run and not is_started(spec):
        status = "exited" if task.state in _ENDED else "created"
    else:
        status = task.status
    # It ran if its task had a container (a rejected task, or a failed one with none, never
    # started: its start failed).
    ran = status in ("running", "exited") and task is not None and bool(task.container_id)
    if ran and started_at is None and task is not None:
        started_at = task.timestamp  # the task's own record keeps no start time
    return ContainerDetails(
        container_id=str(service.get("ID") or ""),
        name=name,
        status=status,
        running=status == "running",
        paused=False,
        restarting=False,
        oom_killed=False,
        dead=False,
        exit_code=(task.exit_code or 0)
        if task is not None and status == "exited"
        else 137
        if status == "exited"
        else 0,
        error=task.error if task is not None and task.state in _FAILED else "",
        created=parse_go_time(service.get("CreatedAt")),
        started_at=started_at if ran else None,
        finished_at=task.timestamp if task is not None and status == "exited" else None,
        labels=labels,
        image=str(container.get("Image") or "").partition("@")[0],
        cmd=tuple(container.get("Args") or ()),
        user=str(container.get("User") or ""),
        hostname=str(container.get("Hostname") or ""),
        working_dir=str(container.get("Dir") or ""),
    )


def summary(service: Mapping[str, Any], task: TaskView | None) -> ContainerSummary:
    d = details(service, task)
    status = f"Exited ({d.exit_code})" if d.status == "exited" else d.status.capitalize()
    return ContainerSummary(d.container_id, d.name, d.status, status, d.labels)


def matches(s: ContainerSummary, filters: Mapping[str, Sequence[str]]) -> bool:
    """The engine's list filters (id prefix, name, status), applied to a job's service."""
    ids, names, states = filters.get("id"), filters.get("name"), filters.get("status")
    if ids and not any(s.container_id.startswith(i) for i in ids):
        return False
    if names and not any(n in s.name for n in names):
        return False
    return not (states and s.state not in states)


# -- nodes -> machines -----------------------------------------------------------------------


def node_info(raw: Mapping[str, Any]) -> tuple[EngineInfo, bool]:
    """A node of ``GET /nodes`` as the machine its engine would describe (no kernel or OS
    release: a node tells only its platform), and whether it takes jobs (ready and active)."""
    description = raw.get("Description") or {}
    platform = description.get("Platform") or {}
    resources = description.get("Resources") or {}
    engine = description.get("Engine") or {}
    info = EngineInfo(
        host_name=str(description.get("Hostname") or raw.get("ID") or ""),
        system_time_ns=0,
        api_version="",
        product="swarm",
        version=str(engine.get("EngineVersion") or ""),
        cpus=int(resources.get("NanoCPUs") or 0) // 10**9,
        memory_bytes=int(resources.get("MemoryBytes") or 0),
        architecture=str(platform.get("Architecture") or ""),
        os_type=str(platform.get("OS") or ""),
    )
    status = (raw.get("Status") or {}).get("State")
    availability = (raw.get("Spec") or {}).get("Availability", "active")
    return info, status == "ready" and availability == "active"
