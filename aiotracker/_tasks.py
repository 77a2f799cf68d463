"""The tracker's background work: every task lives in one task group, and a fault in one
is contained there, logged with its traceback, never left to stop the others.

``Tasks`` wraps the tracker's ``anyio`` task group. ``spawn`` runs work whose failure concerns
only itself (an inspect, a copier, a launcher round); ``owned`` runs a caller's work (making a
job) in the group, so that a cancelled caller never leaves it half-done; ``start`` waits for
a task's readiness.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import anyio
import anyio._backends._asyncio  # imported with aiotracker: see below
import anyio.abc

from ._exceptions import JobNotFoundError, TrackerClosedError, TrackerError

# anyio imports its asyncio backend (and the modules that backend needs) on first use: about
# 20 ms of CPU inside the first tracker's constructor and open(). Every tracker runs on that
# backend, so it is imported with aiotracker instead (above), with the rest of its imports.

log = logging.getLogger("aiotracker")
T = TypeVar("T")

# The pauses of background work retried after an engine failure: 50 ms, doubling, at most 5 s.
BACKOFF_MIN, BACKOFF_MAX = 0.05, 5.0


def next_backoff(previous: float) -> float:
    """The pause after ``previous`` (0: none yet): ``BACKOFF_MIN``, then doubling."""
    return min(previous * 2, BACKOFF_MAX) if previous else BACKOFF_MIN


class Tasks:
    """The tracker's task group, with containment and a count of what runs."""

    def __init__(self) -> None:
        self._tg: anyio.abc.TaskGroup | None = None
        self.running = 0

    def bind(self, tg: anyio.abc.TaskGroup | None) -> None:
        self._tg = tg

    @property
    def open(self) -> bool:
        return self._tg is not None

    def group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise TrackerClosedError("the tracker is not open")
        return self._tg

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn`` in the background; any error it raises is logged and goes no further."""
        tg = self._tg
        if tg is None:
            return

        async def run() -> None:
            self.running += 1
            try:
                await fn(*args)
            except TrackerError as exc:
                log.warning("%s failed: %s", _name(fn), exc)
            except Exception:
                log.exception("%s failed unexpectedly; the tracker goes on", _name(fn))
            finally:
                self.running -= 1

        tg.start_soon(run, name=_name(fn))

    async def start(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``TaskGroup.start``: returns once ``fn`` reported readiness (or raises its error)."""
        return await self.group().start(cast(Any, fn), *args)

    async def owned(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn`` in the task group and await it from the caller.

        A cancelled caller does not cancel the work: a job being made is finished (or cleaned
        up) by the tracker, never left half-made. Closing the tracker cancels it.
        """
        tg = self.group()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            self.running += 1
            try:
                result = await fn(*args)
            except asyncio.CancelledError:
                if not future.done():
                    future.set_exception(TrackerClosedError("the tracker was closed"))
                raise
            except BaseException as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
            finally:
                self.running -= 1

        future.add_done_callback(_retrieve)
        tg.start_soon(run, name=_name(fn))
        # A cancelled caller cancels only this bare future (no shield needed): ``run`` goes on
        # and finds it done.
        return await future


def shielded(timeout: float) -> anyio.CancelScope:
    """A clean-up scope: not cancelled from outside, but bounded (a hung engine)."""
    return anyio.CancelScope(shield=True, deadline=anyio.current_time() + timeout)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: its caller may have been cancelled meanwhile."""
    if not future.cancelled():
        future.exception()


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


async def each(
    call: Callable[[str], Awaitable[T]], ids: Sequence[str], limit: int = 16
) -> dict[str, T]:
    """``call`` for every id, ``limit`` at a time (the public calls over many jobs); the
    results by id. A job removed meanwhile is left out; any other failure is raised as
    itself (the first one), once all calls ended."""
    calls = asyncio.Semaphore(limit)

    async def one(job_id: str) -> T:
        async with calls:
            return await call(job_id)

    results = await asyncio.gather(*(one(j) for j in ids), return_exceptions=True)
    out: dict[str, T] = {}
    for job_id, result in zip(ids, results, strict=True):
        if isinstance(result, JobNotFoundError):
            continue
        if isinstance(result, BaseException):
            raise result
        out[job_id] = result
    return out
