"""The Docker Swarm implementation of the engine boundary: jobs as services.

A job is a ``ReplicatedJob`` service (``swarm_spec``); the tracker above sees a container whose
id is the service id, and everything it knows of containers (create, start, inspect, list,
events, logs) is translated here. Leases, which need an attached stdin, stay plain containers
on the manager's own engine, reached through the same client (``DockerEngine``).

Swarm sends no task events (moby/moby#37403): ``swarm_tasks.TaskTracker`` makes them, from the
manager's service and node events, one task poller for the whole session and, where the nodes'
engines are given (``node_urls``), their container events as hints. ``swarm_nodes`` keeps the
nodes: their engines (pause and resume go to the node that runs the job), hostnames, and which
are down.

Starting and terminating are spec updates, and Swarm reruns a job at every update of its spec
(a new ``JobIteration``): a job is made with a constraint no node meets (``UNSTARTED``, as a
created container waits), started by lifting it, and terminated by putting it back, which
shuts down the run's task. The run's iteration is kept in ``RUN_LABEL`` so that every reader
looks at the run's task, not at the pending one that follows it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
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
from .swarm_nodes import SwarmNodes
from .swarm_spec import (
    NAME_LABEL,
    SERVICE_ID_RE,
    TASK_SERVICE,
    TaskView,
    details,
    is_started,
    matches,
    node_info,
    relabel,
    run_of,
    run_task,
    service_name,
    service_spec,
    start_update,
    stop_update,
    summary,
    unsupported,
)
from .swarm_tasks import TaskTracker, get_tasks

log = logging.getLogger("aiotracker")

_CONTAINER_ID_RE = re.compile(r"[0-9a-f]{64}")


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=ns % 10**9 // 1000)


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
        self._nodes = SwarmNodes(self._manager, node_urls, timeout=timeout)
        self._tracker = TaskTracker(self._manager, self._nodes, poll_interval=poll_interval,
                                    node_down_grace=node_down_grace,
                                    write_name=self._write_name)  # fmt: skip
        self._emit: Callable[[ContainerEvent], None] | None = None
        self._local: set[str] = set()  # ids of plain containers on the manager (leases)

    @property
    def polls(self) -> int:
        """Task polls made (the benchmark's calls on the manager)."""
        return self._tracker.polls

    # -- life cycle ----------------------------------------------------------------------

    async def open(self) -> EngineInfo:
        info = await self._manager.open()
        try:
            raw = await self._manager.request("info", "info")
            _check_manager(self.url, raw)
            await self._nodes.open(str(raw["Swarm"].get("NodeID") or ""))
            await self._tracker.read_nodes()
        except BaseException:
            await self.aclose()
            raise
        return info

    async def info(self) -> EngineInfo:
        return await self._manager.info()

    def is_job_id(self, text: str) -> bool:
        return bool(SERVICE_ID_RE.fullmatch(text)) or self._manager.is_job_id(text)

    async def aclose(self) -> None:
        await self._manager.aclose()
        await self._nodes.aclose()

    async def nodes(self) -> list[tuple[EngineInfo, bool]]:
        """The swarm's nodes as machines, and whether each takes jobs (sorted by name)."""
        raw = await self._manager.request("nodes", "nodes") or ()
        return sorted((node_info(n) for n in raw), key=lambda pair: pair[0].host_name)

    # -- which object an id names ------------------------------------------------------------

    def _is_local(self, cid: str) -> bool:
        return cid in self._local or bool(_CONTAINER_ID_RE.fullmatch(cid))

    async def _service(self, ref: str) -> dict[str, Any]:
        """A job's service by id (or id prefix), or by the job's container name."""
        key = ref if SERVICE_ID_RE.fullmatch(ref) else service_name(ref)
        raw: dict[str, Any] = await self._manager.request("inspect", f"services/{quote(key)}")
        return raw

    async def _tasks(self, service_ids: Sequence[str]) -> list[TaskView]:
        return await get_tasks(self._manager, service_ids)

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
        self._tracker.made(sid, spec["Labels"], job_name)
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
        if is_started(spec) or run_of(service) is not None:
            return  # as a 304: started already (a job runs once: an ended one is not rerun)
        if is_terminated_name(str((spec.get("Labels") or {}).get(NAME_LABEL) or "")):
            # Terminated by another tracker between our look and this start: it never runs.
            raise EngineCallError(409, f"container {cid} was terminated: not started")
        iteration = int(((service.get("JobStatus") or {}).get("JobIteration") or {}).get("Index")
                        or 0)  # fmt: skip
        run = iteration + 1  # the update makes the next iteration: the run
        spec = start_update(spec, run)
        await self._update("start", service, spec)
        self._tracker.run_started(service, run)

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
        job = self._tracker.job(service)
        if not is_started(spec) or job.ended.is_set() or (job.task is not None and job.task.ended):
            raise EngineCallError(409, f"container {cid} is not running")
        task = run_task(service, await self._tasks([sid]))
        where = job.where
        if where is None and task is not None and task.container_id:
            node = self._nodes.engine(task.node_id)
            where = (node, task.container_id) if node is not None else None
        if where is not None and (task is None or task.node_id not in self._nodes.down):
            try:
                await where[0].kill(where[1])
                return
            except EngineConnectionError:
                pass  # its node's engine is away: the manager terminates it
        await self._update("kill", service, stop_update(spec))
        self._tracker.killed(sid, job)

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
        known = self._tracker.get(cid)
        if known is not None and known.where is not None and not (running and known.ended.is_set()):
            return known.where  # its node said it started it: no need to ask the manager
        service = await self._service(cid)
        task = run_task(service, await self._tasks([str(service["ID"])]))
        if task is None or not task.container_id or (running and task.status != "running"):
            raise EngineCallError(409, f"container {cid} is not running")
        engine = self._nodes.engine(task.node_id)
        if engine is None:
            raise unsupported(f"{what} here: the engine of node "
                              f"{self._nodes.hostname(task.node_id)} is not given "
                              "(SwarmTracker(node_urls=...))")  # fmt: skip
        return engine, task.container_id

    async def rename(self, cid: str, name: str) -> None:
        if self._is_local(cid):
            await self._manager.rename(cid, name)
            return
        service = await self._service(cid)
        spec = service.get("Spec") or {}
        job = self._tracker.job(service)
        if job.run is None:  # not started: the label changes, the job waits as it did
            await self._update("rename", service, relabel(spec, name))
            self._tracker.renamed(str(service["ID"]), job, name, running=False)
            return
        if job.ended.is_set():  # an update reruns a job unless UNSTARTED is back
            await self._update("rename", service, stop_update(relabel(spec, name)))
            self._tracker.renamed(str(service["ID"]), job, name, running=False)
            return
        if not job.started_ns:
            # Scheduled, not running: the mark (held) would not stop it from running.
            raise EngineCallError(409, f"container {cid} is starting: Swarm renames no run")
        # Running: an update now would run it again. The name is ours at once (events and
        # inspects carry it) and goes to the service when the run has ended.
        self._tracker.renamed(str(service["ID"]), job, name, running=True)

    async def _write_name(self, sid: str) -> bool:
        """A name given while the job ran, written to its service once the manager too says
        the run ended (an update before would make Swarm remove the run's task, its log with
        it), with UNSTARTED back so that the update does not run it again. False: not yet."""
        job = self._tracker.get(sid)
        if job is None or not job.pending_name:
            return True
        try:
            service = await self._manager.request("inspect", f"services/{quote(sid)}")
            task = run_task(service, await self._tasks([sid]))
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
        job = self._tracker.get(sid)
        where = job.where if job is not None else None
        if where is None:
            task = run_task(service, await self._tasks([sid]))
            node = self._nodes.engine(task.node_id) if task is not None else None
            if task is not None and node is not None and task.container_id:
                where = (node, task.container_id)
        await self._manager.request("remove", f"services/{quote(sid)}", "DELETE")
        self._tracker.forget(sid)
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
        task = run_task(service, await self._tasks([sid]))
        job = self._tracker.get(sid)
        started_at = _time(job.started_ns) if job is not None and job.started_ns else None
        d = details(service, task, started_at=started_at)
        if job is not None and job.pending_name:
            d = replace(d, name=job.pending_name)  # renamed while it ran (rename)
        if job is not None and (told := job.exit_unheard(task)) is not None:
            # A node told the exit before the manager knows it: the node's word.
            code, at = told
            d = replace(d, status="exited", running=False, exit_code=code, finished_at=_time(at),
                        started_at=started_at or d.started_at or _time(at),
                        error=job.lost or d.error)  # fmt: skip
        node_down = task is not None and task.node_id in self._nodes.down
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
        if not self._nodes.known(task.node_id):
            await self._tracker.read_nodes()  # a node that joined since
        d = replace(d, machine=self._nodes.hostname(task.node_id))
        if d.status == "running" and task.node_id in self._nodes.down:
            return replace(d, status="unknown", running=False)  # nobody can tell its state
        return d

    async def list_containers(
        self, label: str | None, *, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerSummary]:
        local = [
            c
            for c in await self._manager.list_containers(label, filters=filters)
            if TASK_SERVICE not in c.labels
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
        out = [self._summary(s, by_service.get(str(s["ID"]), [])) for s in services]
        out = [s for s in out if matches(s, filters or {})]
        return [*out, *local]

    def _summary(self, service: Mapping[str, Any], tasks: Sequence[TaskView]) -> ContainerSummary:
        """A job's list entry; exited if its node told the exit before the manager knows it
        (as ``inspect`` says)."""
        task = run_task(service, tasks)
        entry = summary(service, task)
        job = self._tracker.get(str(service["ID"]))
        if job is not None and (told := job.exit_unheard(task)) is not None:
            return replace(entry, state="exited", status=f"Exited ({told[0]})")
        return entry

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

    # -- events ----------------------------------------------------------------------------

    async def stream_events(
        self,
        labels: Sequence[str],
        since_ns: int | None,
        on_connected: Callable[[], None],
        on_event: Callable[[ContainerEvent], None],
    ) -> NoReturn:
        self._emit = on_event
        self._tracker.bind(on_event, labels)
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
                              self._tracker.swarm_event)  # fmt: skip
                for node in self._nodes.given:
                    tg.start_soon(self._nodes.stream_hints, node, labels, self._tracker.hint)
                await ready.wait()
                await self._tracker.catch_up()
                on_connected()
                await self._tracker.poll_forever()
        except* (EngineCallError, EngineConnectionError) as group:
            failure = group.exceptions[0]
            if isinstance(failure, EngineConnectionError):
                raise failure from None
            raise EngineConnectionError(f"the Swarm manager failed: {failure}") from None
        raise EngineConnectionError("the Swarm event streams ended")  # not reached

    def _local_event(self, event: ContainerEvent) -> None:
        """An event of the manager's own engine: a lease's, or (the manager is a node too) a
        job's task container's, which is a hint like any node's."""
        if TASK_SERVICE in event.attributes:
            self._tracker.hint(self._manager, event)
        elif self._emit is not None:
            self._emit(event)

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
        job = self._tracker.get(cid)
        opened: AbstractAsyncContextManager[OutputReader] | None = None
        reader: OutputReader | None = None

        async def read() -> tuple[int, bytes] | None:
            nonlocal opened, reader
            if reader is None:
                if wait and job is not None:
                    await job.ended.wait()
                service = await self._service(cid)
                task = run_task(service, await self._tasks([str(service["ID"])]))
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
