"""``stream_output``: a job's output as it comes, for code, from the tracker's one copy.

A reader gets one stream (stdout or stderr) of one job from its start (or its last ``tail``
lines) until the output ends. What came before the reader joined is read back from the
engine's log, up to the exact byte count the feed had published when it joined (the log is
followed until it has caught up: Docker's holds a line back until its newline); the rest
comes live from the feed (``Fanout``): no gap and no duplicate at the seam. A job the tracker
copies (it has output files, and this tracker writes them) feeds its readers from the
copier; for any other running job, the first reader starts one shared relay (an attach
replaying the log) that ends with the job or with its last reader: never an attach per
reader. A job that has not started yet (queued, held) or is suspended is waited for; a
finished job's output is its log.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio

from ._cache import TERMINAL, StateCache
from ._copier import OutputCopier
from ._engine.base import Engine
from ._errors import engine_errors
from ._exceptions import OutputStreamError, TrackerClosedError, TrackerError
from ._exits import ExitSignals
from ._fanout import Fanout
from ._model import JobState
from ._streams import Stream
from ._tasks import Tasks

# Seconds the log may lag what the feed published before a reader's history gives up.
LOG_CATCH_UP = 10.0
_LIVE_OR_OVER = frozenset({JobState.RUNNING, JobState.DONE, JobState.FAILED})


def last_lines(data: bytes, n: int) -> bytes:
    """The last ``n`` lines of ``data`` (a last line without a newline counts)."""
    if n <= 0:
        return b""
    pos = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(n):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return data
    return data[pos + 1 :]


# An async iterator of a job's output chunks (bytes), and an async context manager that
# closes it (leaving the job's readers). Engine and reader errors are raised from the
# iteration: ``JobNotFoundError``, ``OutputOverrunError``, ``OutputStreamError``.
OutputStream = Stream[bytes]


class OutputWatch:
    """Readers of jobs' output: the copier's live copy, a shared relay, or the log."""

    def __init__(
        self, engine: Engine, cache: StateCache, copier: OutputCopier, tasks: Tasks,
        exits: ExitSignals,
    ) -> None:  # fmt: skip
        self._engine = engine
        self._cache = cache
        self._copier = copier
        self._tasks = tasks
        self._exits = exits
        self._relays: dict[str, Fanout] = {}

    @property
    def relays(self) -> int:
        return len(self._relays)

    async def chunks(
        self, job_id: str, stream: int, tail: int | None, limit: int
    ) -> AsyncGenerator[bytes, None]:
        """The chunks of one stream of a known job (its full id)."""
        fanout = await self._feed(job_id)
        if fanout is None:  # finished: its log holds it all
            async with aclosing(self._history(job_id, stream, None, tail)) as history:
                async for chunk in history:
                    yield chunk
            return
        await fanout.wait_ready()
        reader = fanout.join(stream, limit)
        try:
            if reader.start and tail != 0:
                async with aclosing(self._history(job_id, stream, reader.start, tail)) as h:
                    async for chunk in h:
                        yield chunk
            while (live := await reader.next()) is not None:
                yield live
        finally:
            fanout.leave(reader)

    async def _feed(self, job_id: str) -> Fanout | None:
        """The job's live feed (a copy, or a relay started now); None once it has ended.
        A job that has not started, or is suspended, is waited for."""
        while True:
            fanout = self._copier.fanouts.get(job_id) or self._relays.get(job_id)
            if fanout is not None:
                return fanout
            job = self._cache.get(job_id)
            if job is None or job.state in TERMINAL or self._exits.exited(job_id):
                return None
            if job.state is JobState.RUNNING:
                return self._start_relay(job_id)
            waiter = self._cache.add_waiter(job_id, _LIVE_OR_OVER, asyncio.get_running_loop())
            if isinstance(waiter, JobState):
                continue
            try:
                await waiter.future
            finally:
                self._cache.remove_waiter(waiter)

    async def _history(
        self, job_id: str, stream: int, upto: int | None, tail: int | None
    ) -> AsyncGenerator[bytes, None]:
        """The stream's first ``upto`` bytes (all of the log if None) from the engine's log,
        or the last ``tail`` lines of them. The log is followed until it holds ``upto``
        bytes (it may lag the live feed), for at most ``LOG_CATCH_UP`` seconds."""
        got = 0
        kept = b""
        follow = upto is not None
        with engine_errors("logs", job_id):
            async with self._engine.read_logs(job_id, follow=follow) as read:
                while upto is None or got < upto:
                    frame = None  # also when the log never catches up
                    with anyio.move_on_after(LOG_CATCH_UP if follow else math.inf):
                        frame = await read()
                    if frame is None:
                        break
                    if frame[0] != stream:
                        continue
                    data = frame[1] if upto is None else frame[1][: upto - got]
                    got += len(data)
                    if tail is None:
                        yield data
                    else:
                        kept = last_lines(kept + data, tail)
        if kept:
            yield kept
        if upto is not None and got < upto:
            raise OutputStreamError(
                f"the engine's log holds {got} of the first {upto} bytes of the job's output "
                "(rotated away, or not written to the log yet)"
            )

    def _start_relay(self, job_id: str) -> Fanout:
        if not self._tasks.open:
            raise TrackerClosedError("the tracker is closing")
        scope = anyio.CancelScope()

        def idle() -> None:  # its last reader left: no one may join it any more
            if self._relays.get(job_id) is fanout:
                del self._relays[job_id]
            scope.cancel()

        fanout = Fanout(on_idle=idle)
        self._relays[job_id] = fanout
        self._tasks.spawn(self._relay, job_id, fanout, scope)
        return fanout

    async def _relay(self, job_id: str, fanout: Fanout, scope: anyio.CancelScope) -> None:
        """One attach (replaying the log, then following it) shared by the job's readers;
        what the log held before it is counted first, as history."""
        error: TrackerError | None = OutputStreamError("the tracker stopped relaying the output")
        try:
            with scope:
                try:
                    with engine_errors("logs", job_id):
                        async with self._engine.read_logs(job_id) as read:
                            while (frame := await read()) is not None:
                                fanout.replayed[frame[0]] += len(frame[1])
                    fanout.ready.set()
                    with engine_errors("attach", job_id):
                        async with self._engine.attach_output(job_id, logs=True) as read:
                            while (frame := await read()) is not None:
                                fanout.publish(*frame)
                    error = (
                        None
                        if await self._exits.ended_at_exit(job_id)
                        else OutputStreamError("the engine's output stream ended before the job")
                    )
                except TrackerError as exc:
                    error = OutputStreamError(f"the job's output stream broke: {exc}")
        finally:
            if self._relays.get(job_id) is fanout:
                del self._relays[job_id]
            fanout.end(error)
