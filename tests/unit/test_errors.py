"""Engine errors as aiotracker's exceptions (``_errors.translate``): the cases where the
engine's words decide."""

from __future__ import annotations

import pytest

from aiotracker import EngineError, InvalidStateError, UnsupportedOperationError
from aiotracker._engine.base import EngineCallError
from aiotracker._errors import translate

PODMAN_PAUSE = "`/usr/bin/runc pause 2f86cf09e1` failed: exit status 1"


@pytest.mark.parametrize(
    ("op", "status", "message", "expected"),
    [
        # A pause racing the job's exit: Docker's words and Podman's runtime's.
        ("suspend", 500, "Cannot pause container 2f86: container 2f86 is not running",
         InvalidStateError),
        ("suspend", 500, PODMAN_PAUSE, InvalidStateError),
        ("resume", 500, "`/usr/bin/crun resume 2f86` failed: exit status 1", InvalidStateError),
        # The same words outside a control action are the engine's failure.
        ("create", 500, PODMAN_PAUSE, EngineError),
        ("suspend", 500, "open /sys/fs/cgroup/freezer: read-only file system", EngineError),
        ("suspend", 501, "Docker Swarm cannot run suspend here", UnsupportedOperationError),
    ],
)  # fmt: skip
def test_translate(op: str, status: int, message: str, expected: type[Exception]) -> None:
    error = translate(EngineCallError(status, message), op=op, job_id="2f86")
    assert type(error) is expected
