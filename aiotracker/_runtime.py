"""The tracker's runtime: its parts wired together, and the task group they live in.

``Runtime`` builds the parts (cache, sync, feed, copier, submitter, launcher, control) over one
engine, opens them in order (connect, subscribe, seed, adopt what the session already has),
and closes them whatever happens: pending waits fail with ``TrackerClosedError`` (chained to
the cause if the tracker died on its own) and the engine's connections are closed, even when
the closing task is cancelled or the engine hangs (every clean-up is bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

import anyio

from ._cache import ACTIVE, TERMINAL, Change, Job, StateCache
from ._changes import ChangeFeed
from ._checks import clock_offset, utcnow
from ._control import Controller
from ._copier import OutputCopier, Source, recovery
from ._engine.base import ContainerSummary, Engine, EngineInfo
from ._errors import engine_errors
from ._exceptions import (
    DrmCommunicationError,
    InvalidStateError,
    JobNotFoundError,
    TrackerClosedError,
    TrackerError,
)
from ._exits import ExitSignals
from ._feed import EventFeed
from ._labels import (
    DEADLINE_SUFFIX,
    OWNER_LABEL,
    TERMINATED_SUFFIX,
    WALLCLOCK_SUFFIX,
)
from ._launcher import Launcher, startable
from ._leases import UNLEASED, Leases
from ._model import JobControlAction, JobState
from ._output import OutputPlan
from ._pull import Puller, PullProgress
from ._stageout import StagePlan, Stager, stage_recovery
from ._submit import RETRYABLE, Launch, Submitter, launch_from, rename_mark
from ._sync import Sync
from ._tasks import BACKOFF_MIN, Tasks, next_backoff, shielded
from ._timers import TimerActions, Timers
from ._waiters import Wakeups
from ._watch import OutputWatch

log = logging.getLogger("aiotracker")


class Runtime:
    """The parts of one tracker and the task that hosts their task group."""

    def __init__(
        self,
        engine: Engine,
        session: str,
        *,
        engine_timeout: float,
        labels: dict[str, str],
        max_inspects: int,
        observer: bool = False,
        on_pull: Callable[[PullProgress], None] | None = None,
        max_running: int = 0,
    ) -> None:
        self.engine = engine
        self.observer = observer  # never starts, launches or writes output
        self.timeout = engine_timeout
        self.info = EngineInfo("", 0, "")
        self.clock_offset = timedelta(0)
        self.cache = StateCache()
        self.tasks = Tasks()
        self.sync = Sync(engine, self.cache, session, self.tasks, self.publish,
                         max_inspects=max_inspects)  # fmt: skip
        self.feed = EventFeed(
            engine, [self.sync.label], engine_timeout=engine_timeout,
            on_reconnect=self.sync.request_resync, on_engine_lost=self._engine_lost,
        )  # fmt: skip
        self.exits = ExitSignals(engine, self.cache)
        self.copier = OutputCopier(engine, self.cache, self.publish, self.exits)
        self.leases = Leases(
            engine, self.cache, session, self.tasks, labels=labels, timeout=engine_timeout
        )
        self.leases.on_adopted = self._adopted
        self.leases.on_lost = self._lost
        self.stager = Stager(engine, self.cache, self.tasks, self.publish)
        self.puller = Puller(engine, self.tasks, on_pull)
        self.submitter = Submitter(
            engine, self.cache, self.tasks, self.copier, self.publish,
            stager=None if observer else self.stager, puller=self.puller, session=session,
            labels=labels, engine_timeout=engine_timeout,
            owner=None if observer else self.leases.ensure_own,
            owner_live=self.leases.held_elsewhere,
            engine_info=lambda: self.info,
        )  # fmt: skip
        self.launcher = Launcher(
            engine, self.cache, self.submitter, self.tasks, self.publish,
            self.sync.request_resync, self.leases.holds, max_running=max_running,
        )  # fmt: skip
        self.submitter.queue = self._queue
        self.sync.on_resynced = self._resynced
        self.sync.on_exit = self._exited
        self.control = Controller(
            engine, self.cache, self.sync, self.submitter, self.launcher, self.publish,
            lambda: time.time_ns() + self._offset_ns(),
        )  # fmt: skip
        self.changes = ChangeFeed(self.cache, lambda: utcnow() + self.clock_offset)
        self.watch = OutputWatch(engine, self.cache, self.copier, self.tasks, self.exits)
        self.timers = Timers(
            self.cache, engine_offset_ns=self._offset_ns, acts_for=self._acts_for,
            act=lambda j, k: self._timer_actions.act(j, k), spawn=self.tasks.spawn,
        )  # fmt: skip
        self._timer_actions = TimerActions(
            self.cache, self.timers, start=self._timed_start, terminate=self._timed_terminate,
            refused=self._timed_refusal,
        )  # fmt: skip
        self.sync.on_start = self.timers.on_start
        self.closed = False
        self._host_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._stopping: asyncio.Future[None] | None = None  # set when _stop has finished
        self._recoveries: dict[str, tuple[OutputPlan, Source]] = {}
        self._stage_recoveries: dict[str, StagePlan] = {}
        self._live_owners: set[str] = set()

    def _offset_ns(self) -> int:
        """The engine's clock minus ours, in ns."""
        return self.clock_offset // timedelta(microseconds=1) * 1000

    def _resynced(self) -> None:
        """After a re-sync (a reconnect, a doubt): launchers look again, dead leases are taken."""
        self.launcher.wake_all()
        self.timers.rescan()
        if not self.observer:
            self.tasks.spawn(self.leases.adopt_dead)

    def _queue(self, job_id: str, launch: Launch | None) -> bool:
        """With ``max_running``: the job waits for its turn in the launcher's queue (True);
        without, the caller starts it (False)."""
        job = self.cache.get(job_id)
        if job is None:
            return self.launcher.bounded
        return self.launcher.queue(job_id, launch, lambda: self._acts_for(job))

    def _exited(self, job_id: str) -> None:
        """A job's exit is known: its output readers and its stage-out go on."""
        self.exits.job_exited(job_id)
        self.stager.job_exited(job_id)

    def publish(self, result: tuple[Wakeups, list[Change]] | None) -> None:
        """Wake the waiters a cache change concerns, then the launchers it concerns."""
        if result is None:
            return
        wakeups, changes = result
        wakeups.resolve()
        self.launcher.on_changes(changes)
        self.timers.on_changes(changes)
        self.changes.on_changes(changes)
        if self.launcher.bounded:
            self._released_elsewhere(changes)

    def _released_elsewhere(self, changes: list[Change]) -> None:
        """A single job of ours released (held -> queued), by whichever tracker: it joins
        our queue (``max_running``; a tracker that does not launch it only unmarks it)."""
        for change in changes:
            if (
                change.old is JobState.QUEUED_HELD and change.state is JobState.QUEUED
                and change.array_id is None
            ):  # fmt: skip
                job = self.cache.get(change.job_id)
                if job is not None and not job.start_at_ns and self._acts_for(job):
                    self._queue(job.job_id, None)

    def _engine_lost(self) -> None:
        error = DrmCommunicationError("the Docker engine has been unreachable")
        self.cache.fail_all(None, error).resolve()
        self.changes.fail_waits(error)

    @property
    def is_open(self) -> bool:
        return not self.closed and self.tasks.open

    # -- opening ------------------------------------------------------------------------

    async def open(self, name: str) -> None:
        if self._host_task is not None or self.closed:
            raise InvalidStateError("a tracker can be opened once")
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        try:
            with engine_errors("connect"):
                self.info = await self.engine.open()
            # The engine's clock against ours: job times are the engine's.
            self.clock_offset = clock_offset(self.info.system_time_ns)
        except BaseException:
            self.closed = True
            with shielded(self.timeout):
                await self.engine.aclose()
            raise
        ready: asyncio.Future[None] = self._loop.create_future()
        self._host_task = asyncio.create_task(self._host(ready), name=name)
        try:
            await ready
        except BaseException:
            await self._stop()
            raise

    async def _host(self, ready: asyncio.Future[None]) -> None:
        """Own the task group: started by open(), ended by aclose(), whatever task calls them."""
        assert self._closing is not None
        cause: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                self.tasks.bind(tg)
                since = self.info.system_time_ns
                await tg.start(self.feed.run, since)
                if not self.observer:
                    self._live_owners = await self.leases.live_owners(note_ended=True)
                await self.sync.seed(since, self._recovering)
                await self._take_dead_leases()
                self._adopt()
                if not self.observer:
                    self.tasks.spawn(self.leases.clear_ended)
                tg.start_soon(self.feed.process, self.sync.on_event)
                tg.start_soon(self.sync.run_resyncs)
                tg.start_soon(self.timers.run)
                self.tasks.spawn(self._arm_timers)
                if not self.observer:
                    self.sync.on_lease_event = self.leases.on_event
                if not ready.done():  # open() was cancelled while we seeded: _stop ends us
                    ready.set_result(None)
                await self._closing.wait()
                self.leases.closing = True
                finished = self.leases.finished()
                tg.cancel_scope.cancel()
            # Ended: nothing may be started in it any more (a call in flight gets
            # TrackerClosedError, not anyio's RuntimeError) while the leases are removed.
            self.tasks.bind(None)
            await self.leases.remove(finished)
        except BaseException as exc:
            cause = exc
            if not ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(_first_error(exc))
            elif not isinstance(exc, asyncio.CancelledError):
                log.exception("the tracker stopped")
            raise
        finally:
            self.tasks.bind(None)
            self.closed = True
            error = TrackerClosedError("the tracker stopped")
            error.__cause__ = cause
            self.cache.close(error).resolve()
            self.changes.fail_all(error)
            with shielded(self.timeout):
                await self.engine.aclose()

    def _recovering(self, summary: ContainerSummary, state: JobState) -> bool:
        owner = summary.labels.get(OWNER_LABEL, "")
        if self.observer or owner in self._live_owners or owner.startswith(UNLEASED):
            return False  # its lease's holder (or its unleased maker) writes its output
        plan = recovery(summary.labels, state, summary.container_id)
        if plan is not None:
            self._recoveries[summary.container_id] = plan
        stage = stage_recovery(summary.labels, state, summary.container_id)
        if stage is not None:
            self._stage_recoveries[summary.container_id] = stage
        return plan is not None or stage is not None

    async def _take_dead_leases(self) -> None:
        """At opening: take over the dead leases whose jobs need output or launching (their
        output was held back by the seed); output of leases another tracker won is theirs."""
        if self.observer:
            return
        owners = {
            j.owner
            for j in self.cache
            if j.owner is not None
            and not j.owner.startswith(UNLEASED)
            and j.state not in TERMINAL  # to launch, to run, or its output held back
        } - self._live_owners
        for owner in owners:
            try:
                taken = await self.leases.take_now(owner)
            except DrmCommunicationError:
                raise  # the engine is away: the opening fails
            except TrackerError as exc:
                # That lease's own trouble (its jobs' image removed since, say): those jobs
                # stay unowned here; the tracker opens, and a re-sync considers it again.
                log.warning("dead lease %s not taken over: %s", owner, exc)
                taken = False
            if not taken:
                for job in list(self.cache):
                    if job.owner == owner and (
                        job.job_id in self._recoveries or job.job_id in self._stage_recoveries
                    ):
                        self._recoveries.pop(job.job_id, None)
                        self._stage_recoveries.pop(job.job_id, None)
                        self.publish(self.cache.output_done(job.job_id))

    def _adopt(self) -> None:
        """At opening: resume interrupted output copies, and launch the arrays that are ours
        (of leases we hold, or made before leases)."""
        if self.observer:
            return
        recoveries, self._recoveries = self._recoveries, {}
        stages, self._stage_recoveries = self._stage_recoveries, {}
        for job_id, stage in stages.items():
            self.stager.arm(job_id, stage, mark=False)  # before its end can be published
            if job_id not in recoveries:
                self.publish(self.cache.output_done(job_id))
        for job_id, (plan, source) in recoveries.items():
            self.tasks.spawn(self._recover, job_id, plan, source)
        ours = [job for job in self.cache if self.leases.holds(job.owner)]
        self.launcher.adopt_running(j for j in ours if j.owner)  # not another tool's jobs
        self._launch_arrays(ours)
        self._start_queued(ours)

    def _launch_arrays(self, jobs: Iterable[Job]) -> None:
        """A launcher for each unfinished array these jobs are tasks of."""
        for job in jobs:
            if job.array_id is not None and job.state not in TERMINAL:
                self.launcher.add(job.array_id, job.array_size, job.array_max_parallel)

    def _adopted(self, owner: str) -> None:
        """We took ``owner``'s lease over: its arrays and its jobs' output are ours now."""
        jobs = [job for job in self.cache if job.owner == owner]
        self.launcher.adopt_running(jobs)
        self._launch_arrays(jobs)
        self._start_queued(jobs)
        for job in jobs:
            if not (job.array_id is None and startable(job)):
                self.tasks.spawn(self._take_output, job.job_id)
        self.timers.rescan()

    def _start_queued(self, jobs: Iterable[Job]) -> None:
        """Single jobs of a lease we took over that were made but never started (their
        submitter stopped in between, or they waited in its launcher's queue): queued all at
        once (``max_running``: the launcher ranks them all), else started. A timed job is
        its timer's; one made with no lease is nobody's to take over."""
        for job in jobs:
            if (
                job.array_id is None and startable(job) and not job.start_at_ns and job.owner
                and not self._queue(job.job_id, None)
            ):  # fmt: skip
                self.tasks.spawn(self._start_cut_short, job.job_id)

    async def _start_cut_short(self, job_id: str) -> None:
        """A job its submitter created but never started (it died in between): we start it,
        as the submitter would have (a retry with its key returns it)."""
        details = await self.sync.details(job_id)
        if details.status == "created" and not details.error:
            launch = launch_from(details)
            if not self._queue(job_id, launch):
                await self.submitter.start(job_id, launch)

    # -- the timers' actions -----------------------------------------------------------

    def _acts_for(self, job: Job) -> bool:
        """This tracker acts on the job's timers: it holds its lease, or made it with none
        (an observer never does)."""
        if self.observer:
            return False
        if job.owner is None:
            return job.job_id in self.submitter.unowned
        return self.leases.holds(job.owner)

    async def _arm_timers(self) -> None:
        """At opening: running jobs with a wallclock limit need their start time (a listing
        does not tell it; if the inspect fails, the limit counts from now), then every job's
        timers are armed."""
        if self.observer:
            return
        for job in list(self.cache):
            if job.wallclock_ns and not job.started_ns and job.state not in TERMINAL:
                with contextlib.suppress(TrackerError):
                    await self.sync.refresh(job.job_id)
        self.timers.rescan()

    async def _timed_start(self, job_id: str) -> TrackerError | None:
        job = self.cache.require(job_id)
        if job.array_id is not None:
            self.launcher.wake_all()  # its time has come: its launcher starts it in its turn
            return None
        if self._queue(job_id, None):
            return None  # its turn comes in the launcher's queue (max_running)
        launch = await self.submitter.launch_of(job_id)
        return await self.submitter.start(
            job_id, launch,
            lambda: self._acts_for(job) and job.state is JobState.QUEUED and not job.ever_started,
        )  # fmt: skip

    async def _timed_terminate(self, job_id: str, kind: str) -> None:
        """Terminate for a timer, its reason kept in the container's name (the sub-state);
        a suspended job is resumed first (the engine kills no paused container)."""
        job = self.cache.require(job_id)
        if job.state in ACTIVE:
            suffix = DEADLINE_SUFFIX if kind == "deadline" else WALLCLOCK_SUFFIX
            with contextlib.suppress(TrackerError):
                await rename_mark(self.engine, job_id, suffix, require_created=False)
            if job.state is JobState.SUSPENDED:
                with contextlib.suppress(InvalidStateError):
                    await self.control.control(job_id, JobControlAction.RESUME)
        await self.control.control(job_id, JobControlAction.TERMINATE)

    def _timed_refusal(self, job_id: str, reason: TrackerError) -> None:
        """A timed start the job itself made impossible: FAILED for good (its name says so,
        for any tracker that opens later), as a launcher's."""
        log.warning("job %s not started at its start time: %s", job_id[:12], reason)
        self.publish(self.cache.start_failed(job_id, str(reason)))
        self.tasks.spawn(rename_mark, self.engine, job_id, TERMINATED_SUFFIX)

    async def _take_output(self, job_id: str) -> None:
        """Complete a taken-over job's output from the engine's log (once: we hold its lease).
        Its end is held back until its labels are read; an inspect that fails for the engine's
        reason is tried again while the job is ours, and one given up is the job's fault."""
        job = self.cache.get(job_id)
        if job is None:
            return
        self.cache.begin_output(job_id)  # its end waits until we know what is to be recovered
        recovering = False
        try:
            backoff = BACKOFF_MIN
            while True:
                try:
                    details = await self.sync.details(job_id)
                    break
                except JobNotFoundError:
                    return
                except RETRYABLE:
                    if job_id not in self.cache or not self.leases.holds(job.owner):
                        return  # gone, or no longer ours to write
                    await anyio.sleep(backoff)
                    backoff = next_backoff(backoff)
                except TrackerError as exc:
                    self.cache.add_fault(job_id, f"output incomplete: not recovered: {exc}")
                    return
            if job_id in self.copier.fanouts:
                return  # started by our launcher meanwhile: its copier writes the output
            state = job.final if job.final is not None else job.state
            plan = recovery(details.labels, state, job_id)
            stage = stage_recovery(details.labels, state, job_id)
            if stage is not None:
                self.stager.arm(job_id, stage, mark=False)
            if plan is not None:
                recovering = True  # _recover (its copy) ends the output, whatever happens
                await self._recover(job_id, *plan)
        finally:
            # Not if a copier started meanwhile (our launcher's start): it holds the end too,
            # and releases it when the output is written.
            if not recovering and job_id not in self.copier.fanouts:
                self.publish(self.cache.output_done(job_id))

    def _lost(self, owner: str) -> None:
        """Our lease went (another tracker may take it): stop writing its jobs' output."""
        for job in list(self.cache):
            if job.owner == owner:
                self.copier.cancel(job.job_id)
                self.stager.cancel(job.job_id)

    async def _recover(self, job_id: str, plan: OutputPlan, source: Source) -> None:
        try:
            await self.tasks.start(self.copier.copy, job_id, plan, source, None)
        except Exception as exc:
            self.cache.add_fault(job_id, f"output incomplete: not recovered: {exc}")
            self.publish(self.cache.output_done(job_id))
            raise

    # -- closing ------------------------------------------------------------------------

    async def aclose(self) -> None:
        stopping = self._stopping
        loop = asyncio.get_running_loop()
        if stopping is not None and not stopping.done() and stopping.get_loop() is loop:
            await asyncio.shield(stopping)  # closing already: returns once it is closed
            return
        if self.closed and self._host_task is None:
            return
        if self._loop is not None and self._loop is not loop:
            # The loop that ran the tracker is gone: nothing of it can be awaited.
            self.closed, self._host_task = True, None
            await self.engine.aclose()
            return
        await self._stop()

    async def _stop(self) -> None:
        stopping = self._stopping = asyncio.get_running_loop().create_future()
        try:
            await self._stop_once()
        finally:
            stopping.set_result(None)

    async def _stop_once(self) -> None:
        self.closed = True
        closed = TrackerClosedError("the tracker was closed")
        self.cache.close(closed).resolve()
        self.changes.fail_all(closed)
        if self._closing is not None:
            self._closing.set()
        task, self._host_task = self._host_task, None
        try:
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
        finally:
            with shielded(self.timeout):
                await self.engine.aclose()


def _first_error(exc: BaseException) -> BaseException:
    """The first error inside an exception group (the task group wraps errors)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_error(inner)
            if not isinstance(found, BaseExceptionGroup):
                return found
    return exc
