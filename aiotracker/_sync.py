"""Keeping the cache true to the engine: seeding, events, inspects and re-syncs.

- ``seed`` fills the cache from one listing (an inspect only where a list entry cannot tell);
- ``on_event`` applies one event and schedules the inspect a ``die`` needs;
- the inspect scheduler coalesces inspects per job, re-inspects when an event overtook one,
  and retries a failed one with backoff, forever, until it lands or the job is gone;
- any doubt (a failed inspect, a reconnect, a launcher error) asks for a *re-sync*: one
  listing of the session, coalesced, retried with backoff. Waits are resolved by events; the
  re-sync is the safety net, never the mechanism.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import anyio

from ._cache import TERMINAL, Change, StateCache
from ._engine.base import ContainerDetails, ContainerEvent, ContainerSummary, Engine
from ._errors import engine_errors
from ._exceptions import JobNotFoundError, TrackerError
from ._labels import (
    ARRAY_LABEL,
    LEASE_LABEL,
    SESSION_LABEL,
    base_name,
    container_name,
)
from ._mapping import state_from_summary
from ._model import JobState
from ._tasks import BACKOFF_MIN, Tasks, next_backoff
from ._waiters import Wakeups

log = logging.getLogger("aiotracker")

Result = tuple[Wakeups, list[Change]]


class Sync:
    """Applies what the engine says (events, inspects, listings) to the cache."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        session: str,
        tasks: Tasks,
        publish: Callable[[Result | None], None],
        *,
        max_inspects: int = 16,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._session = session
        self._tasks = tasks
        self._publish = publish
        self._limit = anyio.Semaphore(max_inspects)
        self._inspecting: dict[str, bool] = {}  # job -> asked again while in flight
        self._resync = anyio.Event()
        self.on_resynced: Callable[[], None] = lambda: None
        self.on_lease_event: Callable[[ContainerEvent], None] = lambda event: None
        self.on_exit: Callable[[str], None] = lambda job_id: None
        self.on_start: Callable[[str], None] = lambda job_id: None  # a start event applied
        self.inspects = 0
        self.lease_events = 0
        self.resyncs = 0

    @property
    def label(self) -> str:
        return f"{SESSION_LABEL}={self._session}"

    # -- events -------------------------------------------------------------------------

    def on_event(self, event: ContainerEvent) -> None:
        """Apply one event (synchronously) and schedule the inspect it needs."""
        if LEASE_LABEL in event.attributes:  # a lease, not a job: the leases' business
            self.lease_events += 1
            self.on_lease_event(event)
            return
        try:
            wakeups, changes, inspect = self._cache.apply(event)
        except Exception:  # a bug: contain it, and let a re-sync repair what it missed
            log.exception("applying %s of %s failed", event.action, event.container_id[:12])
            self.request_resync()
            return
        self._publish((wakeups, changes))
        if event.action == "die":
            self.on_exit(event.container_id)
        elif event.action == "start":
            self.on_start(event.container_id)
        if inspect:
            self.schedule_inspect(event.container_id, event)

    # -- inspects -----------------------------------------------------------------------

    def schedule_inspect(self, job_id: str, die: ContainerEvent | None = None) -> None:
        """Inspect the job soon (coalesced: one in flight per job, repeated if asked again)."""
        if job_id in self._inspecting:
            self._inspecting[job_id] = True
            return
        self._inspecting[job_id] = False
        self._tasks.spawn(self._inspect_until_settled, job_id, die)

    async def _inspect_until_settled(self, job_id: str, die: ContainerEvent | None) -> None:
        backoff = BACKOFF_MIN
        try:
            while True:
                try:
                    await self.refresh(job_id, die)
                except JobNotFoundError:
                    return
                except TrackerError as exc:
                    # Never left to chance: retried until it lands (or the job is gone).
                    if job_id not in self._cache:
                        return
                    log.debug("inspect of %s failed (%s); retrying", job_id[:12], exc)
                    self.request_resync()
                    await anyio.sleep(backoff)
                    backoff = next_backoff(backoff)
                    continue
                if not self._inspecting.get(job_id):
                    return
                self._inspecting[job_id] = False  # asked for again meanwhile
        finally:
            self._inspecting.pop(job_id, None)

    async def refresh(self, job_id: str, die: ContainerEvent | None = None) -> None:
        """Inspect a job and apply what the engine says, again if an event overtook it."""
        while True:
            seq = self._cache.seq(job_id)
            async with self._limit:
                self.inspects += 1
                try:
                    with engine_errors("inspect", job_id):
                        details = await self._engine.inspect(job_id)
                except JobNotFoundError:
                    self._gone(job_id, die)
                    raise
            if details.labels.get(SESSION_LABEL) != self._session or LEASE_LABEL in details.labels:
                return
            result = self._cache.settle(details, seq)
            if result is not None or seq is None or job_id not in self._cache:
                self._publish(result)
                if not (details.running or details.restarting) and details.finished_at:
                    self.on_exit(job_id)
                return

    def _gone(self, job_id: str, die: ContainerEvent | None) -> None:
        if die is not None and die.action == "die":
            # Removed at once (AutoRemove): the die's exit code is all there is.
            code = _int(die.attributes.get("exitCode"), default=1)
            self._publish(self._cache.settle_exit(job_id, code))
        job = self._cache.get(job_id)
        if job is not None and not job.output_pending:
            self._publish(self._cache.forget(job_id))

    async def refresh_many(self, job_ids: list[str]) -> None:
        """Inspect these jobs; one that fails is scheduled for retries, the rest go on."""

        async def one(job_id: str) -> None:
            try:
                await self.refresh(job_id)
            except JobNotFoundError:
                pass
            except TrackerError:
                self.schedule_inspect(job_id)

        async with anyio.create_task_group() as tg:
            for job_id in job_ids:
                tg.start_soon(one, job_id)

    # -- lookups ------------------------------------------------------------------------

    async def known(self, job_id: str) -> str:
        """The full id of a job of this session; inspect only for ids the cache lacks."""
        if not isinstance(job_id, str):
            raise JobNotFoundError(f"job ids are strings, got {job_id!r}", job_id=str(job_id))
        if job_id in self._cache:
            return job_id
        if not self._engine.is_job_id(job_id):
            raise JobNotFoundError(f"no job {job_id!r} in this session", job_id=job_id)
        details = await self.details(job_id)
        if details.container_id not in self._cache:
            # Made by another tracker, and its create event has not arrived yet.
            self._publish(self._cache.settle(details))
        return details.container_id

    async def _list(self) -> list[ContainerSummary]:
        """The session's containers that are jobs (one listing; leases are left out)."""
        with engine_errors("list"):
            summaries = await self._engine.list_containers(self.label)
        return [s for s in summaries if LEASE_LABEL not in s.labels]

    async def details(self, job_id: str) -> ContainerDetails:
        """One inspect of a job of this session (``JobNotFoundError`` for anything else)."""
        with engine_errors("inspect", job_id):
            details = await self._engine.inspect(job_id)
        if details.labels.get(SESSION_LABEL) != self._session or LEASE_LABEL in details.labels:
            raise JobNotFoundError(f"no job {job_id!r} in this session", job_id=job_id)
        return details

    async def array_tasks(self, array_id: str) -> None:
        """Learn every task of an array (one listing, an inspect for each the cache lacks):
        another tracker's array may be newer than its create events here."""
        summaries = await self._list()
        for s in summaries:
            if s.labels.get(ARRAY_LABEL) == array_id and s.container_id not in self._cache:
                with contextlib.suppress(JobNotFoundError):
                    await self.known(s.container_id)

    async def named(self, job_name: str) -> list[str]:
        """The ids of this session's jobs with that job name (one listing)."""
        summaries = await self._list()
        wanted = {job_name, container_name(job_name, self._session)}
        return [s.container_id for s in summaries if base_name(s.name) in wanted]

    # -- listings -----------------------------------------------------------------------

    async def seed(
        self,
        version_ns: int,
        recovering: Callable[[ContainerSummary, JobState], bool] = lambda s, state: False,
    ) -> list[ContainerSummary]:
        """Fill the cache from the session's containers; returns the listing.

        ``recovering`` tells which jobs' output is still to be written (a terminal state is
        then held back until it is).
        """
        summaries = await self._list()
        unknown = []
        for s in summaries:
            state = state_from_summary(s.state, s.status, s.name)
            if state is None:
                unknown.append(s.container_id)
                continue
            self._publish(
                self._cache.add(
                    s.container_id, state, labels=dict(s.labels), version_ns=version_ns,
                    ever_started=s.state != "created",
                    output_pending=recovering(s, state),
                )
            )  # fmt: skip
        await self.refresh_many(unknown)
        return summaries

    def request_resync(self) -> None:
        """Ask for one listing of the session soon (coalesced with other requests)."""
        self._resync.set()

    async def run_resyncs(self) -> None:
        """Serve re-sync requests forever: one at a time, retried with backoff."""
        backoff = BACKOFF_MIN
        while True:
            await self._resync.wait()
            self._resync = anyio.Event()
            try:
                await self.reconcile()
            except TrackerError as exc:
                log.debug("re-sync failed (%s); retrying", exc)
                self._resync.set()
                await anyio.sleep(backoff)
                backoff = next_backoff(backoff)
                continue
            backoff = BACKOFF_MIN

    async def reconcile(self) -> None:
        """List the session: forget what is gone, inspect what may have moved meanwhile."""
        tick = self._cache.tick
        summaries = await self._list()
        self.resyncs += 1
        present = {s.container_id for s in summaries}
        self._publish(self._cache.forget_absent(present, tick))
        todo = [
            s.container_id for s in summaries
            if (known := self._cache.get(s.container_id)) is None or known.state not in TERMINAL
        ]  # fmt: skip
        await self.refresh_many(todo)
        self.on_resynced()


def _int(text: str | None, *, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default
