"""Checks of the public API's arguments (pure): actions, timeouts, counts, keys, job and
array ids, states."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from ._exceptions import InvalidArgumentError, JobNotFoundError
from ._model import JobControlAction, JobState


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


def check_count(name: str, value: int | None, minimum: int, *, optional: bool = False) -> None:
    """An int of at least ``minimum`` (or None when ``optional``); never a bool."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = f"{'None or ' if optional else ''}an int >= {minimum}"
        raise InvalidArgumentError(f"{name} must be {what}, got {value!r}")


def check_ids(job_ids: Iterable[str]) -> list[str]:
    """A collection of ids (never one string, which would be its characters)."""
    ids = [] if isinstance(job_ids, str) else list(job_ids)
    if isinstance(job_ids, str) or not all(isinstance(j, str) for j in ids):
        raise InvalidArgumentError("job ids must be given as a collection of strings")
    return ids


def check_states(states: Iterable[JobState]) -> list[JobState]:
    states = list(states)
    for s in states:
        if not isinstance(s, JobState):
            raise InvalidArgumentError(f"states must be JobState values, got {s!r}")
    return states


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


def unix_ns(moment: datetime) -> int:
    """An aware datetime as Unix time in ns (exact: no float on the way)."""
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def clock_offset(engine_time_ns: int) -> timedelta:
    """The engine's clock minus ours, from the engine's time read just now."""
    return timedelta(microseconds=(engine_time_ns - time.time_ns()) / 1000)
