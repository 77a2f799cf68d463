"""The tracker's timers against the real engine (issue 14): DRMAA2's start and deadline
times and the WALLCLOCK_TIME limit, also across closing and reopening the tracker."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiotracker import DockerTracker, JobState, JobTemplate
from tests.integration.conftest import make_tracker

Make = Callable[..., JobTemplate]


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_a_start_time_starts_the_job_then_and_not_before(
    tracker: DockerTracker, template: Make
) -> None:
    """A job 2 s ahead is made at once (QUEUED) and started at its start time."""
    start = soon(2)
    job_id = await tracker.add_job(template("true", start_time=start))
    assert await tracker.job_state(job_id) is JobState.QUEUED
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    info = await tracker.job_info(job_id)
    assert info.dispatch_time is not None
    assert info.dispatch_time >= start - timedelta(milliseconds=50)  # the engine's clock
    assert info.dispatch_time < start + timedelta(seconds=3)


async def test_a_start_time_survives_closing_the_tracker(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """The start time lives in the job's labels: a tracker opened later starts it then."""
    start = soon(3)
    async with make_tracker(session_name, labels=labels) as first:
        job_id = await first.add_job(template("true", start_time=start))
    async with make_tracker(session_name, labels=labels) as second:
        assert await second.job_state(job_id) is JobState.QUEUED
        assert await second.wait(job_id, timeout=60) is JobState.DONE
        info = await second.job_info(job_id)
    assert info.dispatch_time is not None
    assert info.dispatch_time >= start - timedelta(milliseconds=50)


async def test_a_deadline_terminates_a_running_job(tracker: DockerTracker, template: Make) -> None:
    """sleep 60 with a deadline 2 s ahead ends FAILED at the deadline, sub-state deadline."""
    began = time.monotonic()
    job_id = await tracker.add_job(template("sleep", "60", deadline_time=soon(2)))
    assert await tracker.wait(job_id, timeout=60) is JobState.FAILED
    took = time.monotonic() - began
    assert 1.8 < took < 8, took
    info = await tracker.job_info(job_id)
    assert info.sub_state == "deadline"
    assert info.exit_status == 137


async def test_a_wallclock_limit_ends_sleep_60_in_2_to_3_s(
    tracker: DockerTracker, template: Make
) -> None:
    """WALLCLOCK_TIME 2 ends `sleep 60` 2-3 s after its start, sub-state wallclock."""
    job_id = await tracker.add_job(template("sleep", "60", resource_limits={"WALLCLOCK_TIME": "2"}))
    assert await tracker.wait(job_id, timeout=60) is JobState.FAILED
    info = await tracker.job_info(job_id)
    assert info.wallclock_time is not None
    assert timedelta(seconds=2) <= info.wallclock_time < timedelta(seconds=3), info.wallclock_time
    assert info.sub_state == "wallclock"


async def test_a_job_that_ends_in_time_is_left_alone(
    tracker: DockerTracker, template: Make
) -> None:
    """A job that ends before its deadline and wallclock limit is DONE, untouched."""
    job_id = await tracker.add_job(
        template("true", deadline_time=soon(30), resource_limits={"WALLCLOCK_TIME": "30"})
    )
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    assert (await tracker.job_info(job_id)).sub_state == "exited"
