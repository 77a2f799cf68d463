"""The ``drmaa2jobtemplate`` label: a job template as drmaa2interface's JSON, base64. Pure.

Byte-identical to what the Go drmaa2os tracker writes, so the two trackers share sessions.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ._exceptions import InvalidArgumentError
from ._model import JobTemplate

_GO_ZERO_TIME = "0001-01-01T00:00:00Z"

# (python field, drmaa2interface JSON name), in drmaa2interface's struct order.
_JSON_FIELDS: tuple[tuple[str, str], ...] = (
    ("remote_command", "remoteCommand"),
    ("args", "args"),
    ("submit_as_hold", "submitAsHold"),
    ("rerunnable", "reRunnable"),
    ("job_environment", "jobEnvironment"),
    ("working_directory", "workingDirectory"),
    ("job_category", "jobCategory"),
    ("email", "email"),
    ("email_on_started", "emailOnStarted"),
    ("email_on_terminated", "emailOnTerminated"),
    ("job_name", "jobName"),
    ("input_path", "inputPath"),
    ("output_path", "outputPath"),
    ("error_path", "errorPath"),
    ("join_files", "joinFiles"),
    ("reservation_id", "reservationID"),
    ("queue_name", "queueName"),
    ("min_slots", "minSlots"),
    ("max_slots", "maxSlots"),
    ("priority", "priority"),
    ("candidate_machines", "candidateMachines"),
    ("min_phys_memory", "minPhysMemory"),
    ("machine_os", "machineOs"),
    ("machine_arch", "machineArch"),
    ("start_time", "startTime"),
    ("deadline_time", "deadlineTime"),
    ("stage_in_files", "stageInFiles"),
    ("stage_out_files", "stageOutFiles"),
    ("resource_limits", "resourceLimits"),
    ("accounting_id", "accountingString"),
)
_TIME_FIELDS = frozenset({"start_time", "deadline_time"})


def _format_go_time(value: datetime | None) -> str:
    """RFC 3339 as Go's time.MarshalJSON writes it: UTC, "Z", no trailing zeros in the fraction."""
    if value is None:
        return _GO_ZERO_TIME
    if value.tzinfo is None:
        raise InvalidArgumentError(f"time {value!r} has no time zone")
    utc = value.astimezone(UTC)
    fraction = f".{utc.microsecond:06d}".rstrip("0") if utc.microsecond else ""
    return f"{utc.replace(microsecond=0, tzinfo=None).isoformat()}{fraction}Z"


def parse_go_time(text: str | None) -> datetime | None:
    """Parse Docker's/Go's RFC 3339 (nano) time; Go's zero time and empty text are None."""
    if not text or text.startswith("0001-01-01"):
        return None
    m = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text, re.ASCII
    )
    if m is None:
        raise InvalidArgumentError(f"cannot parse time {text!r}")
    whole, frac, zone = m.groups()
    micro = (frac or "").ljust(6, "0")[:6]
    try:
        parsed = datetime.fromisoformat(f"{whole}.{micro}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:  # well formed, but no such day or hour
        raise InvalidArgumentError(f"cannot parse time {text!r}") from None
    return parsed.astimezone(UTC)


def template_to_json(template: JobTemplate) -> dict[str, Any]:
    """The template as drmaa2interface marshals it (omitempty; zero times are written)."""
    out: dict[str, Any] = {}
    ext = dict(sorted(template.extensions.items()))
    out["extension"] = {"extensionList": ext} if ext else {}
    for attr, key in _JSON_FIELDS:
        value = getattr(template, attr)
        if attr in _TIME_FIELDS:
            out[key] = _format_go_time(value)
        elif isinstance(value, Mapping):
            if value:
                out[key] = dict(sorted(value.items()))
        elif isinstance(value, tuple):
            if value:
                out[key] = list(value)
        elif value:
            out[key] = value
    return out


_DEFAULTS = JobTemplate()


def _json_value(attr: str, key: str, value: Any, what: str = "the job template label") -> Any:
    """One field of the label, checked against the type of the template's field."""
    default = getattr(_DEFAULTS, attr)
    if attr in _TIME_FIELDS:
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif isinstance(default, Mapping):
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise InvalidArgumentError(f"{what} has a malformed {key!r}")
    if attr in _TIME_FIELDS:
        try:
            return parse_go_time(value)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"{what} has a malformed {key!r}: {exc}") from exc
    return value


JSON_KEYS = frozenset({key for _, key in _JSON_FIELDS} | {"extension"})


def template_from_json(
    data: Mapping[str, Any], *, what: str = "the job template label"
) -> JobTemplate:
    """Inverse of ``template_to_json``; unknown keys are ignored (newer drmaa2interface).

    Raises ``InvalidArgumentError`` (its message begins with ``what``) when a known key holds
    a value of the wrong JSON type.
    """
    kwargs: dict[str, Any] = {}
    for attr, key in _JSON_FIELDS:
        if data.get(key) is not None:  # null (a nil list or map from some writer) is unset
            kwargs[attr] = _json_value(attr, key, data[key], what)
    extension = data.get("extension") or {}
    if not isinstance(extension, dict):
        raise InvalidArgumentError(f"{what} has a malformed 'extension'")
    kwargs["extensions"] = _json_value(
        "extensions", "extensionList", extension.get("extensionList") or {}, what
    )
    return JobTemplate(**kwargs)


# json.Marshal escapes these even inside strings; doing the same keeps labels byte-identical.
_GO_ESCAPES = {
    "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029",
}  # fmt: skip


def encode_template_label(template: JobTemplate) -> str:
    """The ``drmaa2jobtemplate`` label: the bytes drmaa2os writes for the same template."""
    raw = json.dumps(template_to_json(template), separators=(",", ":"), ensure_ascii=False)
    for char, escape in _GO_ESCAPES.items():
        # These characters occur only inside JSON strings, where the escape means the same.
        raw = raw.replace(char, escape)
    return base64.b64encode(raw.encode()).decode("ascii")


def decode_template_label(value: str) -> JobTemplate:
    """Read back a ``drmaa2jobtemplate`` label; a label that does not decode is bad input."""
    try:
        data = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgumentError("the job template label cannot be decoded") from exc
    if not isinstance(data, dict):
        raise InvalidArgumentError("the job template label does not hold a JSON object")
    return template_from_json(data)
