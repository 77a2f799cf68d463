"""The output copier: a job's stdout and stderr from the engine into its files; its stdin.

One task per job with output files, owned by the tracker's task group. Each frame is written
to the job's file at its path as it comes (see ``OutputFiles``) and handed to the job's live
readers (``Fanout``): the tracker's one copy of the stream feeds both. A file error (a
directory removed, a full disk, no descriptor left, a path that became a directory) concerns
that job only: it is recorded on the job as a fault ("output incomplete: ...") naming its
files, the stream is still drained (a job whose output nobody reads would block), the job's
state stays what the engine says, and its end is published as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import IO, Literal

import anyio
import anyio.abc
import anyio.to_thread

from ._cache import ACTIVE, TERMINAL, Change, StateCache
from ._engine.base import Engine, OutputReader
from ._errors import engine_errors
from ._exceptions import InvalidArgumentError, OutputStreamError, TrackerError
from ._fanout import Fanout
from ._labels import MANAGED_LABEL, TEMPLATE_LABEL
from ._model import JobState
from ._output import OutputFiles, OutputPlan, is_marked, plan_output
from ._template_label import decode_template_label
from ._waiters import Wakeups

log = logging.getLogger("aiotracker")

# Seconds the die may follow the end of a job's output stream (Docker logs it ~25 ms after the
# exit); a stream that ended longer before the exit was cut, and the log completes the file.
_EXIT_GRACE = 0.5

Source = Literal["attach", "replay", "logs"]


class OutputCopier:
    """Copies jobs' output to their files; counts the streams it holds open."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        publish: Callable[[tuple[Wakeups, list[Change]] | None], None],
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._publish = publish
        self.streams: dict[str, anyio.CancelScope] = {}
        self.fanouts: dict[str, Fanout] = {}  # jobs being copied: their live readers
        self._exits: dict[str, anyio.Event] = {}  # jobs being copied: set at their exit

    def _fault(self, job_id: str, text: str, files: OutputFiles | None = None) -> None:
        log.warning("job %s: %s", job_id[:12], text)
        self._cache.add_fault(job_id, text, files.paths if files is not None else ())

    async def copy(
        self, job_id: str, plan: OutputPlan, source: Source,
        job_started: asyncio.Future[bool] | None,
        *, task_status: anyio.abc.TaskStatus[None],
    ) -> None:  # fmt: skip
        """Copy the job's output to its files until the stream ends.

        ``source``: "attach" before a start (ready once attached: nothing is missed);
        "replay" (attach with the log so far) for a job found running when the tracker
        opened; "logs" for one that finished meanwhile. An attach that fails is raised to the
        starter (the job is not started); every later error is the job's fault.
        """
        files = OutputFiles(plan, job_id)
        self._cache.begin_output(job_id)
        attached = finished = broke = False
        fault: str | None = None
        counts = {1: 0, 2: 0}  # bytes of each stream written
        self._exits[job_id] = anyio.Event()
        fanout = self.fanouts[job_id] = Fanout()
        try:
            with anyio.CancelScope() as scope:
                self.streams[job_id] = scope
                if source == "logs":
                    reader = self._engine.read_logs(job_id)
                else:
                    reader = self._engine.attach_output(job_id, logs=source == "replay")
                try:
                    with engine_errors("attach", job_id):
                        async with reader as read:
                            attached = True
                            task_status.started()
                            fault = await self._drain(job_id, files, read, counts, fanout)
                except TrackerError as exc:
                    if not attached:
                        raise
                    log.warning("output stream of job %s broke: %s", job_id[:12], exc)
                    broke = True
                except Exception as exc:  # a bug: it stays with this job
                    if not attached:
                        raise
                    log.exception("copying the output of job %s failed", job_id[:12])
                    fault = f"output incomplete: {exc!r}"
                    self._fault(job_id, fault, files)
                # A start that fails also ends the stream: then no file is made.
                if job_started is not None and not await job_started:
                    files.abort()
                    finished = True
                # A stream that ends is not an end of output: confirmed against the exit, and
                # completed from the engine's log if it ended first.
                elif (
                    fault is None
                    and source != "logs"
                    and (broke or not await self._ended_at_exit(job_id))
                ):
                    fault = await self._complete_from_log(job_id, files, counts, fanout)
                if fault is None and not finished:
                    try:
                        await _in_thread_if(files.blocking, files.finish)
                        finished = True
                    except OSError as exc:
                        fault = f"output incomplete: {_describe(exc)}"
                        self._fault(job_id, fault, files)
        finally:
            if not finished:
                # Cut short by a closing tracker (attached, no fault): the marks stay, and the
                # next tracker rewrites the files from the log; after a fault they go.
                self._discard(files, interrupted=attached and fault is None)
            fanout.end(
                None if finished
                else OutputStreamError(fault or "the tracker stopped copying the job's output")
            )  # fmt: skip
            self.fanouts.pop(job_id, None)
            self.streams.pop(job_id, None)
            self._exits.pop(job_id, None)
            self._publish(self._cache.output_done(job_id))

    def job_exited(self, job_id: str) -> None:
        """The job's exit is known (its die, or an inspect): its log is complete."""
        event = self._exits.get(job_id)
        if event is not None:
            event.set()

    def _exited(self, job_id: str) -> bool:
        job = self._cache.get(job_id)
        return job is None or job.exited or job.final is not None or job.state in TERMINAL

    async def _wait_exit(self, job_id: str) -> None:
        while not self._exited(job_id):  # woken by job_exited
            await self._exits[job_id].wait()
            self._exits[job_id] = anyio.Event()

    async def _ended_at_exit(self, job_id: str) -> bool:
        """Did the stream end because the job exited? Its die comes within moments of the
        end; if it does not, the engine is asked (the stream may have been cut)."""
        with anyio.move_on_after(_EXIT_GRACE):
            await self._wait_exit(job_id)
            return True
        try:
            with engine_errors("inspect", job_id):
                details = await self._engine.inspect(job_id)
        except TrackerError:
            return False
        return details.status not in ("running", "paused", "restarting")

    async def _complete_from_log(
        self, job_id: str, files: OutputFiles, counts: dict[int, int], fanout: Fanout
    ) -> str | None:
        """Wait for the job's exit, then append what the log holds beyond what was written,
        stream by stream (exactly once, no gap: both come from the engine's one copy)."""
        await self._wait_exit(job_id)
        skip = dict(counts)
        try:
            with engine_errors("logs", job_id):
                async with self._engine.read_logs(job_id) as read:
                    while (frame := await read()) is not None:
                        stream, data = frame
                        cut = min(skip.get(stream, 0), len(data))
                        skip[stream] = skip.get(stream, 0) - cut
                        if cut < len(data):
                            await _write(files, stream, data[cut:])
                            fanout.publish(stream, data[cut:])
        except (TrackerError, OSError) as exc:
            text = f"output incomplete: the stream ended early and the log failed: {exc}"
            self._fault(job_id, text, files)
            return text
        if any(skip.values()):
            text = "output incomplete: the engine's log no longer holds all of the output"
            self._fault(job_id, text, files)
            return text
        log.info("output of job %s completed from the engine's log", job_id[:12])
        return None

    async def _drain(
        self, job_id: str, files: OutputFiles, read: OutputReader, counts: dict[int, int],
        fanout: Fanout,
    ) -> str | None:  # fmt: skip
        """Write every frame and hand it to the readers; after a file error, keep reading
        (the readers still get it) and write no more."""
        fault = None
        try:
            files.mark()  # before the job can write (it is started once we are attached)
        except OSError as exc:
            fault = f"output incomplete: cannot create the output file: {_describe(exc)}"
            self._fault(job_id, fault, files)
        while (frame := await read()) is not None:
            stream, data = frame
            fanout.publish(stream, data)
            if fault is not None:
                continue
            try:
                await _write(files, stream, data)
                counts[stream] = counts.get(stream, 0) + len(data)
            except OSError as exc:
                fault = f"output incomplete: {_describe(exc)}"
                self._fault(job_id, fault, files)
        return fault

    @staticmethod
    def _discard(files: OutputFiles, *, interrupted: bool) -> None:
        """Close quietly; the marks go unless a tracker closing mid-job interrupted the copy."""
        with contextlib.suppress(OSError):
            if interrupted:
                files.close()  # the next tracker rewrites the files from the log
            else:
                files.give_up()

    async def feed_input(self, job_id: str, source: IO[bytes]) -> None:
        """Write an open input file to the job's stdin, then close both."""
        try:
            with source, engine_errors("stdin", job_id):
                await self._engine.feed_stdin(job_id, source)
        except (TrackerError, OSError) as exc:
            self._fault(job_id, f"stdin not fed: {exc}")

    def cancel(self, job_id: str) -> None:
        scope = self.streams.get(job_id)
        if scope is not None:
            scope.cancel()


