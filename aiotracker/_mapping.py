"""Pure mapping from what the engine says to the DRMAA2 model: no I/O, no awaits.

- container state (inspect, list entry, event) -> ``JobState``;
- inspect -> ``JobInfo``;
- array task indexes;
- the engine's ``GET /info`` -> ``Machine``.

The template side lives in ``_config`` (template -> create config) and ``_template_label``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from ._engine.base import ContainerDetails, EngineInfo
from ._exceptions import InvalidArgumentError
from ._labels import (
    DEADLINE_SUFFIX,
    SUBMISSION_HOST_LABEL,
    SUBMITTER_LABEL,
    TEMPLATE_LABEL,
    WALLCLOCK_SUFFIX,
    base_name,
    is_held_name,
    is_terminated_name,
)
from ._model import JobInfo, JobState, Machine
from ._template_label import decode_template_label

# -- container state -> JobState -------------------------------------------------------------


def state_from_details(d: ContainerDetails) -> JobState:
    """The seed's state table, corrected: never-started is QUEUED (or held), OOM by exit code."""
    status = d.status
    if status == "created":
        if d.error or is_terminated_name(d.name):
            return JobState.FAILED  # start failed, or terminated before it ever ran
        return JobState.QUEUED_HELD if is_held_name(d.name) else JobState.QUEUED
    if status in ("exited", "dead", "removing") and not d.running:
        if d.started_at is None:
            return JobState.FAILED  # it never ran: no exit code of its own to judge by
        return JobState.DONE if d.exit_code == 0 else JobState.FAILED
    if d.paused or status == "paused":
        return JobState.SUSPENDED
    if d.restarting or status == "restarting":
        return JobState.QUEUED
    if d.running or status == "running":
        return JobState.RUNNING
    return JobState.UNDETERMINED


_EXITED_RE = re.compile(r"^Exited \((-?\d+)\)")


def state_from_summary(state: str, status: str, name: str) -> JobState | None:
    """State from a list entry, or None where only an inspect can tell (created, dead)."""
    if state == "created":
        if is_terminated_name(name):
            return JobState.FAILED
        if is_held_name(name):
            return JobState.QUEUED_HELD
        return None  # QUEUED, or FAILED if the start failed: only inspect has State.Error
    if state == "exited":
        m = _EXITED_RE.match(status)
        if m is None:
            return None
        return JobState.DONE if int(m.group(1)) == 0 else JobState.FAILED
    return {
        "running": JobState.RUNNING,
        "paused": JobState.SUSPENDED,
        "restarting": JobState.QUEUED,
    }.get(state)


def state_from_event(action: str, name: str) -> JobState | None:
    """The state an event implies on its own; None where it needs an inspect or says nothing."""
    if action in ("start", "unpause"):
        return JobState.RUNNING
    if action == "pause":
        return JobState.SUSPENDED
    if action == "lost":  # the engine lost sight of it (Swarm: its node is down)
        return JobState.UNDETERMINED
    if action in ("create", "rename"):
        if is_terminated_name(name):
            return JobState.FAILED
        return JobState.QUEUED_HELD if is_held_name(name) else JobState.QUEUED
    return None


# -- inspect -> JobInfo ----------------------------------------------------------------------


# Linux's numbers, whatever the tracker's host: the exit status comes from a Linux container
# (the signal module would give macOS's names for 7, 10, 12, ... on a Mac).
_LINUX_SIGNALS = (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
    "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
    "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
    "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
)  # fmt: skip
_SIGRTMIN, _SIGRTMAX = 34, 64


def signal_name(number: int) -> str:
    """The Linux name of a signal number; "" when no signal has that number."""
    if 1 <= number <= len(_LINUX_SIGNALS):
        return _LINUX_SIGNALS[number - 1]
    if _SIGRTMIN <= number <= _SIGRTMAX:
        return f"SIGRTMIN+{number - _SIGRTMIN}" if number > _SIGRTMIN else "SIGRTMIN"
    return ""


