"""``stream_output``: a job's output as it comes, for code, from the tracker's one copy.

A reader gets one stream (stdout or stderr) of one job from its start (or its last ``tail``
lines) until the output ends. What came before the reader joined is read back from the
engine's log, up to the exact byte count the copy had published when it joined; the rest
comes live from the copy (``Fanout``): no gap and no duplicate at the seam. A job the tracker
copies (it has output files, and this tracker writes them) feeds its readers from the
copier; for any other running job, the first reader starts one shared relay (an attach
replaying the log) that ends with the job or with its last reader: never an attach per
reader. A finished job's output is its log.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Self

import anyio

from ._cache import ACTIVE, StateCache
from ._copier import OutputCopier
from ._engine.base import Engine
from ._errors import engine_errors
from ._exceptions import OutputStreamError, TrackerError
from ._fanout import Fanout
from ._tasks import Tasks


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


class OutputStream:
    """An async iterator of a job's output chunks (bytes); also an async context manager,
    which closes it (leaving the job's readers) on exit. Engine and reader errors are raised
    from the iteration: ``JobNotFoundError``, ``OutputOverrunError``, ``OutputStreamError``."""

    def __init__(self, chunks: AsyncGenerator[bytes, None]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class OutputWatch:
    """Readers of jobs' output: the copier's live copy, a shared relay, or the log."""

    def __init__(
        self, engine: Engine, cache: StateCache, copier: OutputCopier, tasks: Tasks
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._copier = copier
        self._tasks = tasks
        self._relays: dict[str, Fanout] = {}
        self._relay_scopes: dict[str, anyio.CancelScope] = {}

    @property
    def relays(self) -> int:
        return len(self._relays)

    async def chunks(
        self, job_id: str, stream: int, tail: int | None, limit: int
    ) -> AsyncGenerator[bytes, None]:
        """The chunks of one stream of a known job (its full id)."""
        fanout = self._copier.fanouts.get(job_id) or self._relays.get(job_id)
        job = self._cache.get(job_id)
        if fanout is None and job is not None and job.state in ACTIVE:
            fanout = self._start_relay(job_id)
        if fanout is None:  # finished: its log holds it all
            async for chunk in self._history(job_id, stream, None, tail):
                yield chunk
            return
        reader = fanout.join(stream, limit)
        try:
            if reader.offset and tail != 0:
                async for chunk in self._history(job_id, stream, reader.offset, tail):
                    yield chunk
            while (live := await reader.next()) is not None:
                yield live
        finally:
            fanout.leave(reader)

    async def _history(
        self, job_id: str, stream: int, upto: int | None, tail: int | None
    ) -> AsyncGenerator[bytes, None]:
        """The stream's first ``upto`` bytes (all if None) from the engine's log, or the last
        ``tail`` lines of them."""
        got = 0
        kept = b""
        with engine_errors("logs", job_id):
            async with self._engine.read_logs(job_id) as read:
                while (upto is None or got < upto) and (frame := await read()) is not None:
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
        if upto is not None and got < upto and tail is None:
            raise OutputStreamError(
                f"the engine's log holds {got} of the first {upto} bytes of the job's output "
                "(rotated away?)"
            )

    def _start_relay(self, job_id: str) -> Fanout:
        scope = anyio.CancelScope()
        fanout = Fanout(on_idle=scope.cancel)
        self._relays[job_id] = fanout
        self._relay_scopes[job_id] = scope
        self._tasks.spawn(self._relay, job_id, fanout, scope)
        return fanout

    async def _relay(self, job_id: str, fanout: Fanout, scope: anyio.CancelScope) -> None:
        """One attach (replaying the log, then following it) shared by the job's readers."""
        error: TrackerError | None = OutputStreamError("the tracker stopped relaying the output")
        try:
            with scope:
                try:
                    with engine_errors("attach", job_id):
                        async with self._engine.attach_output(job_id, logs=True) as read:
                            while (frame := await read()) is not None:
                                fanout.publish(*frame)
                    with engine_errors("inspect", job_id):
                        details = await self._engine.inspect(job_id)
                    error = (
                        OutputStreamError("the engine's output stream ended before the job did")
                        if details.running
                        else None
                    )
                except TrackerError as exc:
                    error = OutputStreamError(f"the job's output stream broke: {exc}")
        finally:
            self._relays.pop(job_id, None)
            self._relay_scopes.pop(job_id, None)
            fanout.end(error)
