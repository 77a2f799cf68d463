"""DRMAA2's resource attributes -> the engine's (pure): memory, CPUs, ulimits, and the
checks against the engine's machine (its CPUs, architecture and OS).

One table, ``RESOURCE_LIMITS``, says what each of DRMAA2's ``resource_limits`` keys maps to,
in DRMAA2's units: sizes in KiB (or with a unit: ``64m``, ``1g``), times in seconds (or
``[[H:]M:]S``), counts as integers. A value that does not parse is ``InvalidArgumentError``;
nothing here is silently ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._engine.base import EngineInfo
from ._exceptions import InvalidArgumentError
from ._mapping import drmaa_architecture, drmaa_os
from ._model import JobTemplate


@dataclass(frozen=True, slots=True)
class Limit:
    """What one ``resource_limits`` key becomes."""

    unit: str  # "KiB", "s" or "count": what a bare number means
    ulimit: str = ""  # the Linux rlimit it sets (soft and hard), if any
    what: str = ""  # for the docs: where it goes


RESOURCE_LIMITS: Mapping[str, Limit] = {
    "CORE_FILE_SIZE": Limit("KiB", "core", "ulimit core (bytes)"),
    "CPU_TIME": Limit("s", "cpu", "ulimit cpu (whole seconds, rounded up)"),
    "DATA_SEG_SIZE": Limit("KiB", "data", "ulimit data (bytes)"),
    "FILE_SIZE": Limit("KiB", "fsize", "ulimit fsize (bytes)"),
    "OPEN_FILES": Limit("count", "nofile", "ulimit nofile"),
    "STACK_SIZE": Limit("KiB", "stack", "ulimit stack (bytes)"),
    "VIRTUAL_MEMORY": Limit("KiB", "", "memory limit, swap limit equal (no swap beyond it)"),
    "WALLCLOCK_TIME": Limit("s", "", "the tracker terminates the job once it has run this long"),
}
_MIN_MEMORY = 6 << 20  # the engine refuses a smaller memory limit
_SIZE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(key: str, value: str) -> int:
    """Bytes from a DRMAA2 size: a bare number is KiB; ``512k``, ``64m``, ``1g``, ``2GiB``,
    ``100b``."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*", value, re.I)
    if m is None:
        raise InvalidArgumentError(f"resource limit {key}: cannot parse size {value!r}")
    number = float(m.group(1))
    if m.group(3):
        size = number
    elif m.group(2):
        size = number * _SIZE_UNITS[m.group(2).lower()]
    else:
        size = number * 1024  # DRMAA2's unit: KiB
    return int(size)  # 0 is a limit too (CORE_FILE_SIZE 0: no core dumps)


