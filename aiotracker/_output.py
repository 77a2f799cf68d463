"""Local output files of a job: where stdout and stderr go, and how they are written.

``/dev/stdout`` and ``/dev/stderr`` write to this process's own streams, which are flushed but
never closed. Everything here is synchronous file work on local paths.
"""

from __future__ import annotations

import contextlib
import os
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
    # Try for real: permission bits do not stop root, but a read-only or special file system
    # does. The file goes in as <path>.aiotracker-partial, then is renamed over <path>.
    probe = f"{absolute}.aiotracker-probe-{os.getpid()}"
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


def partial_path(path: str) -> str:
    return path + PARTIAL_SUFFIX


def has_partial(plan: OutputPlan) -> bool:
    """True if a copy of this plan was interrupted (a tracker closed while the job ran)."""
    return any(
        path and path not in _STD_STREAMS and os.path.exists(partial_path(path))
        for path in (plan.stdout, plan.stderr)
    )


class OutputFiles:
    """The files of one job's output, written atomically.

    Bytes go to ``<path>.aiotracker-partial``, renamed to ``<path>`` by ``finish()`` once the
    job's output is complete: a reader of ``output_path`` never sees half of it. A copy cut
    short (``close()``) leaves the partial file behind, which tells a tracker that opens later
    to recover the output from the engine's log; ``abort()`` (the job never started) removes it.
    """

    def __init__(self, plan: OutputPlan) -> None:
        self._plan = plan
        self._files: dict[str, IO[bytes]] = {}

    def open(self) -> None:
        """Create the partial files now, so that an interrupted copy is always visible."""
        for path in (self._plan.stdout, self._plan.stderr):
            if path and path not in self._files:
                if path in _STD_STREAMS:
                    self._files[path] = _std_stream(path)
                else:
                    self._files[path] = open(partial_path(path), "wb")  # noqa: SIM115

    def write(self, stream: int, data: bytes) -> None:
        path = self._plan.stdout if stream == 1 else self._plan.stderr
        if path:
            self._files[path].write(data)

    def finish(self) -> None:
        """The output is complete: close the files and move them into place."""
        for path in self.close():
            os.replace(partial_path(path), path)

    def abort(self) -> None:
        """The job never ran: close and remove the partial files."""
        for path in self.close():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial_path(path))

    def close(self) -> list[str]:
        """Close (flush the std streams); returns the paths of the partial files closed."""
        files, self._files = self._files, {}
        closed = []
        for path, f in files.items():
            if path in _STD_STREAMS:
                f.flush()
            else:
                f.close()
                closed.append(path)
        return closed
