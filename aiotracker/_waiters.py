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


class Wake:
    """A single consumer's wake-up, for a queue it drains (events, a watcher's changes): a
    producer calls ``set`` after appending; the consumer awaits ``wait`` only once the queue
    is empty, with no await between its check and the wait, so no wake-up is lost. A bare
    future per wait (an ``anyio.Event`` per wake-up cost more than the rest of a change)."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self) -> None:
        self._future = asyncio.get_running_loop().create_future()
        try:
            await self._future
        finally:
            self._future = None
