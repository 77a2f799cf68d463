"""State changes for code that follows many jobs: ``watch``, ``wait_any``, ``wait_all`` and
``as_completed`` (DRMAA2's event notification and wait-any/wait-all).

The cache publishes each change once; ``ChangeFeed`` hands it to the watchers that cover the
job (indexed by job and array id: a change costs one lookup, whatever the number of jobs
watched), in the order the tracker applied them. No task and no connection per job or per
watcher. Each watcher has a bounded buffer: when it is full, changes are dropped and counted,
and the consumer gets a marker (``StateChange.lost``) where the gap is, never a silent one;
a slow consumer never slows the tracker or other watchers. Closing a watcher (leaving its
``async with``, cancellation, ``aclose``) unregisters it.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from datetime import UTC, datetime

import anyio

from ._cache import TERMINAL, Change, StateCache
from ._exceptions import InvalidStateError, JobNotFoundError, TrackerError, WaitTimeoutError
from ._model import JobState, StateChange
from ._waiters import Wake

_NEVER = datetime.min.replace(tzinfo=UTC)


class _Lost:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 1


class _Subscriber:
    """What the feed hands changes to: a watch or a wait over many jobs."""

    __slots__ = ("_error", "_wake", "keys", "registered", "states")

    def __init__(self, keys: frozenset[str] | None, states: frozenset[JobState | None] | None):
        self.keys = keys  # job and array ids; None: every job
        self.states = states  # new states wanted; None: every change
        self.registered = False
        self._wake = Wake()
        self._error: TrackerError | None = None

    def offer(self, change: StateChange) -> None:
        raise NotImplementedError

    def fail(self, error: TrackerError) -> None:
        """End the consumer's wait with ``error`` (the tracker closed, the engine is lost)."""
        self._error = error
        self._wake.set()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class Watcher(_Subscriber):
    """One consumer's view: the changes of the jobs (or arrays) it covers, in order, in a
    buffer of ``limit`` changes; beyond, a marker of how many were lost. The buffer is made
    at the first change (an empty deque is 600 bytes: a watch per job would pay it for every
    job that has not changed yet)."""

    __slots__ = ("_queue", "_size", "limit")

    def __init__(
        self, keys: frozenset[str] | None, states: frozenset[JobState | None] | None, limit: int
    ) -> None:
        super().__init__(keys, states)
        self.limit = limit
        self._queue: collections.deque[StateChange | _Lost] | None = None
        self._size = 0

    def offer(self, change: StateChange) -> None:
        if self.states is not None and change.new_state not in self.states:
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = collections.deque()
        if self._size >= self.limit:  # full: counted, and marked where the gap is
            last = queue[-1] if queue else None
            if isinstance(last, _Lost):
                last.count += 1
            else:
                queue.append(_Lost())
        else:
            queue.append(change)
            self._size += 1
        self._wake.set()

    def take(self) -> StateChange:
        """The oldest buffered change (only called when there is one)."""
        assert self._queue is not None
        entry = self._queue.popleft()
        if isinstance(entry, _Lost):
            return StateChange("", None, None, _NEVER, lost=entry.count)
        self._size -= 1
        return entry

    async def next(self) -> StateChange:
        """The next change; what was buffered comes before a failure."""
        while not self._queue:
            self._raise()
            await self._wake.wait()
        return self.take()


class Completions(_Subscriber):
    """A wait over many jobs: the first wanted, terminal or deleted (None) state of each job,
    once per job, so it holds at most one entry per job and can never overflow."""

    __slots__ = ("_ready", "_seen")

    def __init__(self, keys: frozenset[str], states: frozenset[JobState | None]) -> None:
        super().__init__(keys, states)
        self._seen: set[str] = set()
        self._ready: list[tuple[str, JobState | None]] = []

    def add(self, job_id: str, state: JobState | None) -> None:
        if job_id not in self._seen:
            self._seen.add(job_id)
            self._ready.append((job_id, state))
            self._wake.set()

    def offer(self, change: StateChange) -> None:
        self.note(change.job_id, change.new_state)

    def note(self, job_id: str, state: JobState | None) -> None:
        """A change of a job (no ``StateChange`` is made for a wait: it needs none)."""
        if self.states is None or state in self.states:
            self.add(job_id, state)

    def take(self) -> list[tuple[str, JobState | None]]:
        ready, self._ready = self._ready, []
        return ready

    async def next(self) -> list[tuple[str, JobState | None]]:
        """The jobs that got somewhere since the last call (a failure comes first)."""
        while not self._ready:
            self._raise()
            await self._wake.wait()
        self._raise()
        return self.take()


