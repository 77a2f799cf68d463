"""State changes for code that follows many jobs: ``watch``, ``wait_any``, ``wait_all`` and
``as_completed`` (DRMAA2's event notification and wait-any/wait-all).

The cache publishes each change once; ``ChangeFeed`` hands it to the watchers that cover the
job (indexed by job and array id: a change costs one lookup, whatever the number of jobs
watched), in the order the tracker applied them. No task and no connection per job or per
watcher. Each watcher has a bounded buffer: when it is full, changes are dropped and counted,
and the consumer gets a marker (``StateChange.lost``) where the gap is, never a silent one;
a slow consumer never slows the tracker or other watchers. Closing a watcher (``break``,
cancellation, ``aclose``) unregisters it.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

import anyio

from ._cache import TERMINAL, Change, StateCache
from ._exceptions import InvalidStateError, JobNotFoundError, WaitTimeoutError
from ._model import JobState, StateChange
from ._waiters import Wake

_NEVER = datetime.min.replace(tzinfo=UTC)


class _Lost:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 1


class Watcher:
    """One consumer's view: the changes of the jobs (or arrays) it covers, in order."""

    def __init__(
        self, keys: frozenset[str] | None, states: frozenset[JobState | None] | None, limit: int
    ) -> None:
        self.keys = keys  # job and array ids; None: every job
        self.states = states  # new states wanted; None: every change
        self.limit = limit
        self._queue: collections.deque[StateChange | _Lost] = collections.deque()
        self._size = 0
        self._wake = Wake()
        self.registered = False

    def offer(self, change: StateChange) -> None:
        if self.states is not None and change.new_state not in self.states:
            return
        if self._size >= self.limit:  # full: counted, and marked where the gap is
            last = self._queue[-1] if self._queue else None
            if isinstance(last, _Lost):
                last.count += 1
            else:
                self._queue.append(_Lost())
        else:
            self._queue.append(change)
            self._size += 1
        self._wake.set()

    def ready(self) -> bool:
        return bool(self._queue)

    def take(self) -> StateChange:
        entry = self._queue.popleft()
        if isinstance(entry, _Lost):
            return StateChange("", None, None, _NEVER, lost=entry.count)
        self._size -= 1
        return entry

    async def next(self) -> StateChange:
        while not self._queue:
            await self._wake.wait()
        return self.take()


