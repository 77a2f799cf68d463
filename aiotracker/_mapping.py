"""Pure mapping between the DRMAA2 model and Docker: no I/O, no awaits.

- job template -> container create config (``create_config``), with the labels drmaa2os uses;
- job template <-> the ``drmaa2jobtemplate`` label (base64 of drmaa2interface's JSON);
- container state (inspect, list entry, event) -> ``JobState``;
- inspect -> ``JobInfo``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ._exceptions import InvalidArgumentError
from ._model import JobInfo, JobState, JobTemplate
from ._records import ContainerDetails

# -- labels and names ------------------------------------------------------------------------

SESSION_LABEL = "drmaa2_jobsession"  # drmaa2os's own label: the two trackers share sessions
TEMPLATE_LABEL = "drmaa2jobtemplate"  # drmaa2os: base64 of the template as drmaa2interface JSON
MANAGED_LABEL = "aiotracker.version"  # set on containers aiotracker made
SUBMISSION_HOST_LABEL = "aiotracker.submission_host"
ARRAY_LABEL = "aiotracker.array"  # the array job id
ARRAY_INDEX_LABEL = "aiotracker.array.index"
ARRAY_SIZE_LABEL = "aiotracker.array.size"  # number of tasks: a launcher starts an array only whole
ARRAY_MAX_PARALLEL_LABEL = "aiotracker.array.max_parallel"
# Set when the engine removes the container at exit (the rm extension): its die's exit code is
# then how the job ended, whereas a job removed by someone else is simply gone.
AUTO_REMOVE_LABEL = "aiotracker.auto_remove"
# Set when the job has a restart policy: its die is then not final (the engine may start it
# again), so the tracker waits for an inspect before it publishes a terminal state.
RESTART_LABEL = "aiotracker.restart"
LABEL_FORMAT_VERSION = "1"

# Docker has no "held" or "cancelled" state for a container that was never started, and labels
# cannot change after create; the container *name* can (rename), so it carries these marks.
HELD_SUFFIX = ".aiotracker-held"
TERMINATED_SUFFIX = ".aiotracker-terminated"

_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def base_name(name: str) -> str:
    """The container name without a leading slash and without aiotracker's marks."""
    name = name.lstrip("/")
    for suffix in (HELD_SUFFIX, TERMINATED_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


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
    if name.endswith((HELD_SUFFIX, TERMINATED_SUFFIX)):
        raise InvalidArgumentError(f"job_name {name!r} ends with a suffix aiotracker reserves")


# -- the template label ----------------------------------------------------------------------

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


def _json_value(attr: str, key: str, value: Any) -> Any:
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
        raise InvalidArgumentError(f"the job template label has a malformed {key!r}")
    if attr in _TIME_FIELDS:
        try:
            return parse_go_time(value)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(
                f"the job template label has a malformed {key!r}: {exc}"
            ) from exc
    return value


def template_from_json(data: Mapping[str, Any]) -> JobTemplate:
    """Inverse of ``template_to_json``; unknown keys are ignored (newer drmaa2interface).

    Raises ``InvalidArgumentError`` when a known key holds a value of the wrong JSON type.
    """
    kwargs: dict[str, Any] = {}
    for attr, key in _JSON_FIELDS:
        if data.get(key) is not None:  # null (a nil list or map from some writer) is unset
            kwargs[attr] = _json_value(attr, key, data[key])
    extension = data.get("extension") or {}
    if not isinstance(extension, dict):
        raise InvalidArgumentError("the job template label has a malformed 'extension'")
    kwargs["extensions"] = _json_value(
        "extensions", "extensionList", extension.get("extensionList") or {}
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


# -- template -> create config ---------------------------------------------------------------

# Docker image references (distribution/reference grammar), or an image id. ASCII only, and
# matched whole: ``$`` would also accept a trailing newline.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE_RE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::{_TAG})?(?:@{_DIGEST})?"
)
_IMAGE_ID_RE = re.compile(r"(?:sha256:)?[0-9a-f]{64}")
_NAME_MAX = 255  # distribution's limit on the repository name (domain and path, no tag)


def validate_image_reference(image: str) -> None:
    """``name[:tag][@digest]`` with an optional ``registry[:port]/`` prefix, or an image id."""
    if not image:
        raise InvalidArgumentError("job_category must name the container image")
    if _IMAGE_ID_RE.fullmatch(image):
        return
    m = _REFERENCE_RE.fullmatch(image)
    if m is None or len(m["name"]) > _NAME_MAX:
        raise InvalidArgumentError(f"job_category {image!r} is not a valid image reference")


@dataclass(frozen=True, slots=True)
class PortBinding:
    host_ip: str
    host_port: str


_PROTOS = frozenset({"tcp", "udp", "sctp"})


def _port_range(text: str, what: str, spec: str) -> tuple[int, int]:
    m = re.fullmatch(r"([0-9]{1,5})(?:-([0-9]{1,5}))?", text)
    if m is None:
        raise InvalidArgumentError(f"exposedPorts: invalid {what} port {text!r} in {spec!r}")
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else start
    if not (0 < start <= end <= 65535):
        raise InvalidArgumentError(f"exposedPorts: {what} port out of range in {spec!r}")
    return start, end


def parse_port_spec(spec: str) -> list[tuple[str, PortBinding]]:
    """One port spec as ``docker run -p`` (nat.ParsePortSpec): ``[[ip:]host:]container[/proto]``.

    Returns (container port key such as ``"80/tcp"``, binding) pairs, one per port of a range.
    As in Docker, a host range for a single container port stays a range (``"8000-8010"``):
    the engine picks a free port from it. An IPv6 address may be bracketed or bare.
    """
    spec = spec.strip()
    if not spec:
        raise InvalidArgumentError("exposedPorts: empty port spec")
    raw, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOS:
        raise InvalidArgumentError(f"exposedPorts: invalid protocol {proto!r} in {spec!r}")
    parts = raw.split(":")
    container = parts[-1]
    ip, host = (":".join(parts[:-2]), parts[-2]) if len(parts) > 1 else ("", "")
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgumentError(
                f"exposedPorts: invalid host IP {ip!r} in {spec!r}"
            ) from None
    c_start, c_end = _port_range(container, "container", spec)
    h_start = h_end = 0
    if host:
        h_start, h_end = _port_range(host, "host", spec)
        if c_start != c_end and (h_end - h_start) != (c_end - c_start):
            raise InvalidArgumentError(
                f"exposedPorts: host and container ranges differ in {spec!r}"
            )
    out: list[tuple[str, PortBinding]] = []
    for i, port in enumerate(range(c_start, c_end + 1)):
        if not host:
            host_port = ""
        elif c_start == c_end and h_start != h_end:
            host_port = f"{h_start}-{h_end}"
        else:
            host_port = str(h_start + i)
        out.append((f"{port}/{proto}", PortBinding(ip, host_port)))
    return out


PortMaps = tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]


