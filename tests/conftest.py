"""Shared test configuration: a per-run label on every container, removed at the end; the
engine the integration tests run against.

``AIOTRACKER_TEST_ENGINE=podman`` points every client of the run (the tracker's defaults, the
docker CLI, the helpers) at the Podman service of ``scripts/podman-engine.sh`` through
``DOCKER_HOST``; tests marked ``docker_only(reason)`` are then skipped, with their reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

TEST_IMAGE = os.environ.get("AIOTRACKER_TEST_IMAGE", "aiotracker/busybox:latest")
RUN_LABEL = "aiotracker.test-run"
RUN_TOKEN = os.environ.get("AIOTRACKER_TEST_RUN") or uuid.uuid4().hex[:12]
ENGINE = os.environ.get("AIOTRACKER_TEST_ENGINE", "docker")
PODMAN_SOCKET = os.environ.get("AIOTRACKER_PODMAN_SOCKET", "/run/podman-test/podman.sock")
if ENGINE not in ("docker", "podman"):
    raise RuntimeError(f"AIOTRACKER_TEST_ENGINE must be docker or podman, not {ENGINE!r}")
if ENGINE == "podman":
    os.environ["DOCKER_HOST"] = f"unix://{PODMAN_SOCKET}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
        only = item.get_closest_marker("docker_only")
        if ENGINE == "podman" and only is not None:
            reason = only.args[0] if only.args else only.kwargs.get("reason", "Docker only")
            item.add_marker(pytest.mark.skip(reason=f"Docker only: {reason}"))


def pytest_report_header() -> str:
    return f"aiotracker test engine: {ENGINE} ({os.environ.get('DOCKER_HOST') or 'default'})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove every container this run made (by label), whatever the tests left behind."""
    if shutil.which("docker") is None:
        return
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={RUN_LABEL}={RUN_TOKEN}"],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(
            ["docker", "rm", "-f", "-v", *ids], capture_output=True, check=False, timeout=120
        )
