"""The tracker's timers: DRMAA2's ``start_time`` and ``deadline_time`` and the
``WALLCLOCK_TIME`` limit, for every job, in one scheduler (one task and a heap, never a task
per job).

The times live in the jobs' labels (``_config.timer_labels``), so a tracker opened later
arms them again (``rescan``); with several trackers on a session, only the tracker that acts
for a job (it holds its lease) acts on its timers, checked when one fires, so a lease taken
over meanwhile is honoured. A timer that fires checks the job again (a start only for a job
still queued and never started, a wallclock only for a running or suspended one); its action
runs as a task of its own, one at a time per job and timer, so a slow engine delays no other
timer and nothing is done twice. A finished job's timers are dropped.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import anyio

from ._cache import ACTIVE, TERMINAL, Change, Job, StateCache
from ._exceptions import InvalidArgumentError, InvalidStateError, JobNotFoundError, TrackerError
from ._model import JobState
from ._waiters import Wake

log = logging.getLogger("aiotracker")

START, DEADLINE, WALLCLOCK = "start", "deadline", "wallclock"
_MAX_SLEEP = 5.0  # s: the wall clock may step or the host sleep; look again at least this often
_BACKOFF_MIN, _BACKOFF_MAX = 1.0, 30.0

Entry = tuple[int, str, str]  # (when, local Unix ns; job id; kind)


class Timers:
    """Every job's start, deadline and wallclock timers, in local Unix time (ns)."""

    def __init__(
        self,
        cache: StateCache,
        *,
        engine_offset_ns: Callable[[], int],
        acts_for: Callable[[Job], bool],
        act: Callable[[str, str], Awaitable[None]],
        spawn: Callable[[Callable[[str, str], Awaitable[None]], str, str], None],
    ) -> None:
        self._cache = cache
        self._offset = engine_offset_ns  # the engine's clock minus ours
        self._acts_for = acts_for
        self._act = act
        self._spawn = spawn
        self._heap: list[Entry] = []
        self._live: dict[str, set[Entry]] = {}  # job -> its entries not yet fired or dropped
        self._acting: set[tuple[str, str]] = set()  # (job, kind) whose action runs
        self._backoff: dict[tuple[str, str], float] = {}
        self._wake = Wake()

    @property
    def pending(self) -> int:
        """Timers armed and not yet fired (finished jobs' are dropped)."""
        return sum(len(entries) for entries in self._live.values())

    def arm(self, job: Job) -> None:
        """Put the job's timers on the heap (each once; a timer fired checks again)."""
        if job.state in TERMINAL:
            self.drop(job.job_id)
            return
        if job.start_at_ns and not job.ever_started:
            self._push((job.start_at_ns, job.job_id, START))
        if job.deadline_ns:
            self._push((job.deadline_ns, job.job_id, DEADLINE))
        if job.wallclock_ns and job.state in ACTIVE:
            entries = self._live.get(job.job_id, set())
            stale = {e for e in entries if e[2] == WALLCLOCK}
            if job.started_ns:
                when = job.started_ns - self._offset() + job.wallclock_ns
                self._drop_entries(job.job_id, {e for e in stale if e[0] != when})
                self._push((when, job.job_id, WALLCLOCK))
            elif not stale:
                # Until the start event says when it started (Podman's come late): from now,
                # never early; the event, when it comes, puts the exact time instead.
                self._push((time.time_ns() + job.wallclock_ns, job.job_id, WALLCLOCK))

    def drop(self, job_id: str) -> None:
        """Forget a job's timers (it ended, or is gone)."""
        entries = self._live.get(job_id)
        if entries:  # most jobs have none: nothing to copy
            self._drop_entries(job_id, set(entries))

    def _drop_entries(self, job_id: str, entries: set[Entry]) -> None:
        live = self._live.get(job_id)
        if live is None:
            return
        live -= entries
        if not live:
            del self._live[job_id]
        if len(self._heap) > 2 * self.pending + 64:  # mostly dead entries: rebuild
            self._heap = [e for e in self._heap if e in self._live.get(e[1], ())]
            heapq.heapify(self._heap)

    def _push(self, entry: Entry) -> None:
        live = self._live.setdefault(entry[1], set())
        if entry in live:
            return
        live.add(entry)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()  # earlier than what the scheduler sleeps for

    def on_changes(self, changes: Iterable[Change]) -> None:
        """A job new, started, released, ended or gone: its timers (if it has any)."""
        live = self._live
        for change in changes:
            job = None if change.state in TERMINAL else self._cache.get(change.job_id)
            if job is None:  # ended or gone
                if change.job_id in live:
                    self.drop(change.job_id)
            elif job.start_at_ns or job.deadline_ns or job.wallclock_ns:
                self.arm(job)

    def on_start(self, job_id: str) -> None:
        """The start event said when the job started: its exact wallclock time."""
        job = self._cache.get(job_id)
        if job is not None and job.wallclock_ns:
            self.arm(job)

    def rescan(self) -> None:
        """Arm every job's timers (after opening, a re-sync, a lease taken over)."""
        for job in list(self._cache):
            if job.start_at_ns or job.deadline_ns or job.wallclock_ns:
                self.arm(job)

    def retry(self, job_id: str, kind: str) -> None:
        """Fire ``kind`` for the job again later (its action failed), backing off."""
        delay = self._backoff.get((job_id, kind), _BACKOFF_MIN)
        self._backoff[(job_id, kind)] = min(delay * 2, _BACKOFF_MAX)
        self._push((time.time_ns() + int(delay * 1e9), job_id, kind))

    def succeeded(self, job_id: str, kind: str) -> None:
        self._backoff.pop((job_id, kind), None)

    async def run(self) -> None:
        """Fire the timers as they fall due, forever."""
        while True:
            now = time.time_ns()
            while self._heap and self._heap[0][0] <= now:
                entry = heapq.heappop(self._heap)
                live = self._live.get(entry[1])
                if live is None or entry not in live:
                    continue  # dropped meanwhile
                self._drop_entries(entry[1], {entry})
                self._fire(entry[1], entry[2])
            delay = (self._heap[0][0] - now) / 1e9 if self._heap else _MAX_SLEEP
            with anyio.move_on_after(min(delay, _MAX_SLEEP)):
                await self._wake.wait()

    def _fire(self, job_id: str, kind: str) -> None:
        job = self._cache.get(job_id)
        if job is None or job.state in TERMINAL or not self._acts_for(job):
            return  # gone, ended, or another tracker's to act on
        if kind == START and (job.ever_started or job.state is not JobState.QUEUED):
            return  # started already, or held (its release arms it again)
        if kind == WALLCLOCK and job.state not in ACTIVE:
            return
        if (job_id, kind) in self._acting:
            return  # its action runs already: never twice at once
        self._acting.add((job_id, kind))
        log.info("job %s: %s timer", job_id[:12], kind)
        self._spawn(self._run_action, job_id, kind)

    async def _run_action(self, job_id: str, kind: str) -> None:
        try:
            await self._act(job_id, kind)
        finally:
            self._acting.discard((job_id, kind))


