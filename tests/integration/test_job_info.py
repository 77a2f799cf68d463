"""JobInfo against the real engine: times in order and from the engine's clock, the owner, the
CPU used, and a restarted job's current run."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from aiotracker import DockerTracker, JobInfo, JobState, JobTemplate
from aiotracker._template_label import parse_go_time
from tests.integration.test_tracker import add_running

Make = Callable[..., JobTemplate]


async def inspect(job_id: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "docker", "inspect", job_id, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    doc: dict[str, Any] = json.loads(out)[0]
    return doc


async def test_times_are_in_order_for_short_jobs(tracker: DockerTracker, template: Make) -> None:
    """50 jobs of `true`: submission <= dispatch <= finish, and the owner is who submitted."""
    sem = asyncio.Semaphore(8)

    async def one() -> JobInfo:
        async with sem:
            job_id = await tracker.add_job(template("true"))
            assert await tracker.wait(job_id, timeout=60) is JobState.DONE
            return await tracker.job_info(job_id)

    infos = await asyncio.gather(*(one() for _ in range(50)))
    for info in infos:
        assert info.submission_time is not None
        assert info.dispatch_time is not None
        assert info.finish_time is not None
        assert info.submission_time <= info.dispatch_time <= info.finish_time, info
        assert info.wallclock_time == info.finish_time - info.dispatch_time
        assert info.job_owner == getpass.getuser()


async def test_wallclock_of_a_one_second_job(tracker: DockerTracker, template: Make) -> None:
    """A `sleep 1` job's wallclock is 1 s within 0.2 s; while it runs, it counts on the
    engine's clock (never negative, never past the end)."""
    job_id = await add_running(tracker, template("sleep", "1"))
    running = await tracker.job_info(job_id)
    assert running.wallclock_time is not None
    assert timedelta(0) <= running.wallclock_time < timedelta(seconds=1.2)
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    info = await tracker.job_info(job_id)
    assert info.wallclock_time is not None
    assert abs(info.wallclock_time.total_seconds() - 1.0) <= 0.2, info.wallclock_time


async def test_cpu_time_of_a_busy_job(tracker: DockerTracker, template: Make) -> None:
    """A job that burns CPU for 1 s reports >= 0.5 s of CPU time while it still runs."""
    burn = "end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done; sleep 30"
    job_id = await tracker.add_job(template("sh", "-c", burn))
    await asyncio.sleep(2.5)
    info = await tracker.job_info(job_id)
    assert info.state is JobState.RUNNING
    assert info.cpu_time is not None
    assert info.cpu_time >= timedelta(seconds=0.5), info.cpu_time
    await tracker.job_control(job_id, "terminate")
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED
    assert (await tracker.job_info(job_id)).cpu_time is None  # the engine no longer has it


@pytest.mark.not_swarm("a restart policy is refused there: a service runs its job once")
async def test_restarted_job_shows_its_current_run(tracker: DockerTracker, template: Make) -> None:
    """A job a restart policy ran again shows the current run: no exit status or finish
    time of the previous one, and a dispatch after the previous finish."""
    job_id = await tracker.add_job(
        template("sh", "-c", "[ -e /tmp/again ] && sleep 30; touch /tmp/again; exit 3",
                 extensions={"restart": "on-failure:1"})
    )  # fmt: skip
    for _ in range(300):
        doc = await inspect(job_id)
        if doc["RestartCount"] >= 1 and doc["State"]["Status"] == "running":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the job was not run again")
    info = await tracker.job_info(job_id)
    previous_finish = parse_go_time(doc["State"]["FinishedAt"])  # the first run's
    assert info.state is JobState.RUNNING
    assert previous_finish is not None
    assert info.dispatch_time is not None
    assert info.dispatch_time > previous_finish
    assert info.exit_status is None
    assert info.finish_time is None
    assert info.wallclock_time is not None
    assert info.wallclock_time < timedelta(seconds=5)
    await tracker.job_control(job_id, "terminate")
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED
