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
import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Literal, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from ._cache import ACTIVE, TERMINAL, Change, StateCache
from ._engine.base import Engine, OutputReader
from ._errors import engine_errors
from ._exceptions import InvalidArgumentError, OutputStreamError, TrackerError
from ._exits import ExitSignals
from ._fanout import Fanout
from ._labels import MANAGED_LABEL, TEMPLATE_LABEL
from ._model import JobState
from ._output import FLUSH_DELAY, OutputFiles, OutputPlan, Writers, is_marked, plan_output
from ._template_label import decode_template_label
from ._waiters import Wakeups

log = logging.getLogger("aiotracker")
T = TypeVar("T")

Source = Literal["attach", "replay", "logs"]


class OutputCopier:
    """Copies jobs' output to their files and readers; counts the streams it holds open."""

    def __init__(
        self,
        engine: Engine,
        cache: StateCache,
        publish: Callable[[tuple[Wakeups, list[Change]] | None], None],
        exits: ExitSignals,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._publish = publish
        self._exits = exits
        self._writers = Writers()
        self.streams: dict[str, anyio.CancelScope] = {}
        self.fanouts: dict[str, Fanout] = {}  # jobs being copied: their live readers
        self._flushes: dict[str, asyncio.TimerHandle] = {}  # jobs with a flush due

    def _fault(self, job_id: str, text: str, paths: Iterable[str] = ()) -> None:
        log.warning("job %s: %s", job_id[:12], text)
        self._cache.add_fault(job_id, text, paths)

    async def copy(
        self, job_id: str, plan: OutputPlan, source: Source,
        job_started: asyncio.Future[bool] | None,
        *, task_status: anyio.abc.TaskStatus[None],
    ) -> None:  # fmt: skip
        """Copy the job's output to its files and readers until the stream ends.

        ``source``: "attach" before a start (ready once attached: nothing is missed);
        "replay" (attach with the log so far) for a job found running when the tracker
        opened; "logs" for one that finished meanwhile. An attach that fails is raised to the
        starter (the job is not started); every later error is the job's fault. A file error
        stops the writing of that file only: the stream still goes to the other file and to
        the readers, and is still completed from the log if it ends early.
        """
        files = OutputFiles(plan, job_id, self._writers)
        self._cache.begin_output(job_id)
        attached = False
        ended = False  # the copy reached its end (not cut short by a closing tracker)
        keep_marks = False  # the files are to be rewritten by the next tracker
        missing: str | None = None  # the output could not be had whole: why
        counts = {1: 0, 2: 0}  # bytes of each stream received
        fanout = self.fanouts[job_id] = Fanout()
        fanout.ready.set()  # nothing of it is history: its readers read the log up to now
        if source != "attach":
            task_status.started()  # no start waits for it: its failures are the job's
        try:
            with anyio.CancelScope() as scope:
                self.streams[job_id] = scope
                if job_started is not None:
                    # A start given up after we attached (no longer ours, terminated): the
                    # stream of a container that never starts would never end.
                    job_started.add_done_callback(functools.partial(_cancel_unless_started, scope))
                broke = False
                if source == "logs":
                    reader = self._engine.read_logs(job_id)
                else:
                    reader = self._engine.attach_output(job_id, logs=source == "replay")
                try:
                    with engine_errors("attach", job_id):
                        async with reader as read:
                            attached = True
                            if source == "attach":
                                task_status.started()
                            await self._drain(job_id, files, read, counts, fanout)
                except TrackerError as exc:
                    if not attached and source == "attach":
                        raise
                    log.warning("output stream of job %s broke: %s", job_id[:12], exc)
                    broke = True
                except Exception as exc:  # a bug: it stays with this job
                    if not attached and source == "attach":
                        raise
                    log.exception("copying the output of job %s failed", job_id[:12])
                    missing = f"output incomplete: {exc!r}"
                    self._fault(job_id, missing, files.paths)
                if job_started is not None and not await job_started:
                    files.abort()  # not started: no file was made
                    ended = True
                    return
                if missing is None:
                    if source == "logs":
                        if broke:  # the next tracker tries again
                            missing = "output incomplete: the engine's log could not be read"
                            self._fault(job_id, missing, files.paths)
                            keep_marks = True
                    elif broke or not await self._exits.ended_at_exit(job_id):
                        # A stream that ends is not an end of output: confirmed against the
                        # exit, and completed from the engine's log if it ended first.
                        missing = await self._complete_from_log(job_id, files, counts, fanout)
                if missing is None:
                    await self._finish(job_id, files)
                ended = True
            if (
                scope.cancelled_caught and job_started is not None and job_started.done()
                and not job_started.cancelled() and not job_started.result()
            ):  # fmt: skip
                files.abort()  # not started: no file was made
                ended = True
        finally:
            flush = self._flushes.pop(job_id, None)
            if flush is not None:
                flush.cancel()  # closing or finishing writes the buffers out
            if (not ended or keep_marks) and (attached or source != "attach"):
                # Cut short by a closing tracker (or the log unreadable): the marks stay and
                # the next tracker rewrites the files from the log.
                with contextlib.suppress(OSError):
                    files.close()
            else:
                files.give_up()  # after a fault, or a job never started: closed, unmarked
            stopped = "the tracker stopped copying the job's output"
            fanout.end(None if ended and missing is None else OutputStreamError(missing or stopped))
            self.fanouts.pop(job_id, None)
            self.streams.pop(job_id, None)
            self._publish(self._cache.output_done(job_id))

    async def _finish(self, job_id: str, files: OutputFiles) -> None:
        """The output is whole: complete the files still written."""
        try:
            moved = await _in_thread_if(files.blocking, files.finish)
        except OSError as exc:
            self._fault(job_id, f"output incomplete: {_describe(exc)}", files.paths)
            return
        for path in moved:
            self._fault(
                job_id, f"output incomplete: {path}: the file was removed or replaced while "
                "the job ran", [path],
            )  # fmt: skip
        for real in sorted(self._writers.shared(job_id)):
            self._fault(job_id, f"output shared: {real} was written by other jobs at the same "
                        "time: their output is interleaved in it")  # fmt: skip

    async def _complete_from_log(
        self, job_id: str, files: OutputFiles, counts: dict[int, int], fanout: Fanout
    ) -> str | None:
        """Wait for the job's exit, then append what the log holds beyond what was received,
        stream by stream (exactly once, no gap: both come from the engine's one copy), to the
        files still written and to the readers."""
        await self._exits.wait_exit(job_id)
        skip = dict(counts)
        try:
            with engine_errors("logs", job_id):
                async with self._engine.read_logs(job_id) as read:
                    while (frame := await read()) is not None:
                        stream, data = frame
                        cut = min(skip.get(stream, 0), len(data))
                        skip[stream] = skip.get(stream, 0) - cut
                        if cut < len(data):
                            fanout.publish(stream, data[cut:])
                            await self._write(job_id, files, stream, data[cut:])
        except TrackerError as exc:
            text = f"output incomplete: the stream ended early and the log failed: {exc}"
            self._fault(job_id, text, files.paths)
            return text
        if any(skip.values()):
            text = "output incomplete: the engine's log no longer holds all of the output"
            self._fault(job_id, text, files.paths)
            return text
        log.info("output of job %s completed from the engine's log", job_id[:12])
        return None

    async def _drain(
        self, job_id: str, files: OutputFiles, read: OutputReader, counts: dict[int, int],
        fanout: Fanout,
    ) -> None:  # fmt: skip
        """Hand every frame to the readers and write it to its file."""
        # Marked before the job can write (it is started once we are attached).
        for path, exc in files.mark():
            self._drop(job_id, files, path, f"cannot create the output file: {_describe(exc)}")
        while (frame := await read()) is not None:
            stream, data = frame
            counts[stream] = counts.get(stream, 0) + len(data)
            fanout.publish(stream, data)
            await self._write(job_id, files, stream, data)

    async def _write(self, job_id: str, files: OutputFiles, stream: int, data: bytes) -> None:
        """Write a frame; a file error drops that file (the job's fault), never the copy.
        The file's buffer is flushed ``FLUSH_DELAY`` later, with the frames that came since."""
        try:
            await _in_thread_if(files.blocking, files.write, stream, data)
        except OSError as exc:
            self._drop(job_id, files, files.path_of(stream), _describe(exc))
        if files.dirty and job_id not in self._flushes:
            loop = asyncio.get_running_loop()
            self._flushes[job_id] = loop.call_later(FLUSH_DELAY, self._flush, job_id, files)

    def _flush(self, job_id: str, files: OutputFiles) -> None:
        self._flushes.pop(job_id, None)
        for path, exc in files.flush():
            self._drop(job_id, files, path, _describe(exc))

    def _drop(self, job_id: str, files: OutputFiles, path: str, why: str) -> None:
        self._fault(job_id, f"output incomplete: {why}", [path] if path else [])
        files.drop(path)

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


def _cancel_unless_started(scope: anyio.CancelScope, started: asyncio.Future[bool]) -> None:
    if not started.cancelled() and not started.result():
        scope.cancel()


async def _in_thread_if(blocking: bool, func: Callable[..., T], *args: object) -> T:
    """Run ``func``; from a worker thread where it may block (a FIFO, a device)."""
    if blocking:
        return await anyio.to_thread.run_sync(func, *args, abandon_on_cancel=True)
    return func(*args)
