"""Checks of the public API's arguments (pure): actions, timeouts, keys, array ids."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from ._exceptions import InvalidArgumentError, JobNotFoundError
from ._model import JobControlAction


def control_action(action: JobControlAction | str) -> JobControlAction:
    try:
        return JobControlAction(action)
    except ValueError:
        valid = ", ".join(a.value for a in JobControlAction)
        raise InvalidArgumentError(f"unknown job control action {action!r} ({valid})") from None


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        not isinstance(timeout, int | float) or timeout < 0 or math.isnan(timeout)
    ):
        raise InvalidArgumentError(f"timeout must be None or >= 0, got {timeout!r}")


def check_key(key: str | None) -> None:
    if key is not None and (not isinstance(key, str) or not key or "\x00" in key):
        raise InvalidArgumentError(f"key must be a non-empty string, got {key!r}")


def json_ids(text: str) -> list[str]:
    try:
        ids = json.loads(text)
    except ValueError:
        raise JobNotFoundError(f"no array job {text!r}", job_id=text) from None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise JobNotFoundError(f"no array job {text!r}", job_id=text)
    return ids


def utcnow() -> datetime:
    return datetime.now(UTC)