def parse_port_specs(value: str) -> PortMaps:
    """Comma-separated port specs -> (ExposedPorts, PortBindings)."""
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in value.split(","):
        for key, binding in parse_port_spec(spec):
            exposed[key] = {}
            bindings.setdefault(key, []).append(
                {"HostIp": binding.host_ip, "HostPort": binding.host_port}
            )
    return exposed, bindings


_RAM_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_ram_in_bytes(text: str, what: str) -> int:
    """go-units RAMInBytes: ``64m``, ``1.5g``, ``512``, ``512b``, ``128MiB`` (binary multiples)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?) ?(?:([kmgtp])(?:i?b)?|b)?\s*", text, re.IGNORECASE)
    if m is None:
        raise InvalidArgumentError(f"{what}: cannot parse size {text!r}")
    size = int(float(m.group(1)) * _RAM_UNITS[(m.group(2) or "").lower()])
    if size <= 0:
        raise InvalidArgumentError(f"{what}: size must be positive, got {text!r}")
    return size


_ULIMIT_NAMES = frozenset(
    {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
     "rss", "rtprio", "rttime", "sigpending", "stack"}
)  # fmt: skip


def parse_ulimit(text: str) -> dict[str, Any]:
    """go-units ParseUlimit: ``name=soft[:hard]``; -1 is unlimited, a missing hard is soft."""
    name, sep, limits = text.strip().partition("=")
    if not sep or name not in _ULIMIT_NAMES:
        raise InvalidArgumentError(f"ulimit: invalid ulimit {text!r} (name=soft[:hard])")
    m = re.fullmatch(r"(-?[0-9]+)(?::(-?[0-9]+))?", limits)
    if m is None:
        raise InvalidArgumentError(f"ulimit: limits of {text!r} are not integers")
    soft = int(m.group(1))
    hard = int(m.group(2)) if m.group(2) else soft
    # An unlimited hard limit allows any soft one; below a finite hard limit, soft is finite.
    if hard != -1 and (soft == -1 or soft > hard):
        raise InvalidArgumentError(f"ulimit: soft limit above hard limit in {text!r}")
    return {"Name": name, "Soft": soft, "Hard": hard}


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise InvalidArgumentError(f"extension {name!r} takes 'true' or 'false', got {value!r}")
    return lowered == "true"


_RESTART_RE = re.compile(r"no|always|unless-stopped|on-failure(?::[0-9]+)?")
_CONTAINER_REF = r"container:[a-zA-Z0-9][a-zA-Z0-9_.-]*"
_NS_RE = {
    "ipc": re.compile(rf"none|private|shareable|host|{_CONTAINER_REF}"),
    "pid": re.compile(rf"host|{_CONTAINER_REF}"),
    "uts": re.compile(r"host"),
    "net": re.compile(rf"none|host|bridge|default|{_CONTAINER_REF}|[a-zA-Z0-9][a-zA-Z0-9_.-]*"),
}
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?")

KNOWN_EXTENSIONS = frozenset(
    {"user", "exposedPorts", "entrypoint", "net", "privileged", "restart", "ipc", "uts", "pid",
     "rm", "gpus", "shm-size", "ulimit"}
)  # fmt: skip


def _apply_extensions(
    extensions: Mapping[str, object], config: dict[str, Any], host: dict[str, Any]
) -> None:
    unknown = sorted(set(extensions) - KNOWN_EXTENSIONS)
    if unknown:
        raise InvalidArgumentError(
            f"unknown extension {unknown[0]!r}; known: {', '.join(sorted(KNOWN_EXTENSIONS))}"
        )
    for name, value in extensions.items():
        if not isinstance(value, str):
            raise InvalidArgumentError(f"extension {name!r} must be a string, got {value!r}")
        if "\x00" in value:
            raise InvalidArgumentError(f"extension {name!r} contains a NUL byte")
        if name == "user":
            if not _USER_RE.fullmatch(value):
                raise InvalidArgumentError(f"extension 'user': invalid user {value!r}")
            config["User"] = value
        elif name == "exposedPorts":
            exposed, bindings = parse_port_specs(value)
            config["ExposedPorts"] = exposed
            host["PortBindings"] = bindings
        elif name == "entrypoint":
            words = value.split()
            if not words:
                raise InvalidArgumentError("extension 'entrypoint' is empty")
            config["Entrypoint"] = words
        elif name in _NS_RE:
            if not _NS_RE[name].fullmatch(value):
                raise InvalidArgumentError(f"extension {name!r}: invalid mode {value!r}")
            key = {"net": "NetworkMode", "ipc": "IpcMode", "pid": "PidMode", "uts": "UTSMode"}
            host[key[name]] = value
        elif name == "privileged":
            host["Privileged"] = _parse_bool(name, value)
        elif name == "restart":
            if not _RESTART_RE.fullmatch(value):
                raise InvalidArgumentError(
                    f"extension 'restart': {value!r} is not no|always|unless-stopped|on-failure[:N]"
                )
            policy, _, retries = value.partition(":")
            host["RestartPolicy"] = {"Name": policy, "MaximumRetryCount": int(retries or 0)}
        elif name == "rm":
            host["AutoRemove"] = _parse_bool(name, value)
        elif name == "gpus":
            # str.isdigit() would let "²" through to int(); only ASCII digits are a count.
            if value == "all":
                count = -1
            elif re.fullmatch(r"[0-9]+", value) and int(value) > 0:
                count = int(value)
            else:
                raise InvalidArgumentError(
                    f"extension 'gpus' must be 'all' or a number, got {value!r}"
                )
            host["DeviceRequests"] = [
                {"Driver": "nvidia", "Count": count, "Capabilities": [["gpu"]]}
            ]
        elif name == "shm-size":
            host["ShmSize"] = parse_ram_in_bytes(value, "extension 'shm-size'")
        elif name == "ulimit":
            host["Ulimits"] = [parse_ulimit(u) for u in value.split(",")]
    policy = host.get("RestartPolicy", {}).get("Name", "no")
    if host.get("AutoRemove") and policy != "no":
        # The engine refuses this pair at create; say so before anything is made.
        raise InvalidArgumentError(f"extension 'rm' cannot be combined with restart {policy!r}")


def _check_text(what: str, value: str) -> None:
    if "\x00" in value:
        raise InvalidArgumentError(f"{what} contains a NUL byte")


def environment_list(env: Mapping[str, str]) -> list[str]:
    """job_environment -> Env ``["k=v", ...]``, in the mapping's order."""
    out = []
    # Typed as objects: the template may have been built from untyped data.
    items: Iterable[tuple[object, object]] = env.items()
    for key, value in items:
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgumentError(f"job_environment entries must be strings: {key!r}")
        if not key or "=" in key or "\x00" in key:
            raise InvalidArgumentError(f"job_environment key {key!r} is empty or has '=' or NUL")
        _check_text(f"job_environment[{key!r}]", value)
        out.append(f"{key}={value}")
    return out


