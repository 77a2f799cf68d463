"""Podman's Docker-compatible API in Docker's terms (pure): what the Docker boundary
(``docker.py``) applies when ``GET /version`` names a Podman component. Measured against
Podman 4.3.1 (Debian 12); see README "Engines" and tests/integration/PODMAN.md."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .base import EngineCallError


def product(version: Mapping[str, Any]) -> str:
    """ "podman" if ``GET /version`` names a Podman component, else "docker"."""
    for component in version.get("Components") or ():
        if "podman" in str((component or {}).get("Name") or "").lower():
            return "podman"
    return "docker"


def podman_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Podman refuses the ``local`` log driver: its ``k8s-file`` keeps the size asked for
    (binary-safe, and read back by ``/logs``; it has no rotation count).

    GPUs are refused here (a 400, the job's own config): Podman's compat create accepts
    ``DeviceRequests`` and ignores them (4.3 measured here; podman#22645 is open for 4.9 and
    later), so the job would run without the GPUs it asked for.
    """
    host = dict(config.get("HostConfig") or {})
    if host.get("DeviceRequests"):
        raise EngineCallError(
            400, "Podman's Docker-compatible API ignores GPU requests (DeviceRequests): the "
            "job would run without its GPUs",
        )  # fmt: skip
    log_config = host.get("LogConfig") or {}
    if log_config.get("Type") == "local":
        size = (log_config.get("Config") or {}).get("max-size")
        host["LogConfig"] = {"Type": "k8s-file", "Config": {"max-size": size} if size else {}}
    return {**config, "HostConfig": host}


ACTION_ALIASES = {"remove": "destroy"}  # Podman names a removal "remove"
# Podman reports an exited container as "stopped" until its clean-up is done.
STATUS_ALIASES = {"stopped": "exited"}


def podman_failure(error: Exception, what: str) -> Exception:
    """Podman's answers in Docker's terms (Podman 4.3 answers all of these with a 500): a
    container gone mid-call is its 404, a state that forbids the action its 409, a create
    whose name is taken its 409 and one naming a missing network its 404, and a start refused
    for the job's own command its 400 (also when the refusal comes at the attach, which
    Podman prepares the container for)."""
    if not isinstance(error, EngineCallError):
        return error
    status, message = error.status, error.message
    lowered = message.lower()
    if lowered.endswith("no such container") or "does not exist in database" in lowered:
        status = 404
    elif what == "create" and "that name is already in use" in lowered:
        status = 409  # Docker: 409 "Conflict. The container name ... is already in use"
    elif what == "create" and "network not found" in lowered:
        status = 404  # Docker: 404 "network ... not found"
    elif "container state improper" in lowered:
        status = 409
    elif what in ("start", "attach") and any(w in lowered for w in _REFUSALS):
        status = 400
    return error if status == error.status else EngineCallError(status, message)


_REFUSALS = ("runc create failed", "oci runtime", "oci permission denied")

# Podman 4.3 reads /proc/<pid>/cgroup to answer an inspect; when the job's process exits
# between the open and the read the kernel answers ESRCH, which 4.3 returns as a 500 "read
# /proc/5312/cgroup: no such process" (podman#16383; 4.4 treats it as the exit, podman#16504).
_EXITED_MID_READ = re.compile(r"/proc/\d+/\S+: no such process")
# The pauses before the inspect is asked again: the next read finds the process gone (ENOENT,
# which 4.3 already takes as the exit) or the container marked exited.
INSPECT_RETRY_DELAYS = (0.005, 0.02, 0.1)


def exited_mid_read(error: Exception) -> bool:
    """True for Podman's 500 of a call that read the /proc of a process that exited meanwhile:
    the same read-only call asked again answers."""
    return (
        isinstance(error, EngineCallError)
        and error.status == 500
        and _EXITED_MID_READ.search(error.message) is not None
    )


# The container states Podman's list filter knows (it refuses the others, such as Docker's
# "restarting" and "dead"); "stopped" is its moment between a process's exit and clean-up.
_PODMAN_STATUSES = frozenset({"created", "running", "paused", "exited", "stopped", "removing"})


def podman_statuses(statuses: list[str]) -> list[str]:
    """Docker's ``status`` list filter values in Podman's words (those it has no word for are
    left out: no container can be in them there; empty: none can match)."""
    out = [s for s in statuses if s in _PODMAN_STATUSES]
    if "exited" in out:
        out.append("stopped")
    return out
