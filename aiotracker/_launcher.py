"""The launcher: starts queued jobs, one start after another, woken by state changes.

Arrays: each array's queued tasks start in strict index order, never more than its
``max_parallel`` running at once. With the tracker's ``max_running`` bound, one queue holds
every job this tracker launches: single jobs wait there too, and the next to start is the one
of highest DRMAA2 ``priority``, ties by submission order (an array's tasks keep their index
order), while fewer than ``max_running`` run. Without the bound, single jobs start at their
submission and each array has a launcher of its own, side by side (nothing waits, so there is
nothing to order).

The decisions are pure functions (``is_whole``, ``next_task``, ``pick``), tested on their
own. A job that cannot start for its own reason (a missing input file, a refused config) ends
FAILED with a fault and the launcher goes on; an engine error makes it back off, ask for a
re-sync and try again: it never stops while jobs are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import anyio

from ._cache import TERMINAL, Change, Job, StateCache
from ._engine.base import Engine
from ._exceptions import InvalidArgumentError, InvalidStateError, JobNotFoundError, TrackerError
from ._labels import TERMINATED_SUFFIX
from ._model import JobState
from ._submit import RETRYABLE, Launch, Submitter, rename_mark
from ._tasks import BACKOFF_MIN, Tasks, next_backoff
from ._waiters import Wakeups

log = logging.getLogger("aiotracker")


def is_whole(tasks: Sequence[Job], size: int) -> bool:
    """True once the array's creation is over (tasks are created in index order, and none
    starts before all exist): all there, or one started or ended (so a task deleted after it
    finished does not stop the rest), or the last index made."""
    if len(tasks) >= size:
        return True
    return any(
        t.ever_started or t.state in TERMINAL or (t.array_last and t.index == t.array_last)
        for t in tasks
    )


def startable(job: Job) -> bool:
    return job.state is JobState.QUEUED and not job.ever_started


def next_task(tasks: Sequence[Job], max_parallel: int, now_ns: int = 0) -> Job | None:
    """The queued task to start next, in index order, or None (none, at the bound, or its
    ``start_time`` later than ``now_ns``, local Unix ns: the timer wakes the launcher then)."""
    active = sum(1 for t in tasks if t.takes_slot)
    if max_parallel and active >= max_parallel:
        return None
    for task in sorted(tasks, key=lambda t: t.index):
        if startable(task):
            return task if task.start_at_ns <= now_ns else None
    return None


def rank(job: Job) -> tuple[int, int, int]:
    """A queued job's place: higher priority first, then submission order, then index."""
    return (-job.priority, job.order_ns, job.index)


def pick(candidates: Iterable[Job]) -> Job | None:
    """The candidate to start first (``rank``), or None."""
    return min(candidates, key=rank, default=None)


class _NotStarted(Exception):
    """A task the engine did not start, for its state (a 409), still queued: later."""


class Array:
    """An array job this tracker launches: its bound, the launcher's wake-up and lock."""

    __slots__ = (
        "array_id", "backoff", "launches", "lock", "max_parallel", "not_before", "size", "wake",
    )  # fmt: skip

    def __init__(self, array_id: str, size: int, max_parallel: int) -> None:
        self.array_id = array_id
        self.size = size
        self.max_parallel = max_parallel
        # How to start each task, known to the tracker that made the array (else: its label).
        self.launches: dict[str, Launch] = {}
        self.wake = asyncio.Event()
        # Held by the launcher from its decision to the start's return, and by hold,
        # release and terminate of a queued task: neither sees the other half done.
        self.lock = asyncio.Lock()
        # With max_running, after a start the engine refused for the container's state (a
        # 409): the array is passed over until ``not_before`` (monotonic), backing off.
        self.backoff = 0.0
        self.not_before = 0.0


@dataclass(slots=True)
class _Single:
    """A single job waiting in the bounded queue."""

    job: Job
    launch: Launch | None  # None: read from its label when it starts
    may_start: Callable[[], bool] = field(default=lambda: True)
    backoff: float = 0.0  # after a start refused for the container's state: the last pause


