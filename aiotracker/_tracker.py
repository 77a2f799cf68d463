"""The public tracker: DRMAA2 job tracking over the Docker Engine API, driven by events.

One ``DockerTracker`` owns, in one task group: the event pump (reads ``GET /events`` and
queues events, never blocking the socket), the processor (applies events to the cache and
wakes waiters), inspect tasks (one per ``die``, for the exit status), one output copier per
running job with output files, and one launcher per array job. Nothing polls.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from ._cache import ACTIVE, TERMINAL, Change, StateCache, Waiter, Wakeups
from ._docker import DockerClient, EngineInfo, is_container_id
from ._exceptions import (
    DrmCommunicationError,
    InvalidArgumentError,
    InvalidStateError,
    JobNotFoundError,
    TrackerClosedError,
    TrackerError,
    WaitTimeoutError,
)
from ._mapping import (
    ARRAY_LABEL,
    ARRAY_MAX_PARALLEL_LABEL,
    ARRAY_SIZE_LABEL,
    HELD_SUFFIX,
    MANAGED_LABEL,
    SESSION_LABEL,
    TEMPLATE_LABEL,
    TERMINATED_SUFFIX,
    ArrayTask,
    base_name,
    create_config,
    decode_template_label,
    job_info_from_details,
    state_from_summary,
    task_indexes,
    task_name,
    validate_job_name,
)
from ._model import JobControlAction, JobInfo, JobState, JobTemplate
from ._output import (
    OutputFiles,
    OutputPlan,
    check_input_path,
    check_stage_in,
    has_partial,
    plan_output,
)
from ._records import ContainerDetails, ContainerEvent

log = logging.getLogger("aiotracker")

T = TypeVar("T")
_Source = Literal["attach", "replay", "logs"]

_DEDUPE_WINDOW = 1024
_CREATE_DEADLINE = 60.0  # seconds a create may take once sent, even while closing

# DRMAA2's parametric index placeholder: replaced by the task index in an array task's paths.
INDEX_PLACEHOLDER = "$DRMAA2_INDEX$"


@dataclass(frozen=True, slots=True)
class TrackerStatistics:
    """A snapshot of the tracker's bookkeeping, for tests and monitoring."""

    jobs: int
    waiters: int
    arrays: int
    connected: bool
    reconnects: int
    events: int
    inspects: int
    output_streams: int
    tasks: int


@dataclass(frozen=True, slots=True)
class _Launch:
    """What starting a job needs besides its container: where output goes, what stdin reads."""

    plan: OutputPlan
    input_path: str


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A job checked and mapped, ready to be created."""

    config: dict[str, Any]
    name: str
    launch: _Launch
    hold: bool


class _Array:
    """An array job this tracker launches: its bound and the launcher's wake-up."""

    __slots__ = ("array_id", "launches", "lock", "max_parallel", "size", "wake")

    def __init__(self, array_id: str, size: int, max_parallel: int) -> None:
        self.array_id = array_id
        self.size = size
        self.max_parallel = max_parallel
        # How to start each task, known to the tracker that made the array (else: its label).
        self.launches: dict[str, _Launch] = {}
        self.wake = asyncio.Event()
        # Held by the launcher from its state check to the start's return, and by hold,
        # release and terminate of a queued task: neither sees the other half done.
        self.lock = asyncio.Lock()


