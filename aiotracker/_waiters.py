"""Waiters: one future per pending ``wait``, and the wake-ups a cache change returns. No I/O.

Each waiter owns its future, so one waiter's timeout or cancellation never touches another's;
a waiter is removed by its owner in ``finally``.
"""

from __future__ import annotations

import asyncio

from ._exceptions import InvalidStateError, TrackerError
from ._model import JobState


class Waiter:
    """One pending ``wait``: the states it wants and the future that answers it."""

    __slots__ = ("future", "job_id", "wanted")

    def __init__(self, job_id: str, wanted: frozenset[JobState], future: asyncio.Future[JobState]):
        self.job_id = job_id
        self.wanted = wanted
        self.future = future


Wakeup = tuple[Waiter, JobState | TrackerError]


class Wakeups(list[Wakeup]):
    """Waiters to resolve, each with its state or error; ``resolve()`` does it."""

    def resolve(self) -> None:
        for waiter, outcome in self:
            if waiter.future.done():
                continue
            if isinstance(outcome, JobState):
                waiter.future.set_result(outcome)
            else:
                waiter.future.set_exception(outcome)


def unreachable(job_id: str, wanted: frozenset[JobState], state: JobState) -> InvalidStateError:
    names = ", ".join(sorted(s.name for s in wanted))
    return InvalidStateError(
        f"job {job_id} ended {state.name} and can never reach {names}", job_id=job_id
    )
