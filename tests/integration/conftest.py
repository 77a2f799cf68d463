"""Integration fixtures: a real engine (scripts/docker-engine.sh), a tracker per test."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from aiotracker import (
    DockerTracker,
    JobTemplate,
    MonitoringSession,
    SwarmMonitoringSession,
    SwarmTracker,
)
from aiotracker._labels import SESSION_LABEL
from tests.conftest import (
    ENGINE,
    RUN_LABEL,
    RUN_TOKEN,
    SWARM_MANAGER,
    SWARM_NODES,
    TEST_IMAGE,
    remove_on_nodes,
)


@pytest.fixture(scope="session", autouse=True)
def engine() -> None:
    """Fail (not skip) when no engine answers: CI must run these tests."""
    done = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    if done.returncode != 0:
        script = f"{ENGINE}-engine.sh"
        pytest.fail(f"no {ENGINE} engine answers: run scripts/{script}", pytrace=False)


@pytest.fixture
def session_name() -> Iterator[str]:
    """A session of its own for the test; its containers (and services) go when it ends, so
    that later tests do not pay for earlier ones (Podman's create, list and info slow down
    with every container it holds: 7-9 s per tracker at 1400)."""
    name = f"test-{RUN_TOKEN}-{uuid.uuid4().hex[:8]}"
    yield name
    remove_session(name)


def remove_session(name: str) -> None:
    label = f"label={SESSION_LABEL}={name}"
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", label],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True, check=False,
                       timeout=300)  # fmt: skip
    if ENGINE != "swarm":
        return
    services = subprocess.run(
        ["docker", "service", "ls", "-q", "--filter", label],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout.split()  # fmt: skip
    if services:
        subprocess.run(["docker", "service", "rm", *services], capture_output=True,
                       check=False, timeout=120)  # fmt: skip
    remove_on_nodes(label)


@pytest.fixture
def labels() -> dict[str, str]:
    return {RUN_LABEL: RUN_TOKEN}


def make_tracker(session_name: str, **kw: Any) -> DockerTracker:
    """A tracker of the engine under test: a SwarmTracker (with the nodes' hints) on Swarm."""
    if ENGINE == "swarm":
        kw.pop("docker_url", None)
        return SwarmTracker(session_name, docker_url=SWARM_MANAGER, node_urls=SWARM_NODES, **kw)
    return DockerTracker(session_name, **kw)


def make_monitor() -> MonitoringSession:
    """A monitoring session of the engine under test (over the swarm on Swarm)."""
    if ENGINE == "swarm":
        return SwarmMonitoringSession(SWARM_MANAGER, node_urls=SWARM_NODES)
    return MonitoringSession()


@pytest.fixture
async def tracker(session_name: str, labels: dict[str, str]) -> AsyncIterator[DockerTracker]:
    async with make_tracker(session_name, labels=labels) as t:
        yield t
        stats = t.statistics()
    assert stats.waiters == 0, "a test left a waiter behind"
    assert stats.watchers == 0, "a test left a watch or a wait over many jobs behind"


@pytest.fixture
def template() -> Callable[..., JobTemplate]:
    """A template of the test image: template("echo", "hi", output_path=...)."""

    def make(*command: str, **fields: Any) -> JobTemplate:
        if command:
            fields.setdefault("remote_command", command[0])
            fields.setdefault("args", list(command[1:]))
        fields.setdefault("job_category", TEST_IMAGE)
        return JobTemplate(**fields)

    return make
