"""Engine errors -> aiotracker exceptions: the policy, decided once, here.

The engine boundary says what happened (``EngineCallError`` with the engine's status, or
``EngineConnectionError``); this module says what it means for the caller, per operation:
whether it is the job's own config (``InvalidArgumentError``), the job's state
(``InvalidStateError``), an unknown job, the engine failing (``EngineError``) or the engine
being away (``DrmCommunicationError``). Callers write ``with engine_errors("start", job_id):``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._engine.base import EngineCallError, EngineConnectionError
from ._exceptions import (
    DrmCommunicationError,
    EngineError,
    ImageNotFoundError,
    ImagePullError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    JobNameInUseError,
    JobNotFoundError,
    TrackerError,
    UnsupportedOperationError,
)

# Engine 500s that are the job's own config, not the engine failing (Docker 20.10's wording).
_CONFIG_500 = (
    "unable to find user",
    "no matching entries in passwd",
    "could not select device driver",
    "unknown runtime",
    "invalid mount config",
    "invalid volume specification",
    "invalid argument",
    "error setting rlimit",
)

# Answers to a control action that mean "the job is not in a state for this" (the job moved
# between our check and the engine's): pause of an exited job, unpause of a running one, ...
_STATE_WORDS = (
    "is not running",
    "is not paused",
    "is already paused",
    "is paused",
    "is restarting",
    "cannot pause",
    "cannot unpause",
    "is stopped",
    "not running",
    # Podman 4.3's runtime, asked to pause or resume a container whose process has just
    # exited: "`/usr/bin/runc pause <id>` failed: exit status 1" (29 times in 30 when the
    # pause races the job's exit; its event says the exit ~0.1 s later).
    "runc pause",
    "runc resume",
    "crun pause",
    "crun resume",
)

_CONTROL_OPS = frozenset({"suspend", "resume", "terminate", "hold", "release", "rename", "update"})


def translate(
    exc: BaseException, *, op: str, job_id: str | None = None, image: str = ""
) -> TrackerError:
    """The most specific aiotracker error for an engine error (raise it ``from exc``)."""
    if isinstance(exc, EngineConnectionError):
        return DrmCommunicationError(f"{op}: {exc}", job_id=job_id)
    if not isinstance(exc, EngineCallError):
        return InternalError(f"{op}: {exc!r}", job_id=job_id)
    status, message = exc.status, exc.message
    lowered = message.lower()
    if status == 501:  # what this engine cannot do (Swarm: a job's stdin, a pause, ...)
        return UnsupportedOperationError(f"{op}: {message}", job_id=job_id)
    if op == "pull":
        return _pull_error(status, message, image)
    if status == 404:
        if op == "archive" and "no such container" not in lowered:
            # The container is there, the path in it is not.
            return InvalidArgumentError(f"{op}: {message}", job_id=job_id)
        if op == "create" and "image" in lowered:
            return ImageNotFoundError(
                f"image {image!r} is not present on the engine (the pull extension "
                "pulls it: docs/template.md)",
                image=image,
                job_id=job_id,
            )
        if op in ("create", "start") and (job_id is None or job_id not in message):
            # A 404 naming something else: a network, another container's namespace.
            return InvalidArgumentError(f"the engine cannot run the job: {message}", job_id=job_id)
        return JobNotFoundError(f"{op}: no such job {job_id!r}", job_id=job_id)
    if "multiple ids found" in lowered:
        return JobNotFoundError(f"{op}: ambiguous job id {job_id!r}", job_id=job_id)
    if op == "create" and status == 409:
        return JobNameInUseError(f"job name already in use: {message}", job_name="")
    if op in _CONTROL_OPS and (status in (304, 409) or any(w in lowered for w in _STATE_WORDS)):
        return InvalidStateError(f"{op}: {message}", job_id=job_id)
    if status in (304, 409):
        return InvalidStateError(f"{op}: {message}", job_id=job_id)
    if status == 400:
        return InvalidArgumentError(f"{op}: the engine refused the job: {message}", job_id=job_id)
    if status >= 500:
        if op in ("create", "start") and any(w in lowered for w in _CONFIG_500):
            return InvalidArgumentError(
                f"{op}: the engine refused the job: {message}", job_id=job_id
            )
        return EngineError(f"{op}: the engine failed ({status}): {message}", job_id=job_id)
    return InternalError(f"{op}: engine answered {status}: {message}", job_id=job_id)


# What registries (through the engine) say when they refuse credentials, and when they have
# no such image (Docker 20.10 and distribution's wording; Podman's too).
# Only the registry's words: a local failure (a permission denied on the engine's disk, a
# snapshot not found) is the engine's.
_AUTH_WORDS = ("unauthorized", "authentication required", "no basic auth credentials",
               "pull access denied", "denied: requested access", "incorrect username or password",
               "authentication failed")  # fmt: skip
_MISSING_WORDS = ("manifest unknown", "name unknown", "repository does not exist",
                  "no such image")  # fmt: skip


def _pull_error(status: int, message: str, image: str) -> TrackerError:
    lowered = message.lower()
    if status == 401 or any(w in lowered for w in _AUTH_WORDS):
        # Docker Hub answers "pull access denied ..., repository does not exist or may
        # require 'docker login'" for both: the registry will not say which.
        return ImagePullError(f"pull of {image!r} refused: {message}", image=image)
    if status == 404 or any(w in lowered for w in _MISSING_WORDS):
        return ImageNotFoundError(f"image {image!r} not found: {message}", image=image)
    if status == 400:
        return InvalidArgumentError(f"pull of {image!r}: {message}")
    return EngineError(f"pull of {image!r} failed ({status}): {message}")


@contextmanager
def engine_errors(op: str, job_id: str | None = None, *, image: str = "") -> Iterator[None]:
    """Translate the engine errors raised inside the block (``raise ... from exc``)."""
    try:
        yield
    except (EngineCallError, EngineConnectionError) as exc:
        raise translate(exc, op=op, job_id=job_id, image=image) from exc
