"""DRMAA2 job filters (pure): a ``JobInfo`` used as a filter, and what an engine can do of it.

Only the fields that differ from ``JobInfo``'s defaults count (so ``JobInfo()`` matches every
job, unlike drmaa2os, whose zero-value filter matches none). A set field matches as DRMAA2
and drmaa2os say: equal, except ``allocated_machines`` (the job ran on at least these),
``wallclock_time`` and ``cpu_time`` (at least this much), the three times (at or after this
moment), and ``extensions``, ``faults`` and ``incomplete_output`` (the job has at least these).
A filter cannot ask for the defaults themselves: ``UNDETERMINED``, one slot, empty strings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ._exceptions import InvalidArgumentError
from ._model import JobInfo, JobState

_FIELDS = {f.name: f for f in dataclasses.fields(JobInfo)}
_DEFAULTS: dict[str, Any] = {
    f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
    for f in dataclasses.fields(JobInfo)
}
_AT_LEAST = frozenset({"wallclock_time", "cpu_time"})
_AT_OR_AFTER = frozenset({"submission_time", "dispatch_time", "finish_time"})
_CONTAINS = frozenset({"allocated_machines", "faults", "incomplete_output"})
# What the tracker's cache answers without an inspect.
CACHED = frozenset({"job_id", "state"})

# A superset of the container states each job state can be read from (``_mapping``): the
# engine filters with it, and the state read from each entry decides.
_STATUSES: Mapping[JobState, tuple[str, ...]] = {
    JobState.QUEUED: ("created", "restarting"),
    JobState.QUEUED_HELD: ("created",),
    JobState.RUNNING: ("running", "restarting"),
    JobState.SUSPENDED: ("paused",),
    JobState.DONE: ("exited", "dead", "removing"),
    JobState.FAILED: ("exited", "dead", "removing", "created"),
}


def wanted(job_filter: JobInfo | None) -> dict[str, Any]:
    """The fields of a filter that count, by name (empty: every job matches)."""
    if job_filter is None:
        return {}
    if not isinstance(job_filter, JobInfo):
        raise InvalidArgumentError(f"a job filter is a JobInfo or None, got {job_filter!r}")
    fields = {
        name: value for name in _FIELDS if (value := getattr(job_filter, name)) != _DEFAULTS[name]
    }
    if "state" in fields and not isinstance(fields["state"], JobState):
        state = fields["state"]
        raise InvalidArgumentError(f"filter field state must be a JobState, got {state!r}")
    for name in _CONTAINS & fields.keys():
        if isinstance(fields[name], str) or not isinstance(fields[name], Sequence):
            raise InvalidArgumentError(f"filter field {name} must be a sequence of strings")
    if "extensions" in fields and not isinstance(fields["extensions"], Mapping):
        raise InvalidArgumentError("filter field extensions must be a mapping")
    for name in _AT_OR_AFTER & fields.keys():
        if not isinstance(fields[name], datetime) or fields[name].tzinfo is None:
            raise InvalidArgumentError(f"filter field {name} must be a timezone-aware datetime")
    for name in _AT_LEAST & fields.keys():
        if not isinstance(fields[name], timedelta):
            raise InvalidArgumentError(f"filter field {name} must be a timedelta")
    return fields


def matches(info: JobInfo, fields: Mapping[str, Any]) -> bool:
    """Whether a job's info passes the filter's fields (from ``wanted``)."""
    for name, want in fields.items():
        have = getattr(info, name)
        if name in _AT_LEAST or name in _AT_OR_AFTER:  # at least this long, at or after then
            if have is None or have < want:
                return False
        elif name in _CONTAINS:
            if not set(want) <= set(have):
                return False
        elif name == "extensions":
            if any(have.get(k) != v for k, v in want.items()):
                return False
        elif have != want:
            return False
    return True


def engine_filters(fields: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """The engine's list filters that narrow the listing to a superset of the matches; None
    when no container can match (a state no container is ever read in)."""
    out: dict[str, list[str]] = {}
    if "job_id" in fields:
        out["id"] = [fields["job_id"]]
    if "state" in fields:
        statuses = _STATUSES.get(fields["state"])
        if not statuses:
            return None
        out["status"] = list(statuses)
    if "job_name" in fields:
        out["name"] = [re.escape(fields["job_name"])]
    return out