class Launcher:
    """Starts queued jobs: a task per array, or (``max_running``) one task for every job
    this tracker launches; owned by the tracker's task group."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        submitter: Submitter,
        tasks: Tasks,
        publish: Callable[[tuple[Wakeups, list[Change]] | None], None],
        request_resync: Callable[[], None],
        holds: Callable[[str | None], bool] = lambda owner: True,
        *,
        max_running: int = 0,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._submitter = submitter
        self._tasks = tasks
        self._publish = publish
        self._request_resync = request_resync
        self._holds = holds  # launch only jobs whose lease this tracker holds
        self.max_running = max_running
        self.arrays: dict[str, Array] = {}
        # The bounded queue: single jobs by rank (a heap, stale entries dropped lazily), the
        # jobs it started that still run, its wake-up, its lock for queued single jobs.
        self._singles: list[tuple[tuple[int, int, int], int, _Single]] = []
        self._queued: dict[str, _Single] = {}
        self._serial = 0
        self.running: set[str] = set()
        self._wake = asyncio.Event()
        self._single_lock = asyncio.Lock()
        self._pool_started = False

    @property
    def bounded(self) -> bool:
        return self.max_running > 0

    def add(self, array_id: str, size: int, max_parallel: int) -> Array:
        array = self.arrays.get(array_id)
        if array is None:
            array = self.arrays[array_id] = Array(array_id, size, max_parallel)
            if not self.bounded:
                self._tasks.spawn(self._run, array)
        array.wake.set()
        self._poke()
        return array

    def queue(self, job_id: str, launch: Launch | None, may_start: Callable[[], bool]) -> bool:
        """With ``max_running``: queue a single job (it starts when its turn comes) and return
        True. Without it: return False (the caller starts it now)."""
        if not self.bounded:
            return False
        job = self._cache.get(job_id)
        if job is None or job_id in self._queued or not startable(job):
            return True
        entry = self._queued[job_id] = _Single(job, launch, may_start)
        self._serial += 1
        heapq.heappush(self._singles, (rank(job), self._serial, entry))
        self._poke()
        return True

    def lock(
        self, array_id: str | None, job_id: str | None = None
    ) -> AbstractAsyncContextManager[object]:
        """The lock a control action takes against the launcher: the array's, or for a
        single job in the bounded queue, the queue's."""
        array = self.arrays.get(array_id) if array_id else None
        if array is not None:
            return array.lock
        if job_id is not None and job_id in self._queued:
            return self._single_lock
        return contextlib.nullcontext()

    def on_changes(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.array_id is not None and (array := self.arrays.get(change.array_id)):
                array.wake.set()
            if change.job_id in self.running and (change.state is None or change.state in TERMINAL):
                self.running.discard(change.job_id)  # a slot is free
                self._wake.set()
            elif change.job_id in self._queued or change.array_id in self.arrays:
                self._wake.set()  # released, held, terminated: the queue looks again

    def wake_all(self) -> None:
        for array in self.arrays.values():
            array.wake.set()
        self._wake.set()

    def adopt_running(self, jobs: Iterable[Job]) -> None:
        """Jobs this tracker launches that run already (adopted): they take slots."""
        for job in jobs:
            if job.takes_slot:
                self.running.add(job.job_id)

    def _poke(self) -> None:
        if not self.bounded:
            return
        if not self._pool_started:
            self._pool_started = True
            self._tasks.spawn(self._run_pool)
        self._wake.set()

    # -- one launcher per array (no max_running) -----------------------------------------

    async def _run(self, array: Array) -> None:
        backoff = BACKOFF_MIN
        try:
            while True:
                await array.wake.wait()
                array.wake.clear()
                tasks = self._cache.array_jobs(array.array_id)
                if not tasks or all(t.state in TERMINAL for t in tasks):
                    return
                if not is_whole(tasks, array.size):
                    continue  # another tracker is still making it; its events wake us
                try:
                    async with array.lock:
                        while task := self._next_of(array):
                            if not self._holds(task.owner):
                                break  # the lease went to another tracker: it launches the rest
                            await self._start_task(array, task)
                            self._check_progress(task)
                    backoff = BACKOFF_MIN
                except (*RETRYABLE, _NotStarted) as exc:
                    log.warning("array %s: %s; retrying", array.array_id, exc)
                    self._request_resync()
                    await anyio.sleep(backoff)
                    backoff = next_backoff(backoff)
                    array.wake.set()
        finally:
            self.arrays.pop(array.array_id, None)

    def _check_progress(self, task: Job) -> None:
        """After a start: a task refused for now is tried again later, backing off, never at
        once in a loop."""
        if self._refused_for_now(task):
            raise _NotStarted(f"job {task.job_id[:12]} was not started; trying again later")

    def _refused_for_now(self, task: Job) -> bool:
        """True if a start just made left the task startable and ours: the engine refused it
        for the container's state (a 409), and it is to be tried again later. (Not
        ``_next_of``: that walks the array, and doubled the launcher's cost per start.)"""
        return task.job_id in self._cache and startable(task) and self._holds(task.owner)

    def _next_of(self, array: Array) -> Job | None:
        tasks = self._cache.array_jobs(array.array_id)
        if not is_whole(tasks, array.size):
            return None
        return next_task(tasks, array.max_parallel, time.time_ns())

    async def _start_task(self, array: Array, task: Job) -> None:
        """Start one array task (its array's lock held)."""
        try:
            launch = array.launches.get(task.job_id) or await self._submitter.launch_of(task.job_id)
        except (InvalidArgumentError, JobNotFoundError) as exc:
            if isinstance(exc, JobNotFoundError) and task.job_id not in self._cache:
                return
            await self._refuse(task, exc)
            return
        holds = functools.partial(self._holds, task.owner)
        if await self._start_counted(task, launch, holds):
            array.launches.pop(task.job_id, None)

    async def _start_counted(self, job: Job, launch: Launch, may_start: Callable[[], bool]) -> bool:
        """Start ``job``, holding a slot in ``running`` while it runs; a refusal of its own
        ends it FAILED. False if it was no longer ours to start (the lease went, or it was
        terminated meanwhile): nothing was done."""
        self.running.add(job.job_id)
        try:
            reason = await self._submitter.start(job.job_id, launch, may_start)
        except InvalidStateError:
            self.running.discard(job.job_id)
            return False
        except BaseException:
            if not job.ever_started:
                self.running.discard(job.job_id)
            raise
        if reason is not None:
            self.running.discard(job.job_id)
            await self._refuse(job, reason)
        elif not job.takes_slot:
            self.running.discard(job.job_id)  # over already
        return True

    # -- one queue for every job (max_running) --------------------------------------------

    def _array_candidates(self) -> list[tuple[Array, Job]]:
        out = []
        for array in list(self.arrays.values()):
            tasks = self._cache.array_jobs(array.array_id)
            if not tasks or all(t.state in TERMINAL for t in tasks):
                del self.arrays[array.array_id]
                continue
            if not is_whole(tasks, array.size):
                continue
            if array.not_before > time.monotonic():
                continue  # its next task's start was refused a moment ago: later
            task = next_task(tasks, array.max_parallel, time.time_ns())
            if task is not None and self._holds(task.owner):
                out.append((array, task))
        return out

    def _single_candidate(self) -> _Single | None:
        """The best single job still queued (entries of jobs that started, were held, ended
        or went are dropped; a held job's release queues it again)."""
        while self._singles:
            _, _, entry = self._singles[0]
            job_id = entry.job.job_id
            if self._queued.get(job_id) is entry and job_id in self._cache and startable(entry.job):
                return entry
            heapq.heappop(self._singles)
            if self._queued.get(job_id) is entry:
                del self._queued[job_id]
        return None

    async def _run_pool(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while len(self.running) < self.max_running and await self._start_next():
                    pass
                backoff = BACKOFF_MIN
            except Exception as exc:  # the one queue never stops: it looks again, later
                if isinstance(exc, (*RETRYABLE, _NotStarted)):
                    log.warning("launcher: %s; retrying", exc)
                else:
                    log.exception("launcher: a start failed unexpectedly; going on")
                self._request_resync()
                await anyio.sleep(backoff)
                backoff = next_backoff(backoff)
                self._wake.set()

    async def _start_next(self) -> bool:
        """Start the best queued job; False if none is queued."""
        arrays = self._array_candidates()
        single = self._single_candidate()
        best = pick([task for _, task in arrays] + ([single.job] if single else []))
        if best is None:
            return False
        if single is not None and best is single.job:
            async with self._single_lock:
                if startable(best) and single.may_start():
                    await self._start_single(single)
                else:
                    self._queued.pop(best.job_id, None)
            return True
        array = next(a for a, task in arrays if task is best)
        async with array.lock:
            if self._next_of(array) is best:  # still its turn (no hold, no terminate)
                await self._start_task(array, best)
                if self._refused_for_now(best):
                    self._pass_over(array, best)  # refused (a 409): the others go on
                else:
                    array.backoff = 0.0
        return True

    def _pass_over(self, array: Array, task: Job) -> None:
        array.backoff = self._try_later(task, array.backoff, self._wake.set)
        array.not_before = time.monotonic() + array.backoff

    def _try_later(self, job: Job, previous: float, then: Callable[[], None]) -> float:
        """A start the engine refused for the container's state (a 409): ``then`` runs after
        the next pause (backing off from ``previous``), which is returned."""
        pause = next_backoff(previous)
        log.warning(
            "launcher: job %s was not started; trying again in %.2f s", job.job_id[:12], pause
        )
        self._request_resync()
        asyncio.get_running_loop().call_later(pause, then)
        return pause

    async def _start_single(self, entry: _Single) -> None:
        job = entry.job
        try:
            launch = entry.launch or await self._submitter.launch_of(job.job_id)
        except (InvalidArgumentError, JobNotFoundError) as exc:
            self._queued.pop(job.job_id, None)
            if job.job_id in self._cache:
                await self._refuse(job, exc)
            return
        started = await self._start_counted(job, launch, entry.may_start)
        self._queued.pop(job.job_id, None)  # started, refused, or no longer ours
        if not started and job.job_id in self._cache and startable(job) and entry.may_start():
            # Still queued and ours: the engine refused the start for the container's state
            # (a 409). Queued again after a pause (backing off), never dropped; meanwhile the
            # jobs behind it start (its refusal concerns it only).
            self._retry_later(entry)

    def _retry_later(self, entry: _Single) -> None:
        entry.backoff = self._try_later(
            entry.job, entry.backoff, functools.partial(self._requeue, entry)
        )

    def _requeue(self, entry: _Single) -> None:
        job_id = entry.job.job_id
        self.queue(job_id, entry.launch, entry.may_start)
        queued = self._queued.get(job_id)
        if queued is not None and queued is not entry:
            queued.backoff = max(queued.backoff, entry.backoff)

    # -- refusals -------------------------------------------------------------------------

    async def _refuse(self, task: Job, reason: TrackerError) -> None:
        """A job that cannot start for its own reason: FAILED for good (its name says so,
        for any tracker that opens later)."""
        log.warning("job %s not started: %s", task.job_id[:12], reason)
        self._publish(self._cache.start_failed(task.job_id, str(reason)))
        self._tasks.spawn(self._mark_refused, task.job_id)

    async def _mark_refused(self, job_id: str) -> None:
        """Put the FAILED mark in the refused job's name, retried while the engine fails."""
        backoff = BACKOFF_MIN
        while job_id in self._cache:
            try:
                await rename_mark(self._engine, job_id, TERMINATED_SUFFIX)
            except (InvalidStateError, JobNotFoundError):
                return
            except RETRYABLE:
                await anyio.sleep(backoff)
                backoff = next_backoff(backoff)
                continue
            return
