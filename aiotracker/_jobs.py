"""DRMAA2's job objects over a tracker: ``Job`` and ``ArrayJob`` (what ``JobSession`` hands out).

A ``Job`` is an id and its session's tracker, nothing more: its state is read from the
tracker's cache (``state``, no await) or asked (``get_state``), and every action is the
tracker's. Many ``Job`` objects for one job are equal and interchangeable.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._exceptions import InvalidStateError
from ._model import JobControlAction, JobInfo, JobState, JobTemplate

if TYPE_CHECKING:
    from ._tracker import DockerTracker

# DRMAA2's "Started" states. drmaa2os waits for RUNNING, DONE or FAILED; a SUSPENDED job has
# started too (it was running when it was suspended), so waiting for a start returns for it.
STARTED = frozenset({JobState.RUNNING, JobState.SUSPENDED, JobState.DONE, JobState.FAILED})
TERMINATED = frozenset({JobState.DONE, JobState.FAILED})


class Job:
    """One job of a job session (DRMAA2's Job).

    ``state`` is the tracker's current view, read with no await (``UNDETERMINED`` for a job
    the tracker no longer knows: reaped or removed). After ``reap`` every call raises
    ``JobNotFoundError`` (an ``InvalidArgumentError``, as DRMAA2 asks).
    """

    __slots__ = ("_tracker", "job_id", "session_name")

    def __init__(self, tracker: DockerTracker, job_id: str) -> None:
        self._tracker = tracker
        self.job_id = job_id
        self.session_name = tracker.job_session

    @property
    def state(self) -> JobState:
        return self._tracker.cached_state(self.job_id) or JobState.UNDETERMINED

    async def get_state(self) -> JobState:
        return await self._tracker.job_state(self.job_id)

    async def get_info(self) -> JobInfo:
        return await self._tracker.job_info(self.job_id)

    async def get_template(self) -> JobTemplate:
        return await self._tracker.job_template(self.job_id)

    async def suspend(self) -> None:
        await self._tracker.job_control(self.job_id, JobControlAction.SUSPEND)

    async def resume(self) -> None:
        await self._tracker.job_control(self.job_id, JobControlAction.RESUME)

    async def hold(self) -> None:
        await self._tracker.job_control(self.job_id, JobControlAction.HOLD)

    async def release(self) -> None:
        await self._tracker.job_control(self.job_id, JobControlAction.RELEASE)

    async def terminate(self) -> None:
        await self._tracker.job_control(self.job_id, JobControlAction.TERMINATE)

    async def wait_started(self, timeout: float | None = None) -> JobState:
        """Wait until the job has started (RUNNING, SUSPENDED, DONE or FAILED: a job that
        already ended returns at once); returns the state."""
        return await self._tracker.wait(self.job_id, *STARTED, timeout=timeout)

    async def wait_terminated(self, timeout: float | None = None) -> JobState:
        """Wait until the job is DONE or FAILED; returns which."""
        return await self._tracker.wait(self.job_id, *TERMINATED, timeout=timeout)

    async def reap(self) -> None:
        """Remove a finished job (its container); ``InvalidStateError`` if it has not ended."""
        state = await self._tracker.job_state(self.job_id)
        if not state.is_terminal:
            raise InvalidStateError(
                f"job {self.job_id} is {state.name}: only a finished job can be reaped",
                job_id=self.job_id,
            )
        await self._tracker.delete_job(self.job_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return (self.session_name, self.job_id) == (other.session_name, other.job_id)

    def __hash__(self) -> int:
        return hash((self.session_name, self.job_id))

    def __repr__(self) -> str:
        return f"<Job {self.job_id[:12]}… {self.state.name}>"


class ArrayJob:
    """The tasks of one bulk submission (DRMAA2's JobArray), in index order.

    Control verbs apply to every task where they make sense (``terminate`` skips the tasks
    that ended, ``hold`` the ones that started); failures of the others are raised together
    as one ``ExceptionGroup`` naming each failing task.
    """

    __slots__ = ("_tracker", "array_id", "jobs", "session_name")

    def __init__(self, tracker: DockerTracker, array_id: str, job_ids: Sequence[str]) -> None:
        self._tracker = tracker
        self.array_id = array_id
        self.session_name = tracker.job_session
        self.jobs = tuple(Job(tracker, job_id) for job_id in job_ids)

    async def get_template(self) -> JobTemplate:
        """The first task's template (each task's differs only by its index)."""
        return await self._tracker.job_template(self.jobs[0].job_id)

    async def suspend(self) -> None:
        await self._tracker.array_job_control(self.array_id, JobControlAction.SUSPEND)

    async def resume(self) -> None:
        await self._tracker.array_job_control(self.array_id, JobControlAction.RESUME)

    async def hold(self) -> None:
        await self._tracker.array_job_control(self.array_id, JobControlAction.HOLD)

    async def release(self) -> None:
        await self._tracker.array_job_control(self.array_id, JobControlAction.RELEASE)

    async def terminate(self) -> None:
        await self._tracker.array_job_control(self.array_id, JobControlAction.TERMINATE)

    def __len__(self) -> int:
        return len(self.jobs)

    def __repr__(self) -> str:
        counts = collections.Counter(job.state.name for job in self.jobs)
        states = " ".join(f"{name}={n}" for name, n in sorted(counts.items()))
        return f"<ArrayJob {self.array_id} tasks={len(self.jobs)} {states}>"
