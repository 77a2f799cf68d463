"""Job control: suspend, resume, hold, release, terminate.

Each action is decided from the cache and, when the cache says no, from the engine (a second
tracker's cache may lag its events): the job is inspected and the decision made again before
``InvalidStateError``. An engine answer that the job moved meanwhile (it exited between the
check and the call) is ``InvalidStateError`` too: a user cannot stop a job from ending.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection

from ._cache import ACTIVE, Change, StateCache
from ._engine.base import Engine
from ._errors import engine_errors
from ._exceptions import InvalidStateError, JobNotFoundError, TrackerError
from ._labels import HELD_SUFFIX, TERMINATED_SUFFIX
from ._launcher import Launcher
from ._model import JobControlAction, JobState
from ._submit import Submitter, rename_mark
from ._sync import Sync
from ._waiters import Wakeups

_QUEUED = frozenset({JobState.QUEUED, JobState.QUEUED_HELD})
# How long after the engine confirmed an action its event may still come (then it is taken
# for the action's own, and absorbed).
_EVENT_GRACE_NS = 1_000_000_000
# The states each action applies to.
_ALLOWED: dict[JobControlAction, frozenset[JobState]] = {
    JobControlAction.SUSPEND: frozenset({JobState.RUNNING}),
    JobControlAction.RESUME: frozenset({JobState.SUSPENDED}),
    JobControlAction.HOLD: _QUEUED,
    JobControlAction.RELEASE: _QUEUED,
    JobControlAction.TERMINATE: ACTIVE | _QUEUED,
}


class Controller:
    """Carries out job control actions on one job at a time."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        sync: Sync,
        submitter: Submitter,
        launcher: Launcher,
        publish: Callable[[tuple[Wakeups, list[Change]] | None], None],
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._now_ns = now_ns  # the engine's clock, as well as we know it
        self._engine = engine
        self._cache = cache
        self._sync = sync
        self._submitter = submitter
        self._launcher = launcher
        self._publish = publish

    async def control(self, job_id: str, act: JobControlAction) -> None:
        """Take the launcher's lock for the job (not for suspend) and act."""
        job = self._cache.require(job_id)
        if act is JobControlAction.SUSPEND:
            await self.act(job_id, act)
            return
        async with self._launcher.lock(job.array_id, job_id):
            await self.act(job_id, act)

    async def act(self, job_id: str, act: JobControlAction) -> None:
        """One action; the caller holds the array's lock if the job is a task."""
        state = await self._state_for(job_id, act, _ALLOWED[act])
        try:
            await self._do(job_id, act, state)
        except TrackerError as exc:
            if isinstance(exc, JobNotFoundError):
                raise
            # Did the job move between our check and the engine's? Then it is its state.
            try:
                await self._sync.refresh(job_id)
            except TrackerError:
                raise exc from None
            now = self._cache.require(job_id).state
            if now not in _ALLOWED[act] or isinstance(exc, InvalidStateError):
                raise InvalidStateError(
                    f"cannot {act.value} job {job_id}: it is {now.name}", job_id=job_id
                ) from exc
            raise

    async def _state_for(
        self, job_id: str, act: JobControlAction, allowed: Collection[JobState]
    ) -> JobState:
        """The job's state if the action applies; the engine is asked before saying no."""
        state = self._cache.require(job_id).state
        if state in allowed:
            return state
        await self._sync.refresh(job_id)
        state = self._cache.require(job_id).state
        if state not in allowed:
            raise InvalidStateError(
                f"cannot {act.value} job {job_id}: it is {state.name}", job_id=job_id
            )
        return state

    def _confirmed(self, job_id: str, state: JobState, event: str, seq: int | None) -> None:
        """The engine confirmed an action sent when the job's ``control_seq`` was ``seq``:
        publish its state now; its event, expected within a second, is absorbed when it
        comes."""
        until_ns = self._now_ns() + _EVENT_GRACE_NS
        self._publish(self._cache.set_state(job_id, state, event, seq=seq, until_ns=until_ns))

    async def _do(self, job_id: str, act: JobControlAction, state: JobState) -> None:
        job = self._cache.require(job_id)
        sent = self._cache.control_seq(job_id)
        if act is JobControlAction.SUSPEND:
            with engine_errors("suspend", job_id):
                await self._engine.pause(job_id)
            self._confirmed(job_id, JobState.SUSPENDED, "pause", sent)
        elif act is JobControlAction.RESUME:
            with engine_errors("resume", job_id):
                await self._engine.unpause(job_id)
            self._confirmed(job_id, JobState.RUNNING, "unpause", sent)
        elif act is JobControlAction.HOLD:
            if state is JobState.QUEUED:
                await rename_mark(self._engine, job_id, HELD_SUFFIX)
                self._confirmed(job_id, JobState.QUEUED_HELD, "rename", sent)
        elif act is JobControlAction.RELEASE:
            await self._release(job_id, state, job.array_id)
        elif state in _QUEUED and not job.ever_started:
            await rename_mark(self._engine, job_id, TERMINATED_SUFFIX)
            # Another tracker (the lease's holder) may have started it between our look and
            # the rename: then it is killed, and ends FAILED everywhere all the same.
            with engine_errors("inspect", job_id):
                now = await self._engine.inspect(job_id)
            if now.status != "created":
                with contextlib.suppress(InvalidStateError), engine_errors("terminate", job_id):
                    await self._engine.kill(job_id)
                return
            self._confirmed(job_id, JobState.FAILED, "rename", sent)
        else:
            if not job.die_is_final:  # a restart policy, or a job made by another tool
                with engine_errors("inspect", job_id):
                    details = await self._engine.inspect(job_id)
                if details.restart_policy:
                    with engine_errors("update", job_id):
                        await self._engine.disable_restart(job_id)  # or it starts again
            with engine_errors("terminate", job_id):
                await self._engine.kill(job_id)

    async def _release(self, job_id: str, state: JobState, array_id: str | None) -> None:
        """An array task is unmarked and left to its launcher, a timed job to its timer, and
        (``max_running``) a single job to the launcher's queue. Otherwise a single job is
        started first and unmarked after: a failure in between leaves it running, never
        stranded; a job QUEUED but never started (an earlier release failed) is started by a
        second one."""
        job = self._cache.require(job_id)
        started_elsewhere = array_id is not None or (job.start_at_ns and not job.ever_started)
        if not started_elsewhere and job.ever_started:
            return
        if started_elsewhere or self._launcher.bounded:
            # Unmarked first: its launcher, its timer (at once if its time has passed) or the
            # queue starts it; a tracker that takes it over does, if we stop in between.
            if state is JobState.QUEUED_HELD:
                sent = self._cache.control_seq(job_id)
                await rename_mark(self._engine, job_id, "")
                self._confirmed(job_id, JobState.QUEUED, "rename", sent)
            if array_id is not None:
                self._launcher.wake_all()
            elif not job.start_at_ns:
                self._submitter.queue(job_id, None)  # dropped unless we launch it: its owner does
            return
        launch = await self._submitter.launch_of(job_id)
        reason = await self._submitter.start(job_id, launch)
        if reason is not None:
            raise reason
        if state is JobState.QUEUED_HELD:
            with contextlib.suppress(TrackerError):  # a started job's mark means nothing
                await rename_mark(self._engine, job_id, "", require_created=False)
