"""Local output files of a job: where stdout and stderr go, and how they are written.

``/dev/stdout`` and ``/dev/stderr`` write to this process's own streams, which are flushed but
never closed. Everything here is synchronous file work on local paths.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from dataclasses import dataclass
from typing import IO

from ._exceptions import InvalidArgumentError
from ._model import JobTemplate

_STD_STREAMS = ("/dev/stdout", "/dev/stderr")


def _std_stream(path: str) -> IO[bytes]:
    return sys.stdout.buffer if path == "/dev/stdout" else sys.stderr.buffer


def check_output_path(what: str, path: str, cwd: str) -> str:
    """The absolute path of an output file that can be written; InvalidArgumentError if not."""
    if path in _STD_STREAMS:
        return path
    if "\x00" in path:
        raise InvalidArgumentError(f"{what} contains a NUL byte")
    absolute = os.path.normpath(os.path.join(cwd, path))
    parent = os.path.dirname(absolute) or "/"
    if not os.path.isdir(parent):
        raise InvalidArgumentError(f"{what} {path!r}: directory {parent!r} does not exist")
    if os.path.isdir(absolute):
        raise InvalidArgumentError(f"{what} {path!r} is a directory")
    if is_special(absolute):
        # A device, a FIFO or a socket: written in place, never replaced.
        if not os.access(absolute, os.W_OK):
            raise InvalidArgumentError(f"{what} {path!r} is not writable")
        return absolute
    # Try for real: permission bits do not stop root, but a read-only or special file system
    # does. The file's mark goes beside the real path (a symlink's target).
    probe = f"{os.path.realpath(absolute)}.aiotracker-probe-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.unlink(probe)
        if os.path.exists(absolute) and not os.access(absolute, os.W_OK):
            raise PermissionError(absolute)
    except OSError as exc:
        raise InvalidArgumentError(f"{what} {path!r} is not writable: {exc.strerror}") from exc
    return absolute


def check_input_path(path: str, cwd: str) -> str:
    if "\x00" in path:
        raise InvalidArgumentError("input_path contains a NUL byte")
    absolute = os.path.normpath(os.path.join(cwd, path))
    if not os.path.isfile(absolute):
        raise InvalidArgumentError(f"input_path {path!r} is not a file")
    if not os.access(absolute, os.R_OK):
        raise InvalidArgumentError(f"input_path {path!r} is not readable")
    return absolute


def check_stage_in(template: JobTemplate, cwd: str) -> None:
    for host_path in template.stage_in_files:
        if "\x00" in host_path:
            raise InvalidArgumentError("stage_in_files contains a NUL byte")
        absolute = os.path.normpath(os.path.join(cwd, host_path))
        if not os.path.exists(absolute):
            # Docker would silently create a missing bind source as an empty directory.
            raise InvalidArgumentError(f"stage_in_files: host path {host_path!r} does not exist")


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """Where each stream goes: absolute paths or ``/dev/std*``; "" discards the stream."""

    stdout: str
    stderr: str

    @property
    def wanted(self) -> bool:
        return bool(self.stdout or self.stderr)


def plan_output(template: JobTemplate, cwd: str) -> OutputPlan:
    """Check the output paths of a template (before anything is created) and plan the copy."""
    out = (
        check_output_path("output_path", template.output_path, cwd) if template.output_path else ""
    )
    err = check_output_path("error_path", template.error_path, cwd) if template.error_path else ""
    if template.join_files:
        err = out  # DRMAA2: the error stream joins the output stream
    return OutputPlan(out, err)


MARK_SUFFIX = ".aiotracker-incomplete"
# Seconds a written frame may wait in the file's buffer (frames that come together are written
# together); ``tail -f`` sees the output this much later at most.
FLUSH_DELAY = 0.005


def mark_path(path: str, job_id: str) -> str:
    """The mark that a job's copy into ``path`` is under way: a hidden empty file beside the
    real file (a symlink's target), named after the job, so that jobs sharing a path never
    share a mark. It exists from the copy's start until its file is complete."""
    real = _real(path)
    head, tail = os.path.split(real)
    return os.path.join(head, f".{tail}.{job_id[:12]}{MARK_SUFFIX}")


def _real(path: str) -> str:
    """A symlink is followed, never replaced: the output goes to its target."""
    return os.path.realpath(path)


def is_special(path: str) -> bool:
    """An existing path that is not a regular file (device, FIFO, socket): written in place."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode)


def _open_append(path: str, *, truncate: bool) -> IO[bytes]:
    """A regular file opened for appending (created; emptied if ``truncate``), with a buffer
    that the copier flushes moments after each write (``FLUSH_DELAY``)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
    return os.fdopen(os.open(path, flags, 0o644), "ab", buffering=1 << 16)


def _at(path: str, f: IO[bytes]) -> bool:
    """Is the open file ``f`` still the file at ``path``?"""
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _regular(path: str) -> bool:
    return bool(path) and path not in _STD_STREAMS and not is_special(path)


def is_marked(plan: OutputPlan, job_id: str) -> bool:
    """True if a copy of this plan was interrupted (a tracker closed while the job ran)."""
    return any(
        _regular(path) and os.path.exists(mark_path(path, job_id))
        for path in (plan.stdout, plan.stderr)
    )


class Writers:
    """Which jobs of one tracker are writing which regular files (by real path), and which
    of them wrote a file at the same time as another."""

    def __init__(self) -> None:
        self._by_path: dict[str, set[str]] = {}
        self._shared: dict[str, set[str]] = {}  # job -> real paths it shared

    def join(self, real: str, job_id: str) -> bool:
        """``job_id`` opens ``real``; True if other jobs are writing it (no truncation)."""
        others = self._by_path.setdefault(real, set())
        shared = bool(others - {job_id})
        if shared:
            for job in (*others, job_id):
                self._shared.setdefault(job, set()).add(real)
        others.add(job_id)
        return shared

    def leave(self, real: str, job_id: str) -> None:
        writers = self._by_path.get(real)
        if writers is not None:
            writers.discard(job_id)
            if not writers:
                del self._by_path[real]

    def shared(self, job_id: str) -> set[str]:
        """The files ``job_id`` wrote at the same time as another job (forgotten after)."""
        return self._shared.pop(job_id, set())


class OutputFiles:
    """The files of one job's output, written at their paths as the output comes.

    ``mark()`` (at the copy's start) leaves a hidden mark beside each regular file; the file
    itself is created (truncated) at the first byte of its stream, or by ``finish()`` if the
    stream had none, and what is written reaches the file within ``FLUSH_DELAY``
    (``flush()``, called by the copier), so that ``tail -f`` sees the output as it comes.
    ``finish()`` closes the files and removes the marks: a file without a mark is complete.
    A copy cut short (``close()``) keeps the marks, which tell a tracker that opens later to
    rewrite the files from the engine's log; ``abort()`` (the job never started) and
    ``give_up()`` (a file fault) remove them. A path that is a device, a FIFO or a socket is
    written in place (never replaced, never marked), unbuffered, from a worker thread, since
    such a write may block; a symlink is followed. All file errors are ``OSError``: the
    caller records them on the job.

    Files are opened for appending, so that jobs of one tracker that write one path at the
    same time (array tasks without ``$DRMAA2_INDEX$``) interleave whole frames and never write
    over each other: ``writers`` (the tracker's) says who else is writing; only the first
    truncates.
    """

    def __init__(self, plan: OutputPlan, job_id: str, writers: Writers | None = None) -> None:
        self._plan = plan
        self._job_id = job_id
        self._files: dict[str, IO[bytes]] = {}
        self._special = {
            path for path in (plan.stdout, plan.stderr)
            if path and path not in _STD_STREAMS and is_special(path)
        }  # fmt: skip
        self._marked: list[str] = []
        self._writers = writers if writers is not None else Writers()
        self._dropped: set[str] = set()
        self._dirty: set[str] = set()  # buffered files written since their last flush

    @property
    def paths(self) -> tuple[str, ...]:
        """The files written (not the process's own streams), each once."""
        return tuple(
            dict.fromkeys(
                p for p in (self._plan.stdout, self._plan.stderr) if p and p not in _STD_STREAMS
            )
        )

    def path_of(self, stream: int) -> str:
        """The file a stream goes to ("" for none or the process's own streams)."""
        path = self._plan.stdout if stream == 1 else self._plan.stderr
        return "" if path in _STD_STREAMS else path

    @property
    def blocking(self) -> bool:
        """True if a write or an open may block (a FIFO, a device): use a worker thread."""
        return bool(self._special)

    def mark(self) -> list[tuple[str, OSError]]:
        """Mark each regular file as being copied (before the job can write a byte); returns
        the files that could not be marked (their directory is gone, say), with the error."""
        failed = []
        for path in self.paths:
            if path in self._special or path in self._marked:
                continue
            try:
                os.close(os.open(mark_path(path, self._job_id), os.O_WRONLY | os.O_CREAT, 0o644))
            except OSError as exc:
                failed.append((path, exc))
                continue
            self._marked.append(path)
        return failed

    def drop(self, path: str) -> None:
        """Write no more to ``path`` (a file error): it stays as far as it got, unmarked."""
        self._dropped.add(path)
        self._dirty.discard(path)
        f = self._files.pop(path, None)
        if f is not None and path not in _STD_STREAMS:
            if path not in self._special:
                self._release(_real(path))
            with contextlib.suppress(OSError):
                f.close()
        if path in self._marked:
            self._marked.remove(path)
            with contextlib.suppress(OSError):
                os.unlink(mark_path(path, self._job_id))

    @property
    def dropped(self) -> set[str]:
        return set(self._dropped)

    def open(self, stream: int) -> None:
        """Open (create; truncate unless another job of the tracker writes it) the file of a
        stream; a FIFO's open may block."""
        path = self._path(stream)
        if not path or path in self._files or path in self._dropped:
            return
        if path in _STD_STREAMS:
            self._files[path] = _std_stream(path)
            return
        if path in self._special:
            self._files[path] = open(path, "wb", buffering=0)  # noqa: SIM115
            return
        real = _real(path)
        shared = self._writers.join(real, self._job_id)
        try:
            self._files[path] = _open_append(path, truncate=not shared)
        except BaseException:
            self._writers.leave(real, self._job_id)
            raise

    def write(self, stream: int, data: bytes) -> None:
        path = self._path(stream)
        if not path or path in self._dropped:
            return
        if path not in self._files:
            self.open(stream)
        f = self._files[path]
        if path in self._special:
            view = memoryview(data)
            while view:  # an unbuffered write may be short
                view = view[f.write(view) :]
        else:
            f.write(data)
            self._dirty.add(path)

    @property
    def dirty(self) -> bool:
        """Written since the last ``flush()``."""
        return bool(self._dirty)

    def flush(self) -> list[tuple[str, OSError]]:
        """Write out the buffers; returns the files that failed, with the error."""
        dirty, self._dirty = self._dirty, set()
        failed = []
        for path in dirty:
            f = self._files.get(path)
            if f is None:
                continue
            try:
                f.flush()
            except OSError as exc:
                failed.append((path, exc))
        return failed

    def _path(self, stream: int) -> str:
        return self._plan.stdout if stream == 1 else self._plan.stderr

    def finish(self) -> list[str]:
        """The output is complete: every file exists (empty if its stream was), is closed,
        and is no longer marked. Returns the files removed or replaced while the job ran
        (what was written went to a file no longer at the path)."""
        for stream in (1, 2):
            self.open(stream)
        moved = [
            path for path, f in self._files.items()
            if path not in _STD_STREAMS and path not in self._special and not _at(path, f)
        ]  # fmt: skip
        self.close()
        self._unmark()
        return moved

    def abort(self) -> None:
        """The job never ran: close; no file was created; the marks go."""
        self.give_up()

    def give_up(self) -> None:
        """A file fault: close what can be closed; the files stay as far as they got, and the
        marks go (nothing will complete them)."""
        with contextlib.suppress(OSError):
            self.close()
        with contextlib.suppress(OSError):
            self._unmark()

    def _unmark(self) -> None:
        marked, self._marked = self._marked, []
        for path in marked:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(mark_path(path, self._job_id))

    def close(self) -> None:
        """Close the files (flush the std streams, which stay open); marks stay."""
        files, self._files = self._files, {}
        self._dirty.clear()
        errors: list[OSError] = []
        for path, f in files.items():
            if path not in _STD_STREAMS and path not in self._special:
                self._release(_real(path))
            try:
                if path in _STD_STREAMS:
                    f.flush()
                else:
                    f.close()
            except OSError as exc:  # a full disk may show up at the last flush
                errors.append(exc)
        if errors:
            raise errors[0]

    def _release(self, real: str) -> None:
        self._writers.leave(real, self._job_id)


def absolute_paths(template: JobTemplate, cwd: str) -> JobTemplate:
    """The template with every host path made absolute against ``cwd``, once, at submission:
    what is stored (the template label) then means the same to any tracker, anywhere."""

    def absolute(path: str) -> str:
        if not path or path in _STD_STREAMS or not isinstance(path, str):
            return path
        return os.path.normpath(os.path.join(cwd, path))

    paths = (template.output_path, template.error_path, template.input_path,
             *template.stage_in_files, *template.stage_out_files.values())  # fmt: skip
    if all(absolute(path) == path for path in paths):
        return template  # nothing to change (the common case): no copy, no re-validation
    return template.replace(
        output_path=absolute(template.output_path),
        error_path=absolute(template.error_path),
        input_path=absolute(template.input_path),
        stage_in_files={absolute(k): v for k, v in template.stage_in_files.items()},
        stage_out_files={k: absolute(v) for k, v in template.stage_out_files.items()},
    )
