"""Shared test configuration: a per-run label on every container, removed at the end; the
engine the integration tests run against.

``AIOTRACKER_TEST_ENGINE=podman`` points every client of the run (the tracker's defaults, the
docker CLI, the helpers) at the Podman service of ``scripts/podman-engine.sh`` through
``DOCKER_HOST``; tests marked ``docker_only(reason)`` are then skipped, with their reason.
``AIOTRACKER_TEST_ENGINE=swarm`` points them at the manager of ``scripts/swarm-engine.sh``'s
3-node swarm, and the tracker fixture is a ``SwarmTracker``; tests marked ``docker_only`` or
``not_swarm(reason)`` are skipped there (tests/integration/SWARM.md lists them).
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
SWARM_MANAGER = os.environ.get(
    "AIOTRACKER_SWARM_MANAGER", "unix:///run/aiotracker-swarm/n1/docker.sock"
)
SWARM_NODES = [
    url
    for url in os.environ.get(
        "AIOTRACKER_SWARM_NODES",
        ",".join(f"unix:///run/aiotracker-swarm/n{k}/docker.sock" for k in (1, 2, 3)),
    ).split(",")
    if url
]
if ENGINE not in ("docker", "podman", "swarm"):
    raise RuntimeError(f"AIOTRACKER_TEST_ENGINE must be docker, podman or swarm, not {ENGINE!r}")
if ENGINE == "podman":
    os.environ["DOCKER_HOST"] = f"unix://{PODMAN_SOCKET}"
if ENGINE == "swarm":
    os.environ["DOCKER_HOST"] = SWARM_MANAGER


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
        only = item.get_closest_marker("docker_only")
        if ENGINE != "docker" and only is not None:
            reason = only.args[0] if only.args else only.kwargs.get("reason", "Docker only")
            item.add_marker(pytest.mark.skip(reason=f"Docker only: {reason}"))
        not_swarm = item.get_closest_marker("not_swarm")
        if ENGINE == "swarm" and not_swarm is not None and only is None:
            reason = not_swarm.args[0] if not_swarm.args else "not on Swarm"
            item.add_marker(pytest.mark.skip(reason=f"not on Swarm: {reason}"))
        if ENGINE != "swarm" and item.get_closest_marker("swarm_only") is not None:
            item.add_marker(pytest.mark.skip(reason="Swarm only (AIOTRACKER_TEST_ENGINE=swarm)"))


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
    if ENGINE == "swarm":
        services = subprocess.run(
            ["docker", "service", "ls", "-q", "--filter", f"label={RUN_LABEL}={RUN_TOKEN}"],
            capture_output=True, text=True, check=False, timeout=60,
        ).stdout.split()  # fmt: skip
        if services:
            subprocess.run(
                ["docker", "service", "rm", *services], capture_output=True, check=False,
                timeout=120,
            )  # fmt: skip
        remove_on_nodes(f"label={RUN_LABEL}={RUN_TOKEN}")


def remove_on_nodes(label_filter: str) -> None:
    """Remove the containers matching ``label_filter`` on every swarm node: the task
    containers workers keep after their service went."""
    for node in SWARM_NODES:
        left = subprocess.run(
            ["docker", "-H", node, "ps", "-aq", "--filter", label_filter],
            capture_output=True, text=True, check=False, timeout=60,
        ).stdout.split()  # fmt: skip
        if left:
            subprocess.run(["docker", "-H", node, "rm", "-f", *left], capture_output=True,
                           check=False, timeout=300)  # fmt: skip