def binds(stage_in_files: Mapping[str, str], cwd: str) -> list[str]:
    """stage_in_files {host path: container path} -> Binds ``host:container``."""
    out = []
    for host_path, container_path in stage_in_files.items():
        _check_text("stage_in_files", host_path + container_path)
        if not host_path or not container_path:
            raise InvalidArgumentError("stage_in_files paths must not be empty")
        absolute = posixpath.normpath(posixpath.join(cwd, host_path))
        if ":" in absolute or ":" in container_path:
            raise InvalidArgumentError(f"stage_in_files paths must not contain ':': {host_path!r}")
        if not container_path.startswith("/"):
            raise InvalidArgumentError(
                f"stage_in_files: container path {container_path!r} must be absolute"
            )
        out.append(f"{absolute}:{container_path}")
    return out


def command(template: JobTemplate) -> list[str] | None:
    """remote_command -> Cmd[0], args -> Cmd[1:] (no shell is ever added)."""
    for part in (template.remote_command, *template.args):
        if not isinstance(part, str):
            raise InvalidArgumentError(f"command parts must be strings, got {part!r}")
        _check_text("remote_command/args", part)
    if template.remote_command:
        return [template.remote_command, *template.args]
    if template.args:
        return list(template.args)
    return None


@dataclass(frozen=True, slots=True)
class ArrayTask:
    array_id: str
    index: int
    size: int
    max_parallel: int


