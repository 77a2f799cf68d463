"""The engine boundary against payloads of engines that cannot run here (Docker 29, API 1.52:
no legacy ``status``/``id``/``from`` in events, newer actions and states, a minimum API of
1.44), served over HTTP by ``RecordedEngine`` to the real ``DockerEngine`` and tracker."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiotracker import DockerTracker, JobState
from aiotracker._engine.docker import DockerEngine
from aiotracker._engine.endpoint import Endpoint
from tests.unit._recorded_engine import RecordedEngine


@pytest.fixture
async def docker29() -> AsyncIterator[RecordedEngine]:
    with tempfile.TemporaryDirectory(prefix="rec.", dir="/tmp") as tmp:
        async with RecordedEngine("docker-29", str(Path(tmp) / "s")) as engine:
            yield engine


async def test_version_is_negotiated_within_the_engines_range(docker29: RecordedEngine) -> None:
    engine = DockerEngine(docker29.url)
    try:
        info = await engine.open()
    finally:
        await engine.aclose()
    assert (info.api_version, info.product, info.version) == ("v1.52", "docker", "29.0.4")
    assert info.host_name == "builder-29"
    assert set(docker29.versions_asked) == {"1.52"}  # never 1.41, which Docker 29 refuses


async def test_pinned_version_is_spoken_as_pinned(docker29: RecordedEngine) -> None:
    engine = DockerEngine(endpoint=Endpoint(docker29.url, api_version="1.41"))
    try:
        with pytest.raises(Exception, match="too old"):
            await engine.open()
    finally:
        await engine.aclose()
    assert docker29.versions_asked == ["1.41"]


async def test_payloads_of_api_1_52_are_read(docker29: RecordedEngine) -> None:
    engine = DockerEngine(docker29.url)
    try:
        await engine.open()
        [summary] = await engine.list_containers("drmaa2_jobsession=fixture")
        running = await engine.inspect(summary.container_id)
    finally:
        await engine.aclose()
    assert (summary.name, summary.state) == ("gojob", "running")
    assert summary.labels["com.example.team"] == "batch"
    assert (running.status, running.running, running.exit_code) == ("running", True, 0)
    assert running.finished_at is None  # Go's zero time
    assert running.cmd == ("sh", "-c", "sleep 1; exit 3")
    assert running.restart_policy == ""


async def test_tracker_follows_a_job_on_api_1_52(docker29: RecordedEngine) -> None:
    """Seeded from the listing, ended by an event stream without the legacy fields (and with
    exec_die and health_status events a filter would have kept away): FAILED, exit 3."""
    async with DockerTracker("fixture", docker_url=docker29.url, role="observer") as tracker:
        [job_id] = await tracker.list_jobs()
        assert await tracker.job_state(job_id) is JobState.RUNNING
        docker29.play(until="die")
        assert await tracker.wait(job_id, timeout=5) is JobState.FAILED
        info = await tracker.job_info(job_id)
        assert (info.exit_status, info.job_name) == (3, "gojob")
        assert info.finish_time is not None
        docker29.play()  # its destroy
        for _ in range(100):
            if not await tracker.list_jobs():
                break
            await asyncio.sleep(0.01)
        assert await tracker.list_jobs() == []
