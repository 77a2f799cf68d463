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
    # does. The file goes in as a partial file beside the real path (a symlink's target),
    # then is renamed onto it.
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


PARTIAL_SUFFIX = ".aiotracker-partial"


def partial_path(path: str, job_id: str) -> str:
    """Where a job's output goes until complete: beside the real file (same file system),
    named after the job, so that jobs sharing a path never write one partial file."""
    return f"{_real(path)}.{job_id[:12]}{PARTIAL_SUFFIX}"


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


def has_partial(plan: OutputPlan, job_id: str) -> bool:
    """True if a copy of this plan was interrupted (a tracker closed while the job ran)."""
    return any(
        path and path not in _STD_STREAMS and os.path.exists(partial_path(path, job_id))
        for path in (plan.stdout, plan.stderr)
    )


class OutputFiles:
    """The files of one job's output.

    A regular file is written atomically: bytes go to a partial file beside it, renamed onto
    the path by ``finish()`` once the output is complete, so a reader never sees half of it.
    A path that is a device, a FIFO or a socket is written in place (never replaced), from a
    worker thread, since such a write may block; a symlink is followed. A copy cut short
    (``close()``) leaves the partial file behind, which tells a tracker that opens later to
    recover the output from the engine's log; ``abort()`` (the job never started) removes it.
    All file errors are ``OSError``: the caller records them on the job.
    """

    def __init__(self, plan: OutputPlan, job_id: str) -> None:
        self._plan = plan
        self._job_id = job_id
        self._files: dict[str, IO[bytes]] = {}
        self._special: set[str] = set()

    @property
    def blocking(self) -> bool:
        """True if a write may block (a FIFO, a device): write from a worker thread."""
        return bool(self._special)

    def opens_blocking(self) -> bool:
        """True if opening may block (a FIFO waits for its reader): open from a thread."""
        return any(
            path and path not in _STD_STREAMS and is_special(path)
            for path in (self._plan.stdout, self._plan.stderr)
        )

    def open(self) -> None:
        """Open every file now (a partial file, so that an interrupted copy is visible)."""
        for path in (self._plan.stdout, self._plan.stderr):
            if not path or path in self._files:
                continue
            if path in _STD_STREAMS:
                self._files[path] = _std_stream(path)
            elif is_special(path):
                self._special.add(path)
                self._files[path] = open(path, "wb", buffering=0)  # noqa: SIM115
            else:
                self._files[path] = open(partial_path(path, self._job_id), "wb")  # noqa: SIM115

    def write(self, stream: int, data: bytes) -> None:
        path = self._plan.stdout if stream == 1 else self._plan.stderr
        if path:
            self._files[path].write(data)

    def finish(self) -> None:
        """The output is complete: close the files and move them into place."""
        for path in self.close():
            os.replace(partial_path(path, self._job_id), _real(path))

    def abort(self) -> None:
        """The job never ran: close and remove the partial files."""
        for path in self.close():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial_path(path, self._job_id))

    def close(self) -> list[str]:
        """Close (flush the std streams); returns the paths whose partial files were closed."""
        files, self._files = self._files, {}
        closed = []
        errors: list[OSError] = []
        for path, f in files.items():
            try:
                if path in _STD_STREAMS:
                    f.flush()
                    continue
                f.close()
            except OSError as exc:  # a full disk shows up at the last flush
                errors.append(exc)
                continue
            if path not in self._special:
                closed.append(path)
        if errors:
            raise errors[0]
        return closed


def absolute_paths(template: JobTemplate, cwd: str) -> JobTemplate:
    """The template with every host path made absolute against ``cwd``, once, at submission:
    what is stored (the template label) then means the same to any tracker, anywhere."""

    def absolute(path: str) -> str:
        if not path or path in _STD_STREAMS or not isinstance(path, str):
            return path
        return os.path.normpath(os.path.join(cwd, path))

    return template.replace(
        output_path=absolute(template.output_path),
        error_path=absolute(template.error_path),
        input_path=absolute(template.input_path),
        stage_in_files={absolute(k): v for k, v in template.stage_in_files.items()},
    )
