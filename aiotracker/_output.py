"""Local output files of a job: where stdout and stderr go, opened only when needed.

Files are opened on the first byte (or at the end, for an empty stream), so a job that never
starts leaves no file behind. ``/dev/stdout`` and ``/dev/stderr`` write to this process's
own streams, which are flushed but never closed.
"""

from __future__ import annotations

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
    if os.path.exists(absolute):
        if not os.access(absolute, os.W_OK):
            raise InvalidArgumentError(f"{what} {path!r} is not writable")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidArgumentError(f"{what} {path!r}: directory {parent!r} is not writable")
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


class OutputFiles:
    """The open files of one job's output; ``write(stream, data)``, then ``close()``."""

    def __init__(self, plan: OutputPlan) -> None:
        self._plan = plan
        self._files: dict[str, IO[bytes]] = {}

    def _file(self, path: str) -> IO[bytes]:
        f = self._files.get(path)
        if f is None:
            f = _std_stream(path) if path in _STD_STREAMS else open(path, "wb")  # noqa: SIM115
            self._files[path] = f
        return f

    def write(self, stream: int, data: bytes) -> None:
        path = self._plan.stdout if stream == 1 else self._plan.stderr
        if path:
            self._file(path).write(data)

    def finish(self) -> None:
        """Create the files of streams that stayed empty, then flush and close all."""
        for path in (self._plan.stdout, self._plan.stderr):
            if path:
                self._file(path)
        self.close()

    def close(self) -> None:
        files, self._files = self._files, {}
        for path, f in files.items():
            if path in _STD_STREAMS:
                f.flush()
            else:
                f.close()
