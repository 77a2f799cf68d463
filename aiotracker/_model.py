"""The DRMAA2 job model: states, job template, job info. Pure data, no I/O."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


class JobState(enum.StrEnum):
    """The DRMAA2 job states (a ``StrEnum``: ``str(JobState.DONE) == "done"``)."""

    UNDETERMINED = "undetermined"
    QUEUED = "queued"
    QUEUED_HELD = "queued_held"
    RUNNING = "running"
    SUSPENDED = "suspended"
    REQUEUED = "requeued"
    REQUEUED_HELD = "requeued_held"
    DONE = "done"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """True for DONE and FAILED: the job will not change any more."""
        return self in _TERMINAL

    def __repr__(self) -> str:
        return f"JobState.{self.name}"


_TERMINAL = frozenset({JobState.DONE, JobState.FAILED})


class JobControlAction(enum.StrEnum):
    """The actions of ``job_control``."""

    SUSPEND = "suspend"
    RESUME = "resume"
    HOLD = "hold"
    RELEASE = "release"
    TERMINATE = "terminate"


def _frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return dict(value) if value else {}


def _frozen_seq(value: Sequence[str] | None) -> tuple[str, ...]:
    if isinstance(value, str):
        # A bare string is a common slip for a one-element list; iterating it would split it.
        return (value,)
    return tuple(value) if value else ()


@dataclass(frozen=True, kw_only=True, eq=True)
class JobTemplate:
    """A DRMAA2 job template; every field is optional and defaults to "unset".

    On Docker: ``job_category`` is the image, ``remote_command`` and ``args`` the command
    (never run through a shell), ``stage_in_files`` maps host paths to container paths (bind
    mounts), and ``output_path``/``error_path``/``input_path`` are files on the tracker's host.
    ``extensions`` carries Docker options (``user``, ``exposedPorts``, ``privileged``, ...).

    Sequences are stored as tuples and mappings as private copies, so changing what was
    passed in does not change the template.
    """

    remote_command: str = ""
    args: Sequence[str] = ()
    submit_as_hold: bool = False
    rerunnable: bool = False
    job_environment: Mapping[str, str] = field(default_factory=dict)
    working_directory: str = ""
    job_category: str = ""
    email: Sequence[str] = ()
    email_on_started: bool = False
    email_on_terminated: bool = False
    job_name: str = ""
    input_path: str = ""
    output_path: str = ""
    error_path: str = ""
    join_files: bool = False
    reservation_id: str = ""
    queue_name: str = ""
    min_slots: int = 0
    max_slots: int = 0
    priority: int = 0
    candidate_machines: Sequence[str] = ()
    min_phys_memory: int = 0
    machine_os: str = ""
    machine_arch: str = ""
    start_time: datetime | None = None
    deadline_time: datetime | None = None
    stage_in_files: Mapping[str, str] = field(default_factory=dict)
    stage_out_files: Mapping[str, str] = field(default_factory=dict)
    resource_limits: Mapping[str, str] = field(default_factory=dict)
    accounting_id: str = ""
    extensions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SEQUENCE_FIELDS:
                object.__setattr__(self, f.name, _frozen_seq(value))
            elif f.name in _MAPPING_FIELDS:
                object.__setattr__(self, f.name, _frozen_map(value))

    def replace(self, **changes: Any) -> JobTemplate:
        """Return a copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    __hash__ = None  # type: ignore[assignment]  # holds mappings: not hashable


_SEQUENCE_FIELDS = frozenset({"args", "email", "candidate_machines"})
_MAPPING_FIELDS = frozenset(
    {"job_environment", "stage_in_files", "stage_out_files", "resource_limits", "extensions"}
)