class ChangeFeed:
    """The tracker's published changes, handed to its watchers."""

    def __init__(self, cache: StateCache, clock: Callable[[], datetime]) -> None:
        self._cache = cache
        self._clock = clock  # the engine's time, now
        self._everything: set[Watcher] = set()
        self._by_key: dict[str, set[Watcher]] = {}

    @property
    def watchers(self) -> int:
        return len(self._everything) + len({w for ws in self._by_key.values() for w in ws})

    def on_changes(self, changes: list[Change]) -> None:
        if not changes or (not self._everything and not self._by_key):
            return
        now = self._clock()
        for c in changes:
            change = StateChange(c.job_id, c.old, c.state, now, c.exit_code)
            for watcher in self._everything:
                watcher.offer(change)
            for key in (c.job_id, c.array_id):
                for watcher in self._by_key.get(key, ()) if key else ():
                    watcher.offer(change)

    def register(self, watcher: Watcher, *, initial: bool = False) -> None:
        """Add a watcher; ``initial``: first a change (old state None) for the current
        state of every job it covers, in the same step (nothing can happen in between).
        A watcher registered already is left as it is."""
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

    def unregister(self, watcher: Watcher) -> None:
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

    def completions(
        self, job_ids: Iterable[str], wanted: frozenset[JobState]
    ) -> tuple[Watcher, Sequence[tuple[str, JobState | None]]]:
        """Register a watcher for ``job_ids`` reaching ``wanted`` (or ending otherwise);
        returns it with the jobs already there (their state), from the same step."""
        keys = frozenset(job_ids)
        states: frozenset[JobState | None] = frozenset({*wanted, *TERMINAL, None})
        watcher = Watcher(keys, states, len(keys) + 1)
        self.register(watcher)
        return watcher, self._there(keys, wanted)

    def _there(
        self, job_ids: Iterable[str], wanted: frozenset[JobState]
    ) -> list[tuple[str, JobState | None]]:
        """The jobs in a wanted or terminal state, or gone (None), from the cache."""
        out: list[tuple[str, JobState | None]] = []
        for job_id in job_ids:
            job = self._cache.get(job_id)
            if job is None:
                out.append((job_id, None))
            elif job.state in wanted or job.state in TERMINAL:
                out.append((job_id, job.state))
        return out

    def _next(
        self, change: StateChange, pending: Iterable[str], wanted: frozenset[JobState]
    ) -> Sequence[tuple[str, JobState | None]]:
        """What a change tells a wait; after a marker of lost changes (a completion watcher
        holds one change per job and one more, so only a job that ended and was deleted
        before being read can overflow it), the cache's present for the jobs pending."""
        if change.lost:
            return self._there(pending, wanted)
        return ((change.job_id, change.new_state),)

    async def wait_any(
        self, job_ids: list[str], wanted: frozenset[JobState], timeout: float | None
    ) -> tuple[str, JobState]:
        watcher, done = self.completions(job_ids, wanted)
        try:
            pending = set(job_ids)
            with _deadline(_at(timeout), f"none of {len(job_ids)} jobs reached a wanted state"):
                while True:
                    for job_id, state in done:
                        if state is None:
                            raise JobNotFoundError(f"job {job_id} was deleted", job_id=job_id)
                        if state in wanted:
                            return job_id, state
                        pending.discard(job_id)  # ended otherwise: it never will
                    if not pending:
                        raise InvalidStateError(
                            f"all {len(job_ids)} jobs ended without reaching a wanted state"
                        )
                    done = self._next(await watcher.next(), pending, wanted)
        finally:
            self.unregister(watcher)

    async def wait_all(
        self, job_ids: list[str], wanted: frozenset[JobState], timeout: float | None
    ) -> dict[str, JobState]:
        watcher, done = self.completions(job_ids, wanted)
        pending = set(job_ids)
        reached: dict[str, JobState] = {}
        try:
            with _deadline(_at(timeout), f"not all of {len(job_ids)} jobs reached a wanted state"):
                while True:
                    for job_id, state in done:
                        if job_id in pending and _reached(job_id, state, wanted):
                            reached[job_id] = state  # type: ignore[assignment]  # not None
                            pending.discard(job_id)
                    if not pending:
                        return {job_id: reached[job_id] for job_id in job_ids}
                    done = self._next(await watcher.next(), pending, wanted)
        finally:
            self.unregister(watcher)

    async def as_completed(
        self, prepare: Callable[[], Awaitable[list[str]]], timeout: float | None
    ) -> AsyncGenerator[tuple[str, JobState], None]:
        """Each job as it ends; ``prepare`` checks the arguments and returns the ids (run at
        the first iteration, so the checks' errors come from the iteration)."""
        job_ids = await prepare()
        watcher, done = self.completions(job_ids, TERMINAL)
        pending = set(job_ids)
        deadline = _at(timeout)
        try:
            while True:
                for job_id, state in done:
                    if job_id in pending:
                        pending.discard(job_id)
                        _reached(job_id, state, TERMINAL)  # deleted: JobNotFoundError
                        yield job_id, state  # type: ignore[misc]  # terminal, not None
                if not pending:
                    return
                if timeout is None:
                    change = await watcher.next()
                else:
                    with _deadline(deadline, f"{len(pending)} jobs did not end"):
                        change = await watcher.next()
                done = self._next(change, pending, TERMINAL)
        finally:
            self.unregister(watcher)


def _reached(job_id: str, state: JobState | None, wanted: frozenset[JobState]) -> bool:
    """Whether the job is in a wanted state (False: not yet); raises if it never will be
    (deleted, or ended in another state)."""
    if state is None:
        raise JobNotFoundError(f"job {job_id} was deleted", job_id=job_id)
    if state in wanted:
        return True
    if state in TERMINAL:
        names = ", ".join(sorted(s.name for s in wanted))
        raise InvalidStateError(f"job {job_id} ended {state.name}, never {names}", job_id=job_id)
    return False


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
