"""The state cache: what the tracker knows of each job, and who waits for what. No I/O.

Every method is synchronous: state is read and written with no await in between, and the
waiters a change concerns are *returned* (``Wakeups``) for the caller to resolve, after the
state is set. Each waiter owns one future, so one waiter's timeout or cancellation never
touches another's; a waiter is removed by its owner in ``finally``.

Two rules keep it right when events arrive late, twice or out of order:

- *Versions*: an entry remembers the daemon time (ns) of the newest event it applied (or of
  the list it was seeded from); an older event is stale and ignored (the ``since`` replay after
  a reconnect re-sends events the list already reflects), but for the die that ends a job of
  aiotracker's with no restart policy (``_final_die``: a Swarm manager's list lags its nodes).
  An inspect is applied only if no
  event of its job was applied while it was in flight (``seq``); else it is repeated.
- *Publication*: a terminal state (DONE, FAILED) is published only when the exit status is
  known and the job's output files are closed (``output_done``); until then the job reads as
  it last did. The exit status is known from the die event for aiotracker's own jobs with no
  restart policy (their die is final: no inspect follows it), else from the inspect that
  follows the die (``settle``).
"""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ._checks import unix_ns
from ._engine.base import ContainerDetails, ContainerEvent
from ._exceptions import JobNotFoundError, TrackerClosedError, TrackerError
from ._labels import JobMeta
from ._mapping import state_from_details, state_from_event
from ._model import JobState
from ._waiters import Waiter, Wakeups, unreachable

TERMINAL = frozenset({JobState.DONE, JobState.FAILED})
_GONE_KEPT = 4096
ACTIVE = frozenset({JobState.RUNNING, JobState.SUSPENDED})
_CONTROL_EVENTS = frozenset({"pause", "unpause", "rename"})


@dataclass(slots=True, eq=False)
class Job:
    """A cache entry. ``state`` is the published state."""

    job_id: str
    state: JobState
    version_ns: int = 0
    array_id: str | None = None
    index: int = 0
    array_last: int = 0
    array_size: int = 0
    array_max_parallel: int = 0
    # The lease whose holder launches this job's array and writes its output (None: legacy).
    owner: str | None = None
    ever_started: bool = False
    # Bumped by every applied event: an inspect older than the latest event is not applied.
    seq: int = 0
    # Bumped by every applied event of a control action (pause, unpause, rename): an answer
    # to a control call during which one came is overtaken by the events.
    control_seq: int = 0
    # A die was seen: the terminal state waits for an inspect (``settle``).
    exited: bool = False
    # Output files are still being written: the terminal state waits for them.
    output_pending: bool = False
    # Stage-out files are still being copied out: the terminal state waits for them too.
    stage_pending: bool = False
    # The terminal state, known but not yet published because output is pending.
    final: JobState | None = None
    # The engine removes the container at exit (rm): the die's exit code is how it ended.
    auto_remove: bool = False
    # Made by aiotracker with no restart policy: a die is final, and its exit code (the
    # engine sets State.ExitCode before it logs the die) is published at the die, with no
    # inspect (``job_info`` reads the rest when asked). Others' jobs wait for the inspect.
    die_is_final: bool = False
    die_exit_code: int | None = None
    # The tracker's timers (labels; 0: none): start at, terminate at, terminate after running
    # this long; and when it started (the engine's clock), for the last.
    start_at_ns: int = 0
    deadline_ns: int = 0
    wallclock_ns: int = 0
    started_ns: int = 0
    # Its place in the launcher's queue (labels): DRMAA2's priority, its submission time.
    priority: int = 0
    order_ns: int = 0
    # The tracker refused to start it (its own reason): it stays FAILED whatever a created
    # container's inspect says.
    refused: bool = False
    # The container is gone (rm=true), but its end waits for the output: forgotten after.
    removed: bool = False
    # What the tracker could not do for this job ("output incomplete: ..."), in order.
    # Tuples, and the waiters' list made at the first waiter: most entries never hold any,
    # and three empty lists were ~170 bytes of each finished job (benchmarks, measurement 7).
    faults: tuple[str, ...] = ()
    # Output files that could not be completed.
    incomplete: tuple[str, ...] = ()
    # The cache's tick when the entry was made: a listing older than that cannot know it.
    born: int = 0
    # The events of control actions this tracker saw confirmed and published already (in
    # order, each with the engine time after which it cannot be that action's any more):
    # each is absorbed when it comes, so that a pause event arriving after the resume that
    # followed never moves the job back.
    awaited: collections.deque[tuple[str, int]] | None = None
    waiters: list[Waiter] | None = None

    @property
    def takes_slot(self) -> bool:
        """Started and not over: RUNNING or SUSPENDED, or started on an engine that has not
        run it yet (Swarm: QUEUED until a node runs its task). A bound counts these."""
        return self.state in ACTIVE or (self.ever_started and self.state not in TERMINAL)

    def __repr__(self) -> str:
        return f"<Job {self.job_id[:12]}… {self.state.name}>"