def create_config(
    session: str,
    template: JobTemplate,
    *,
    cwd: str,
    labels: Mapping[str, str] = {},  # read only
    submission_host: str = "",
    array_task: ArrayTask | None = None,
) -> dict[str, Any]:
    """The body of ``POST /containers/create`` for a job template.

    Raises ``InvalidArgumentError`` for anything Docker would refuse or we could not honour.
    ``cwd`` resolves relative stage-in paths (passed in so that this stays pure).
    """
    validate_image_reference(template.job_category)
    if template.stage_out_files:
        raise InvalidArgumentError("stage_out_files is not supported by the Docker tracker")
    if template.working_directory and not template.working_directory.startswith("/"):
        raise InvalidArgumentError(
            f"working_directory {template.working_directory!r} must be an absolute path"
        )
    all_labels = {
        **labels,
        SESSION_LABEL: session,
        TEMPLATE_LABEL: encode_template_label(template),
        MANAGED_LABEL: LABEL_FORMAT_VERSION,
    }
    if submission_host:
        all_labels[SUBMISSION_HOST_LABEL] = submission_host
    if array_task is not None:
        all_labels[ARRAY_LABEL] = array_task.array_id
        all_labels[ARRAY_INDEX_LABEL] = str(array_task.index)
        all_labels[ARRAY_SIZE_LABEL] = str(array_task.size)
        all_labels[ARRAY_MAX_PARALLEL_LABEL] = str(array_task.max_parallel)
    config: dict[str, Any] = {
        "Image": template.job_category,
        "Labels": all_labels,
        "Tty": False,
        "AttachStdout": False,
        "AttachStderr": False,
    }
    host: dict[str, Any] = {
        # The network is never implied: Docker's default applies unless "net" asks.
        "LogConfig": {"Type": "local", "Config": {}},
    }
    cmd = command(template)
    if cmd is not None:
        config["Cmd"] = cmd
    if template.candidate_machines:
        _check_text("candidate_machines", template.candidate_machines[0])
        config["Hostname"] = template.candidate_machines[0]
    if template.working_directory:
        _check_text("working_directory", template.working_directory)
        config["WorkingDir"] = template.working_directory
    if template.job_environment:
        config["Env"] = environment_list(template.job_environment)
    if template.stage_in_files:
        host["Binds"] = binds(template.stage_in_files, cwd)
    if template.input_path:
        config["OpenStdin"] = True
        config["StdinOnce"] = True
    _apply_extensions(template.extensions, config, host)
    if host.get("AutoRemove"):
        all_labels[AUTO_REMOVE_LABEL] = "1"
    policy = host.get("RestartPolicy", {}).get("Name", "no")
    if policy != "no":
        all_labels[RESTART_LABEL] = policy
    config["HostConfig"] = host
    return config


