"""Labels and names: what aiotracker writes on containers, and how it reads them back. Pure.

Docker has no "held" or "cancelled" state for a container that was never started, and labels
cannot change after create; the container *name* can (rename), so it carries these marks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ._exceptions import InvalidArgumentError

SESSION_LABEL = "drmaa2_jobsession"  # drmaa2os's own label: the two trackers share sessions
TEMPLATE_LABEL = "drmaa2jobtemplate"  # drmaa2os: base64 of the template as drmaa2interface JSON
MANAGED_LABEL = "aiotracker.version"  # set on containers aiotracker made
SUBMISSION_HOST_LABEL = "aiotracker.submission_host"
SUBMITTER_LABEL = "aiotracker.submitter"  # the user who submitted the job (DRMAA2's job owner)
ARRAY_LABEL = "aiotracker.array"  # the array job id
ARRAY_INDEX_LABEL = "aiotracker.array.index"
ARRAY_SIZE_LABEL = "aiotracker.array.size"  # number of tasks: a launcher starts an array only whole
ARRAY_MAX_PARALLEL_LABEL = "aiotracker.array.max_parallel"
# The array's last index (tasks are made in index order: when it exists, all do).
ARRAY_LAST_LABEL = "aiotracker.array.last"
# Set when the engine removes the container at exit (the rm extension): its die's exit code is
# then how the job ended, whereas a job removed by someone else is simply gone.
AUTO_REMOVE_LABEL = "aiotracker.auto_remove"
# Set when the job has a restart policy: its die is then not final (the engine may start it
# again), so the tracker waits for an inspect before it publishes a terminal state.
RESTART_LABEL = "aiotracker.restart"
# Leases: the tracker responsible for a job (launching its array, writing its output) holds the
# lease its ``OWNER_LABEL`` names: a container ``lease_name(owner)`` running ``cat`` on a stdin
# the holder keeps open, labelled ``LEASE_LABEL=<session tag>`` and ``LEASE_OWNER_LABEL``.
OWNER_LABEL = "aiotracker.owner"
LEASE_LABEL = "aiotracker.lease"
LEASE_OWNER_LABEL = "aiotracker.lease.owner"
# The idempotency key a job was submitted with (``add_job(..., key=...)``).
KEY_LABEL = "aiotracker.key"
# The tracker's timers, in labels so that they survive it: DRMAA2's start and deadline times
# (Unix time, ns) and the WALLCLOCK_TIME limit (ns of running).
START_AT_LABEL = "aiotracker.start_at"
DEADLINE_LABEL = "aiotracker.deadline"
WALLCLOCK_LABEL = "aiotracker.wallclock"
# The launcher's order (``max_running``): DRMAA2's priority (when not 0), and when the job was
# submitted (Unix ns; an array's tasks share their array's).
PRIORITY_LABEL = "aiotracker.priority"
SUBMITTED_LABEL = "aiotracker.submitted"
LABEL_FORMAT_VERSION = "1"

HELD_SUFFIX = ".aiotracker-held"
TERMINATED_SUFFIX = ".aiotracker-terminated"
# Why the tracker terminated a running job (its timers): the sub-state, kept by its name.
DEADLINE_SUFFIX = ".aiotracker-deadline"
WALLCLOCK_SUFFIX = ".aiotracker-wallclock"
_SUFFIXES = (HELD_SUFFIX, TERMINATED_SUFFIX, DEADLINE_SUFFIX, WALLCLOCK_SUFFIX)

_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def base_name(name: str) -> str:
    """The container name without a leading slash and without aiotracker's marks."""
    name = name.lstrip("/")
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def session_tag(session: str) -> str:
    """The session, as a container name may hold it: readable, and unique by its hash."""
    slug = re.sub(r"[^a-zA-Z0-9_.-]", "_", session)[:40]
    return f"{slug}-{hashlib.sha256(session.encode()).hexdigest()[:8]}"


def container_name(job_name: str, session: str) -> str:
    """A named job's container name: its job name, then its session's tag (job names are per
    session, container names are global)."""
    return f"{job_name}.{session_tag(session)}"


def job_name_of(name: str, session: str | None = None) -> str:
    """The job name a container name was derived from ("" for a generated name). With the
    container's session, its tag is cut off exactly (a job name may hold dots); without one
    (another tool's container), the name is the job name."""
    name = base_name(name)
    if name.startswith("aiotracker-"):
        return ""
    if session is None:
        return name
    tag = "." + session_tag(session)
    return name[: -len(tag)] if name.endswith(tag) else name


def lease_name(owner: str, session: str) -> str:
    return f"aiotracker-lease-{owner}.{session_tag(session)}"


def key_hash(session: str, key: str) -> str:
    """An idempotency key as a name part: the same key of the same session, the same name."""
    return hashlib.sha256(f"{session}\0{key}".encode()).hexdigest()[:24]


def is_held_name(name: str) -> bool:
    return name.lstrip("/").endswith(HELD_SUFFIX)


def is_terminated_name(name: str) -> bool:
    return name.lstrip("/").endswith(TERMINATED_SUFFIX)


def validate_job_name(name: str) -> None:
    """A job name becomes the container name: Docker's name rules apply."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidArgumentError(
            f"job_name {name!r} is not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
        )
    if name.endswith(_SUFFIXES):
        raise InvalidArgumentError(f"job_name {name!r} ends with a suffix aiotracker reserves")


@dataclass(frozen=True, slots=True)
class JobMeta:
    """What a container's labels say about how the tracker must treat it."""

    array_id: str | None = None
    index: int = 0
    last: int = 0
    size: int = 0
    max_parallel: int = 0
    owner: str | None = None
    auto_remove: bool = False
    # Made by aiotracker with no restart policy: its die is final (the engine sets
    # State.ExitCode before it logs the die), so the die's exit code can be published.
    die_is_final: bool = False
    start_at_ns: int = 0  # the tracker's timers (0: none)
    deadline_ns: int = 0
    wallclock_ns: int = 0
    priority: int = 0
    submitted_ns: int = 0

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> JobMeta:
        return cls(
            array_id=labels.get(ARRAY_LABEL),
            index=_int(labels.get(ARRAY_INDEX_LABEL)),
            last=_int(labels.get(ARRAY_LAST_LABEL)),
            size=_int(labels.get(ARRAY_SIZE_LABEL)),
            max_parallel=_int(labels.get(ARRAY_MAX_PARALLEL_LABEL)),
            owner=labels.get(OWNER_LABEL),
            auto_remove=labels.get(AUTO_REMOVE_LABEL) == "1",
            die_is_final=MANAGED_LABEL in labels and RESTART_LABEL not in labels,
            start_at_ns=_int(labels.get(START_AT_LABEL)),
            deadline_ns=_int(labels.get(DEADLINE_LABEL)),
            wallclock_ns=_int(labels.get(WALLCLOCK_LABEL)),
            priority=_int(labels.get(PRIORITY_LABEL)),
            submitted_ns=_int(labels.get(SUBMITTED_LABEL)),
        )


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


_HEX_RE = re.compile(r"^[0-9a-f]{1,64}$")


def is_container_id(text: str) -> bool:
    """A (prefix of a) container id. Names are not job ids: the engine would resolve them."""
    return bool(_HEX_RE.match(text))
