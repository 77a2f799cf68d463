"""The tracker's timers: DRMAA2's ``start_time`` and ``deadline_time`` and the
``WALLCLOCK_TIME`` limit, for every job, in one scheduler (one task and a heap, never a task
per job).

The times live in the jobs' labels (``_config.timer_labels``), so a tracker opened later
arms them again (``rescan``); with several trackers on a session, only the tracker that holds
a job's lease acts on it (checked when a timer fires, so a lease taken over meanwhile is
honoured). A timer that fires checks the job again: a start only for a job still queued and
never started, a wallclock only for a running or suspended job; what it does (a start, a
terminate) runs as a task of its own, so a slow engine delays no other timer.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable

import anyio

from ._cache import ACTIVE, TERMINAL, Change, Job, StateCache
from ._exceptions import InvalidStateError, JobNotFoundError, TrackerError
from ._model import JobState
from ._waiters import Wake

log = logging.getLogger("aiotracker")

START, DEADLINE, WALLCLOCK = "start", "deadline", "wallclock"


class Timers:
    """Every job's start, deadline and wallclock timers, in local Unix time (ns)."""

    def __init__(
        self,
        cache: StateCache,
        *,
        engine_offset_ns: Callable[[], int],
        holds: Callable[[str | None], bool],
        act: Callable[[str, str], Awaitable[None]],
        spawn: Callable[[Callable[[str, str], Awaitable[None]], str, str], None],
    ) -> None:
        self._cache = cache
        self._offset = engine_offset_ns  # the engine's clock minus ours
        self._holds = holds
        self._act = act
        self._spawn = spawn
        self._heap: list[tuple[int, str, str]] = []  # (when, job id, kind)
        self._armed: set[tuple[int, str, str]] = set()
        self._wake = Wake()

    @property
    def pending(self) -> int:
        return len(self._heap)

    def arm(self, job: Job) -> None:
        """Put the job's timers on the heap (each once; a timer fired checks again)."""
        if job.state in TERMINAL:
            return
        if job.start_at_ns and not job.ever_started:
            self._push(job.start_at_ns, job.job_id, START)
        if job.deadline_ns:
            self._push(job.deadline_ns, job.job_id, DEADLINE)
        if job.wallclock_ns and job.state in ACTIVE:
            # From its start on the engine's clock; until the start event says when (Podman's
            # come late), from now: never early, and the event, when it comes, arms the exact
            # time too.
            started = job.started_ns - self._offset() if job.started_ns else time.time_ns()
            self._push(started + job.wallclock_ns, job.job_id, WALLCLOCK)

    def retry(self, job_id: str, kind: str) -> None:
        """Fire ``kind`` for the job again a second from now (its action failed)."""
        self._push(time.time_ns() + 1_000_000_000, job_id, kind)

    def _push(self, when: int, job_id: str, kind: str) -> None:
        entry = (when, job_id, kind)
        if entry in self._armed:
            return
        self._armed.add(entry)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()  # earlier than what the scheduler sleeps for

    def on_changes(self, changes: Iterable[Change]) -> None:
        """A job new to the cache, started, or released: its timers (if it has any)."""
        for change in changes:
            job = self._cache.get(change.job_id)
            if job is not None and (job.start_at_ns or job.deadline_ns or job.wallclock_ns):
                self.arm(job)

    def rescan(self) -> None:
        """Arm every job's timers (after opening, a re-sync, a lease taken over)."""
        for job in list(self._cache):
            if job.start_at_ns or job.deadline_ns or job.wallclock_ns:
                self.arm(job)

    async def run(self) -> None:
        """Fire the timers as they fall due, forever."""
        while True:
            now = time.time_ns()
            while self._heap and self._heap[0][0] <= now:
                entry = heapq.heappop(self._heap)
                self._armed.discard(entry)
                self._fire(entry[1], entry[2])
            delay = (self._heap[0][0] - now) / 1e9 if self._heap else math.inf
            with anyio.move_on_after(delay):
                await self._wake.wait()

    def _fire(self, job_id: str, kind: str) -> None:
        job = self._cache.get(job_id)
        if job is None or job.state in TERMINAL or not self._holds(job.owner):
            return  # gone, ended, or another tracker's to act on
        if kind == START and (job.ever_started or job.state is not JobState.QUEUED):
            return  # started already, or held (a release after the start time starts it)
        if kind == WALLCLOCK and job.state not in ACTIVE:
            return
        log.info("job %s: %s timer", job_id[:12], kind)
        self._spawn(self._act, job_id, kind)


class TimerActions:
    """What a timer does: start a job whose start time came, terminate one whose deadline
    came or that ran its wallclock limit. A start the job itself makes impossible (its input
    file gone) ends it FAILED with the reason, as a launcher's would; an engine failure is
    tried again a second later."""

    def __init__(
        self,
        cache: StateCache,
        *,
        start: Callable[[str], Awaitable[TrackerError | None]],
        terminate: Callable[[str], Awaitable[None]],
        refused: Callable[[str, TrackerError], None],
        retry: Callable[[str, str], None],
    ) -> None:
        self._cache = cache
        self._start = start
        self._terminate = terminate
        self._refused = refused
        self._retry = retry

    async def act(self, job_id: str, kind: str) -> None:
        try:
            if kind == START:
                reason = await self._start(job_id)
                if reason is not None:
                    self._refused(job_id, reason)
            else:
                await self._terminate(job_id)
        except (InvalidStateError, JobNotFoundError):
            return  # it moved on meanwhile (ended, started, held, removed)
        except TrackerError as exc:
            log.warning("job %s: %s timer failed (%s); trying again in 1 s", job_id[:12], kind, exc)
            self._retry(job_id, kind)
