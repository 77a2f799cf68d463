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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
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
    "CPU_TIME": Limit("s", "cpu", "ulimit cpu, per process (whole seconds, rounded up)"),
    "DATA_SEG_SIZE": Limit("KiB", "data", "ulimit data (bytes)"),
    "FILE_SIZE": Limit("KiB", "fsize", "ulimit fsize (bytes)"),
    "OPEN_FILES": Limit("count", "nofile", "ulimit nofile"),
    "STACK_SIZE": Limit("KiB", "stack", "ulimit stack (bytes)"),
    "VIRTUAL_MEMORY": Limit("KiB", "", "memory limit, swap limit equal (no swap beyond it)"),
    "WALLCLOCK_TIME": Limit("s", "", "the tracker terminates the job once it has run this long"),
}
# The DRMAA2 C binding's name for DATA_SEG_SIZE.
_ALIASES = {"DATA_SIZE": "DATA_SEG_SIZE"}
_MIN_MEMORY = 6 << 20  # the engine refuses a smaller memory limit or reservation
_MAX = (1 << 63) - 1  # the engine's values are int64
_UNLIMITED = frozenset({"unlimited", "infinity", "-1"})
_SIZE_RE = re.compile(r"\s*([0-9]{1,30}(?:\.[0-9]{1,9})?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*", re.I)
_TIME_RE = re.compile(r"\s*(?:(?:([0-9]{1,9}):)?([0-9]{1,9}):)?([0-9]{1,12}(?:\.[0-9]{1,9})?)\s*")
_SIZE_UNITS = {"": 1 << 10, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bounded(key: str, value: str, amount: int) -> int:
    if amount > _MAX:
        raise InvalidArgumentError(f"resource limit {key}: {value!r} is too large")
    return amount


def parse_size(key: str, value: str) -> int:
    """Bytes from a DRMAA2 size: a bare number is KiB; ``512k``, ``64m``, ``1g``, ``2GiB``,
    ``100b``."""
    m = _SIZE_RE.fullmatch(value)
    if m is None:
        raise InvalidArgumentError(f"resource limit {key}: cannot parse size {value!r}")
    unit = (m.group(2) or m.group(3) or "").lower()
    amount = Decimal(m.group(1)) * _SIZE_UNITS[unit]
    return _bounded(key, value, int(amount))  # 0 is a limit too (CORE_FILE_SIZE 0)


def parse_seconds(key: str, value: str) -> float:
    """Seconds from ``90``, ``1.5``, ``MM:SS`` or ``HH:MM:SS``."""
    m = _TIME_RE.fullmatch(value)
    if m is None:
        raise InvalidArgumentError(f"resource limit {key}: cannot parse time {value!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    if (m.group(2) and seconds >= 60) or (m.group(1) and minutes >= 60):
        raise InvalidArgumentError(f"resource limit {key}: {value!r} is not [[H:]M:]S")
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise InvalidArgumentError(f"resource limit {key}: time must be positive, got {value!r}")
    _bounded(key, value, math.ceil(total))
    return total


def parse_count(key: str, value: str) -> int:
    if not re.fullmatch(r"\s*[0-9]{1,19}\s*", value) or int(value) < 1:
        raise InvalidArgumentError(f"resource limit {key}: {value!r} is not a count >= 1")
    return _bounded(key, value, int(value))


def apply_resources(template: JobTemplate, host: dict[str, Any], engine: EngineInfo | None) -> None:
    """Set the template's resources on ``host`` (HostConfig) and check them against the
    engine's machine (when known). ``InvalidArgumentError`` for a bad value, a limit the
    engine would refuse, or a machine the engine is not."""
    _check_machine(template, engine)
    ulimits: dict[str, dict[str, Any]] = {u["Name"]: u for u in host.get("Ulimits", [])}
    # Typed as objects: the template may have been built from untyped data (JSON).
    items: Iterable[tuple[object, object]] = template.resource_limits.items()
    for raw_key, raw in items:
        key = _ALIASES.get(raw_key, raw_key) if isinstance(raw_key, str) else ""
        limit = RESOURCE_LIMITS.get(key)
        if limit is None:
            known = ", ".join(RESOURCE_LIMITS)
            raise InvalidArgumentError(f"unknown resource limit {raw_key!r}; known: {known}")
        if not isinstance(raw, str):  # DRMAA2's values are strings (the label stores them so)
            raise InvalidArgumentError(f"resource limit {key} must be a string, got {raw!r}")
        if key == "WALLCLOCK_TIME":
            parse_seconds(key, raw)  # a timer of the tracker's (``_config.timer_labels``)
            continue
        if key == "VIRTUAL_MEMORY":
            memory = parse_size(key, raw)
            if memory < _MIN_MEMORY:
                raise InvalidArgumentError(
                    f"resource limit VIRTUAL_MEMORY: {raw!r} is below the engine's 6 MiB"
                )
            host["Memory"] = host["MemorySwap"] = memory
            continue
        if limit.ulimit in ulimits:
            raise InvalidArgumentError(
                f"resource limit {key} and extension 'ulimit' both set {limit.ulimit}"
            )
        if raw.strip().lower() in _UNLIMITED:
            soft = hard = -1
        elif limit.unit == "KiB":
            soft = hard = parse_size(key, raw)
        elif limit.unit == "s":
            soft = hard = math.ceil(parse_seconds(key, raw))
            # Soft below hard: the job gets SIGXCPU (exit 152) at the limit, not a SIGKILL
            # that would read like a terminate or an OOM kill.
            hard = soft + 1
        else:
            soft = hard = parse_count(key, raw)
        ulimits[limit.ulimit] = {"Name": limit.ulimit, "Soft": soft, "Hard": hard}
    if ulimits:
        host["Ulimits"] = list(ulimits.values())
    _memory_reservation(template, host)
    _cpus(template, host, engine)


def _memory_reservation(template: JobTemplate, host: dict[str, Any]) -> None:
    kib = template.min_phys_memory
    if isinstance(kib, bool) or not isinstance(kib, int) or kib < 0:
        raise InvalidArgumentError(f"min_phys_memory must be KiB >= 0, got {kib!r}")
    if not kib:
        return
    reservation = kib * 1024
    if reservation < _MIN_MEMORY:
        raise InvalidArgumentError(
            f"min_phys_memory {kib} KiB is below the engine's 6 MiB (6144 KiB) minimum"
        )
    if reservation > _MAX:
        raise InvalidArgumentError(f"min_phys_memory {kib} KiB is too large")
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


def _matches(wanted: str, have: str, drmaa_name: Callable[[str], str]) -> bool:
    """The engine's own word (case aside), or the same DRMAA2 name."""
    named = drmaa_name(wanted)
    return wanted.lower() == have.lower() or (named != "other" and named == drmaa_name(have))


def _check_machine(template: JobTemplate, engine: EngineInfo | None) -> None:
    for name in ("machine_arch", "machine_os"):
        if not isinstance(getattr(template, name), str):
            raise InvalidArgumentError(f"{name} must be a string")
    if engine is None:
        return  # no engine to check against (the pure tests)
    arch, system = template.machine_arch, template.machine_os
    if arch and not _matches(arch, engine.architecture, drmaa_architecture):
        raise InvalidArgumentError(
            f"machine_arch {arch!r} asks for {drmaa_architecture(arch)}; the engine is "
            f"{engine.architecture or 'of an architecture it does not tell'} "
            f"({drmaa_architecture(engine.architecture)})"
        )
    if system and not _matches(system, engine.os_type, drmaa_os):
        raise InvalidArgumentError(
            f"machine_os {system!r} asks for {drmaa_os(system)}; the engine runs "
            f"{engine.os_type or 'an OS it does not tell'} ({drmaa_os(engine.os_type)})"
        )
