"""Swarm's tasks and the nodes' events, turned into the container events the feed expects.

Swarm sends no task events (moby/moby#37403), so ``TaskTracker`` makes them:

- The manager's event stream (``service`` and ``node`` events, replayed with ``since``) says
  when a job appears, is started or relabelled by another tracker, is removed, and when a node
  goes down (its running jobs are then ``lost``: UNDETERMINED until Swarm says more, FAILED
  after ``node_down_grace``).
- One task poller for the whole session: while any started job has not ended, a single
  ``GET /tasks`` filtered on those jobs' services every ``poll_interval``; nothing when none
  is unfinished. Each task's progress becomes the container event Docker would have sent
  (``start``, ``die`` with its exit code), stamped with the task's own time. Its cost grows
  with the unfinished jobs (one call, a bigger answer), never with the waits on them.
- Where the nodes' engines are given (``node_urls``), their container event streams are
  hints: a task container's ``die`` (with its exit code) or ``pause`` is passed on at once
  (about 1 ms instead of a polling interval). At each (re)connecting they are also asked for
  the exits their manager has not heard of yet (a die told before this tracker listened is
  not told again).

Each job's events come out once each and in order, whoever saw them first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

import anyio

from .base import ContainerEvent, EngineCallError, EngineConnectionError
from .docker import DockerEngine
from .swarm_nodes import SwarmNodes
from .swarm_spec import NAME_LABEL, TASK_SERVICE, TaskView, latest, run_of, task_view

log = logging.getLogger("aiotracker")

# Seconds a node's engine is given, at each (re)connecting, to tell the exits its manager has
# not heard of yet (it answers in milliseconds; a node that hangs must not hold the opening).
NODE_ASK_TIMEOUT = 2.0


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _ns(moment: datetime | None) -> int:
    if moment is None:
        return 0
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


async def get_tasks(manager: DockerEngine, service_ids: Sequence[str]) -> list[TaskView]:
    """The tasks of these services, in one call on the manager."""
    if not service_ids:
        return []
    params = {"filters": json.dumps({"service": list(service_ids)})}
    return [task_view(t) for t in await manager.request("tasks", "tasks", params=params)]


@dataclass(slots=True)
class TrackedJob:
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

    def exit_unheard(self, task: TaskView | None) -> tuple[int, int] | None:
        """The exit its node told (or the give-up's), while the manager's task for it does not
        say it ended yet: what ``inspect`` and the listing say instead."""
        return self.exit if task is not None and not task.ended else None

    def attributes(self, **extra: str) -> dict[str, str]:
        return {**self.labels, "name": self.name, **extra}


class TaskTracker:
    """The session's jobs on a swarm, followed: their tasks polled on ``manager``, the nodes'
    events taken as hints, as container events to ``emit`` (set by ``bind``).

    Args:
        manager: The manager's engine, open.
        nodes: The swarm's nodes: their hostnames, which are down.
        poll_interval: Seconds between task polls while any started job has not ended.
        node_down_grace: Seconds a job's node may be down before the job is given up.
        write_name: Writes a name given while a job ran to its service, once the run has
            ended (False: not yet, asked again after the next poll).
    """

    def __init__(
        self, manager: DockerEngine, nodes: SwarmNodes, *, poll_interval: float,
        node_down_grace: float, write_name: Callable[[str], Awaitable[bool]],
    ) -> None:  # fmt: skip
        self._manager = manager
        self._nodes = nodes
        self.poll_interval = poll_interval
        self.node_down_grace = node_down_grace
        self._write_name = write_name
        self._jobs: dict[str, TrackedJob] = {}  # service id -> what the poller knows
        self.polled: set[str] = set()  # started and not ended: what each poll asks for
        self._wake = asyncio.Event()
        self.emit: Callable[[ContainerEvent], None] | None = None
        self._labels: list[str] = []
        # Services made or changed (by anyone) to read: their first event, and how many came.
        self.to_learn: dict[str, tuple[str, int, int]] = {}
        self._to_name: set[str] = set()  # ended jobs whose new name the service must get
        self._removed: dict[str, None] = {}  # services seen removed, oldest first (bounded)
        self.polls = 0  # task polls made (the benchmark's calls on the manager)

    def bind(self, emit: Callable[[ContainerEvent], None], labels: Sequence[str]) -> None:
        """Where the events go, and the session's labels (whose services are ours)."""
        self.emit, self._labels = emit, list(labels)

    # -- the jobs, as the engine's calls change them --------------------------------------------

    def get(self, sid: str) -> TrackedJob | None:
        return self._jobs.get(sid)

    def made(self, sid: str, labels: Mapping[str, str], name: str) -> None:
        """A job this tracker made (not started)."""
        self._jobs[sid] = TrackedJob(dict(labels), name)

    def job(self, service: Mapping[str, Any]) -> TrackedJob:
        """The job of a service, as this tracker knows it (noted if new)."""
        sid = str(service["ID"])
        job = self._jobs.get(sid)
        spec = service.get("Spec") or {}
        labels = dict(spec.get("Labels") or {})
        if job is None:
            job = self._jobs[sid] = TrackedJob(
                labels, str(labels.get(NAME_LABEL) or spec.get("Name"))
            )
        if job.run is None:
            job.run = run_of(service)
        return job

    def follow(self, sid: str) -> None:
        """Poll the job's tasks until its run ends."""
        self.polled.add(sid)
        self._wake.set()

    def run_started(self, service: Mapping[str, Any], run: int) -> None:
        """A job this tracker started: its run (``JobIteration``) is followed."""
        self.job(service).run = run
        self.follow(str(service["ID"]))

    def killed(self, sid: str, job: TrackedJob) -> None:
        """A job terminated by an update: its run's task goes away instead of ending."""
        job.killed = True
        self.follow(sid)

    def renamed(self, sid: str, job: TrackedJob, name: str, *, running: bool) -> None:
        """The job's new name; ``running``: ours at once, its service's when the run ends."""
        job.name = name
        if running:
            job.pending_name = name
            self._send(sid, "rename", time.time_ns(), job)

    def forget(self, sid: str) -> None:
        """A job whose service this tracker removed."""
        self.polled.discard(sid)
        self._jobs.pop(sid, None)

    # -- nodes ---------------------------------------------------------------------------------

    async def read_nodes(self) -> None:
        """The manager's word on each node: its hostname, and whether it is down."""
        for node_id, down in await self._nodes.read():
            if down:
                self._nodes.went_down(node_id, time.time_ns())
            else:
                self._came_back(node_id)

    def _came_back(self, node_id: str) -> None:
        self._nodes.came_back(node_id)
        for sid in list(self.polled):  # its jobs that still run are found again: RUNNING
            job = self._jobs.get(sid)
            if job is None or not job.lost_reported or job.ended.is_set():
                continue
            if job.task is not None and job.task.node_id == node_id:
                job.lost_reported = False
                self._send(sid, "start", time.time_ns(), job)

    def _report_lost(self, at: int) -> None:
        """The followed jobs running on a node that is down, not yet said: UNDETERMINED."""
        for sid in list(self.polled):
            job = self._jobs.get(sid)
            if job is None or job.lost_reported or job.ended.is_set() or not job.started_ns:
                continue
            if job.task is not None and job.task.node_id in self._nodes.down:
                job.lost_reported = True
                self._send(sid, "lost", at, job)

    # -- the poller ----------------------------------------------------------------------------

    async def catch_up(self) -> None:
        """After (re)connecting: every job of the session the poller must follow."""
        await self.read_nodes()
        params = {"filters": json.dumps({"label": self._labels})}
        for service in await self._manager.request("list", "services", params=params) or ():
            job = self.job(service)
            if job.run is not None and not job.ended.is_set():
                self.polled.add(str(service["ID"]))
        await self._poll()
        await self._ask_nodes()

    async def _ask_nodes(self) -> None:
        """The followed jobs the manager says are running, asked of their nodes' engines (those
        given): a node knows of an exit before its manager does (63 ms median, 88 max, on a
        quiet host here), and a die its stream told before this tracker listened is not told
        again. The nodes at once, each given ``NODE_ASK_TIMEOUT``: per node, one listing of
        the exited among them (per 100 jobs), an inspect for each exit found. What a node
        does not tell in time is left to the poller."""
        on_node: dict[str, dict[str, str]] = {}  # node id -> {task container: service id}
        for sid in self.polled:
            job = self._jobs.get(sid)
            task = None if job is None else job.task
            if task is None or task.ended or not task.container_id:
                continue
            if task.node_id not in self._nodes.down:
                on_node.setdefault(task.node_id, {})[task.container_id] = sid
        async with anyio.create_task_group() as tg:
            for node_id, containers in on_node.items():
                engine = self._nodes.engine(node_id)
                if engine is not None:
                    tg.start_soon(self._ask_node, node_id, engine, containers)

    async def _ask_node(
        self, node_id: str, engine: DockerEngine, containers: dict[str, str]
    ) -> None:
        with anyio.move_on_after(NODE_ASK_TIMEOUT) as scope:
            try:
                for chunk in _chunks(sorted(containers), 100):
                    exited = await engine.list_containers(
                        None, filters={"id": chunk, "status": ["exited"]}
                    )
                    for c in exited:
                        await self._ask_exit(
                            engine, c.container_id, containers.get(c.container_id, "")
                        )
            except (EngineCallError, EngineConnectionError) as exc:
                log.debug("swarm: node %s not asked for exits: %s", node_id, exc)
        if scope.cancelled_caught:
            log.debug(
                "swarm: node %s not done telling exits within %g s", node_id, NODE_ASK_TIMEOUT
            )

    async def _ask_exit(self, engine: DockerEngine, container: str, sid: str) -> None:
        """One exited task container's exit, from its node (gone since: the manager tells)."""
        job = self._jobs.get(sid)
        if job is None or job.ended.is_set():
            return
        try:
            d = await engine.inspect(container)
        except EngineCallError as exc:
            log.debug("swarm: exited task container %s not read: %s", container, exc)
            return
        if not d.running and d.finished_at is not None and not job.ended.is_set():
            self._node_exit(sid, job, d.exit_code, _ns(d.finished_at))

    async def poll_forever(self) -> NoReturn:
        while True:
            if not self.polled and not self.to_learn and not self._to_name:
                self._wake.clear()
                await self._wake.wait()
            for sid in list(self._to_name):
                if await self._write_name(sid):
                    self._to_name.discard(sid)
            if self.to_learn:
                await self._learn_all()
            await self._poll()
            await asyncio.sleep(self.poll_interval)

    async def _poll(self) -> None:
        """One ``GET /tasks`` for every started job that has not ended."""
        if not self.polled:
            return
        self.polls += 1
        for _ in range(5):
            try:
                tasks = await get_tasks(self._manager, sorted(self.polled))
                break
            except EngineCallError as exc:
                if exc.status != 404:
                    raise
                # One of them was removed (a 404 for the whole call): forget those gone, ask
                # again; others may go meanwhile (a cleanup removing many at once).
                await self._drop_removed()
                if not self.polled:
                    return
        else:
            return  # services keep going as we ask: the next poll asks again
        by_service: dict[str, list[TaskView]] = {}
        for t in tasks:
            by_service.setdefault(t.service_id, []).append(t)
        now = time.time_ns()
        down_since = self._nodes.down_since
        for sid in list(self.polled):
            job = self._jobs.get(sid)
            if job is None or job.run is None:
                self.polled.discard(sid)
                continue
            task = latest([t for t in by_service.get(sid, []) if t.iteration == job.run])
            if task is not None and not task.ended and task.node_id in down_since:
                job.task = task
                self._report_lost(now)
                down_ns = now - down_since[task.node_id]
                if down_ns > self.node_down_grace * 1e9:
                    self._given_up(sid, job, now)
            elif task is not None:
                self._observe(sid, job, task)
            elif job.killed or job.task is not None:
                # Its task is gone before we saw it end: removed by a terminate.
                self._died(sid, job, 137, time.time_ns())

    async def _drop_removed(self) -> None:
        """Forget the followed jobs whose services are gone (their remove events may still be
        on their way)."""
        params = {"filters": json.dumps({"id": sorted(self.polled)})}
        services = await self._manager.request("list", "services", params=params) or ()
        present = {str(s["ID"]) for s in services}
        for sid in self.polled - present:
            self.polled.discard(sid)
            gone = self._jobs.pop(sid, None)
            if gone is not None:
                self._send(sid, "destroy", time.time_ns(), gone)

    # -- a job's events ------------------------------------------------------------------------

    def _observe(self, sid: str, job: TrackedJob, task: TaskView, *, time_ns: int = 0) -> None:
        """A task's state, seen by a poll or a hint: the events it implies, once each."""
        job.task = task
        at = time_ns or _ns(task.timestamp)
        if task.status == "running" and not job.started_ns:
            self._started(sid, job, at)
        elif task.ended and not job.ended.is_set():
            if not job.started_ns and task.container_id:
                self._started(sid, job, at - 1)
            self._died(sid, job, task.exit_code or 0, at)

    def _node_exit(self, sid: str, job: TrackedJob, code: int, at: int) -> None:
        """An exit its node told, before the manager knows it: the job's end (``inspect`` and
        the listing say so too until the manager catches up)."""
        job.exit = (code, at)
        if not job.started_ns:
            self._started(sid, job, at - 1)
        self._died(sid, job, code, at)

    def _given_up(self, sid: str, job: TrackedJob, at: int) -> None:
        """Its node stayed down past the grace: FAILED, how it ended unknown (255)."""
        node = job.task.node_id if job.task is not None else ""
        job.lost = (f"its node {self._nodes.hostname(node)} was down for more than "
                    f"{self.node_down_grace:g} s: how the job ended is unknown")  # fmt: skip
        job.exit = (255, at)
        self._died(sid, job, 255, at)

    def _started(self, sid: str, job: TrackedJob, at: int) -> None:
        job.started_ns = at
        self._send(sid, "start", at, job)

    def _died(self, sid: str, job: TrackedJob, code: int, at: int) -> None:
        if job.ended.is_set():
            return  # one die per run, whoever tells it first
        job.ended.set()
        self.polled.discard(sid)
        self._send(sid, "die", at, job, exitCode=str(code))
        if job.pending_name:
            self._to_name.add(sid)  # the poller's task writes it to the service
            self._wake.set()

    def _send(self, sid: str, action: str, at: int, job: TrackedJob, **extra: str) -> None:
        # A job's events come from several clocks (the nodes', the manager's, this host's):
        # each is stamped after the last, or the cache would drop one as stale.
        at = job.last_ns = max(at, job.last_ns + 1)
        if self.emit is not None:
            self.emit(ContainerEvent(sid, action, at, job.attributes(**extra)))

    # -- the manager's events: services and nodes ------------------------------------------------

    def swarm_event(self, raw: Any) -> None:
        kind, action = raw.get("Type"), raw.get("Action")
        actor = raw.get("Actor") or {}
        at = int(raw.get("timeNano") or 0)
        if kind == "node" and action == "update":
            attrs = actor.get("Attributes") or {}
            node_id = str(actor.get("ID") or "")
            if attrs.get("state.new") == "down":
                self._nodes.went_down(node_id, at)
                self._report_lost(at)
            elif attrs.get("state.new") == "ready":
                self._came_back(node_id)
            return
        if kind != "service":
            return
        sid = str(actor.get("ID") or "")
        if action == "remove":
            gone = self._jobs.pop(sid, None)
            self.polled.discard(sid)
            self.to_learn.pop(sid, None)
            self._removed[sid] = None  # a learn in flight must not bring it back
            while len(self._removed) > 4096:
                del self._removed[next(iter(self._removed))]
            if gone is not None:
                self._send(sid, "destroy", at, gone)
            elif self.emit is not None:  # made and removed before we learnt of it
                self.emit(ContainerEvent(sid, "destroy", at, {}))
        elif action in ("create", "update"):
            first, first_at, count = self.to_learn.get(sid, (action, at, 0))
            self.to_learn[sid] = (first, first_at, count + 1)  # read by the poller's task
            self._wake.set()

    async def _learn_all(self) -> None:
        """The services made or changed since the last look (by anyone: a service event
        names no session), read in one call that keeps only this session's. A manager that
        does not answer: tried again after the next poll."""
        queued = dict(self.to_learn)
        filters = {"id": sorted(queued), "label": self._labels}
        try:
            services = await self._manager.request(
                "list", "services", params={"filters": json.dumps(filters)}
            )
        except (EngineConnectionError, EngineCallError) as exc:
            log.debug("swarm: services not learnt yet: %s", exc)
            return
        for sid, entry in queued.items():
            if self.to_learn.get(sid) == entry:  # no event since we asked: read
                del self.to_learn[sid]
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
        job = self.job(service)
        name = str(labels.get(NAME_LABEL) or job.name)
        if not known and action == "create":
            self._send(sid, "create", at, job)
        elif name != job.name:
            job.name = name
            self._send(sid, "rename", at, job)
        if job.run is not None and not job.ended.is_set():
            self.follow(sid)

    # -- the nodes' events: hints ----------------------------------------------------------------

    def hint(self, node: DockerEngine, event: ContainerEvent) -> None:
        """A task container's event on its node: the die at once, pause state, and where the
        run's container is (before the manager's task list says so)."""
        sid = event.attributes.get(TASK_SERVICE, "")
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
                self._node_exit(sid, job, int(code) if code.lstrip("-").isdigit() else 0,
                                event.time_ns)  # fmt: skip
        elif event.action == "start" and not job.started_ns:
            self._started(sid, job, event.time_ns)
