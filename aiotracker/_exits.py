"""Exits, for those who read a job's output stream: did the stream end because the job did?

A job's output stream ends when the job exits, but also when a connection drops or a daemon
restarts (live-restore) while the job goes on. Docker closes its attach streams a little
before it logs the die (about 25 ms), so the end is confirmed against the die with a grace
period, then, if no die came, by asking the engine. Shared by the copier and the relays.
"""

from __future__ import annotations

import anyio

from ._cache import TERMINAL, StateCache
from ._engine.base import Engine
from ._errors import engine_errors
from ._exceptions import TrackerError

# Seconds the die may follow the end of a job's output stream.
EXIT_GRACE = 0.5


class ExitSignals:
    """Wakes those waiting for a job's exit (``job_exited`` is called by the sync)."""

    def __init__(self, engine: Engine, cache: StateCache) -> None:
        self._engine = engine
        self._cache = cache
        self._events: dict[str, anyio.Event] = {}

    def job_exited(self, job_id: str) -> None:
        """The job's exit is known (its die, or an inspect): its log is complete."""
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()

    def exited(self, job_id: str) -> bool:
        job = self._cache.get(job_id)
        return job is None or job.exited or job.final is not None or job.state in TERMINAL

    async def wait_exit(self, job_id: str) -> None:
        while not self.exited(job_id):
            await self._events.setdefault(job_id, anyio.Event()).wait()

    async def ended_at_exit(self, job_id: str) -> bool:
        """Did the stream end because the job exited? Its die comes within moments of the
        end; if it does not, the engine is asked (the stream may have been cut)."""
        with anyio.move_on_after(EXIT_GRACE):
            await self.wait_exit(job_id)
            return True
        try:
            with engine_errors("inspect", job_id):
                details = await self._engine.inspect(job_id)
        except TrackerError:
            return False
        return details.status not in ("running", "paused", "restarting")