def annotation(d: ContainerDetails) -> str:
    notes = []
    if d.error:
        notes.append(d.error)
    if d.oom_killed:
        if d.exit_code == 0:
            notes.append("an OOM kill happened in the job's cgroup, but the job exited 0")
        else:
            notes.append("killed by the OOM killer")
    if is_terminated_name(d.name) and d.status == "created":
        notes.append("terminated before it started")
    return "; ".join(notes)


def _sub_state(d: ContainerDetails, state: JobState) -> str:
    """The container's status, or why a FAILED job ended: ``oom_killed``, or the tracker's
    timers (``deadline``, ``wallclock``: the mark it put in the name before the kill)."""
    if state is not JobState.FAILED:
        return d.status
    if d.oom_killed:
        return "oom_killed"
    name = d.name.lstrip("/")
    if name.endswith(DEADLINE_SUFFIX):
        return "deadline"
    if name.endswith(WALLCLOCK_SUFFIX):
        return "wallclock"
    return d.status


def job_info_from_details(
    d: ContainerDetails, *, engine_host: str, now: datetime, cpu_ns: int | None = None
) -> JobInfo:
    """inspect -> JobInfo.

    Times are the engine's (its clock): ``submission_time`` is the container's creation,
    ``dispatch_time`` its ``StartedAt`` and ``finish_time`` its ``FinishedAt`` (nanosecond
    stamps, but ``StartedAt`` is set when the engine's start returns, which for a short job can
    be after the process exited: a dispatch is then reported at the finish, never after it).
    ``now`` is the engine's present time, for the wallclock of a job still running; a job that
    a restart policy is about to run again reports no times of its previous run. ``cpu_ns`` is
    the cgroup's CPU usage when the engine could tell (while the job runs).
    """
    state = state_from_details(d)
    finished = state.is_terminal and d.finished_at is not None
    exit_status: int | None = d.exit_code if state.is_terminal else None
    if state is JobState.FAILED and d.started_at is None and not d.error:
        exit_status = None  # it never ran (terminated before start): there is no exit status
    signal_text = ""
    if exit_status is not None and exit_status > 128:
        signal_text = signal_name(exit_status - 128)
    dispatch = d.started_at
    if dispatch is not None and finished and d.finished_at is not None:
        dispatch = min(dispatch, d.finished_at)
    if state is JobState.QUEUED:
        dispatch = None  # restarting: the start was the previous run's
    wallclock: timedelta | None = None
    if dispatch is not None:
        end = d.finished_at if finished and d.finished_at is not None else now
        if not state.is_terminal or finished:
            wallclock = max(end - dispatch, timedelta(0))
    template_name = ""
    recorded: dict[str, str] = {}  # kept from the template, not enforced by anyone
    if TEMPLATE_LABEL in d.labels:
        try:
            template = decode_template_label(d.labels[TEMPLATE_LABEL])
        except InvalidArgumentError:
            template = None
        if template is not None:
            template_name = template.job_name
            if template.rerunnable:
                recorded["rerunnable"] = "true"
            if template.accounting_id:
                recorded["accounting_id"] = template.accounting_id
    return JobInfo(
        job_id=d.container_id,
        job_name=template_name or base_name(d.name),
        exit_status=exit_status,
        terminating_signal=signal_text,
        annotation=annotation(d),
        state=state,
        sub_state=_sub_state(d, state),
        allocated_machines=(d.machine or engine_host,) if d.machine or engine_host else (),
        submission_machine=d.labels.get(SUBMISSION_HOST_LABEL, ""),
        job_owner=d.labels.get(SUBMITTER_LABEL, ""),
        slots=1,
        queue_name="",
        wallclock_time=wallclock,
        cpu_time=timedelta(microseconds=cpu_ns / 1000) if cpu_ns else None,
        submission_time=d.created,
        dispatch_time=dispatch,
        finish_time=d.finished_at if finished else None,
        extensions={
            "workingdir": d.working_dir,
            "commandline": " ".join(d.cmd),
            "category": d.image,
            "hostname": d.hostname,
            "user": d.user,  # the container's user; job_owner is who submitted the job
            **recorded,
        },
    )


