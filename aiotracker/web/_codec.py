"""JSON in and out of the web API, and errors as HTTP statuses. Pure: no I/O.

Templates come as drmaa2interface's JSON (the Go tracker's field names: ``jobCategory``,
``remoteCommand``, ``args``, ``extension: {extensionList: {...}}``, ...), plus one
convenience: ``command``, a list whose first word becomes ``remoteCommand`` and the rest
``args``. Unknown keys are refused (a misspelt field would otherwise be silently unset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .._exceptions import (
    DrmCommunicationError,
    EngineError,
    ImageNotFoundError,
    ImagePullError,
    InvalidArgumentError,
    InvalidStateError,
    JobNameInUseError,
    JobNotFoundError,
    TrackerClosedError,
    TrackerError,
    UnsupportedOperationError,
)
from .._model import JobState, JobTemplate, StateChange
from .._template_label import JSON_KEYS, template_from_json

MAX_TIMEOUT = 3600.0  # s: a long poll is answered (with the current state) after at most this


class Refused(Exception):
    """The service's policy refuses a request (403): an image not allowed, a host path."""


class BadRequest(Exception):
    """The request itself is malformed (400): not JSON, a missing or mistyped field."""


def template_of(data: object) -> JobTemplate:
    """A JobTemplate from the request's ``template`` object."""
    if not isinstance(data, dict):
        raise BadRequest("'template' must be a JSON object")
    data = dict(data)
    command = data.pop("command", None)
    if command is not None:
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(word, str) for word in command)
        ):
            raise BadRequest("'command' must be a non-empty list of strings")
        if "remoteCommand" in data or "args" in data:
            raise BadRequest("give 'command', or 'remoteCommand' and 'args', not both")
        data["remoteCommand"], data["args"] = command[0], command[1:]
    unknown = sorted(set(data) - JSON_KEYS)
    if unknown:
        raise BadRequest(f"unknown template field {unknown[0]!r}")
    if not data.get("jobCategory"):
        raise BadRequest("'jobCategory' (the image) is required")
    try:
        return template_from_json(data, what="the template")
    except InvalidArgumentError as exc:
        raise BadRequest(str(exc)) from exc


def field(body: Mapping[str, Any], name: str, kind: type, default: Any = None) -> Any:
    """A field of a JSON body, of JSON type ``kind`` (int never a bool), or ``default``."""
    if name not in body or body[name] is None:
        return default
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"{name!r} must be a {kind.__name__}")
    return value


def states_of(values: list[str]) -> tuple[JobState, ...]:
    out = []
    for value in values:
        try:
            out.append(JobState(value.lower()))
        except ValueError:
            raise BadRequest(f"unknown state {value!r}") from None
    return tuple(out)


def timeout_of(text: str | None, default: float) -> float:
    """A long poll's ``timeout`` query value in seconds (finite, 0 to ``MAX_TIMEOUT``)."""
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"timeout must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"timeout must be between 0 and {MAX_TIMEOUT:g} s, got {text!r}")
    return min(value, MAX_TIMEOUT)


def count_of(text: str | None, name: str, default: int, maximum: int) -> int:
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit():
        raise BadRequest(f"{name} must be a whole number, got {text!r}")
    return min(int(text), maximum)


def change_json(seq: int, change: StateChange, array_id: str | None) -> dict[str, Any]:
    return {
        "seq": seq,
        "job_id": change.job_id,
        "array_id": array_id,
        "old_state": change.old_state.value if change.old_state else None,
        "new_state": change.new_state.value if change.new_state else None,
        "time": change.time.isoformat(),
        "exit_status": change.exit_status,
    }


# Most specific first: JobNotFoundError is an InvalidArgumentError (a ValueError), and
# TrackerClosedError an InvalidStateError.
_STATUSES: tuple[tuple[type[BaseException], int, str], ...] = (
    (Refused, 403, "refused"),
    (BadRequest, 400, "bad_request"),
    (JobNotFoundError, 404, "not_found"),
    (JobNameInUseError, 409, "name_in_use"),
    (ImageNotFoundError, 400, "image_not_found"),
    (ImagePullError, 400, "image_pull_refused"),
    (InvalidArgumentError, 400, "invalid_argument"),
    (TrackerClosedError, 503, "closing"),
    (InvalidStateError, 409, "invalid_state"),
    (UnsupportedOperationError, 400, "unsupported"),
    (DrmCommunicationError, 503, "engine_unreachable"),
    (EngineError, 502, "engine_error"),
    (TrackerError, 500, "tracker_error"),
)


def error_answer(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for an error of the library or of the request."""
    for kind, status, name in _STATUSES:
        if isinstance(exc, kind):
            body: dict[str, Any] = {"error": name, "message": str(exc)}
            job_id = getattr(exc, "job_id", None)
            if job_id:
                body["job_id"] = job_id
            return status, body
    return 500, {"error": "internal", "message": "internal error"}