# -- container state -> JobState -------------------------------------------------------------


def state_from_details(d: ContainerDetails) -> JobState:
    """The seed's state table, corrected: never-started is QUEUED (or held), OOM by exit code."""
    status = d.status
    if status == "created":
        if d.error or is_terminated_name(d.name):
            return JobState.FAILED  # start failed, or terminated before it ever ran
        return JobState.QUEUED_HELD if is_held_name(d.name) else JobState.QUEUED
    if status in ("exited", "dead", "removing") and not d.running:
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


def job_info_from_details(d: ContainerDetails, *, engine_host: str, now: datetime) -> JobInfo:
    """inspect -> JobInfo. ``now`` gives the wall-clock time of a job still running."""
    state = state_from_details(d)
    finished = state.is_terminal and d.finished_at is not None
    exit_status: int | None = d.exit_code if state.is_terminal else None
    if state is JobState.FAILED and d.status == "created" and not d.error:
        exit_status = None  # terminated before start: there is no exit status
    signal_text = ""
    if exit_status is not None and exit_status > 128:
        signal_text = signal_name(exit_status - 128)
    wallclock: timedelta | None = None
    if d.started_at is not None:
        end = d.finished_at if finished and d.finished_at is not None else now
        if not state.is_terminal or finished:
            wallclock = max(end - d.started_at, timedelta(0))
    template_name = ""
    if TEMPLATE_LABEL in d.labels:
        try:
            template_name = decode_template_label(d.labels[TEMPLATE_LABEL]).job_name
        except InvalidArgumentError:
            template_name = ""
    return JobInfo(
        job_id=d.container_id,
        job_name=template_name or base_name(d.name),
        exit_status=exit_status,
        terminating_signal=signal_text,
        annotation=annotation(d),
        state=state,
        sub_state=d.status,
        allocated_machines=(engine_host,) if engine_host else (),
        submission_machine=d.labels.get(SUBMISSION_HOST_LABEL, ""),
        job_owner=d.user,
        slots=1,
        queue_name="",
        wallclock_time=wallclock,
        cpu_time=None,
        submission_time=d.created,
        dispatch_time=d.started_at,
        finish_time=d.finished_at if finished else None,
        extensions={
            "workingdir": d.working_dir,
            "commandline": " ".join(d.cmd),
            "category": d.image,
            "hostname": d.hostname,
        },
    )


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