def parse_seconds(key: str, value: str) -> float:
    """Seconds from ``90``, ``1.5``, ``MM:SS`` or ``HH:MM:SS``."""
    m = re.fullmatch(r"\s*(?:(?:([0-9]+):)?([0-9]+):)?([0-9]+(?:\.[0-9]+)?)\s*", value)
    if m is None:
        raise InvalidArgumentError(f"resource limit {key}: cannot parse time {value!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise InvalidArgumentError(f"resource limit {key}: time must be positive, got {value!r}")
    return total


def parse_count(key: str, value: str) -> int:
    if not re.fullmatch(r"\s*[0-9]+\s*", value) or int(value) < 1:
        raise InvalidArgumentError(f"resource limit {key}: {value!r} is not a count >= 1")
    return int(value)


@dataclass(frozen=True, slots=True)
class Resources:
    """What the tracker itself enforces (the rest is in the create config)."""

    wallclock: float | None = None  # seconds of running, then the job is terminated


def apply_resources(
    template: JobTemplate, host: dict[str, Any], engine: EngineInfo | None
) -> Resources:
    """Set the template's resources on ``host`` (HostConfig) and check them against the
    engine's machine (when known). ``InvalidArgumentError`` for a bad value, a limit the
    engine would refuse, or a machine the engine is not."""
    _check_machine(template, engine)
    wallclock: float | None = None
    ulimits: dict[str, dict[str, Any]] = {u["Name"]: u for u in host.get("Ulimits", [])}
    # Typed as objects: the template may have been built from untyped data (JSON).
    items: Iterable[tuple[object, object]] = template.resource_limits.items()
    for key, raw in items:
        limit = RESOURCE_LIMITS.get(key) if isinstance(key, str) else None
        if limit is None:
            known = ", ".join(RESOURCE_LIMITS)
            raise InvalidArgumentError(f"unknown resource limit {key!r}; known: {known}")
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            raise InvalidArgumentError(f"resource limit {key} must be a string, got {raw!r}")
        value = str(raw)
        assert isinstance(key, str)
        if limit.unit == "KiB":
            amount: float = parse_size(key, value)
        elif limit.unit == "s":
            amount = parse_seconds(key, value)
        else:
            amount = parse_count(key, value)
        if key == "VIRTUAL_MEMORY":
            if amount < _MIN_MEMORY:
                raise InvalidArgumentError(
                    f"resource limit VIRTUAL_MEMORY: {value!r} is below the engine's 6 MiB"
                )
            host["Memory"] = host["MemorySwap"] = int(amount)
        elif key == "WALLCLOCK_TIME":
            wallclock = amount
        else:
            if limit.ulimit in ulimits:
                raise InvalidArgumentError(
                    f"resource limit {key} and extension 'ulimit' both set {limit.ulimit}"
                )
            whole = math.ceil(amount)
            ulimits[limit.ulimit] = {"Name": limit.ulimit, "Soft": whole, "Hard": whole}
    if ulimits:
        host["Ulimits"] = list(ulimits.values())
    _memory_reservation(template, host)
    _cpus(template, host, engine)
    return Resources(wallclock=wallclock)


def _memory_reservation(template: JobTemplate, host: dict[str, Any]) -> None:
    kib = template.min_phys_memory
    if isinstance(kib, bool) or not isinstance(kib, int) or kib < 0:
        raise InvalidArgumentError(f"min_phys_memory must be KiB >= 0, got {kib!r}")
    if not kib:
        return
    reservation = kib * 1024
    if "Memory" in host and reservation > host["Memory"]:
        raise InvalidArgumentError(
            f"min_phys_memory ({kib} KiB) is above the VIRTUAL_MEMORY limit "
            f"({host['Memory'] // 1024} KiB)"
        )
    host["MemoryReservation"] = reservation


def _cpus(template: JobTemplate, host: dict[str, Any], engine: EngineInfo | None) -> None:
    lo, hi = template.min_slots, template.max_slots
    for name, value in (("min_slots", lo), ("max_slots", hi)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"{name} must be an int >= 0, got {value!r}")
    if lo and hi and lo > hi:
        raise InvalidArgumentError(f"min_slots ({lo}) is above max_slots ({hi})")
    cpus = engine.cpus if engine is not None and engine.cpus > 0 else 0
    if cpus and lo > cpus:
        raise InvalidArgumentError(f"min_slots {lo} is above the engine's {cpus} CPUs")
    if hi:
        if cpus and hi > cpus:
            raise InvalidArgumentError(
                f"max_slots {hi} is above the engine's {cpus} CPUs (it refuses such a limit)"
            )
        host["NanoCpus"] = hi * 1_000_000_000


def _check_machine(template: JobTemplate, engine: EngineInfo | None) -> None:
    for name in ("machine_arch", "machine_os"):
        if not isinstance(getattr(template, name), str):
            raise InvalidArgumentError(f"{name} must be a string")
    if engine is None or not engine.architecture:
        return
    if template.machine_arch:
        wanted, have = (
            drmaa_architecture(template.machine_arch),
            drmaa_architecture(engine.architecture),
        )
        if wanted == "other" or wanted != have:
            raise InvalidArgumentError(
                f"machine_arch {template.machine_arch!r} asks for {wanted}; the engine is "
                f"{engine.architecture} ({have})"
            )
    if template.machine_os:
        wanted, have = drmaa_os(template.machine_os), drmaa_os(engine.os_type)
        if wanted == "other" or wanted != have:
            raise InvalidArgumentError(
                f"machine_os {template.machine_os!r} asks for {wanted}; the engine runs "
                f"{engine.os_type or 'an unknown OS'} ({have})"
            )
