"""How a command runs: its options, its tracker (opened for the command's duration), its
async body under ``asyncio.run``, and what becomes of errors (one line on stderr and an exit
status, never a traceback for the library's own) and of Ctrl-C (130, quietly)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import click

from .._exceptions import JobNotFoundError, TrackerError
from .._monitoring import MonitoringSession
from .._tracker import DockerTracker
from ._args import EXIT_INTERRUPTED, exit_status_of, one_line

Role = Literal["worker", "observer"]


def _default_tracker(
    session: str, *, docker_url: str | None, labels: dict[str, str], role: Role
) -> DockerTracker:
    return DockerTracker(session, docker_url=docker_url, labels=labels, role=role)


def _default_monitor(docker_url: str | None) -> MonitoringSession:
    return MonitoringSession(docker_url)


# The private hooks of the tests: what makes a command's tracker and monitoring session
# (the unit tests put aiotracker's fake engine behind them).
tracker_factory: Callable[..., DockerTracker] = _default_tracker
monitor_factory: Callable[[str | None], MonitoringSession] = _default_monitor


@dataclass(frozen=True)
class Options:
    """The group's options, for every command."""

    session: str
    docker_url: str | None
    json: bool
    labels: dict[str, str] = field(default_factory=dict)


@asynccontextmanager
async def open_tracker(opts: Options, role: Role) -> AsyncIterator[DockerTracker]:
    """The command's tracker, open for the command's duration."""
    tracker = tracker_factory(
        opts.session, docker_url=opts.docker_url, labels=dict(opts.labels), role=role
    )
    async with tracker:
        yield tracker


@asynccontextmanager
async def open_monitor(opts: Options) -> AsyncIterator[MonitoringSession]:
    async with monitor_factory(opts.docker_url) as monitor:
        yield monitor


async def resolve(tracker: DockerTracker, ref: str) -> str:
    """A job's full id from its id, a unique id prefix, or its job name in the session."""
    try:
        return await tracker.resolve_id(ref)
    except JobNotFoundError as by_id:
        try:
            return await tracker.find_job(ref)
        except JobNotFoundError:
            raise by_id from None


def fail(message: str, status: int) -> click.exceptions.Exit:
    """Say why on stderr (one line); the exception to raise for the exit status."""
    click.echo(f"aiotracker: {one_line(message)}", err=True)
    return click.exceptions.Exit(status)


def _tracker_errors(exc: BaseException) -> TrackerError | None:
    """The library error an exception is, or an exception group holds only of."""
    if isinstance(exc, TrackerError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        rest = exc.split(TrackerError)[1]
        if rest is None:
            first = exc.exceptions[0]
            return _tracker_errors(first)
    return None


def run(body: Callable[[], Coroutine[Any, Any, int | None]]) -> None:
    """Run a command's async body; its result (an int) is the exit status."""
    guard(lambda: asyncio.run(body()))


def guard(call: Callable[[], int | None]) -> None:
    """Call a command's body: a library error becomes one line on stderr and its exit
    status, Ctrl-C exits 130 quietly; the body's result (an int) is the exit status."""
    try:
        status = call()
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        # The reader went away (``| head``): quietly, as a shell tool would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        raise click.exceptions.Exit(EXIT_INTERRUPTED + 11) from None  # 141: SIGPIPE
    except (TrackerError, BaseExceptionGroup) as exc:
        error = _tracker_errors(exc)
        if error is None:
            raise
        raise fail(str(error) or type(error).__name__, exit_status_of(error)) from None
    if status:
        raise click.exceptions.Exit(status)


# -- the library's log -----------------------------------------------------------------------


class _EchoHandler(logging.Handler):
    """The library's log on the current stderr (looked up at each record)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:
            self.handleError(record)


def setup_logging(verbose: int) -> Callable[[], None]:
    """Show the library's log on stderr for the command's duration; returns what ends it.

    Its warnings (a lease taken over, a reconnect) are routine for a short-lived command:
    shown with ``-v``; ``-vv`` shows its info, ``-vvv`` its debug log. Errors always."""
    logger = logging.getLogger("aiotracker")
    handler = _EchoHandler()
    handler.setFormatter(logging.Formatter("aiotracker: %(levelname)s: %(message)s"))
    level = [logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 3)]
    handler.setLevel(level)
    before = logger.level
    if verbose >= 2:
        logger.setLevel(level)
    logger.addHandler(handler)

    def end() -> None:
        logger.removeHandler(handler)
        logger.setLevel(before)

    return end