class TimerActions:
    """What a timer does: start a job whose start time came, terminate one whose deadline
    came or that ran its wallclock limit. A start the job itself makes impossible (its input
    file gone) ends it FAILED for good, as a launcher's would; a failure of the engine is
    tried again, backing off (1 s, doubling, at most 30 s)."""

    def __init__(
        self,
        cache: StateCache,
        timers: Timers,
        *,
        start: Callable[[str], Awaitable[TrackerError | None]],
        terminate: Callable[[str, str], Awaitable[None]],
        refused: Callable[[str, TrackerError], None],
    ) -> None:
        self._cache = cache
        self._timers = timers
        self._start = start
        self._terminate = terminate
        self._refused = refused

    async def act(self, job_id: str, kind: str) -> None:
        try:
            if kind == START:
                try:
                    reason = await self._start(job_id)
                except InvalidArgumentError as exc:
                    if isinstance(exc, JobNotFoundError):
                        raise
                    reason = exc  # its launch cannot be made (a file gone): its own fault
                if reason is not None:
                    self._refused(job_id, reason)
            else:
                await self._terminate(job_id, kind)
        except (InvalidStateError, JobNotFoundError):
            job = self._cache.get(job_id)
            if job is not None and kind != START and job.state in ACTIVE:
                self._timers.retry(job_id, kind)  # it still runs: the limit still applies
            return
        except TrackerError as exc:
            log.warning("job %s: %s timer failed (%s); trying again", job_id[:12], kind, exc)
            self._timers.retry(job_id, kind)
            return
        self._timers.succeeded(job_id, kind)
