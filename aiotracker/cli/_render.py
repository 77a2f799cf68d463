"""Output of the command line: JSON documents and lines, rich tables, the live progress of an
array and the live table of ``watch``. Live displays only when stdout is a terminal."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._model import JobInfo, JobState, Machine, StateChange

SHORT = 12  # characters of a job id in tables, as docker ps


def console() -> Console:
    """A console on the current stdout (looked up now: click's test runner swaps it); on
    a file or a pipe, lines as long as they need (no wrapping at 80 columns)."""
    width = None if live_output() else 10_000
    return Console(file=sys.stdout, highlight=False, width=width)


def live_output() -> bool:
    """Live displays (progress, the watch table) only when stdout is a terminal."""
    stream = sys.stdout
    return bool(getattr(stream, "isatty", None)) and stream.isatty()


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def to_json(document: Any) -> str:
    """One line of JSON (states as their values, times ISO 8601, durations in seconds)."""
    return json.dumps(document, default=_plain, ensure_ascii=False)


def emit_json(document: Any) -> None:
    """One JSON document (or one JSON line of a stream) on stdout, flushed."""
    click.echo(to_json(document))
    sys.stdout.flush()


def change_document(change: StateChange) -> dict[str, Any]:
    """A ``StateChange`` as a JSON line of ``watch --json``."""
    return {
        "id": change.job_id,
        "old_state": change.old_state,
        "new_state": change.new_state,
        "time": change.time,
        "exit_status": change.exit_status,
        "lost": change.lost,
    }


def short(job_id: str) -> str:
    return job_id[:SHORT]


def _cell(value: Any) -> str:
    if value is None or value == "" or value == () or value == {}:
        return "-"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} s"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def jobs_table(rows: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> Table:
    """The jobs of ``ls``: one row per job (ids shortened)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    names = list(columns)
    for name in names:
        table.add_column(name.upper().replace("_", " "), no_wrap=True)
    for row in rows:
        table.add_row(*(short(row[n]) if n == "id" else _cell(row.get(n)) for n in names))
    return table


def info_table(info: JobInfo) -> Table:
    """``info``: one row per field of the job's ``JobInfo``."""
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for f in dataclasses.fields(info):
        table.add_row(f.name, _cell(getattr(info, f.name)))
    return table


def machines_table(machines: Iterable[Machine]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    names = ["name", "available", "sockets", "cores_per_socket", "threads_per_core",
             "physical_memory", "architecture", "os", "os_version"]  # fmt: skip
    for name in names:
        label = name.upper().replace("_", " ") + (" (KiB)" if name == "physical_memory" else "")
        table.add_column(label, no_wrap=True)
    for machine in machines:
        table.add_row(*(_cell(getattr(machine, n)) for n in names))
    return table


# -- array progress ------------------------------------------------------------------------

QUEUED_STATES = frozenset(
    {JobState.QUEUED, JobState.QUEUED_HELD, JobState.REQUEUED, JobState.REQUEUED_HELD,
     JobState.UNDETERMINED}
)  # fmt: skip


def bucket(state: JobState | None) -> str:
    """The progress display's word for a task's state (a deleted task counts as failed)."""
    if state is None or state is JobState.FAILED:
        return "failed"
    if state is JobState.DONE:
        return "done"
    return "queued" if state in QUEUED_STATES else "running"


def counts(states: Mapping[str, JobState | None]) -> dict[str, int]:
    """queued, running (suspended ones too), done, failed."""
    tally = Counter(bucket(s) for s in states.values())
    return {k: tally.get(k, 0) for k in ("queued", "running", "done", "failed")}


def counts_line(array_id: str, tally: Mapping[str, int]) -> str:
    total = sum(tally.values())
    return (
        f"array {array_id}: {total} tasks, {tally['queued']} queued, {tally['running']} "
        f"running, {tally['done']} done, {tally['failed']} failed"
    )


class ArrayProgress:
    """The live progress of an array's tasks (a rich progress bar and the counts), or
    nothing when stdout is not a terminal."""

    def __init__(self, array_id: str, total: int, *, live: bool) -> None:
        self._progress: Progress | None = None
        self._task = None
        if live:
            self._progress = Progress(
                TextColumn(f"array {array_id[:SHORT]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "queued {task.fields[queued]}  running {task.fields[running]}  "
                    "done {task.fields[done]}  failed {task.fields[failed]}"
                ),
                TimeElapsedColumn(),
                console=console(),
            )
            self._task = self._progress.add_task(
                "tasks", total=total, queued=total, running=0, done=0, failed=0
            )

    def __enter__(self) -> ArrayProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, tally: Mapping[str, int]) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=tally["done"] + tally["failed"], queued=tally["queued"],
                running=tally["running"], done=tally["done"], failed=tally["failed"],
            )  # fmt: skip


# -- the live table of watch ---------------------------------------------------------------


class WatchTable:
    """``watch`` on a terminal: one row per job, redrawn at each change."""

    def __init__(self) -> None:
        self._rows: dict[str, StateChange] = {}
        self._lost = 0
        self._live = Live(self._render(), console=console(), auto_refresh=False)

    def __enter__(self) -> WatchTable:
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def apply(self, change: StateChange) -> None:
        if change.lost:
            self._lost += change.lost
        else:
            self._rows[change.job_id] = change
        self._live.update(self._render(), refresh=True)

    def _render(self) -> Table:
        caption = f"{self._lost} changes lost: list the jobs again" if self._lost else None
        table = Table(box=None, pad_edge=False, header_style="bold", caption=caption)
        for name in ("JOB ID", "STATE", "EXIT STATUS", "SINCE"):
            table.add_column(name, no_wrap=True)
        for job_id, change in self._rows.items():
            state = "deleted" if change.new_state is None else change.new_state.value
            table.add_row(short(job_id), state, _cell(change.exit_status), _cell(change.time))
        return table
