"""The public tracker: a thin facade that owns the task group and delegates.

Its parts, each in its own module: the event feed (``_feed``), the sync of the cache with the
engine (``_sync``), submission (``_submit``), the output copier (``_copier``), the array
launcher (``_launcher``), job control (``_control``), the state cache and its waiters
(``_cache``), all over the engine boundary (``_engine``). Nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

import anyio

from ._cache import TERMINAL
from ._changes import Watcher
from ._checks import (
    check_count,
    check_ids,
    check_key,
    check_states,
    check_timeout,
    control_action,
    json_ids,
    utcnow,
)
from ._config import ArrayTask
from ._connect import docker_engine
from ._engine.base import Engine
from ._errors import engine_errors
from ._exceptions import (
    DrmCommunicationError,
    InvalidArgumentError,
    InvalidStateError,
    JobNotFoundError,
    TrackerClosedError,
    TrackerError,
    UnsupportedOperationError,
    WaitTimeoutError,
)
from ._labels import TEMPLATE_LABEL
from ._mapping import job_info_from_details, task_indexes, tracker_view
from ._model import JobControlAction, JobInfo, JobState, JobTemplate, StateChange
from ._pull import PullProgress
from ._runtime import Runtime
from ._streams import Stream
from ._template_label import decode_template_label
from ._watch import OutputStream

log = logging.getLogger("aiotracker")


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
    resyncs: int = 0
    watchers: int = 0  # open watches and waits over many jobs (watch, wait_any, ...)


class DockerTracker:
    """Runs DRMAA2 jobs as Docker containers of one job session and tracks them.

    Use it as an async context manager (or ``await tracker.open()`` / ``await
    tracker.aclose()``). Opening connects to the engine (``DrmCommunicationError`` at once if it
    does not answer), starts the event stream and seeds the state cache from the containers
    labelled with the session, so jobs made earlier, by another process or by the Go drmaa2os
    tracker, are tracked too.

    Args:
        job_session: The session name; jobs carry it as the ``drmaa2_jobsession`` label.
        docker_url: The engine (``unix:///...`` or ``tcp://host:port``); None: the client
            configuration, in the docker CLI's order: ``DOCKER_HOST`` (TLS from
            ``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH``), ``DOCKER_CONTEXT``, the current
            context of ``$DOCKER_CONFIG/config.json``, then the local socket
            (``_engine/endpoint.py``). ``DOCKER_API_VERSION`` pins the API version. A malformed
            URL or an unknown context is ``InvalidArgumentError``; ``ssh://`` is
            ``UnsupportedOperationError``.
        connection_limit: Pool size for API calls. The event stream and the output streams of
            running jobs use a pool of their own.
        engine_timeout: Seconds an API call may take, a clean-up may take while closing, and
            the engine may stay away before pending waits fail with ``DrmCommunicationError``
            (the tracker keeps reconnecting).
        labels: Extra labels put on every container this tracker makes.
        max_running: At most this many of the jobs this tracker launches run at once (0: no
            bound). Jobs beyond it wait QUEUED in one queue, single jobs and array tasks alike,
            and start by DRMAA2 ``priority`` (higher first), then submission order (an array's
            tasks in index order, each array within its ``max_parallel``). With several worker
            trackers on a session, each bounds the jobs it launches.
        on_pull: Called with each step of an image pull (``PullProgress``; the ``pull``
            extension makes the tracker pull a job's image before creating it). Called on the
            event loop; an exception it raises is logged and ignored.
        engine: An engine object instead of ``docker_url`` (tests pass aiotracker's fake).
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
        role: Literal["worker", "observer"] = "worker",
        on_pull: Callable[[PullProgress], None] | None = None,
        max_running: int = 0,
        engine: Engine | None = None,
    ) -> None:
        if not isinstance(job_session, str) or not job_session or "\x00" in job_session:
            raise InvalidArgumentError("job_session must be a non-empty string")
        if connection_limit < 2:
            raise InvalidArgumentError("connection_limit must be at least 2")
        if not engine_timeout > 0:
            raise InvalidArgumentError("engine_timeout must be positive")
        if isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 0:
            raise InvalidArgumentError(f"max_running must be an int >= 0, got {max_running!r}")
        if role not in ("worker", "observer"):
            raise InvalidArgumentError(f"role must be 'worker' or 'observer', got {role!r}")
        if engine is None:
            engine = docker_engine(
                docker_url, connection_limit=connection_limit, timeout=engine_timeout
            )
        self.job_session = job_session
        self.role = role
        self._rt = Runtime(
            engine, job_session, engine_timeout=engine_timeout, labels=dict(labels or {}),
            max_inspects=max_inspects, observer=role == "observer", on_pull=on_pull,
            max_running=max_running,
        )  # fmt: skip
        self._cache = self._rt.cache
        self._sync = self._rt.sync

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
        await self._rt.open(f"aiotracker:{self.job_session}")

    async def aclose(self) -> None:
        """Stop every background task and close every connection. Pending waits fail with
        ``TrackerClosedError``; jobs keep running in Docker. Safe to call twice, and from a
        later event loop than the one that opened it."""
        await self._rt.aclose()

    def _check_open(self) -> None:
        if not self._rt.is_open:
            raise TrackerClosedError("the tracker is not open")

    def _check_worker(self, what: str) -> None:
        self._check_open()
        if self.role == "observer":
            raise UnsupportedOperationError(f"an observer tracker does not {what}")

    @property
    def is_open(self) -> bool:
        """Opened and not closed yet."""
        return self._rt.is_open

    @property
    def contact(self) -> str:
        """The engine's address (DRMAA2's contact string): ``unix:///var/run/docker.sock``."""
        return self._rt.engine.url

    def __bool__(self) -> bool:
        return True  # a tracker with no jobs is still a tracker (``tracker or ...``)

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        state = "open" if self._rt.is_open else "closed"
        return (
            f"<DockerTracker session={self.job_session!r} jobs={len(self._cache)} "
            f"waiters={self._cache.waiter_count} {state}>"
        )

    def statistics(self) -> TrackerStatistics:
        """Counts that let tests prove nothing leaks (waiters, tasks, streams)."""
        rt = self._rt
        return TrackerStatistics(
            jobs=len(rt.cache),
            waiters=rt.cache.waiter_count,
            arrays=len(rt.launcher.arrays),
            connected=rt.feed.connected and not rt.closed,
            reconnects=rt.feed.reconnects,
            events=rt.feed.events - rt.sync.lease_events,  # events about jobs
            inspects=rt.sync.inspects,
            output_streams=len(rt.copier.streams),
            tasks=rt.tasks.running,
            resyncs=rt.sync.resyncs,
            watchers=rt.changes.watchers,
        )

    # -- the DRMAA2 job tracker ---------------------------------------------------------

    async def add_job(self, template: JobTemplate, *, key: str | None = None) -> str:
        """Create and start a container for ``template``; returns the job id (the container id).

        Raises ``InvalidArgumentError`` for a bad template (nothing is created),
        ``UnsupportedOperationError`` for an attribute aiotracker does not honour
        (``docs/template.md``),
        ``ImageNotFoundError`` if the image is not present (with the ``pull`` extension:
        if its registry does not have it), ``ImagePullError`` if the registry refuses the
        credentials (``docs/template.md``, "Images"),
        ``JobNameInUseError`` if a job of this session has the job name,
        ``InvalidArgumentError`` if the job's command cannot start and ``EngineError`` if the
        engine fails to start it (the container is removed either way). With
        ``submit_as_hold`` the job is created QUEUED_HELD and starts on ``release``.

        With ``max_running``, the job is made QUEUED and started by the launcher in its
        turn: a start refused then ends it FAILED with a fault (it is not removed).

        ``key`` makes the call idempotent within the session: a second call with the same key
        returns the first call's job instead of making another. A cancelled call goes on in
        the tracker: it leaves the whole job (which a retry with the key returns) or, if the
        tracker closes before the job started, nothing; a job that started is never removed.
        """
        self._check_worker("submit jobs")
        if not isinstance(template, JobTemplate):
            raise InvalidArgumentError("add_job takes a JobTemplate")
        check_key(key)
        submitter = self._rt.submitter
        return await self._rt.tasks.owned(submitter.submit, submitter.prepare(template, key=key))

    async def find_job(self, job_name: str) -> str:
        """The id of this session's job named ``job_name`` (``JobNotFoundError`` if none)."""
        self._check_open()
        for job_id in await self._sync.named(job_name):
            return job_id
        raise JobNotFoundError(f"no job named {job_name!r} in this session", job_id=None)

    async def add_array_job(
        self, template: JobTemplate, begin: int, end: int, step: int = 1, max_parallel: int = 0,
        *, key: str | None = None,
    ) -> str:  # fmt: skip
        """Create tasks ``begin, begin+step, ... <= end`` in order; returns the array job id.

        Every task is created (QUEUED, or QUEUED_HELD with ``submit_as_hold``) before any
        starts; a launcher owned by the tracker then starts them in strict index order, one
        start after another, at most ``max_parallel`` running at once (0: no bound). Each task
        sees ``TASK_ID=<index>``; a job name becomes ``<name>-<index>``. An array is made whole
        or not at all: if task k cannot be created, the tasks made before it are removed.
        """
        self._check_worker("submit jobs")
        if not isinstance(template, JobTemplate):
            raise InvalidArgumentError("add_array_job takes a JobTemplate")
        check_key(key)
        indexes = task_indexes(begin, end, step)
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 0:
            raise InvalidArgumentError(f"max_parallel must be an int >= 0, got {max_parallel!r}")
        array_id = uuid.uuid4().hex[:16]
        tasks = [ArrayTask(array_id, i, len(indexes), max_parallel, indexes[-1]) for i in indexes]
        now = time.time_ns()  # the tasks' shared place in the launcher's queue
        prepared = [
            self._rt.submitter.prepare(template, task, key, submitted_ns=now) for task in tasks
        ]

        async def make() -> str:
            # Made and handed to the launcher in one owned task: a caller cancelled meanwhile
            # (during a long pull, say) leaves an array that is launched all the same.
            made = await self._rt.submitter.create_array(prepared)
            if isinstance(made, str):
                return made  # a retry with the same key: the array made before
            array = self._rt.launcher.add(array_id, len(prepared), max_parallel)
            array.launches = {j: job.launch for j, job in zip(made, prepared, strict=True)}
            return array_id

        return await self._rt.tasks.owned(make)

    async def resolve_id(self, job_id: str) -> str:
        """The full id of a job of this session, from its id or a unique prefix of it
        (``JobNotFoundError`` otherwise); no engine call for a job the cache knows."""
        self._check_open()
        return await self._sync.known(job_id)

    def cached_state(self, job_id: str) -> JobState | None:
        """The job's state as the cache holds it now, with no await and no engine call; None
        for a job the tracker does not know (yet, or any more)."""
        job = self._cache.get(job_id)
        return None if job is None else job.state

    def job_array(self, job_id: str) -> str | None:
        """The array job a task belongs to (None for a single job, or a job the tracker does
        not know), from the cache: no await, no engine call."""
        job = self._cache.get(job_id)
        return None if job is None else job.array_id

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
        job = self._cache.get(job_id) if isinstance(job_id, str) else None
        if job is None:  # not known yet (or not a job): the engine is asked
            job = self._cache.require(await self._sync.known(job_id))
        return job.state

    async def job_info(self, job_id: str) -> JobInfo:
        """Everything the engine knows of the job, mapped to DRMAA2 (one inspect; one more, of
        the CPU used, while it runs), with what the tracker could not do for it (``faults``).

        Times are the engine's: see ``job_info_from_details`` for how each is derived.
        ``cpu_time`` is known while the job runs (the engine forgets it at the exit).
        """
        self._check_open()
        details = await self._sync.details(await self._sync.known(job_id))
        cpu_ns = None
        if details.running and not details.restarting:
            with contextlib.suppress(TrackerError), engine_errors("stats", details.container_id):
                cpu_ns = await self._rt.engine.cpu_usage_ns(details.container_id)
        now = utcnow() + self._rt.clock_offset  # the engine's clock, as its times are
        info = job_info_from_details(
            details, engine_host=self._rt.info.host_name, now=now, cpu_ns=cpu_ns
        )
        job = self._cache.get(details.container_id)
        return info if job is None else tracker_view(
            info, job.state, job.faults, job.incomplete,
            settled=job.refused or (job.die_is_final and job.exited),
        )  # fmt: skip

    async def job_template(self, job_id: str) -> JobTemplate:
        """The template the job was submitted with, read back from its label (host paths
        absolute, as resolved at submission)."""
        self._check_open()
        details = await self._sync.details(await self._sync.known(job_id))
        label = details.labels.get(TEMPLATE_LABEL)
        if label is None:
            raise JobNotFoundError(f"job {job_id} has no job template label", job_id=job_id)
        return decode_template_label(label)

    def stream_output(
        self, job_id: str, *, stderr: bool = False, tail: int | None = None,
        max_buffer: int = 1 << 20,
    ) -> OutputStream:  # fmt: skip
        """The job's stdout (or stderr) as it comes: an async iterator of byte chunks from the
        job's start (or its last ``tail`` lines; ``tail=0``: only what comes next) until its
        output ends, then it stops (at once for a finished job: its log). A job that has not
        started yet (queued, held) or is suspended is waited for.

        Fed by the tracker's one copy of the job's stream (never an attach per reader); what
        came before the reader joined is read back from the engine's log, seamlessly. Each
        reader has a buffer of ``max_buffer`` bytes: a reader that falls further behind is cut
        off with ``OutputOverrunError`` rather than slow the job, its file or other readers.
        ``OutputStreamError`` if the output cannot be delivered whole (the stream ended early,
        the log was rotated away, the tracker closed). Use ``async with`` (or ``aclose()``) to
        leave early. Works for any job of the session, with or without output files.
        """
        check_count("tail", tail, 0, optional=True)
        check_count("max_buffer", max_buffer, 1)

        async def chunks() -> AsyncGenerator[bytes, None]:
            self._check_open()
            full_id = await self._sync.known(job_id)
            inner = self._rt.watch.chunks(full_id, 2 if stderr else 1, tail, max_buffer)
            async with contextlib.aclosing(inner):
                async for chunk in inner:
                    yield chunk

        return Stream(chunks())

    async def job_control(self, job_id: str, action: JobControlAction | str) -> None:
        """Suspend (docker pause: every process), resume, hold, release or terminate a job.

        Hold and release act on jobs that have not started (``submit_as_hold``, queued array
        tasks); terminate kills a running or suspended job (it ends FAILED) and marks a job
        that never started FAILED. An action that makes no sense in the job's state (asked of
        the engine before refusing, and including a job that ended meanwhile) raises
        ``InvalidStateError``; an unknown action ``InvalidArgumentError``.
        """
        self._check_worker("control jobs")
        act = control_action(action)
        await self._rt.control.control(await self._sync.known(job_id), act)

    async def wait(self, job_id: str, *states: JobState, timeout: float | None = None) -> JobState:
        """Wait until the job is in one of ``states`` (default: DONE or FAILED); return it.

        Resolved from events: no polling and no connection per wait. ``timeout=None`` waits
        forever, ``0`` checks once. Raises ``WaitTimeoutError`` on timeout,
        ``InvalidStateError`` at once when the job ended in a state not waited for (it can
        never get there), ``JobNotFoundError`` if the job is deleted meanwhile,
        ``DrmCommunicationError`` if the engine stays away longer than ``engine_timeout``.
        """
        self._check_open()
        check_timeout(timeout)
        wanted = frozenset(check_states(states)) or TERMINAL
        full = await self._sync.known(job_id)
        if self._rt.feed.engine_lost:
            raise DrmCommunicationError("the Docker engine is unreachable", job_id=full)
        waiter = self._cache.add_waiter(full, wanted, asyncio.get_running_loop())
        if isinstance(waiter, JobState):
            return waiter
        try:
            if timeout == 0:
                raise WaitTimeoutError(f"job {full} is not in a wanted state", job_id=full)
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                return await waiter.future
            raise WaitTimeoutError(
                f"job {full} did not reach a wanted state within {timeout} s", job_id=full
            )
        finally:
            self._cache.remove_waiter(waiter)

    # -- many jobs at once -------------------------------------------------------------

    def watch(
        self, jobs: Iterable[str] | None = None, states: Iterable[JobState] | None = None,
        *, initial: bool = False, max_buffer: int = 10_000,
    ) -> Stream[StateChange]:  # fmt: skip
        """The session's state changes as the tracker applies them (DRMAA2 event
        notification): an async iterator of ``StateChange``, from the one event stream and
        cache (no task or connection per job). ``jobs``: job ids and array ids to cover
        (None: every job); ``states``: the new states wanted (None: all). ``initial``: first
        the current state of every job covered (``old_state`` None), taken in the same step
        as the registration, so no change falls between a listing and the watch. Holds up to
        ``max_buffer`` changes for a slow consumer; beyond, changes are dropped and a marker
        (``lost`` > 0) says how many, where. Changes are kept from the moment ``async with``
        enters the block (or, without it, from the first iteration). Leave the ``async
        with`` block (by ``break`` too) or call ``aclose()``: nothing stays registered. A
        bare ``async for`` left by ``break`` unregisters only when the stream is collected
        (an async iterator is not closed by ``break``): use ``async with``.
        """
        self._check_open()
        keys = None if jobs is None else frozenset(check_ids(jobs))
        wanted = None if states is None else frozenset(check_states(states))
        check_count("max_buffer", max_buffer, 1)
        watcher = Watcher(keys, wanted, max_buffer)
        feed = self._rt.changes
        return Stream(
            feed.watch(watcher, initial=initial),
            on_enter=lambda: feed.register(watcher, initial=initial),
            on_close=lambda: feed.unregister(watcher),
        )

    async def wait_any(
        self, job_ids: Iterable[str], *states: JobState, timeout: float | None = None
    ) -> tuple[str, JobState]:
        """Wait until one of the jobs is in one of ``states`` (default: DONE or FAILED);
        return ``(job_id, state)``. One registration for all jobs: linear in their number,
        constant per change. ``InvalidStateError`` when every job ended without getting
        there; ``JobNotFoundError`` for an unknown or deleted job; ``WaitTimeoutError``."""
        ids, wanted = await self._many(job_ids, states, timeout)
        return await self._rt.changes.wait_any(ids, wanted, timeout)

    async def wait_all(
        self, job_ids: Iterable[str], *states: JobState, timeout: float | None = None
    ) -> dict[str, JobState]:
        """Wait until every job is in one of ``states`` (default: DONE or FAILED); return
        each one's state. ``InvalidStateError`` as soon as one ends in a state not waited
        for; ``JobNotFoundError``; ``WaitTimeoutError``."""
        ids, wanted = await self._many(job_ids, states, timeout)
        return await self._rt.changes.wait_all(ids, wanted, timeout)

    def as_completed(
        self, job_ids: Iterable[str], *, timeout: float | None = None
    ) -> Stream[tuple[str, JobState]]:
        """An async iterator of ``(job_id, state)`` for each job as it ends (DONE or
        FAILED), those already ended first; one registration for all of them.
        ``WaitTimeoutError`` if they have not all ended within ``timeout`` seconds."""
        raw = list(job_ids) if not isinstance(job_ids, str) else [job_ids]

        async def prepare() -> list[str]:
            return (await self._many(raw, (), timeout))[0]

        return Stream(self._rt.changes.as_completed(prepare, timeout))

    async def _many(
        self, job_ids: Iterable[str], states: Iterable[JobState], timeout: float | None
    ) -> tuple[list[str], frozenset[JobState]]:
        self._check_open()
        check_timeout(timeout)
        wanted = frozenset(check_states(states)) or TERMINAL
        ids = [j if j in self._cache else await self._sync.known(j) for j in check_ids(job_ids)]
        if not ids:
            raise InvalidArgumentError("no jobs to wait for")
        if self._rt.feed.engine_lost:
            raise DrmCommunicationError("the Docker engine is unreachable")
        return ids, wanted

    async def delete_job(self, job_id: str) -> None:
        """Remove a finished job's container (and its anonymous volumes).

        ``InvalidStateError`` if the job is not finished; nothing changes then.
        """
        self._check_worker("delete jobs")
        full = await self._sync.known(job_id)
        state = self._cache.require(full).state
        if state not in TERMINAL:
            raise InvalidStateError(
                f"job {full} is {state.name}: only a finished job can be deleted", job_id=full
            )
        with contextlib.suppress(JobNotFoundError), engine_errors("remove", full):
            await self._rt.engine.remove(full)  # removed meanwhile: the same result
        self._rt.publish(self._cache.forget(full))

    async def list_job_categories(self) -> list[str]:
        """The local images' repo tags (one entry per tag, sorted): the possible job categories."""
        self._check_open()
        with engine_errors("images"):
            return await self._rt.engine.image_tags()

    # -- array jobs ---------------------------------------------------------------------

    async def list_array_jobs(self, array_id: str) -> list[str]:
        """The task job ids of an array job, in index order.

        Also accepts drmaa2os's array ids (a JSON list of container ids).
        """
        self._check_open()
        if not isinstance(array_id, str):
            raise JobNotFoundError(f"no array job {array_id!r}", job_id=str(array_id))
        if array_id.startswith("["):
            return [await self._sync.known(job_id) for job_id in json_ids(array_id)]
        tasks = self._cache.array_jobs(array_id)
        if not tasks or len(tasks) < tasks[0].array_size:
            await self._sync.array_tasks(array_id)  # another tracker's, newer than its events
            tasks = self._cache.array_jobs(array_id)
        if not tasks:
            raise JobNotFoundError(f"no array job {array_id!r} in this session", job_id=array_id)
        return [t.job_id for t in tasks]

    async def array_job_control(self, array_id: str, action: JobControlAction | str) -> None:
        """Apply ``job_control`` to every task, skipping tasks where it does not apply (a
        finished task, a running one for ``hold``, a deleted one).

        Terminate marks queued tasks FAILED before it kills running ones, so the launcher
        cannot start a task in between. A task the engine refuses the action for does not
        stop the others: those failures are raised together at the end, as an
        ``ExceptionGroup`` of the tasks' errors (each with its ``job_id``). An engine that
        cannot be reached (``DrmCommunicationError``) or a tracker closed meanwhile stops it
        at once.
        """
        self._check_worker("control jobs")
        act = control_action(action)
        ids = await self.list_array_jobs(array_id)
        failures: list[TrackerError] = []
        # One hold of the launcher's lock for the whole array: a task killed here wakes the
        # launcher, which must not start the next queued task before it is terminated too.
        async with self._rt.launcher.lock(array_id):
            if act is JobControlAction.TERMINATE:
                ids.sort(key=lambda j: self._cache.require(j).ever_started)
            for job_id in ids:
                try:
                    await self._rt.control.act(job_id, act)
                except (InvalidStateError, JobNotFoundError):
                    if not self._rt.is_open:
                        raise  # closed meanwhile (TrackerClosedError): no task will do
                    continue  # does not apply to this task
                except DrmCommunicationError:
                    raise  # the engine is away: the other tasks would only wait for it too
                except TrackerError as exc:
                    failures.append(exc)
        if failures:
            raise ExceptionGroup(
                f"{act.value} failed for {len(failures)} of {len(ids)} tasks of array "
                f"{array_id}", failures,
            )  # fmt: skip

    async def wait_array(
        self, array_id: str, *states: JobState, timeout: float | None = None
    ) -> dict[str, JobState]:
        """Wait until every task is in one of ``states`` (default: finished); task id -> state."""
        check_timeout(timeout)
        ids = await self.list_array_jobs(array_id)
        deadline = None if timeout is None else anyio.current_time() + timeout
        out: dict[str, JobState] = {}
        for job_id in ids:
            left = None if deadline is None else max(0.0, deadline - anyio.current_time())
            out[job_id] = await self.wait(job_id, *states, timeout=left)
        return out