@dataclass(frozen=True, slots=True)
class Change:
    """A published state change, for the tracker's launchers and watchers."""

    job_id: str
    array_id: str | None
    state: JobState | None  # None: the job is gone
    # What watchers also see (not part of a change's identity).
    old: JobState | None = field(default=None, compare=False)  # None: new to the cache
    exit_code: int | None = field(default=None, compare=False)  # the die's, when known


class StateCache:
    """Jobs by id, with their waiters."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._arrays: dict[str, dict[str, Job]] = {}  # array id -> its tasks known
        self._waiters = 0
        self._tick = 0
        # Ids of containers that are gone: an id is never reused, so nothing late (an
        # inspect in flight when the destroy came) may bring one back.
        self._gone: collections.OrderedDict[str, None] = collections.OrderedDict()
        # Set when the tracker closes: a wait that would block after that fails at once (a
        # call whose lookup was in flight at the close would otherwise wait forever).
        self.closed: TrackerError | None = None

    @property
    def tick(self) -> int:
        """Increases with every job added: ``forget_absent`` spares jobs born after a tick."""
        return self._tick

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    @property
    def waiter_count(self) -> int:
        return self._waiters

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def require(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} in this session", job_id=job_id)
        return job

    # -- changing state -------------------------------------------------------------

    def _publish(self, job: Job, state: JobState, out: Wakeups, changes: list[Change]) -> None:
        if job.state is state:
            return
        old, job.state = job.state, state
        if state in ACTIVE:
            job.ever_started = True
        code = job.die_exit_code if state in TERMINAL else None
        changes.append(Change(job.job_id, job.array_id, state, old, code))
        for waiter in job.waiters or ():
            if state in waiter.wanted:
                out.append((waiter, state))
            elif state in TERMINAL:
                out.append((waiter, unreachable(job.job_id, waiter.wanted, state)))

    def add(
        self,
        job_id: str,
        state: JobState,
        *,
        labels: dict[str, str] | None = None,
        version_ns: int = 0,
        ever_started: bool = False,
        output_pending: bool = False,
    ) -> tuple[Wakeups, list[Change]]:
        """Add a job (or refresh it if known): from a list entry, an inspect or a create.

        ``output_pending``: a new job's output is still to be written (recovered after a
        reopen); a terminal state is held back, the job reading RUNNING until ``output_done``.
        """
        out, changes = Wakeups(), list[Change]()
        job = self._jobs.get(job_id)
        if job is None:
            if job_id in self._gone:
                return out, changes
            self._tick += 1
            job = Job(
                job_id, state, version_ns=version_ns, ever_started=ever_started, born=self._tick
            )
            if output_pending:
                job.output_pending = True
                if state in TERMINAL:
                    job.state, job.final = JobState.RUNNING, state
            if labels is not None:
                meta = JobMeta.from_labels(labels)
                job.array_id, job.index, job.array_last = meta.array_id, meta.index, meta.last
                job.array_size, job.array_max_parallel = meta.size, meta.max_parallel
                job.owner = meta.owner
                job.auto_remove, job.die_is_final = meta.auto_remove, meta.die_is_final
                job.start_at_ns, job.deadline_ns = meta.start_at_ns, meta.deadline_ns
                job.wallclock_ns = meta.wallclock_ns
                job.priority, job.order_ns = meta.priority, meta.submitted_ns
            self._jobs[job_id] = job
            if job.array_id is not None:
                self._arrays.setdefault(job.array_id, {})[job_id] = job
            changes.append(Change(job_id, job.array_id, job.state))
            return out, changes
        if version_ns and version_ns < job.version_ns:
            return out, changes
        job.version_ns = max(job.version_ns, version_ns)
        job.ever_started = job.ever_started or ever_started
        self._set(job, state, out, changes)
        return out, changes

    def _set(self, job: Job, state: JobState, out: Wakeups, changes: list[Change]) -> None:
        if state in TERMINAL and (job.output_pending or job.stage_pending):
            job.final = state  # published by output_done
            return
        if state not in TERMINAL:
            if job.refused and state in (JobState.QUEUED, JobState.QUEUED_HELD):
                return  # refused to start: not queued again by a stale inspect
            job.exited = False
            job.final = None
        self._publish(job, state, out, changes)

    def apply(self, event: ContainerEvent) -> tuple[Wakeups, list[Change], bool]:
        """Apply one event. Returns (wakeups, changes, needs_inspect)."""
        out, changes = Wakeups(), list[Change]()
        job = self._jobs.get(event.container_id)
        if event.action == "destroy":
            if job is not None and job.auto_remove:
                end = job.final
                if end is None and job.exited and job.die_exit_code is not None:
                    end = JobState.DONE if job.die_exit_code == 0 else JobState.FAILED
                if end is not None and job.output_pending:
                    # The end is published, and the job forgotten, once its files are done.
                    job.final, job.removed = end, True
                    return out, changes, False
                if end is not None and job.state not in TERMINAL:
                    self._publish(job, end, out, changes)  # before forgetting: waiters see it
            if job is not None:
                self._forget(job, out, changes)
            else:
                self._bury(event.container_id)
            return out, changes, False
        if job is None:
            if event.action == "create":
                state = state_from_event("create", event.attributes.get("name", ""))
                assert state is not None
                w, c = self.add(
                    event.container_id, state, labels=dict(event.attributes),
                    version_ns=event.time_ns,
                )  # fmt: skip
                return w, c, False
            # A job we do not know yet (made before a reconnect's gap): inspect tells all.
            return out, changes, event.action in ("start", "die", "pause", "unpause", "rename")
        if event.action == "start" and not job.started_ns:
            job.started_ns = event.time_ns  # when it started, even if the event is stale
        if event.time_ns < job.version_ns and not self._final_die(job, event):
            return out, changes, False  # stale: the entry already holds something newer
        job.version_ns = max(job.version_ns, event.time_ns)
        job.seq += 1
        if event.action in _CONTROL_EVENTS:
            job.control_seq += 1
        if job.awaited:
            awaited = job.awaited
            while awaited and event.time_ns > awaited[0][1]:
                awaited.popleft()  # too late to be the action's event: it never came
            if awaited and awaited[0][0] == event.action:
                awaited.popleft()  # published when the engine confirmed the action
                return out, changes, False
        if event.action == "die":
            job.exited = True
            code = event.attributes.get("exitCode")
            job.die_exit_code = _int(code) if code is not None else None
            if job.die_is_final and job.die_exit_code is not None:
                end = JobState.DONE if job.die_exit_code == 0 else JobState.FAILED
                self._set(job, end, out, changes)  # held back while output is pending
                return out, changes, False  # the die is the truth: no inspect to wait for
            return out, changes, True
        if event.action == "oom":
            return out, changes, False
        if event.action == "rename" and job.ever_started:
            return out, changes, False  # a rename of a started job says nothing of its state
        if event.action == "create":
            # The job is known already, from its create call or a listing, which are never
            # older than this event: a late one (Podman delivers events up to ~0.4 s late)
            # would undo what came since (a start, a hold's rename).
            return out, changes, False
        state = state_from_event(event.action, event.attributes.get("name", ""))
        if state is not None and not (job.exited and state is JobState.RUNNING):
            self._set(job, state, out, changes)
        return out, changes, False

    @staticmethod
    def _final_die(job: Job, event: ContainerEvent) -> bool:
        """A die that ends a job aiotracker will not run again (its own, with no restart
        policy), older than what the entry holds: news all the same. A listing can be older
        than its stamp says: a Swarm manager lists a task as running until its node reports
        the exit, after the die the node stamped (and a tracker opened meanwhile would keep
        the job RUNNING for ever)."""
        return (
            event.action == "die"
            and job.die_is_final
            and not job.exited
            and job.state not in TERMINAL
            and job.final is None
        )

    def seq(self, job_id: str) -> int | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.seq

    def control_seq(self, job_id: str) -> int | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.control_seq

    def settle(
        self, details: ContainerDetails, seq: int | None = None
    ) -> tuple[Wakeups, list[Change]] | None:
        """Apply an inspect: the truth, including the exit status after a die.

        ``seq`` is the job's ``seq`` when the inspect was sent; if an event was applied since,
        the inspect may be older than that event: nothing changes and None is returned.
        """
        state = state_from_details(details)
        job = self._jobs.get(details.container_id)
        if job is None:
            if seq is not None or details.container_id in self._gone:
                return None  # forgotten while the inspect was in flight: stays forgotten
            return self.add(
                details.container_id, state, labels=dict(details.labels),
                ever_started=details.started_at is not None,
            )  # fmt: skip
        if seq is not None and job.seq != seq:
            return None
        out, changes = Wakeups(), list[Change]()
        if (
            job.die_is_final and job.exited and job.die_exit_code is not None
            and state not in TERMINAL
        ):  # fmt: skip
            # Its die established the end (no restart policy): an inspect that reads it live
            # (Podman's "stopped" moment, a stale answer) never moves it back.
            return out, changes
        job.ever_started = job.ever_started or details.started_at is not None
        if details.started_at is not None and not job.started_ns:
            job.started_ns = unix_ns(details.started_at)
        self._set(job, state, out, changes)
        return out, changes

    def settle_exit(self, job_id: str, exit_code: int) -> tuple[Wakeups, list[Change]]:
        """A die whose container is already gone (AutoRemove): the event's exit code decides."""
        out, changes = Wakeups(), list[Change]()
        job = self._jobs.get(job_id)
        if job is not None:
            self._set(job, JobState.DONE if exit_code == 0 else JobState.FAILED, out, changes)
        return out, changes

    def mark_started(self, job_id: str, *, running: bool = True) -> tuple[Wakeups, list[Change]]:
        """``start`` returned: RUNNING unless an event already moved the job on (``running``
        False: the engine only scheduled it, and its start event will say when it runs)."""
        out, changes = Wakeups(), list[Change]()
        job = self._jobs.get(job_id)
        if job is not None and job.state in (JobState.QUEUED, JobState.QUEUED_HELD):
            job.ever_started = True
            if running and not job.exited:
                self._set(job, JobState.RUNNING, out, changes)
        return out, changes

    def set_state(
        self, job_id: str, state: JobState, event: str | None = None, *,
        seq: int | None = None, until_ns: int = 0,
    ) -> tuple[Wakeups, list[Change]]:  # fmt: skip
        """A control action the engine confirmed (pause, unpause, rename).

        ``event``: the event the engine logs for it, absorbed when it comes (its change is
        published now), unless it comes after ``until_ns`` (engine time). ``seq``: the job's
        ``control_seq`` when the action was sent; if an event of a control action was applied
        meanwhile, the events are ahead of this answer and decide (the action's own one, or
        someone else's after it): nothing changes here. (Other events, such as a late
        ``create``, say nothing about it.)
        """
        out, changes = Wakeups(), list[Change]()
        job = self._jobs.get(job_id)
        if job is None or job.exited or job.state in TERMINAL:
            return out, changes
        if seq is not None and job.control_seq != seq:
            return out, changes
        moved = job.state is not state
        self._set(job, state, out, changes)
        if event is not None and moved:
            if job.awaited is None:
                job.awaited = collections.deque()
            job.awaited.append((event, until_ns or sys.maxsize))
        return out, changes

    def begin_output(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.output_pending = True

    def begin_stage(self, job_id: str) -> None:
        """The job's stage-out files are to be copied out at its exit: its terminal state
        waits for ``stage_done``."""
        job = self._jobs.get(job_id)
        if job is not None:
            job.stage_pending = True

    def stage_done(self, job_id: str) -> tuple[Wakeups, list[Change]]:
        """The stage-out is over: the end is published, unless output is still pending."""
        job = self._jobs.get(job_id)
        if job is None or job.output_pending:
            if job is not None:
                job.stage_pending = False
            return Wakeups(), []
        job.stage_pending = False
        return self.output_done(job_id)

    def output_done(self, job_id: str) -> tuple[Wakeups, list[Change]]:
        out, changes = Wakeups(), list[Change]()
        job = self._jobs.get(job_id)
        if job is not None:
            job.output_pending = False
            if job.stage_pending:
                return out, changes  # its stage-out publishes the end
            if job.final is not None:
                final, job.final = job.final, None
                self._publish(job, final, out, changes)
            if job.removed:
                self._forget(job, out, changes)
        return out, changes

    def add_fault(self, job_id: str, text: str, incomplete: Iterable[str] = ()) -> None:
        """Record what the tracker could not do for a job (its state is the engine's), and
        the output files that it left incomplete."""
        job = self._jobs.get(job_id)
        if job is None:
            return
        if text not in job.faults:
            job.faults += (text,)
        for path in incomplete:
            if path not in job.incomplete:
                job.incomplete += (path,)

    def start_failed(self, job_id: str, reason: str) -> tuple[Wakeups, list[Change]]:
        """``start`` was refused for the job's own reason: it ends FAILED (no die will come)."""
        out, changes = Wakeups(), list[Change]()
        job = self._jobs.get(job_id)
        if job is not None and job.state not in TERMINAL and not job.refused:
            job.ever_started = job.refused = True  # never to be started again
            job.faults += (f"not started: {reason}",)
            self._set(job, JobState.FAILED, out, changes)
        return out, changes

    def forget_absent(self, present: set[str], before_tick: int) -> tuple[Wakeups, list[Change]]:
        """After a listing: forget the jobs it does not hold that were known before it began.

        Jobs added since (created while the list was in flight) are spared: the list could
        not know them.
        """
        out, changes = Wakeups(), list[Change]()
        for job in list(self._jobs.values()):
            if job.job_id not in present and job.born <= before_tick and not job.removed:
                self._forget(job, out, changes)
        return out, changes

    def forget(self, job_id: str) -> tuple[Wakeups, list[Change]]:
        out, changes = Wakeups(), list[Change]()
        job = self._jobs.get(job_id)
        if job is not None:
            self._forget(job, out, changes)
        return out, changes

    def _bury(self, job_id: str) -> None:
        self._gone[job_id] = None
        if len(self._gone) > _GONE_KEPT:
            self._gone.popitem(last=False)

    def _forget(self, job: Job, out: Wakeups, changes: list[Change]) -> None:
        del self._jobs[job.job_id]
        if job.array_id is not None:
            tasks = self._arrays.get(job.array_id, {})
            tasks.pop(job.job_id, None)
            if not tasks:
                self._arrays.pop(job.array_id, None)
        self._bury(job.job_id)
        changes.append(Change(job.job_id, job.array_id, None, job.state))
        for waiter in job.waiters or ():
            out.append(
                (waiter, JobNotFoundError(f"job {job.job_id} was deleted", job_id=job.job_id))
            )

    # -- waiting -------------------------------------------------------------------

    def add_waiter(
        self, job_id: str, wanted: frozenset[JobState], loop: asyncio.AbstractEventLoop
    ) -> Waiter | JobState:
        """Check the cache first: a wanted state returns at once, an unreachable one raises."""
        job = self.require(job_id)
        if job.state in wanted:
            return job.state
        if job.state in TERMINAL:
            raise unreachable(job_id, wanted, job.state)
        if self.closed is not None:
            raise TrackerClosedError(str(self.closed), job_id=job_id) from self.closed.__cause__
        waiter = Waiter(job_id, wanted, loop.create_future())
        if job.waiters is None:
            job.waiters = [waiter]
        else:
            job.waiters.append(waiter)
        self._waiters += 1
        return waiter

    def remove_waiter(self, waiter: Waiter) -> None:
        """Forget a waiter, whatever ended its wait (idempotent)."""
        job = self._jobs.get(waiter.job_id)
        if job is not None and job.waiters and waiter in job.waiters:
            job.waiters.remove(waiter)
            if not job.waiters:
                job.waiters = None
        if not waiter.future.done():
            waiter.future.cancel()
        if waiter.job_id:
            waiter.job_id = ""
            self._waiters -= 1

    def close(self, error: TrackerError) -> Wakeups:
        """The tracker closed: wake every waiter with ``error``; later waits fail at once."""
        if self.closed is None:
            self.closed = error
        return self.fail_all(None, error)

    def fail_all(self, error_for: Iterable[str] | None, error: TrackerError) -> Wakeups:
        """Wake every waiter (or those of the given jobs) with ``error``."""
        out = Wakeups()
        ids = set(error_for) if error_for is not None else None
        for job in self._jobs.values():
            if ids is None or job.job_id in ids:
                out.extend((w, error) for w in job.waiters or ())
        return out

    def array_jobs(self, array_id: str) -> list[Job]:
        """An array's tasks in index order (from the index by array: not a scan of all jobs,
        which made each launcher round cost the session's size)."""
        return sorted(self._arrays.get(array_id, {}).values(), key=lambda j: j.index)


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
