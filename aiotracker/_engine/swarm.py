"""The Docker Swarm implementation of the engine boundary: jobs as services, tracked without
task events.

A job is a ``ReplicatedJob`` service (``swarm_spec``); the tracker above sees a container whose
id is the service id, and everything it knows of containers (create, start, inspect, list,
events, logs) is translated here. Leases, which need an attached stdin, stay plain containers
on the manager's own engine, reached through the same client (``DockerEngine``).

Swarm sends no task events (moby/moby#37403), so this engine makes them:

- The manager's event stream (``service`` and ``node`` events, replayed with ``since``) says
  when a job appears, is started or relabelled by another tracker, is removed, and when a node
  goes down (its running jobs are then ``lost``: UNDETERMINED until Swarm says more).
- One task poller for the whole session: while any started job has not ended, a single
  ``GET /tasks`` filtered on those jobs' services every ``poll_interval``; nothing when none
  is unfinished. Each task's progress becomes the container event Docker would have sent
  (``start``, ``die`` with its exit code), stamped with the task's own time. Its cost grows
  with the unfinished jobs (one call, a bigger answer), never with the waits on them.
- Where the nodes' engines are given (``node_urls``), their container event streams are
  hints: a task container's ``die`` (with its exit code) or ``pause`` is passed on at once
  (about 1 ms instead of a polling interval), and pause/resume go to the node that runs it.

Starting and terminating are spec updates, and Swarm reruns a job at every update of its spec
(a new ``JobIteration``): a job is made with a constraint no node meets (``UNSTARTED``, as a
created container waits), started by lifting it, and terminated by putting it back, which
shuts down the run's task. The run's iteration is kept in ``RUN_LABEL`` so that every reader
looks at the run's task, not at the pending one that follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import IO, Any, NoReturn
from urllib.parse import quote

import anyio

from .._labels import LEASE_LABEL, is_terminated_name
from .base import (
    ContainerDetails,
    ContainerEvent,
    ContainerSummary,
    EngineCallError,
    EngineConnectionError,
    EngineInfo,
    OutputReader,
)
from .docker import DockerEngine, event_params
from .swarm_spec import (
    NAME_LABEL,
    RUN_LABEL,
    SERVICE_ID_RE,
    TaskView,
    details,
    is_started,
    latest,
    node_info,
    relabel,
    service_name,
    service_spec,
    start_update,
    stop_update,
    summary,
    task_view,
    unsupported,
)

log = logging.getLogger("aiotracker")

_CONTAINER_ID_RE = re.compile(r"[0-9a-f]{64}")
_TASK_SERVICE = "com.docker.swarm.service.id"  # on a task container's events


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=ns % 10**9 // 1000)


def _ns(moment: datetime | None) -> int:
    if moment is None:
        return 0
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


@dataclass(slots=True)
class _Job:
    """What the poller knows of one job of the session."""

    labels: dict[str, str]
    name: str
    run: int | None = None  # its run's JobIteration; None: not started
    task: TaskView | None = None  # the run's task, as last seen
    killed: bool = False  # terminated by an update: its task is removed, not ended
    started_ns: int = 0  # when its start event said it started (0: none passed on)
    exit: tuple[int, int] | None = None  # (exit code, ns) of a die a node told first
    where: tuple[DockerEngine, str] | None = None  # the node's engine and task container (hint)
    lost: str = ""  # given up: its node was down too long (the reason)
    pending_name: str = ""  # renamed while it ran: the service gets the name at its end
    paused: bool = False  # as the node's pause and unpause events said
    lost_reported: bool = False  # its node is down and UNDETERMINED was said
    last_ns: int = 0  # the stamp of the last event passed on for it
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # a die was passed on

    def attributes(self, **extra: str) -> dict[str, str]:
        return {**self.labels, "name": self.name, **extra}


class SwarmEngine:
    """Jobs as Swarm services on the manager at ``docker_url`` (see ``base.Engine``).

    Args:
        docker_url: A manager's engine (``unix://`` or ``tcp://``; None: the client
            configuration, as for Docker).
        node_urls: The nodes' own engines, if reachable: hints for exits and pause state.
        poll_interval: Seconds between task polls while any started job has not ended.
        node_down_grace: Seconds a job's node may be down (the job UNDETERMINED) before the
            job is given up as FAILED: Swarm itself says nothing until the node returns.
    """

    product = "swarm"
    starts_at_once = False  # the scheduler places the task later: QUEUED until it runs

    def __init__(
        self, docker_url: str | None = None, *, node_urls: Sequence[str] = (),
        connection_limit: int = 32, timeout: float = 30.0, poll_interval: float = 0.1,
        node_down_grace: float = 60.0,
    ) -> None:  # fmt: skip
        self._manager = DockerEngine(docker_url, connection_limit=connection_limit,
                                     timeout=timeout)  # fmt: skip
        self.url = self._manager.url
        self._node_engines = [DockerEngine(u, connection_limit=4, timeout=timeout)
                              for u in node_urls]  # fmt: skip
        self._nodes: dict[str, DockerEngine] = {}  # node id -> its engine (those given)
        self._opened: set[DockerEngine] = set()  # node engines that answered once
        self._manager_node = ""  # the manager's own node id
        self._node_ids: dict[str, DockerEngine] = {}  # node id -> the given engine that is it
        self._down_since: dict[str, int] = {}  # node id -> when the manager said it went down
        self.node_down_grace = node_down_grace
        self._hostnames: dict[str, str] = {}  # node id -> hostname
        self._down: set[str] = set()  # nodes the manager says are down
        self.poll_interval = poll_interval
        self._jobs: dict[str, _Job] = {}  # service id -> what the poller knows
        self._polled: set[str] = set()  # started and not ended: what each poll asks for
        self._wake = asyncio.Event()
        self._emit: Callable[[ContainerEvent], None] | None = None
        self._labels: list[str] = []
        self._local: set[str] = set()  # ids of plain containers on the manager (leases)
        # Services made or changed (by anyone) to read: their first event, and how many came.
        self._to_learn: dict[str, tuple[str, int, int]] = {}
        self._to_name: set[str] = set()  # ended jobs whose new name the service must get
        self._removed: dict[str, None] = {}  # services seen removed, oldest first (bounded)
        self.polls = 0  # task polls made (the benchmark's calls on the manager)

    # -- life cycle ----------------------------------------------------------------------

    async def open(self) -> EngineInfo:
        info = await self._manager.open()
        try:
            raw = await self._manager.request("info", "info")
            _check_manager(self.url, raw)
            # The manager is a node too: its own tasks' containers are on its engine.
            self._manager_node = str(raw["Swarm"].get("NodeID") or "")
            self._nodes[self._manager_node] = self._manager
            for node in self._node_engines:
                try:
                    await self._open_node(node)
                except EngineConnectionError as exc:  # hints are a bonus: the poller is enough
                    log.warning("swarm: node engine %s does not answer (%s); hints from it "
                                "when it does", node.url, exc)  # fmt: skip
            await self._read_nodes()
        except BaseException:
            await self.aclose()
            raise
        return info

    async def _open_node(self, node: DockerEngine) -> str:
        await node.open()
        try:
            raw = await node.request("info", "info")
        except BaseException:
            await node.aclose()  # tried again later: no client left behind meanwhile
            raise
        node_id = str(((raw or {}).get("Swarm") or {}).get("NodeID") or "")
        if not node_id:
            await node.aclose()
            raise EngineConnectionError(f"{node.url} is not a node of a swarm")
        self._nodes.setdefault(node_id, node)  # the manager's own node: its engine stays
        self._node_ids[node_id] = node
        self._opened.add(node)
        return node_id

    def _node_of(self, engine: DockerEngine) -> str:
        """The node id of a given node engine ("" until it answered)."""
        return next((n for n, e in self._node_ids.items() if e is engine), "")

    async def info(self) -> EngineInfo:
        return await self._manager.info()

    def is_job_id(self, text: str) -> bool:
        return bool(SERVICE_ID_RE.fullmatch(text)) or self._manager.is_job_id(text)

    async def aclose(self) -> None:
        for engine in (self._manager, *self._node_engines):
            await engine.aclose()

    async def nodes(self) -> list[tuple[EngineInfo, bool]]:
        """The swarm's nodes as machines, and whether each takes jobs (sorted by name)."""
        raw = await self._manager.request("nodes", "nodes") or ()
        return sorted((node_info(n) for n in raw), key=lambda pair: pair[0].host_name)

    async def _read_nodes(self) -> None:
        for node in await self._manager.request("nodes", "nodes") or ():
            node_id = str(node.get("ID") or "")
            self._hostnames[node_id] = str((node.get("Description") or {}).get("Hostname") or "")
            if ((node.get("Status") or {}).get("State")) == "down":
                self._went_down(node_id, time.time_ns())
            else:
                self._came_back(node_id)

    def _went_down(self, node_id: str, at: int) -> None:
        self._down.add(node_id)
        self._down_since.setdefault(node_id, at)

    def _came_back(self, node_id: str) -> None:
        self._down.discard(node_id)
        self._down_since.pop(node_id, None)
        for sid in list(self._polled):  # its jobs that still run are found again: RUNNING
            job = self._jobs.get(sid)
            if job is None or not job.lost_reported or job.ended.is_set():
                continue
            if job.task is not None and job.task.node_id == node_id:
                job.lost_reported = False
                self._send(sid, "start", time.time_ns(), job)

    def _report_lost(self, at: int) -> None:
        """The followed jobs running on a node that is down, not yet said: UNDETERMINED."""
        for sid in list(self._polled):
            job = self._jobs.get(sid)
            if job is None or job.lost_reported or job.ended.is_set() or not job.started_ns:
                continue
            if job.task is not None and job.task.node_id in self._down:
                job.lost_reported = True
                self._send(sid, "lost", at, job)

    # -- which object an id names ------------------------------------------------------------

    def _is_local(self, cid: str) -> bool:
        return cid in self._local or bool(_CONTAINER_ID_RE.fullmatch(cid))

    async def _service(self, ref: str) -> dict[str, Any]:
        """A job's service by id (or id prefix), or by the job's container name."""
        key = ref if SERVICE_ID_RE.fullmatch(ref) else service_name(ref)
        raw: dict[str, Any] = await self._manager.request("inspect", f"services/{quote(key)}")
        return raw

    async def _tasks(self, service_ids: Sequence[str]) -> list[TaskView]:
        if not service_ids:
            return []
        params = {"filters": json.dumps({"service": list(service_ids)})}
        return [task_view(t) for t in await self._manager.request("tasks", "tasks", params=params)]

    @staticmethod
    def _run_of(service: Mapping[str, Any]) -> int | None:
        text = ((service.get("Spec") or {}).get("Labels") or {}).get(RUN_LABEL)
        return int(text) if text and text.isdigit() else None

    def _run_task(self, service: Mapping[str, Any], tasks: Sequence[TaskView]) -> TaskView | None:
        run = self._run_of(service)
        if run is None:
            return latest(tasks)  # not started: its pending task, if any
        return latest([t for t in tasks if t.iteration == run])

    # -- calls ---------------------------------------------------------------------------------

    async def create(self, config: Mapping[str, Any], name: str | None) -> str:
        if LEASE_LABEL in (config.get("Labels") or {}):
            cid = await self._manager.create(config, name)
            self._local.add(cid)
            return cid
        job_name = name or f"aiotracker-{id(config):x}"
        spec = service_spec(config, job_name, started=False)
        raw = await self._manager.request("create", "services/create", "POST", data=spec)
        sid = str(raw["ID"])
        self._jobs[sid] = _Job(dict(spec["Labels"]), job_name)
        return sid

    async def _update(self, what: str, service: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
        version = str((service.get("Version") or {}).get("Index"))
        sid = quote(str(service["ID"]))
        await self._manager.request(what, f"services/{sid}/update", "POST",
                                    params={"version": version}, data=spec)  # fmt: skip

    async def start(self, cid: str) -> None:
        if self._is_local(cid):
            await self._manager.start(cid)
            return
        service = await self._service(cid)
        spec = service.get("Spec") or {}
        if is_started(spec) or self._run_of(service) is not None:
            return  # as a 304: started already (a job runs once: an ended one is not rerun)
        if is_terminated_name(str((spec.get("Labels") or {}).get(NAME_LABEL) or "")):
            # Terminated by another tracker between our look and this start: it never runs.
            raise EngineCallError(409, f"container {cid} was terminated: not started")
        iteration = int(((service.get("JobStatus") or {}).get("JobIteration") or {}).get("Index")
                        or 0)  # fmt: skip
        run = iteration + 1  # the update makes the next iteration: the run
        spec = start_update(spec, run)
        await self._update("start", service, spec)
        job = self._job(service)
        job.run = run
        self._follow(str(service["ID"]))

    async def kill(self, cid: str) -> None:
        """Terminate: a SIGKILL by the engine of the node that runs it, where given (the task
        fails with 137 and keeps its log); else the constraint no node meets goes back (a new
        iteration that never runs) and Swarm removes the run's task (SIGTERM, then SIGKILL at
        once: a job's grace period is 0), with its container and its log."""
        if self._is_local(cid):
            await self._manager.kill(cid)
            return
        service = await self._service(cid)
        spec = service.get("Spec") or {}
        sid = str(service["ID"])
        job = self._job(service)
        if not is_started(spec) or job.ended.is_set() or (job.task is not None and job.task.ended):
            raise EngineCallError(409, f"container {cid} is not running")
        task = self._run_task(service, await self._tasks([sid]))
        where = job.where
        if where is None and task is not None and task.container_id:
            node = self._nodes.get(task.node_id)
            where = (node, task.container_id) if node is not None else None
        if where is not None and (task is None or task.node_id not in self._down):
            try:
                await where[0].kill(where[1])
                return
            except EngineConnectionError:
                pass  # its node's engine is away: the manager terminates it
        await self._update("kill", service, stop_update(spec))
        job.killed = True
        self._follow(sid)

    async def pause(self, cid: str) -> None:
        engine, container = await self._on_node(cid, "suspend")
        await engine.pause(container)

    async def unpause(self, cid: str) -> None:
        engine, container = await self._on_node(cid, "resume")
        await engine.unpause(container)

    async def _on_node(
        self, cid: str, what: str, *, running: bool = True
    ) -> tuple[DockerEngine, str]:
        """The engine of the node that runs the job (``running``; else ran it), and its task's
        container (a task's container stays on its node after the end, until the service
        goes)."""
        if self._is_local(cid):
            return self._manager, cid
        known = self._jobs.get(cid)
        if known is not None and known.where is not None and not (running and known.ended.is_set()):
            return known.where  # its node said it started it: no need to ask the manager
        service = await self._service(cid)
        task = self._run_task(service, await self._tasks([str(service["ID"])]))
        if task is None or not task.container_id or (running and task.status != "running"):
            raise EngineCallError(409, f"container {cid} is not running")
        engine = self._nodes.get(task.node_id)
        if engine is None:
            raise unsupported(f"{what} here: the engine of node "
                              f"{self._hostnames.get(task.node_id, task.node_id)} is not given "
                              "(SwarmTracker(node_urls=...))")  # fmt: skip
        return engine, task.container_id

    async def rename(self, cid: str, name: str) -> None:
        if self._is_local(cid):
            await self._manager.rename(cid, name)
            return
        service = await self._service(cid)
        spec = service.get("Spec") or {}
        job = self._job(service)
        if job.run is None:  # not started: the label changes, the job waits as it did
            await self._update("rename", service, relabel(spec, name))
            job.name = name
            return
        if job.ended.is_set():  # an update reruns a job unless UNSTARTED is back
            await self._update("rename", service, stop_update(relabel(spec, name)))
            job.name = name
            return
        if not job.started_ns:
            # Scheduled, not running: the mark (held) would not stop it from running.
            raise EngineCallError(409, f"container {cid} is starting: Swarm renames no run")
        # Running: an update now would run it again. The name is ours at once (events and
        # inspects carry it) and goes to the service when the run has ended.
        job.name = job.pending_name = name
        self._send(str(service["ID"]), "rename", time.time_ns(), job)

    async def disable_restart(self, cid: str) -> None:
        if self._is_local(cid):
            await self._manager.disable_restart(cid)
        # A job's service never restarts its task (RestartPolicy none).

    async def remove(self, cid: str, *, force: bool = False) -> None:
        if self._is_local(cid):
            await self._manager.remove(cid, force=force)
            self._local.discard(cid)
            return
        service = await self._service(cid)
        sid = str(service["ID"])
        job = self._jobs.get(sid)
        where = job.where if job is not None else None
        if where is None:
            task = self._run_task(service, await self._tasks([sid]))
            node = self._nodes.get(task.node_id) if task is not None else None
            if task is not None and node is not None and task.container_id:
                where = (node, task.container_id)
        await self._manager.request("remove", f"services/{quote(sid)}", "DELETE")
        self._polled.discard(sid)
        self._jobs.pop(sid, None)
        if where is not None:
            # Workers were seen to keep the containers of a removed service's tasks (the
            # manager removes its own): the node's engine, where given, removes it now.
            # (Gone already, or its node is away: nothing more to do for the job.)
            with contextlib.suppress(EngineCallError, EngineConnectionError):
                await where[0].remove(where[1], force=True)

    async def inspect(self, cid: str) -> ContainerDetails:
        if self._is_local(cid):
            return await self._manager.inspect(cid)
        try:
            service = await self._service(cid)
        except EngineCallError as exc:
            if exc.status != 404:
                raise
            return await self._manager.inspect(cid)  # a lease, by its name
        sid = str(service["ID"])
        task = self._run_task(service, await self._tasks([sid]))
        job = self._jobs.get(sid)
        started_at = _time(job.started_ns) if job is not None and job.started_ns else None
        d = details(service, task, started_at=started_at)
        if job is not None and job.pending_name:
            d = replace(d, name=job.pending_name)  # renamed while it ran (rename)
        if job is not None and job.exit is not None and task is not None and not task.ended:
            # A node told the exit before the manager knows it: the node's word.
            code, at = job.exit
            d = replace(d, status="exited", running=False, exit_code=code, finished_at=_time(at),
                        started_at=started_at or d.started_at or _time(at),
                        error=job.lost or d.error)  # fmt: skip
        node_down = task is not None and task.node_id in self._down
        if job is not None and job.where is not None and d.status in ("created", "running"):
            # Its node runs it (the manager may not know yet): the node's container says
            # whether it is paused, which Swarm itself never knows. (Not a node that is down.)
            engine, container = job.where
            try:
                on_node = None if node_down else await engine.inspect(container)
            except (EngineCallError, EngineConnectionError):
                on_node = None
            if on_node is not None and on_node.status in ("running", "paused"):
                d = replace(d, status=on_node.status, running=True, paused=on_node.paused,
                            started_at=d.started_at or on_node.started_at)  # fmt: skip
        if task is None or not task.node_id:
            return d
        if task.node_id not in self._hostnames:
            await self._read_nodes()  # a node that joined since
        d = replace(d, machine=self._hostnames.get(task.node_id, task.node_id))
        if d.status == "running" and task.node_id in self._down:
            return replace(d, status="unknown", running=False)  # nobody can tell its state
        return d

    async def list_containers(
        self, label: str | None, *, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerSummary]:
        local = [
            c
            for c in await self._manager.list_containers(label, filters=filters)
            if _TASK_SERVICE not in c.labels
        ]  # a job's task, run by the manager as a node
        self._local.update(c.container_id for c in local)
        if label is not None and label.startswith(LEASE_LABEL):
            return local
        params = {"filters": json.dumps({"label": [label]})} if label else None
        for attempt in range(3):
            services = await self._manager.request("list", "services", params=params) or []
            try:
                tasks = await self._tasks([str(s["ID"]) for s in services])
                break
            except EngineCallError as exc:  # a service removed between the two calls
                if exc.status != 404 or attempt == 2:
                    raise
        by_service: dict[str, list[TaskView]] = {}
        for t in tasks:
            by_service.setdefault(t.service_id, []).append(t)
        out = [summary(s, self._run_task(s, by_service.get(str(s["ID"]), [])))
               for s in services]  # fmt: skip
        out = [s for s in out if _matches(s, filters or {})]
        return [*out, *local]

    async def cpu_usage_ns(self, cid: str) -> int | None:
        try:
            engine, container = await self._on_node(cid, "stats")
        except EngineCallError:
            return None
        return await engine.cpu_usage_ns(container)

    async def image_tags(self) -> list[str]:
        return await self._manager.image_tags()

    async def image_present(self, image: str) -> bool:
        return True  # each node resolves its own images (pulls are the nodes' business)

    async def pull(
        self, image: str, auth: str | None, progress: Callable[[Mapping[str, Any]], None]
    ) -> None:
        raise unsupported("pulls: each node pulls its own images")

    # -- what the poller follows -----------------------------------------------------------

    def _job(self, service: Mapping[str, Any]) -> _Job:
        sid = str(service["ID"])
        job = self._jobs.get(sid)
        spec = service.get("Spec") or {}
        labels = dict(spec.get("Labels") or {})
        if job is None:
            job = self._jobs[sid] = _Job(labels, str(labels.get(NAME_LABEL) or spec.get("Name")))
        if job.run is None:
            job.run = self._run_of(service)
        return job

    def _follow(self, sid: str) -> None:
        self._polled.add(sid)
        self._wake.set()

    # -- events ----------------------------------------------------------------------------

    async def stream_events(
        self,
        labels: Sequence[str],
        since_ns: int | None,
        on_connected: Callable[[], None],
        on_event: Callable[[ContainerEvent], None],
    ) -> NoReturn:
        self._emit, self._labels = on_event, list(labels)
        parts = 2  # the manager's streams; the nodes' hints come when they can
        ready = anyio.Event()

        def connected() -> None:
            nonlocal parts
            parts -= 1
            if parts == 0:
                ready.set()

        swarm_filters = {"type": ["service", "node"]}
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._manager.stream_events, labels, since_ns, connected,
                              self._local_event)  # fmt: skip
                tg.start_soon(self._manager.stream_json, "swarm event stream", "events",
                              event_params(swarm_filters, since_ns), connected,
                              self._swarm_event)  # fmt: skip
                for node in self._node_engines:
                    tg.start_soon(self._hints_from, node, labels)
                await ready.wait()
                await self._catch_up()
                on_connected()
                await self._poll_forever()
        except* (EngineCallError, EngineConnectionError) as group:
            failure = group.exceptions[0]
            if isinstance(failure, EngineConnectionError):
                raise failure from None
            raise EngineConnectionError(f"the Swarm manager failed: {failure}") from None
        raise EngineConnectionError("the Swarm event streams ended")  # not reached

    async def _hints_from(self, node: DockerEngine, labels: Sequence[str]) -> NoReturn:
        """A node's container events, for as long as the tracker runs: a node that goes away
        (or never answered) is tried again, every few seconds; the poller covers the gap."""
        backoff = 0.5
        while True:
            try:
                if node not in self._opened:
                    await self._open_node(node)
                if self._node_of(node) == self._manager_node:
                    # The manager's engine: its events come with the manager's own stream.
                    await anyio.sleep_forever()
                await node.stream_events(labels, None, lambda: None, partial(self._hint, node))
            except (EngineConnectionError, EngineCallError) as exc:
                log.debug("swarm: hints from %s stopped: %s", node.url, exc)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _catch_up(self) -> None:
        """After (re)connecting: every job of the session the poller must follow."""
        await self._read_nodes()
        params = {"filters": json.dumps({"label": self._labels})}
        for service in await self._manager.request("list", "services", params=params) or ():
            job = self._job(service)
            if job.run is not None and not job.ended.is_set():
                self._polled.add(str(service["ID"]))
        await self._poll()

    async def _poll_forever(self) -> NoReturn:
        while True:
            if not self._polled and not self._to_learn and not self._to_name:
                self._wake.clear()
                await self._wake.wait()
            for sid in list(self._to_name):
                if await self._write_name(sid):
                    self._to_name.discard(sid)
            if self._to_learn:
                await self._learn_all()
            await self._poll()
            await asyncio.sleep(self.poll_interval)

    async def _poll(self) -> None:
        """One ``GET /tasks`` for every started job that has not ended."""
        if not self._polled:
            return
        self.polls += 1
        for _ in range(5):
            try:
                tasks = await self._tasks(sorted(self._polled))
                break
            except EngineCallError as exc:
                if exc.status != 404:
                    raise
                # One of them was removed (a 404 for the whole call): forget those gone, ask
                # again; others may go meanwhile (a cleanup removing many at once).
                await self._drop_removed()
                if not self._polled:
                    return
        else:
            return  # services keep going as we ask: the next poll asks again
        by_service: dict[str, list[TaskView]] = {}
        for t in tasks:
            by_service.setdefault(t.service_id, []).append(t)
        now = time.time_ns()
        for sid in list(self._polled):
            job = self._jobs.get(sid)
            if job is None or job.run is None:
                self._polled.discard(sid)
                continue
            task = latest([t for t in by_service.get(sid, []) if t.iteration == job.run])
            if task is not None and not task.ended and task.node_id in self._down_since:
                job.task = task
                self._report_lost(now)
                down_ns = now - self._down_since[task.node_id]
                if down_ns > self.node_down_grace * 1e9:
                    self._given_up(sid, job, now)
            elif task is not None:
                self._observe(sid, job, task)
            elif job.killed or job.task is not None:
                # Its task is gone before we saw it end: removed by a terminate.
                self._died(sid, job, 137, time.time_ns())

    async def _write_name(self, sid: str) -> bool:
        """A name given while the job ran, written to its service once the manager too says
        the run ended (an update before would make Swarm remove the run's task, its log with
        it), with UNSTARTED back so that the update does not run it again. False: not yet."""
        job = self._jobs.get(sid)
        if job is None or not job.pending_name:
            return True
        try:
            service = await self._manager.request("inspect", f"services/{quote(sid)}")
            task = self._run_task(service, await self._tasks([sid]))
            if task is not None and not task.ended:
                return False  # the manager has not heard of the end yet: after the next poll
            spec = stop_update(relabel(service.get("Spec") or {}, job.pending_name))
            await self._update("rename", service, spec)
        except EngineConnectionError:
            return False
        except EngineCallError as exc:
            if exc.status != 404:  # 404: removed meanwhile, nothing to name
                log.warning("swarm: job %s keeps its old name on the manager: %s", sid, exc)
        job.pending_name = ""
        return True

    async def _drop_removed(self) -> None:
        """Forget the followed jobs whose services are gone (their remove events may still be
        on their way)."""
        params = {"filters": json.dumps({"id": sorted(self._polled)})}
        services = await self._manager.request("list", "services", params=params) or ()
        present = {str(s["ID"]) for s in services}
        for sid in self._polled - present:
            self._polled.discard(sid)
            gone = self._jobs.pop(sid, None)
            if gone is not None:
                self._send(sid, "destroy", time.time_ns(), gone)

    def _observe(self, sid: str, job: _Job, task: TaskView, *, time_ns: int = 0) -> None:
        """A task's state, seen by a poll or a hint: the events it implies, once each."""
        job.task = task
        at = time_ns or _ns(task.timestamp)
        if task.status == "running" and not job.started_ns:
            self._started(sid, job, at)
        elif task.ended and not job.ended.is_set():
            if not job.started_ns and task.container_id:
                self._started(sid, job, at - 1)
            self._died(sid, job, task.exit_code or 0, at)

    def _given_up(self, sid: str, job: _Job, at: int) -> None:
        """Its node stayed down past the grace: FAILED, how it ended unknown (255)."""
        node = job.task.node_id if job.task is not None else ""
        job.lost = (f"its node {self._hostnames.get(node, node)} was down for more than "
                    f"{self.node_down_grace:g} s: how the job ended is unknown")  # fmt: skip
        job.exit = (255, at)
        self._died(sid, job, 255, at)

    def _started(self, sid: str, job: _Job, at: int) -> None:
        job.started_ns = at
        self._send(sid, "start", at, job)

    def _died(self, sid: str, job: _Job, code: int, at: int) -> None:
        if job.ended.is_set():
            return  # one die per run, whoever tells it first
        job.ended.set()
        self._polled.discard(sid)
        self._send(sid, "die", at, job, exitCode=str(code))
        if job.pending_name:
            self._to_name.add(sid)  # the poller's task writes it to the service
            self._wake.set()

    def _send(self, sid: str, action: str, at: int, job: _Job, **extra: str) -> None:
        # A job's events come from several clocks (the nodes', the manager's, this host's):
        # each is stamped after the last, or the cache would drop one as stale.
        at = job.last_ns = max(at, job.last_ns + 1)
        if self._emit is not None:
            self._emit(ContainerEvent(sid, action, at, job.attributes(**extra)))

    def _swarm_event(self, raw: Any) -> None:
        kind, action = raw.get("Type"), raw.get("Action")
        actor = raw.get("Actor") or {}
        at = int(raw.get("timeNano") or 0)
        if kind == "node" and action == "update":
            attrs = actor.get("Attributes") or {}
            node_id = str(actor.get("ID") or "")
            if attrs.get("state.new") == "down":
                self._went_down(node_id, at)
                self._report_lost(at)
            elif attrs.get("state.new") == "ready":
                self._came_back(node_id)
            return
        if kind != "service":
            return
        sid = str(actor.get("ID") or "")
        if action == "remove":
            gone = self._jobs.pop(sid, None)
            self._polled.discard(sid)
            self._to_learn.pop(sid, None)
            self._removed[sid] = None  # a learn in flight must not bring it back
            while len(self._removed) > 4096:
                del self._removed[next(iter(self._removed))]
            if gone is not None:
                self._send(sid, "destroy", at, gone)
            elif self._emit is not None:  # made and removed before we learnt of it
                self._emit(ContainerEvent(sid, "destroy", at, {}))
        elif action in ("create", "update"):
            first, first_at, count = self._to_learn.get(sid, (action, at, 0))
            self._to_learn[sid] = (first, first_at, count + 1)  # read by the poller's task
            self._wake.set()

    async def _learn_all(self) -> None:
        """The services made or changed since the last look (by anyone: a service event
        names no session), read in one call that keeps only this session's. A manager that
        does not answer: tried again after the next poll."""
        queued = dict(self._to_learn)
        filters = {"id": sorted(queued), "label": self._labels}
        try:
            services = await self._manager.request(
                "list", "services", params={"filters": json.dumps(filters)}
            )
        except (EngineConnectionError, EngineCallError) as exc:
            log.debug("swarm: services not learnt yet: %s", exc)
            return
        for sid, entry in queued.items():
            if self._to_learn.get(sid) == entry:  # no event since we asked: read
                del self._to_learn[sid]
        for service in services or ():
            sid = str(service.get("ID") or "")
            if sid in queued:  # (the id filter matches prefixes)
                action, at, _ = queued[sid]
                self._learn(service, action, at)

    def _learn(self, service: Mapping[str, Any], action: str, at: int) -> None:
        """Another tracker's job (or ours, changed), as its service says now."""
        sid = str(service["ID"])
        labels = (service.get("Spec") or {}).get("Labels") or {}
        if sid in self._removed:
            return
        known = sid in self._jobs
        job = self._job(service)
        name = str(labels.get(NAME_LABEL) or job.name)
        if not known and action == "create":
            self._send(sid, "create", at, job)
        elif name != job.name:
            job.name = name
            self._send(sid, "rename", at, job)
        if job.run is not None and not job.ended.is_set():
            self._follow(sid)

    def _local_event(self, event: ContainerEvent) -> None:
        """An event of the manager's own engine: a lease's, or (the manager is a node too) a
        job's task container's, which is a hint like any node's."""
        if _TASK_SERVICE in event.attributes:
            self._hint(self._manager, event)
        elif self._emit is not None:
            self._emit(event)

    def _hint(self, node: DockerEngine, event: ContainerEvent) -> None:
        """A task container's event on its node: the die at once, pause state, and where the
        run's container is (before the manager's task list says so)."""
        sid = event.attributes.get(_TASK_SERVICE, "")
        job = self._jobs.get(sid)
        if job is None or job.run is None:
            return
        if event.action == "start" and not job.ended.is_set():
            job.where = (node, event.container_id)
        if event.action in ("pause", "unpause"):
            if job.paused != (event.action == "pause"):  # once, whichever stream said it
                job.paused = event.action == "pause"
                self._send(sid, event.action, event.time_ns, job)
        elif event.action == "die" and not job.ended.is_set():
            if job.task is None or job.task.container_id in ("", event.container_id):
                code = event.attributes.get("exitCode", "0")
                job.exit = (int(code) if code.lstrip("-").isdigit() else 0, event.time_ns)
                if not job.started_ns:
                    self._started(sid, job, event.time_ns - 1)
                self._died(sid, job, job.exit[0], event.time_ns)
        elif event.action == "start" and not job.started_ns:
            self._started(sid, job, event.time_ns)

    # -- output ----------------------------------------------------------------------------

    @asynccontextmanager
    async def attach_output(self, cid: str, *, logs: bool = False) -> AsyncIterator[OutputReader]:
        """Swarm has no attach: the task's whole log once it has ended (the ``local`` log
        driver keeps it byte for byte, stdout and stderr apart)."""
        async with self._task_log(cid, wait=True) as read:
            yield read

    def read_logs(
        self, cid: str, *, follow: bool = False
    ) -> AbstractAsyncContextManager[OutputReader]:
        return self._task_log(cid, wait=follow)

    @asynccontextmanager
    async def _task_log(self, cid: str, *, wait: bool) -> AsyncIterator[OutputReader]:
        if self._is_local(cid):
            async with self._manager.read_logs(cid, follow=wait) as local:
                yield local
            return
        job = self._jobs.get(cid)
        opened: AbstractAsyncContextManager[OutputReader] | None = None
        reader: OutputReader | None = None

        async def read() -> tuple[int, bytes] | None:
            nonlocal opened, reader
            if reader is None:
                if wait and job is not None:
                    await job.ended.wait()
                service = await self._service(cid)
                task = self._run_task(service, await self._tasks([str(service["ID"])]))
                if task is None or not task.container_id:
                    return None  # never ran: no output
                params = {"stdout": "1", "stderr": "1", "follow": "0"}
                opened = self._manager.read_frames("logs", f"tasks/{quote(task.task_id)}/logs",
                                                   params)  # fmt: skip
                reader = await opened.__aenter__()
            return await reader()

        try:
            yield read
        finally:
            if opened is not None:
                await opened.__aexit__(None, None, None)

    async def copy_out(self, cid: str, path: str, write: Callable[[bytes], object]) -> None:
        engine, container = await self._on_node(cid, "stage-out", running=False)
        await engine.copy_out(container, path, write)

    async def feed_stdin(self, cid: str, source: IO[bytes]) -> None:
        raise unsupported("jobs that read an input_path")

    def hold_stdin(self, cid: str) -> AbstractAsyncContextManager[None]:
        return self._manager.hold_stdin(cid)


def _check_manager(url: str, info: Any) -> None:
    swarm = (info or {}).get("Swarm") or {}
    if not swarm.get("ControlAvailable"):
        state = swarm.get("LocalNodeState") or "inactive"
        raise EngineCallError(503, f"{url} is not a Swarm manager (LocalNodeState: {state})")


def _has_label(labels: Mapping[str, str], want: str) -> bool:
    key, eq, value = want.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _matches(s: ContainerSummary, filters: Mapping[str, Sequence[str]]) -> bool:
    """The engine's list filters (id prefix, name, status), applied to a job's service."""
    ids, names, states = filters.get("id"), filters.get("name"), filters.get("status")
    if ids and not any(s.container_id.startswith(i) for i in ids):
        return False
    if names and not any(n in s.name for n in names):
        return False
    return not (states and s.state not in states)