class DockerTracker:
    """Runs DRMAA2 jobs as Docker containers of one job session and tracks them.

    Use it as an async context manager (or ``await tracker.open()`` / ``await
    tracker.aclose()``). Opening connects to the engine (``DrmCommunicationError`` at once if it
    does not answer), starts the event stream and seeds the state cache from the containers
    labelled with the session, so jobs made earlier, by another process or by the Go drmaa2os
    tracker, are tracked too.

    Args:
        job_session: The session name; jobs carry it as the ``drmaa2_jobsession`` label.
        docker_url: The engine (``unix:///...`` or ``tcp://...``); None: ``DOCKER_HOST``,
            then the local socket.
        connection_limit: Pool size for API calls. The event stream and the output streams of
            running jobs use a pool of their own.
        engine_timeout: Seconds without the engine after which pending waits fail with
            ``DrmCommunicationError`` (the tracker keeps reconnecting).
        labels: Extra labels put on every container this tracker makes.
    """

    def __init__(
        self,
        job_session: str,
        *,
        docker_url: str | None = None,
        connection_limit: int = 32,
        engine_timeout: float = 30.0,
        labels: dict[str, str] | None = None,
        max_inspects: int = 16,
    ) -> None:
        if not isinstance(job_session, str) or not job_session or "\x00" in job_session:
            raise InvalidArgumentError("job_session must be a non-empty string")
        if connection_limit < 2:
            raise InvalidArgumentError("connection_limit must be at least 2")
        if not engine_timeout > 0:
            raise InvalidArgumentError("engine_timeout must be positive")
        self.job_session = job_session
        self._client = DockerClient(docker_url, connection_limit=connection_limit)
        self._engine_timeout = engine_timeout
        self._labels = dict(labels or {})
        self._cache = StateCache()
        self._arrays: dict[str, _Array] = {}
        self._engine = EngineInfo("", 0, "")
        self._host_task: asyncio.Task[None] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing: asyncio.Event | None = None
        self._closed = False
        self._queue: asyncio.Queue[ContainerEvent] = asyncio.Queue()
        self._recent: collections.deque[tuple[str, str, int]] = collections.deque()
        self._recent_set: set[tuple[str, str, int]] = set()
        self._last_event_ns = 0
        self._connected = False
        self._outage_since: float | None = None
        self._engine_lost = False
        self._reconnects = 0
        self._events = 0
        self._inspects = 0
        self._inspect_limit = asyncio.Semaphore(max_inspects)
        self._inspecting: dict[str, bool] = {}
        self._copiers: dict[str, anyio.CancelScope] = {}
        self._tasks = 0
        self._submission_host = socket.gethostname()

    # -- life cycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Connect, start the event stream and seed the cache; returns when the tracker is ready."""
        if self._host_task is not None or self._closed:
            raise InvalidStateError("a tracker can be opened once")
        self._closing = asyncio.Event()
        self._engine = await self._client.open()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._host_task = asyncio.create_task(
            self._host(ready), name=f"aiotracker:{self.job_session}"
        )
        try:
            await ready
        except BaseException:
            await self._stop()
            raise

    async def aclose(self) -> None:
        """Stop every background task and close every connection. Pending waits fail with
        ``TrackerClosedError``; jobs keep running in Docker. Safe to call twice."""
        if self._closed:
            return
        await self._stop()

    async def _stop(self) -> None:
        self._closed = True
        self._cache.fail_all(None, TrackerClosedError("the tracker was closed")).resolve()
        if self._closing is not None:
            self._closing.set()
        task, self._host_task = self._host_task, None
        if task is not None:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise
            except Exception:
                log.exception("the tracker's background work failed")
        await self._client.close()

    async def _host(self, ready: asyncio.Future[None]) -> None:
        """Own the task group: started by open(), ended by aclose(), whatever task calls them."""
        assert self._closing is not None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self._pump, self._engine.system_time_ns)
                await self._seed(self._engine.system_time_ns)
                tg.start_soon(self._process)
                ready.set_result(None)
                await self._closing.wait()
                tg.cancel_scope.cancel()
        except BaseException as exc:
            if ready.done():
                raise
            if isinstance(exc, asyncio.CancelledError):
                ready.cancel()
            else:
                ready.set_exception(_first_error(exc))
        finally:
            self._tg = None
            self._closed = True
            self._cache.fail_all(None, TrackerClosedError("the tracker stopped")).resolve()

    def _check_open(self) -> anyio.abc.TaskGroup:
        if self._closed or self._tg is None:
            raise TrackerClosedError("the tracker is not open")
        return self._tg

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<DockerTracker session={self.job_session!r} jobs={len(self._cache)} "
            f"waiters={self._cache.waiter_count} {state}>"
        )

    def statistics(self) -> TrackerStatistics:
        """Counts that let tests prove nothing leaks (waiters, tasks, streams)."""
        return TrackerStatistics(
            jobs=len(self._cache),
            waiters=self._cache.waiter_count,
            arrays=len(self._arrays),
            connected=self._connected,
            reconnects=self._reconnects,
            events=self._events,
            inspects=self._inspects,
            output_streams=len(self._copiers),
            tasks=self._tasks,
        )

    # -- the event stream ---------------------------------------------------------------

    async def _pump(self, since_ns: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Keep one event stream open, forever: reconnect with backoff, replay with since."""
        started = False
        backoff = 0.05
        while True:

            def connected() -> None:
                nonlocal started, backoff
                self._connected = True
                backoff = 0.05
                if not started:
                    started = True
                    task_status.started()
                    return
                if self._outage_since is not None:
                    log.warning("event stream of session %r reconnected", self.job_session)
                self._outage_since = None
                self._engine_lost = False
                self._spawn_background(self._reconcile)

            since = self._last_event_ns or since_ns
            try:
                await self._client.stream_events(
                    [f"{SESSION_LABEL}={self.job_session}"], since, connected, self._on_event
                )
            except DrmCommunicationError as exc:
                if not started:
                    raise
                self._connected = False
                now = time.monotonic()
                if self._outage_since is None:
                    self._outage_since = now
                    self._reconnects += 1
                    log.warning(
                        "event stream of session %r lost (%s); reconnecting", self.job_session, exc
                    )
                elif not self._engine_lost and now - self._outage_since > self._engine_timeout:
                    self._engine_lost = True
                    log.error(
                        "engine away for over %.0f s: failing pending waits", self._engine_timeout
                    )
                    self._cache.fail_all(
                        None, DrmCommunicationError("the Docker engine has been unreachable")
                    ).resolve()
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _on_event(self, event: ContainerEvent) -> None:
        """On the read path: de-duplicate (``since`` is inclusive) and queue. Never blocks."""
        key = event.key
        if key in self._recent_set:
            return
        self._recent.append(key)
        self._recent_set.add(key)
        if len(self._recent) > _DEDUPE_WINDOW:
            self._recent_set.discard(self._recent.popleft())
        self._last_event_ns = max(self._last_event_ns, event.time_ns)
        self._events += 1
        self._queue.put_nowait(event)

    async def _process(self) -> None:
        """Apply queued events to the cache in order; an inspect follows each die."""
        queue = self._queue
        while True:
            event = await queue.get()
            while True:
                wakeups, changes, inspect = self._cache.apply(event)
                wakeups.resolve()
                self._on_changes(changes)
                if inspect:
                    self._schedule_inspect(event.container_id, event)
                try:
                    event = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break

    def _schedule_inspect(self, job_id: str, event: ContainerEvent | None = None) -> None:
        if job_id in self._inspecting:
            self._inspecting[job_id] = True  # inspect again when the running one returns
            return
        self._inspecting[job_id] = False
        self._spawn_background(self._inspect_and_settle, job_id, event)

    async def _inspect_and_settle(self, job_id: str, event: ContainerEvent | None) -> None:
        try:
            while True:
                await self._refresh(job_id, event)
                if not self._inspecting.get(job_id):
                    return
                self._inspecting[job_id] = False  # asked for again meanwhile
        finally:
            self._inspecting.pop(job_id, None)

    async def _refresh(self, job_id: str, die: ContainerEvent | None = None) -> None:
        """Inspect a job and apply what the engine says, again if an event overtook it."""
        while True:
            seq = self._cache.seq(job_id)
            async with self._inspect_limit:
                self._inspects += 1
                try:
                    details = await self._client.inspect(job_id)
                except JobNotFoundError:
                    if die is not None and die.action == "die":
                        # Removed at once (AutoRemove): the die's exit code is all there is.
                        code = _int(die.attributes.get("exitCode"), default=1)
                        self._apply(self._cache.settle_exit(job_id, code))
                    self._apply(self._cache.forget(job_id))
                    return
                except DrmCommunicationError:
                    return  # the reconcile after the reconnect settles it
            if details.labels.get(SESSION_LABEL) != self.job_session:
                return
            result = self._cache.settle(details, seq)
            if result is not None:
                self._apply(result)
                return

    def _apply(self, result: tuple[Wakeups, list[Change]] | None) -> None:
        if result is None:
            return
        wakeups, changes = result
        wakeups.resolve()
        self._on_changes(changes)

    def _on_changes(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.array_id is None:
                continue
            array = self._arrays.get(change.array_id)
            if array is not None:
                array.wake.set()

    async def _seed(self, version_ns: int) -> None:
        """Fill the cache from the session's containers (list; inspect only where needed)."""
        summaries = await self._client.list_containers(f"{SESSION_LABEL}={self.job_session}")
        unknown: list[str] = []
        for s in summaries:
            state = state_from_summary(s.state, s.status, s.name)
            if state is None:
                unknown.append(s.container_id)
                continue
            recovery = self._output_recovery(state, s.labels)
            self._apply(
                self._cache.add(
                    s.container_id, state, labels=dict(s.labels), version_ns=version_ns,
                    ever_started=s.state != "created", output_pending=recovery is not None,
                )
            )  # fmt: skip
            if recovery is not None:
                self._spawn_background(self._copy_output_soon, s.container_id, *recovery)
        await self._inspect_many(unknown)
        # Arrays found at opening are this tracker's to launch.
        for s in summaries:
            array_id = s.labels.get(ARRAY_LABEL)
            if array_id and array_id not in self._arrays and MANAGED_LABEL in s.labels:
                self._add_array(
                    array_id,
                    int(s.labels.get(ARRAY_SIZE_LABEL, "0") or 0),
                    int(s.labels.get(ARRAY_MAX_PARALLEL_LABEL, "0") or 0),
                )

    def _output_recovery(
        self, state: JobState, labels: Mapping[str, str]
    ) -> tuple[OutputPlan, _Source] | None:
        """At opening: a running job's output is resumed (replaying the log); a finished job's
        is rewritten from the log if its copy was interrupted (a partial file is left)."""
        label = labels.get(TEMPLATE_LABEL)
        if MANAGED_LABEL not in labels or not label:
            return None
        try:
            plan = plan_output(decode_template_label(label), os.getcwd())
        except InvalidArgumentError:
            return None  # its paths are not writable from here: nothing to recover into
        if not plan.wanted:
            return None
        if state in ACTIVE:
            return plan, "replay"
        if state in TERMINAL and has_partial(plan):
            return plan, "logs"
        return None

    async def _inspect_many(self, job_ids: list[str]) -> None:
        async with anyio.create_task_group() as tg:
            for job_id in job_ids:
                tg.start_soon(self._refresh, job_id)

    async def _reconcile(self) -> None:
        """After a reconnect: list and inspect, so that nothing lost in the gap stays lost."""
        try:
            summaries = await self._client.list_containers(f"{SESSION_LABEL}={self.job_session}")
        except DrmCommunicationError:
            return  # the stream will break again and the next reconnect reconciles
        present = {s.container_id for s in summaries}
        for job in list(self._cache):
            if job.job_id not in present:
                self._apply(self._cache.forget(job.job_id))
        # Inspect everything not known to be final: states may have moved in the gap.
        todo = [
            s.container_id for s in summaries
            if (known := self._cache.get(s.container_id)) is None or known.state not in TERMINAL
        ]  # fmt: skip
        await self._inspect_many(todo)
        for array in self._arrays.values():
            array.wake.set()

    # -- owned tasks --------------------------------------------------------------------

    def _spawn_background(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        tg = self._tg
        if tg is None:
            return

        async def run() -> None:
            self._tasks += 1
            try:
                await fn(*args)
            except TrackerError as exc:
                log.warning("background %s failed: %s", getattr(fn, "__name__", fn), exc)
            finally:
                self._tasks -= 1

        tg.start_soon(run)

    async def _owned(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn`` in the tracker's task group and await it from the caller.

        A cancelled caller does not cancel the work: a job being made is finished (or cleaned
        up) by the tracker, never left half-made. Closing the tracker cancels it.
        """
        tg = self._check_open()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            self._tasks += 1
            try:
                result = await fn(*args)
            except asyncio.CancelledError:
                if not future.done():
                    future.set_exception(TrackerClosedError("the tracker was closed"))
                raise
            except BaseException as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
            finally:
                self._tasks -= 1

        future.add_done_callback(_retrieve)
        tg.start_soon(run)
        return await asyncio.shield(future)

    # -- lookups ------------------------------------------------------------------------

    async def _known(self, job_id: str) -> str:
        """The full id of a job of this session; inspect only for ids the cache lacks."""
        if not isinstance(job_id, str):
            raise JobNotFoundError(f"job ids are strings, got {job_id!r}", job_id=str(job_id))
        if job_id in self._cache:
            return job_id
        if not is_container_id(job_id):
            raise JobNotFoundError(f"no job {job_id!r} in this session", job_id=job_id)
        details = await self._client.inspect(job_id)
        if details.labels.get(SESSION_LABEL) != self.job_session:
            raise JobNotFoundError(f"no job {job_id!r} in this session", job_id=job_id)
        if details.container_id not in self._cache:
            # Made by another tracker, and its create event has not arrived yet.
            self._apply(self._cache.settle(details))
        return details.container_id

    async def _details(self, job_id: str) -> ContainerDetails:
        full = await self._known(job_id)
        details = await self._client.inspect(full)
        if details.labels.get(SESSION_LABEL) != self.job_session:
            raise JobNotFoundError(f"no job {job_id!r} in this session", job_id=job_id)
        return details

    # -- the DRMAA2 job tracker ---------------------------------------------------------

    async def add_job(self, template: JobTemplate) -> str:
        """Create and start a container for ``template``; returns the job id (the container id).

        Raises ``InvalidArgumentError`` for a bad template (nothing is created),
        ``ImageNotFoundError`` if the image is not present (nothing is pulled), and
        ``InvalidArgumentError`` if the command cannot start (the container is removed). With
        ``submit_as_hold`` the job is created QUEUED_HELD and starts on ``release``.
        """
        self._check_open()
        if not isinstance(template, JobTemplate):
            raise InvalidArgumentError("add_job takes a JobTemplate")
        return await self._owned(self._submit, self._prepare(template))

    def _prepare(
        self, template: JobTemplate, array_task: ArrayTask | None = None, index: int = 0
    ) -> _Prepared:
        """Everything checked and computed before a container is made (no engine call)."""
        cwd = os.getcwd()
        if array_task is not None:
            # Each task: its own TASK_ID and name, and DRMAA2's index placeholder in its paths.
            env = {**template.job_environment, "TASK_ID": str(index)}
            template = template.replace(
                job_environment=env,
                job_name=task_name(template.job_name, index),
                **{
                    field: getattr(template, field).replace(INDEX_PLACEHOLDER, str(index))
                    for field in ("output_path", "error_path", "input_path")
                },
            )
        config = create_config(
            self.job_session, template, cwd=cwd, labels=self._labels,
            submission_host=self._submission_host, array_task=array_task,
        )  # fmt: skip
        if template.job_name:
            validate_job_name(template.job_name)
        plan = plan_output(template, cwd)
        input_path = check_input_path(template.input_path, cwd) if template.input_path else ""
        check_stage_in(template, cwd)
        name = template.job_name or f"aiotracker-{uuid.uuid4().hex[:16]}"
        if template.submit_as_hold:
            name += HELD_SUFFIX
        return _Prepared(config, name, _Launch(plan, input_path), template.submit_as_hold)

    async def _submit(self, job: _Prepared) -> str:
        job_id = await self._create(job.config, job.name)
        try:
            if not job.hold:
                await self._start(job_id, job.launch, remove_on_failure=True)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._discard(job_id)
            raise
        return job_id

    async def _create(self, config: dict[str, Any], name: str) -> str:
        """Create a job's container; the caller removes it if anything after this fails."""
        await anyio.lowlevel.checkpoint()  # a pending cancellation stops us before, not during
        # Shielded: a create cut short may still be carried out by the engine, after any attempt
        # to remove it; waiting for the answer (a few ms) gives the id to remove.
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + _CREATE_DEADLINE
            job_id = await self._client.create(config, name)
        if scope.cancelled_caught:  # pragma: no cover - an engine that hangs on create
            with anyio.CancelScope(shield=True), contextlib.suppress(TrackerError):
                await self._client.remove(name, force=True)
            raise DrmCommunicationError(f"the engine did not create {name} in time")
        state = JobState.QUEUED_HELD if name.endswith(HELD_SUFFIX) else JobState.QUEUED
        self._apply(self._cache.add(job_id, state, labels=config["Labels"]))
        return job_id

    async def _discard(self, job_id: str) -> None:
        with contextlib.suppress(TrackerError):
            await self._client.remove(job_id, force=True)
        self._apply(self._cache.forget(job_id))

    async def _start(self, job_id: str, launch: _Launch, *, remove_on_failure: bool) -> None:
        """Attach the output (before start: nothing is missed), feed stdin, then start."""
        tg = self._check_open()
        started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if launch.plan.wanted:
            await tg.start(self._copy_output, job_id, launch.plan, "attach", started)
        if launch.input_path:
            tg.start_soon(self._feed_input, job_id, launch.input_path)
        try:
            await self._client.start(job_id)
        except BaseException as exc:
            started.set_result(False)  # the copier closes without creating any file
            if remove_on_failure or not isinstance(exc, TrackerError):
                raise
            if isinstance(exc, DrmCommunicationError):
                raise
            # An array task that cannot start ends FAILED (State.Error says why).
            self._schedule_inspect(job_id)
            return
        started.set_result(True)
        self._apply(self._cache.mark_started(job_id))

    async def _copy_output(
        self, job_id: str, plan: OutputPlan, source: _Source,
        job_started: asyncio.Future[bool] | None,
        *, task_status: anyio.abc.TaskStatus[None],
    ) -> None:  # fmt: skip
        """Copy the job's output to its files until the job ends.

        ``source``: "attach" before a start; "replay" (attach with the log so far) for a job
        found running when the tracker opened; "logs" for one that finished meanwhile.
        """
        files = OutputFiles(plan)
        self._cache.begin_output(job_id)
        self._tasks += 1
        attached = False
        try:
            with anyio.CancelScope() as scope:
                self._copiers[job_id] = scope
                # An attach that fails raises out of tg.start(): the job is not started.
                if source == "logs":
                    reader = self._client.read_logs(job_id)
                else:
                    reader = self._client.attach_output(job_id, logs=source == "replay")
                async with reader as read:
                    files.open()
                    task_status.started()
                    attached = True
                    while (frame := await read()) is not None:
                        files.write(frame[0], frame[1])
                # A start that fails also ends the stream: then no file is left.
                if job_started is None or await job_started:
                    files.finish()
                else:
                    files.abort()
        except TrackerError as exc:
            if not attached:
                raise
            log.warning("output of job %s is incomplete: %s", job_id, exc)
        finally:
            self._tasks -= 1
            files.close()
            self._copiers.pop(job_id, None)
            self._apply(self._cache.output_done(job_id))

    async def _feed_input(self, job_id: str, path: str) -> None:
        try:
            # Small blocking reads of a local file, 64 KiB at a time, between socket writes.
            with open(path, "rb") as source:  # noqa: ASYNC230
                await self._client.feed_stdin(job_id, source)
        except TrackerError as exc:
            log.warning("stdin of job %s not fed: %s", job_id, exc)

    async def _copy_output_soon(self, job_id: str, plan: OutputPlan, source: _Source) -> None:
        tg = self._check_open()
        try:
            await tg.start(self._copy_output, job_id, plan, source, None)
        except TrackerError as exc:
            log.warning("output of job %s not recovered: %s", job_id, exc)
            self._apply(self._cache.output_done(job_id))

    async def _start_released(self, job_id: str, launch: _Launch) -> None:
        await self._start(job_id, launch, remove_on_failure=False)

    async def _launch_of(self, job_id: str) -> _Launch:
        """How to start a job made earlier (held, or found at opening): from its label."""
        template = await self.job_template(job_id)
        cwd = os.getcwd()
        plan = plan_output(template, cwd)
        input_path = check_input_path(template.input_path, cwd) if template.input_path else ""
        return _Launch(plan, input_path)

    async def list_jobs(self) -> list[str]:
        """The ids of the session's jobs, finished ones too until deleted (from the cache)."""
        self._check_open()
        return [job.job_id for job in self._cache]

    async def job_state(self, job_id: str) -> JobState:
        """The job's state, from the cache: no engine call for a known job.

        A terminal state is published only once the exit status is known and the output
        files are complete. ``JobNotFoundError`` for an id that is not a job of this session.
        """
        self._check_open()
        full = await self._known(job_id)
        return self._cache.require(full).state

    async def job_info(self, job_id: str) -> JobInfo:
        """Everything the engine knows of the job, mapped to DRMAA2 (one inspect)."""
        self._check_open()
        details = await self._details(job_id)
        info = job_info_from_details(details, engine_host=self._engine.host_name, now=_utcnow())
        job = self._cache.get(details.container_id)
        if job is not None and info.state.is_terminal and not job.state.is_terminal:
            # Docker has finished, the tracker has not (output still being written).
            info = _replace(info, state=job.state)
        return info

    async def job_template(self, job_id: str) -> JobTemplate:
        """The template the job was submitted with, read back from its label."""
        self._check_open()
        details = await self._details(job_id)
        label = details.labels.get(TEMPLATE_LABEL)
        if label is None:
            raise JobNotFoundError(f"job {job_id} has no job template label", job_id=job_id)
        return decode_template_label(label)

    async def job_control(self, job_id: str, action: JobControlAction | str) -> None:
        """Suspend (docker pause: every process), resume, hold, release or terminate a job.

        Hold and release act on jobs that have not started (``submit_as_hold``, queued array
        tasks); terminate kills a running or suspended job (it ends FAILED) and marks a job
        that never started FAILED. An action that makes no sense in the job's state raises
        ``InvalidStateError``; an unknown action ``InvalidArgumentError``.
        """
        self._check_open()
        act = _action(action)
        full = await self._known(job_id)
        job = self._cache.require(full)
        array = self._arrays.get(job.array_id) if job.array_id else None
        if array is not None and act is not JobControlAction.SUSPEND:
            async with array.lock:
                await self._control(full, act)
        else:
            await self._control(full, act)

    async def _control(self, full: str, act: JobControlAction) -> None:
        job = self._cache.require(full)
        state = job.state
        if act is JobControlAction.SUSPEND:
            _require(full, act, state, {JobState.RUNNING})
            await self._client.pause(full)
            self._apply(self._cache.set_state(full, JobState.SUSPENDED))
        elif act is JobControlAction.RESUME:
            _require(full, act, state, {JobState.SUSPENDED})
            await self._client.unpause(full)
            self._apply(self._cache.set_state(full, JobState.RUNNING))
        elif act is JobControlAction.HOLD:
            _require(full, act, state, {JobState.QUEUED, JobState.QUEUED_HELD})
            if state is JobState.QUEUED:
                await self._rename_mark(full, HELD_SUFFIX, JobState.QUEUED_HELD, act)
        elif act is JobControlAction.RELEASE:
            _require(full, act, state, {JobState.QUEUED, JobState.QUEUED_HELD})
            if state is JobState.QUEUED_HELD:
                await self._rename_mark(full, "", JobState.QUEUED, act)
                await self._after_release(full)
        else:
            if state in (JobState.QUEUED, JobState.QUEUED_HELD) and not job.ever_started:
                await self._rename_mark(full, TERMINATED_SUFFIX, JobState.FAILED, act)
                return
            _require(full, act, state, ACTIVE | {JobState.QUEUED})
            details = await self._client.inspect(full)
            if details.restart_policy:
                await self._client.disable_restart(full)  # or the engine starts it again
            await self._client.kill(full)

    async def _rename_mark(
        self, job_id: str, suffix: str, state: JobState, act: JobControlAction
    ) -> None:
        details = await self._client.inspect(job_id)
        if details.status != "created":
            raise InvalidStateError(
                f"cannot {act.value} job {job_id}: it has started", job_id=job_id
            )
        await self._client.rename(job_id, base_name(details.name) + suffix)
        self._apply(self._cache.set_state(job_id, state))

    async def _after_release(self, job_id: str) -> None:
        job = self._cache.require(job_id)
        if job.array_id is not None and job.array_id in self._arrays:
            self._arrays[job.array_id].wake.set()
            return
        # A single job starts at once; its template says where its output goes.
        await self._owned(self._start_released, job_id, await self._launch_of(job_id))

    async def wait(self, job_id: str, *states: JobState, timeout: float | None = None) -> JobState:
        """Wait until the job is in one of ``states`` (default: DONE or FAILED); return it.

        Resolved from events: no polling and no connection per wait. ``timeout=None`` waits
        forever, ``0`` checks once. Raises ``WaitTimeoutError`` on timeout,
        ``InvalidStateError`` at once when the job ended in a state not waited for (it can
        never get there), ``JobNotFoundError`` if the job is deleted meanwhile,
        ``DrmCommunicationError`` if the engine stays away longer than ``engine_timeout``.
        """
        self._check_open()
        _check_timeout(timeout)
        for s in states:
            if not isinstance(s, JobState):
                raise InvalidArgumentError(f"wait takes JobState values, got {s!r}")
        wanted = frozenset(states) or TERMINAL
        full = await self._known(job_id)
        if self._engine_lost:
            raise DrmCommunicationError("the Docker engine is unreachable", job_id=full)
        waiter = self._cache.add_waiter(full, wanted, asyncio.get_running_loop())
        if isinstance(waiter, JobState):
            return waiter
        return await self._await_waiter(waiter, timeout)

    async def _await_waiter(self, waiter: Waiter, timeout: float | None) -> JobState:
        job_id = waiter.job_id
        try:
            if timeout == 0:
                raise WaitTimeoutError(f"job {job_id} is not in a wanted state", job_id=job_id)
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                return await waiter.future
            raise WaitTimeoutError(
                f"job {job_id} did not reach a wanted state within {timeout} s", job_id=job_id
            )
        finally:
            self._cache.remove_waiter(waiter)

    async def delete_job(self, job_id: str) -> None:
        """Remove a finished job's container (and its anonymous volumes).

        ``InvalidStateError`` if the job is not finished; nothing changes then.
        """
        self._check_open()
        full = await self._known(job_id)
        state = self._cache.require(full).state
        if state not in TERMINAL:
            raise InvalidStateError(
                f"job {full} is {state.name}: only a finished job can be deleted", job_id=full
            )
        with contextlib.suppress(JobNotFoundError):  # removed meanwhile: the same result
            await self._client.remove(full)
        self._apply(self._cache.forget(full))

    async def list_job_categories(self) -> list[str]:
        """The local images' repo tags (one entry per tag, sorted): the possible job categories."""
        self._check_open()
        return await self._client.image_tags()

    # -- array jobs ---------------------------------------------------------------------

    def _add_array(self, array_id: str, size: int, max_parallel: int) -> _Array:
        array = _Array(array_id, size, max_parallel)
        self._arrays[array_id] = array
        array.wake.set()
        if self._tg is not None:
            self._tg.start_soon(self._launcher, array)
        return array

    async def add_array_job(
        self, template: JobTemplate, begin: int, end: int, step: int = 1, max_parallel: int = 0
    ) -> str:
        """Create tasks ``begin, begin+step, ... <= end`` in order; returns the array job id.

        Every task is created (QUEUED, or QUEUED_HELD with ``submit_as_hold``) before any
        starts; a launcher owned by the tracker then starts them in strict index order, one
        start after another, at most ``max_parallel`` running at once (0: no bound). Each task
        sees ``TASK_ID=<index>``; a job name becomes ``<name>-<index>``. An array is made whole
        or not at all: if task k cannot be created, the tasks made before it are removed.
        """
        self._check_open()
        if not isinstance(template, JobTemplate):
            raise InvalidArgumentError("add_array_job takes a JobTemplate")
        indexes = task_indexes(begin, end, step)
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 0:
            raise InvalidArgumentError(f"max_parallel must be an int >= 0, got {max_parallel!r}")
        array_id = uuid.uuid4().hex[:16]
        prepared = []
        for index in indexes:
            task = ArrayTask(array_id, index, len(indexes), max_parallel)
            prepared.append(self._prepare(template, task, index))
        return await self._owned(self._create_array, array_id, prepared, max_parallel)

    async def _create_array(
        self, array_id: str, prepared: list[_Prepared], max_parallel: int
    ) -> str:
        made: list[str] = []
        try:
            for job in prepared:
                made.append(await self._create(job.config, job.name))  # noqa: PERF401  # kept on failure
        except BaseException:
            with anyio.CancelScope(shield=True):
                for job_id in reversed(made):
                    await self._discard(job_id)
            raise
        array = self._add_array(array_id, len(prepared), max_parallel)
        array.launches = {job_id: job.launch for job_id, job in zip(made, prepared, strict=True)}
        return array_id

    async def _launcher(self, array: _Array) -> None:
        """Start the array's queued tasks in index order, one start after another."""
        try:
            while True:
                await array.wake.wait()
                array.wake.clear()
                tasks = self._cache.array_jobs(array.array_id)
                if not tasks or all(t.state in TERMINAL for t in tasks):
                    return
                if len(tasks) < array.size and not any(t.ever_started for t in tasks):
                    continue  # not whole yet: another tracker is still making it
                async with array.lock:
                    await self._launch_some(array)
        finally:
            self._arrays.pop(array.array_id, None)

    async def _launch_some(self, array: _Array) -> None:
        tasks = self._cache.array_jobs(array.array_id)
        active = sum(1 for t in tasks if t.state in ACTIVE)
        for task in tasks:
            if array.max_parallel and active >= array.max_parallel:
                return
            if task.state is not JobState.QUEUED or task.ever_started:
                continue
            try:
                launch = array.launches.pop(task.job_id, None) or await self._launch_of(task.job_id)
                await self._start(task.job_id, launch, remove_on_failure=False)
            except (JobNotFoundError, InvalidStateError):
                continue
            except DrmCommunicationError:
                return  # the reconnect wakes the launcher again
            except InvalidArgumentError as exc:
                log.warning("array %s task %s not started: %s", array.array_id, task.index, exc)
                continue
            active += 1

    async def list_array_jobs(self, array_id: str) -> list[str]:
        """The task job ids of an array job, in index order.

        Also accepts drmaa2os's array ids (a JSON list of container ids).
        """
        self._check_open()
        if not isinstance(array_id, str):
            raise JobNotFoundError(f"no array job {array_id!r}", job_id=str(array_id))
        if array_id.startswith("["):
            return [await self._known(job_id) for job_id in _json_ids(array_id)]
        tasks = self._cache.array_jobs(array_id)
        if not tasks:
            raise JobNotFoundError(f"no array job {array_id!r} in this session", job_id=array_id)
        return [t.job_id for t in tasks]

    async def array_job_control(self, array_id: str, action: JobControlAction | str) -> None:
        """Apply ``job_control`` to every task (skipping tasks where it does not apply).

        Terminate marks queued tasks FAILED before it kills running ones, so the launcher
        cannot start a task in between.
        """
        act = _action(action)
        ids = await self.list_array_jobs(array_id)
        array = self._arrays.get(array_id)
        # One hold of the launcher's lock for the whole array: a task killed here wakes the
        # launcher, which must not start the next queued task before it is terminated too.
        async with array.lock if array is not None else contextlib.nullcontext():
            if act is JobControlAction.TERMINATE:
                ids.sort(key=lambda j: self._cache.require(j).ever_started)
            for job_id in ids:
                try:
                    await self._control(job_id, act)
                except (InvalidStateError, JobNotFoundError):
                    continue

    async def wait_array(
        self, array_id: str, *states: JobState, timeout: float | None = None
    ) -> dict[str, JobState]:
        """Wait until every task is in one of ``states`` (default: finished); task id -> state."""
        _check_timeout(timeout)
        ids = await self.list_array_jobs(array_id)
        deadline = None if timeout is None else anyio.current_time() + timeout
        out: dict[str, JobState] = {}
        for job_id in ids:
            left = None if deadline is None else max(0.0, deadline - anyio.current_time())
            out[job_id] = await self.wait(job_id, *states, timeout=left)
        return out


# -- helpers -----------------------------------------------------------------------------


def _action(action: JobControlAction | str) -> JobControlAction:
    try:
        return JobControlAction(action)
    except ValueError:
        valid = ", ".join(a.value for a in JobControlAction)
        raise InvalidArgumentError(f"unknown job control action {action!r} ({valid})") from None


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        not isinstance(timeout, int | float) or timeout < 0 or math.isnan(timeout)
    ):
        raise InvalidArgumentError(f"timeout must be None or >= 0, got {timeout!r}")


def _require(
    job_id: str, act: JobControlAction, state: JobState, allowed: Iterable[JobState]
) -> None:
    if state not in allowed:
        raise InvalidStateError(
            f"cannot {act.value} job {job_id}: it is {state.name}", job_id=job_id
        )


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: its caller may have been cancelled meanwhile."""
    if not future.cancelled():
        future.exception()


def _first_error(exc: BaseException) -> BaseException:
    """The first TrackerError inside an exception group (the task group wraps errors)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_error(inner)
            if isinstance(found, TrackerError):
                return found
    return exc


def _int(text: str | None, *, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _json_ids(text: str) -> list[str]:
    try:
        ids = json.loads(text)
    except ValueError:
        raise JobNotFoundError(f"no array job {text!r}", job_id=text) from None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise JobNotFoundError(f"no array job {text!r}", job_id=text)
    return ids


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _replace(info: JobInfo, **changes: Any) -> JobInfo:
    return dataclasses.replace(info, **changes)