@dataclass(frozen=True, kw_only=True)
class JobInfo:
    """What is known about one job, read from the engine (``job_info``).

    Times are timezone-aware (UTC) and ``None`` until reached; ``exit_status`` is ``None``
    until the job finished; ``terminating_signal`` names the signal (``"SIGKILL"``) when the
    exit status says the job was killed by one (exit status 128 + n). ``faults`` lists what
    the tracker could not do for the job ("output incomplete: <reason>", "stdin not fed: ...",
    "not started: ..."), each also in ``annotation``; the job's state is still the engine's.
    ``incomplete_output`` names the output files that could not be completed (a file error,
    or a stream that ended early when the engine's log could not fill the gap): they hold what
    was written, and the annotation says why. Both are what this tracker saw: another tracker,
    or one opened later, does not know them.

    As a filter (``JobSession.get_jobs``, ``MonitoringSession.get_all_jobs``), only the
    fields that differ from their defaults count (``aiotracker._filters`` says how each
    matches): ``JobInfo(state=JobState.RUNNING)`` selects the running jobs.
    """

    job_id: str = ""
    job_name: str = ""
    exit_status: int | None = None
    terminating_signal: str = ""
    annotation: str = ""
    state: JobState = JobState.UNDETERMINED
    sub_state: str = ""
    allocated_machines: tuple[str, ...] = ()
    submission_machine: str = ""
    job_owner: str = ""
    slots: int = 1
    queue_name: str = ""
    wallclock_time: timedelta | None = None
    cpu_time: timedelta | None = None
    submission_time: datetime | None = None
    dispatch_time: datetime | None = None
    finish_time: datetime | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)
    faults: tuple[str, ...] = ()
    incomplete_output: tuple[str, ...] = ()

    __hash__ = None  # type: ignore[assignment]  # holds a mapping: not hashable

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 strings, durations as seconds, the state's value."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, timedelta):
                value = value.total_seconds()
            elif isinstance(value, JobState):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobInfo:
        """The inverse of ``to_dict`` (unknown keys are ignored)."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if value is not None and f.name in _TIME_FIELDS:
                value = datetime.fromisoformat(value)
            elif value is not None and f.name in _DURATION_FIELDS:
                value = timedelta(seconds=value)
            elif f.name == "state":
                value = JobState(value)
            elif f.name in ("allocated_machines", "faults", "incomplete_output"):
                value = tuple(value)
            elif f.name == "extensions":
                value = dict(value)
            kwargs[f.name] = value
        return cls(**kwargs)


_TIME_FIELDS = frozenset({"submission_time", "dispatch_time", "finish_time"})
_DURATION_FIELDS = frozenset({"wallclock_time", "cpu_time"})


@dataclass(frozen=True, slots=True)
class StateChange:
    """A change of a job's state, as the tracker applied it (``DockerTracker.watch``).

    ``old_state`` is None for a job new to the tracker and in the first report of a watch
    opened with ``initial=True``; ``new_state`` is None when the job was deleted (or removed
    by the engine). ``time`` is the engine's clock when the tracker applied it;
    ``exit_status`` is the exit code the die reported, for DONE and FAILED when known. A
    change with ``lost > 0`` (and no job) is a marker: the watcher's buffer was full and that
    many changes were dropped at this point; list the jobs again to catch up.
    """

    job_id: str
    old_state: JobState | None
    new_state: JobState | None
    time: datetime
    exit_status: int | None = None
    lost: int = 0


@dataclass(frozen=True, slots=True)
class Machine:
    """The machine an engine runs on (DRMAA2's MachineInfo), from ``get_all_machines``.

    Read from the engine's ``GET /info``. The engine tells only its number of CPUs: they are
    ``cores_per_socket`` on one socket with one thread per core (as drmaa2os reports).
    Memory is in KiB, DRMAA2's unit. ``architecture`` uses DRMAA2's CPU names (``x64`` for
    x86-64, ``arm64`` for AArch64, ``x86``, ``arm``, ``ppc64le``, ...; ``other`` for the rest)
    and ``os`` its OS names (``linux``, ``win``, ``other``); ``os_version`` is the kernel's
    version and ``operating_system`` the engine's description of its host.
    """

    name: str
    available: bool
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    physical_memory: int
    virtual_memory: int
    architecture: str
    os: str
    os_version: str
    operating_system: str = ""