def tracker_view(
    info: JobInfo,
    published: JobState,
    faults: Sequence[str],
    incomplete: Sequence[str] = (),
    *,
    settled: bool = False,
) -> JobInfo:
    """What the engine says of a job, as the tracker publishes it: a job the engine has
    finished is not finished for the tracker until its output is written; a job whose end
    the tracker settled (its start refused, or a final die) stays ended whatever a
    container that never ran, or an inspect racing the exit, still reads; the faults the
    tracker recorded are listed, and joined to the annotation; the output files it could not
    complete are named."""
    unfinished = info.state.is_terminal and not published.is_terminal
    ended = settled and published.is_terminal and not info.state.is_terminal
    if unfinished or ended:
        info = dataclasses.replace(info, state=published)
    if faults:
        notes = "; ".join(n for n in (info.annotation, *faults) if n)
        info = dataclasses.replace(info, faults=tuple(faults), annotation=notes)
    if incomplete:
        info = dataclasses.replace(info, incomplete_output=tuple(incomplete))
    return info


def task_indexes(begin: int, end: int, step: int) -> range:
    """DRMAA2 array indexes: begin, begin+step, ... <= end (inclusive), starting at 1."""
    for name, value in (("begin", begin), ("end", end), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgumentError(f"{name} must be an int, got {value!r}")
    if begin < 1:
        raise InvalidArgumentError(f"begin must be >= 1 (DRMAA2 indexes start at 1), got {begin}")
    if end < begin:
        raise InvalidArgumentError(f"end ({end}) must not be below begin ({begin})")
    if step < 1:
        raise InvalidArgumentError(f"step must be >= 1, got {step}")
    return range(begin, end + 1, step)


def task_name(job_name: str, index: int) -> str:
    return f"{job_name}-{index}" if job_name else ""


def first(items: Iterable[str]) -> str:
    return next(iter(items), "")


# DRMAA2's CPU names for what engines report (uname -m, or Go's GOARCH), and DRMAA2's own.
_ARCHITECTURES = {
    "x86_64": "x64", "amd64": "x64", "x64": "x64", "aarch64": "arm64", "arm64": "arm64",
    "i386": "x86", "i686": "x86", "386": "x86", "x86": "x86",
    "armv7l": "arm", "armv6l": "arm", "arm": "arm",
    "ppc64le": "ppc64le", "ppc64": "ppc64", "mips64": "mips64", "mips": "mips",
}  # fmt: skip
_OPERATING_SYSTEMS = {
    "linux": "linux", "windows": "win", "win": "win", "darwin": "macos", "macos": "macos",
    "freebsd": "bsd", "bsd": "bsd",
}  # fmt: skip


def drmaa_architecture(engine_arch: str) -> str:
    """DRMAA2's CPU name for an engine's architecture (``x86_64`` -> ``x64``); ``other``."""
    return _ARCHITECTURES.get(engine_arch.lower(), "other")


def drmaa_os(engine_os: str) -> str:
    """DRMAA2's OS name for an engine's OS type (``windows`` -> ``win``); ``other``."""
    return _OPERATING_SYSTEMS.get(engine_os.lower(), "other")


def machine_from_info(info: EngineInfo) -> Machine:
    """GET /info -> the DRMAA2 machine the engine runs on."""
    memory_kib = info.memory_bytes // 1024
    return Machine(
        name=info.host_name,
        available=True,
        sockets=1,
        cores_per_socket=info.cpus,
        threads_per_core=1,
        physical_memory=memory_kib,
        virtual_memory=memory_kib,
        architecture=drmaa_architecture(info.architecture),
        os=drmaa_os(info.os_type),
        os_version=info.kernel_version,
        operating_system=info.operating_system,
    )
