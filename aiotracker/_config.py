"""Job template -> the body of ``POST /containers/create``. Pure: no I/O, no awaits.

Everything Docker would refuse, or aiotracker could not honour, is an ``InvalidArgumentError``
here, before anything is created.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ._checks import unix_ns
from ._engine.base import EngineInfo
from ._exceptions import InvalidArgumentError, UnsupportedOperationError
from ._labels import (
    ARRAY_INDEX_LABEL,
    ARRAY_LABEL,
    ARRAY_LAST_LABEL,
    ARRAY_MAX_PARALLEL_LABEL,
    ARRAY_SIZE_LABEL,
    AUTO_REMOVE_LABEL,
    DEADLINE_LABEL,
    LABEL_FORMAT_VERSION,
    MANAGED_LABEL,
    PRIORITY_LABEL,
    RESTART_LABEL,
    SESSION_LABEL,
    START_AT_LABEL,
    SUBMISSION_HOST_LABEL,
    SUBMITTER_LABEL,
    TEMPLATE_LABEL,
    WALLCLOCK_LABEL,
)
from ._model import JobTemplate
from ._resources import apply_resources, parse_seconds
from ._template_label import encode_template_label

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
     "rm", "gpus", "gpu-devices", "shm-size", "ulimit", "log-max-size", "log-max-file", "pull",
     "network-disabled"}
)  # fmt: skip

# The ``pull`` extension: when the tracker pulls a job's image before creating it.
PullPolicy = Literal["never", "missing", "always"]
POLICIES: tuple[PullPolicy, ...] = ("never", "missing", "always")


def pull_policy(extensions: Mapping[str, object]) -> PullPolicy:
    """The ``pull`` extension's value (``never`` when absent); ``InvalidArgumentError`` if
    it is none of the three."""
    value = extensions.get("pull", "never")
    for policy in POLICIES:
        if value == policy:
            return policy
    raise InvalidArgumentError(f"extension 'pull' must be never, missing or always, got {value!r}")


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
        elif name == "network-disabled":
            # No network at all, and none of the engine's network machinery: Docker makes no
            # sandbox or endpoint and runs no prestart hook for the job (its own namespace has
            # only loopback, as with net=none, but no /etc/hosts). NetworkMode stays none for
            # engines that ignore the flag.
            if _parse_bool(name, value):
                if extensions.get("net", "none") != "none":
                    raise InvalidArgumentError(
                        "extension 'network-disabled' excludes 'net' other than none"
                    )
                config["NetworkDisabled"] = True
                host["NetworkMode"] = "none"
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
        elif name == "pull":
            pull_policy(extensions)  # the submitter's business: nothing in the config
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
        elif name == "gpu-devices":
            # Device ids or UUIDs as nvidia-smi lists them: "0,1", "GPU-3a2b...".
            ids = [d.strip() for d in value.split(",")]
            if not all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", d) for d in ids):
                raise InvalidArgumentError(
                    f"extension 'gpu-devices' takes device ids or UUIDs, comma-separated, "
                    f"got {value!r}"
                )
            if "gpus" in extensions:
                raise InvalidArgumentError("extensions 'gpus' and 'gpu-devices' exclude each other")
            host["DeviceRequests"] = [
                {"Driver": "nvidia", "DeviceIDs": ids, "Capabilities": [["gpu"]]}
            ]
        elif name == "shm-size":
            host["ShmSize"] = parse_ram_in_bytes(value, "extension 'shm-size'")
        elif name == "ulimit":
            host["Ulimits"] = [parse_ulimit(u) for u in value.split(",")]
        elif name == "log-max-size":
            # What the engine's log keeps is what a broken output stream can be completed from.
            size = parse_ram_in_bytes(value, "extension 'log-max-size'")
            host["LogConfig"]["Config"]["max-size"] = str(size)
        elif name == "log-max-file":
            if not re.fullmatch(r"[1-9][0-9]{0,3}", value):
                raise InvalidArgumentError(
                    f"extension 'log-max-file' must be a count from 1 to 9999, got {value!r}"
                )
            host["LogConfig"]["Config"]["max-file"] = value
    policy = host.get("RestartPolicy", {}).get("Name", "no")
    if host.get("AutoRemove") and policy != "no":
        # The engine refuses this pair at create; say so before anything is made.
        raise InvalidArgumentError(f"extension 'rm' cannot be combined with restart {policy!r}")


# Attributes aiotracker cannot honour (yet, or on Docker at all): refused, never ignored.


def refuse_unsupported(template: JobTemplate, *, array: bool) -> None:
    """``UnsupportedOperationError`` for an attribute set that aiotracker would not honour.

    Kept and honoured elsewhere: ``rerunnable`` and ``accounting_id`` (recorded, shown in
    ``JobInfo.extensions``; aiotracker never reruns a job by itself); ``priority`` orders the
    launcher's queue (``max_running``).
    """
    refused = [
        ("email", bool(template.email) or template.email_on_started
         or template.email_on_terminated, "aiotracker sends no mail"),
        ("reservation_id", bool(template.reservation_id), "Docker has no reservations"),
        ("queue_name", bool(template.queue_name), "Docker has no queues"),
    ]  # fmt: skip
    for name, is_set, why in refused:
        if is_set:
            raise UnsupportedOperationError(f"{name}: {why}")
    kept = (("rerunnable", bool), ("accounting_id", str), ("priority", int))
    for name, kind in kept:  # stored in the label as DRMAA2's JSON types
        value = getattr(template, name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidArgumentError(f"{name} must be a {kind.__name__}, got {value!r}")


def _unix_ns(name: str, moment: object) -> int:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidArgumentError(f"{name} must be a timezone-aware datetime, got {moment!r}")
    return unix_ns(moment)


def timer_labels(template: JobTemplate) -> dict[str, str]:
    """The tracker's timers of a job, as labels (they outlive the tracker): DRMAA2's
    ``start_time`` (the job is made at once and started then), ``deadline_time`` (terminated
    then if it has not ended) and ``resource_limits["WALLCLOCK_TIME"]`` (terminated once it
    has run that long)."""
    labels: dict[str, str] = {}
    start = deadline = 0
    if template.start_time is not None:
        start = _unix_ns("start_time", template.start_time)
        labels[START_AT_LABEL] = str(start)
    if template.deadline_time is not None:
        deadline = _unix_ns("deadline_time", template.deadline_time)
        if start and deadline <= start:
            raise InvalidArgumentError("deadline_time must be after start_time")
        labels[DEADLINE_LABEL] = str(deadline)
    wallclock = template.resource_limits.get("WALLCLOCK_TIME")
    if wallclock is not None:
        seconds = parse_seconds("WALLCLOCK_TIME", wallclock)
        labels[WALLCLOCK_LABEL] = str(int(seconds * 1_000_000_000))
    return labels


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
    last: int = 0  # the array's last index: its task's existence means the array is whole


def create_config(
    session: str,
    template: JobTemplate,
    *,
    cwd: str,
    labels: Mapping[str, str] = {},  # read only
    submission_host: str = "",
    submitter: str = "",
    array_task: ArrayTask | None = None,
    engine: EngineInfo | None = None,
) -> dict[str, Any]:
    """The body of ``POST /containers/create`` for a job template.

    Raises ``InvalidArgumentError`` for anything Docker would refuse (a bad value, a machine
    the ``engine`` is not) and ``UnsupportedOperationError`` for what aiotracker cannot
    honour. ``cwd`` resolves relative stage-in paths (passed in so that this stays pure).
    """
    validate_image_reference(template.job_category)
    refuse_unsupported(template, array=array_task is not None)
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
    if submitter:
        all_labels[SUBMITTER_LABEL] = submitter
    if array_task is not None:
        all_labels[ARRAY_LABEL] = array_task.array_id
        all_labels[ARRAY_INDEX_LABEL] = str(array_task.index)
        all_labels[ARRAY_SIZE_LABEL] = str(array_task.size)
        all_labels[ARRAY_MAX_PARALLEL_LABEL] = str(array_task.max_parallel)
        if array_task.last:
            all_labels[ARRAY_LAST_LABEL] = str(array_task.last)
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
    apply_resources(template, host, engine)
    all_labels.update(timer_labels(template))
    if template.priority:
        all_labels[PRIORITY_LABEL] = str(template.priority)
    if host.get("AutoRemove"):
        all_labels[AUTO_REMOVE_LABEL] = "1"
    policy = host.get("RestartPolicy", {}).get("Name", "no")
    if policy != "no":
        all_labels[RESTART_LABEL] = policy
    config["HostConfig"] = host
    return config