class ChangeFeed:
    """The tracker's published changes, handed to its watchers and waits."""

    def __init__(self, cache: StateCache, clock: Callable[[], datetime]) -> None:
        self._cache = cache
        self._clock = clock  # the engine's time, now
        self._everything: set[_Subscriber] = set()
        self._by_key: dict[str, set[_Subscriber]] = {}
        self._closed: TrackerError | None = None  # the tracker closed: new watchers fail

    @property
    def watchers(self) -> int:
        return len(self._everything) + len({w for ws in self._by_key.values() for w in ws})

    def _subscribers(self) -> set[_Subscriber]:
        return self._everything | {w for ws in self._by_key.values() for w in ws}

    def on_changes(self, changes: list[Change]) -> None:
        if not changes or (not self._everything and not self._by_key):
            return
        now: datetime | None = None  # read once, and only for a watch
        for c in changes:
            change: StateChange | None = None
            for subscribers in (
                self._everything, self._by_key.get(c.job_id, ()),
                self._by_key.get(c.array_id, ()) if c.array_id else (),
            ):  # fmt: skip
                for subscriber in subscribers:
                    if isinstance(subscriber, Completions):
                        subscriber.note(c.job_id, c.state)
                        continue
                    if change is None:
                        now = now or self._clock()
                        change = StateChange(c.job_id, c.old, c.state, now, c.exit_code)
                    subscriber.offer(change)

    def fail_waits(self, error: TrackerError) -> None:
        """Fail every wait over many jobs (the engine is lost; watches go on, and catch up
        after the reconnect's re-sync)."""
        for subscriber in self._subscribers():
            if isinstance(subscriber, Completions):
                subscriber.fail(error)

    def fail_all(self, error: TrackerError) -> None:
        """End every watch and wait (the tracker closed): each raises ``error`` (a watch once
        it has handed over what it holds)."""
        if self._closed is None:
            self._closed = error
        for subscriber in self._subscribers():
            subscriber.fail(error)

    def register(self, watcher: _Subscriber, *, initial: bool = False) -> None:
        """Add a watcher; ``initial``: first a change (old state None) for the current
        state of every job it covers, in the same step (nothing can happen in between).
        A watcher registered already is left as it is; one registered after the tracker
        closed ends (after what it holds) with the closing error."""
        if watcher.registered:
            return
        watcher.registered = True
        if initial:
            now = self._clock()
            for job in self._cache:
                if (
                    watcher.keys is None
                    or job.job_id in watcher.keys
                    or (job.array_id is not None and job.array_id in watcher.keys)
                ):
                    watcher.offer(StateChange(job.job_id, None, job.state, now, job.die_exit_code))
        if watcher.keys is None:
            self._everything.add(watcher)
        else:
            for key in watcher.keys:
                self._by_key.setdefault(key, set()).add(watcher)
        if self._closed is not None:  # registered after the close (its lookup was in flight)
            watcher.fail(self._closed)

    def unregister(self, watcher: _Subscriber) -> None:
        """Remove a watcher (idempotent)."""
        self._everything.discard(watcher)
        for key in watcher.keys or ():
            watchers = self._by_key.get(key)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._by_key[key]

    async def watch(self, watcher: Watcher, *, initial: bool) -> AsyncGenerator[StateChange, None]:
        self.register(watcher, initial=initial)
        try:
            while True:
                yield await watcher.next()
        finally:
            self.unregister(watcher)

    # -- waits over many jobs ----------------------------------------------------------

    def completions(self, job_ids: Iterable[str], wanted: frozenset[JobState]) -> Completions:
        """Register a wait for ``job_ids`` reaching ``wanted`` (or ending otherwise), holding
        first the jobs already there (their state), from the same step."""
        keys = frozenset(job_ids)
        waiter = Completions(keys, frozenset({*wanted, *TERMINAL, None}))
        for job_id in keys:
            job = self._cache.get(job_id)
            if job is None:
                waiter.add(job_id, None)
            elif job.state in wanted or job.state in TERMINAL:
                waiter.add(job_id, job.state)
        self.register(waiter)
        return waiter

    async def wait_any(
        self, job_ids: list[str], wanted: frozenset[JobState], timeout: float | None
    ) -> tuple[str, JobState]:
        waiter = self.completions(job_ids, wanted)
        try:
            pending = set(job_ids)
            ready = waiter.take()  # the jobs there already
            with _deadline(_at(timeout), f"none of {len(job_ids)} jobs reached a wanted state"):
                while True:
                    for job_id, state in ready:
                        if state is None:
                            raise JobNotFoundError(f"job {job_id} was deleted", job_id=job_id)
                        if state in wanted:
                            return job_id, state
                        pending.discard(job_id)  # ended otherwise: it never will
                    if not pending:
                        raise InvalidStateError(
                            f"all {len(job_ids)} jobs ended without reaching a wanted state"
                        )
                    ready = await waiter.next()
        finally:
            self.unregister(waiter)

    async def wait_all(
        self, job_ids: list[str], wanted: frozenset[JobState], timeout: float | None
    ) -> dict[str, JobState]:
        waiter = self.completions(job_ids, wanted)
        pending = set(job_ids)
        reached: dict[str, JobState] = {}
        try:
            with _deadline(_at(timeout), f"not all of {len(job_ids)} jobs reached a wanted state"):
                while pending:
                    for job_id, state in await waiter.next():
                        reached[job_id] = _reached(job_id, state, wanted)
                        pending.discard(job_id)
                return {job_id: reached[job_id] for job_id in job_ids}
        finally:
            self.unregister(waiter)

    async def as_completed(
        self, prepare: Callable[[], Awaitable[list[str]]], timeout: float | None
    ) -> AsyncGenerator[tuple[str, JobState], None]:
        """Each job as it ends; ``prepare`` checks the arguments and returns the ids (run at
        the first iteration, so the checks' errors come from the iteration)."""
        job_ids = await prepare()
        waiter = self.completions(job_ids, TERMINAL)
        left = len(waiter.keys or ())
        deadline = _at(timeout)
        try:
            while left:
                if timeout is None:
                    ready = await waiter.next()
                else:
                    with _deadline(deadline, f"{left} jobs did not end"):
                        ready = await waiter.next()
                for job_id, state in ready:
                    left -= 1
                    yield job_id, _reached(job_id, state, TERMINAL)
        finally:
            self.unregister(waiter)


def _reached(job_id: str, state: JobState | None, wanted: frozenset[JobState]) -> JobState:
    """The job's state, recorded by a wait as its first wanted or terminal state (or None:
    deleted); raises if the job will never be in a wanted state."""
    if state is None:
        raise JobNotFoundError(f"job {job_id} was deleted", job_id=job_id)
    if state not in wanted:  # a terminal state, since a wait records only those and wanted
        names = ", ".join(sorted(s.name for s in wanted))
        raise InvalidStateError(f"job {job_id} ended {state.name}, never {names}", job_id=job_id)
    return state


def _at(timeout: float | None) -> float:
    """The deadline (anyio's clock) of a timeout in seconds (None: never)."""
    return math.inf if timeout is None else anyio.current_time() + timeout


class _deadline:  # used as a context manager, like anyio's
    """``WaitTimeoutError`` with ``message`` once the ``deadline`` passes."""

    def __init__(self, deadline: float, message: str) -> None:
        self._scope = anyio.move_on_after(deadline - anyio.current_time())
        self._message = message

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._scope.__exit__(*exc)  # type: ignore[arg-type]
        if self._scope.cancelled_caught:  # it was the deadline's cancellation: caught here
            raise WaitTimeoutError(f"{self._message} in time")