def _describe(exc: OSError) -> str:
    name = exc.filename if isinstance(exc.filename, str) else ""
    return f"{name}: {exc.strerror or exc}" if name else str(exc.strerror or exc)


def recovery(
    labels: Mapping[str, str], state: JobState, job_id: str
) -> tuple[OutputPlan, Source] | None:
    """At opening: a running job's output is rewritten (attach replaying the log, then
    following it); a finished job's is rewritten from the log if, and only if, its copy was
    interrupted (its files are still marked incomplete)."""
    label = labels.get(TEMPLATE_LABEL)
    if MANAGED_LABEL not in labels or not label:
        return None
    try:
        plan = plan_output(decode_template_label(label), os.getcwd())
    except InvalidArgumentError:
        return None  # its paths are not writable from here: nothing to recover into
    if not plan.wanted:
        return None
    if state in ACTIVE:
        return plan, "replay"
    if state in TERMINAL and is_marked(plan, job_id):
        return plan, "logs"
    return None


async def _write(files: OutputFiles, stream: int, data: bytes) -> None:
    """Write a frame; from a worker thread where the write may block (a FIFO, a device)."""
    await _in_thread_if(files.blocking, files.write, stream, data)


async def _in_thread_if(blocking: bool, func: Callable[..., None], *args: object) -> None:
    if blocking:
        await anyio.to_thread.run_sync(func, *args, abandon_on_cancel=True)
    else:
        func(*args)
