"""The array launcher: starts each array's queued tasks in strict index order, one start
after another, never more than ``max_parallel`` running at once; woken by state changes.

The decisions are pure functions (``is_whole``, ``next_task``), tested on their own. A task
that cannot start for its own reason (a missing input file, a refused config) ends FAILED with
a fault and the launcher goes on; an engine error makes it back off, ask for a re-sync and try
again: it never stops while the array has queued tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager

import anyio

from ._cache import ACTIVE, TERMINAL, Change, Job, StateCache
from ._engine.base import Engine
from ._exceptions import InvalidArgumentError, InvalidStateError, JobNotFoundError, TrackerError
from ._labels import TERMINATED_SUFFIX
from ._model import JobState
from ._submit import RETRYABLE, Launch, Submitter, rename_mark
from ._tasks import Tasks
from ._waiters import Wakeups

log = logging.getLogger("aiotracker")
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 5.0


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


def next_task(tasks: Sequence[Job], max_parallel: int) -> Job | None:
    """The queued task to start next, in index order, or None (none, or at the bound)."""
    active = sum(1 for t in tasks if t.state in ACTIVE)
    if max_parallel and active >= max_parallel:
        return None
    for task in sorted(tasks, key=lambda t: t.index):
        if task.state is JobState.QUEUED and not task.ever_started:
            return task
    return None


class Array:
    """An array job this tracker launches: its bound, the launcher's wake-up and lock."""

    __slots__ = ("array_id", "launches", "lock", "max_parallel", "size", "wake")

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


class ArrayLauncher:
    """One launcher task per array, owned by the tracker's task group."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        submitter: Submitter,
        tasks: Tasks,
        publish: Callable[[tuple[Wakeups, list[Change]] | None], None],
        request_resync: Callable[[], None],
        holds: Callable[[str | None], bool] = lambda owner: True,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._submitter = submitter
        self._tasks = tasks
        self._publish = publish
        self._request_resync = request_resync
        self._holds = holds  # launch only arrays whose lease this tracker holds
        self.arrays: dict[str, Array] = {}

    def add(self, array_id: str, size: int, max_parallel: int) -> Array:
        array = self.arrays.get(array_id)
        if array is None:
            array = self.arrays[array_id] = Array(array_id, size, max_parallel)
            self._tasks.spawn(self._run, array)
        array.wake.set()
        return array

    def lock(self, array_id: str | None) -> AbstractAsyncContextManager[object]:
        array = self.arrays.get(array_id) if array_id else None
        return array.lock if array is not None else contextlib.nullcontext()

    def on_changes(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.array_id is not None and (array := self.arrays.get(change.array_id)):
                array.wake.set()

    def wake_all(self) -> None:
        for array in self.arrays.values():
            array.wake.set()

    async def _run(self, array: Array) -> None:
        backoff = _BACKOFF_MIN
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
                        await self._launch_some(array)
                    backoff = _BACKOFF_MIN
                except RETRYABLE as exc:
                    log.warning("array %s: %s; retrying", array.array_id, exc)
                    self._request_resync()
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    array.wake.set()
        finally:
            self.arrays.pop(array.array_id, None)

    async def _launch_some(self, array: Array) -> None:
        while task := next_task(self._cache.array_jobs(array.array_id), array.max_parallel):
            if not self._holds(task.owner):
                return  # the lease went to another tracker: it launches the rest
            try:
                launch = array.launches.get(task.job_id) or await self._submitter.launch_of(
                    task.job_id
                )
            except (InvalidArgumentError, JobNotFoundError) as exc:
                if isinstance(exc, JobNotFoundError) and task.job_id not in self._cache:
                    continue
                await self._refuse(task, exc)
                continue
            holds = functools.partial(self._holds, task.owner)
            reason = await self._submitter.start(task.job_id, launch, holds)
            array.launches.pop(task.job_id, None)
            if reason is not None:
                await self._refuse(task, reason)

    async def _refuse(self, task: Job, reason: TrackerError) -> None:
        """A task that cannot start for its own reason: FAILED for good (its name says so,
        for any tracker that opens later)."""
        log.warning("array task %s not started: %s", task.job_id[:12], reason)
        self._publish(self._cache.start_failed(task.job_id, str(reason)))
        self._tasks.spawn(self._mark_refused, task.job_id)

    async def _mark_refused(self, job_id: str) -> None:
        """Put the FAILED mark in the refused task's name, retried while the engine fails."""
        backoff = _BACKOFF_MIN
        while job_id in self._cache:
            try:
                await rename_mark(self._engine, job_id, TERMINATED_SUFFIX)
            except (InvalidStateError, JobNotFoundError):
                return
            except RETRYABLE:
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            return
