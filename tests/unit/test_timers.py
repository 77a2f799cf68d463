"""The tracker's timers (start time, deadline, wallclock limit) on the fake engine."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from aiotracker import (
    DockerTracker,
    InvalidArgumentError,
    JobState,
)
from aiotracker._engine.fake import FakeEngine
from tests.unit.test_races import SESSION, engine, hold_lease, job, tracker

__all__ = ["engine", "tracker"]  # the fixtures of test_races

QUEUED, RUNNING, FAILED = JobState.QUEUED, JobState.RUNNING, JobState.FAILED


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def starts(engine: FakeEngine, job_id: str) -> int:
    return engine.call_log.count(("start", job_id))


async def test_a_job_starts_at_its_start_time(engine: FakeEngine, tracker: DockerTracker) -> None:
    """Made at once, QUEUED (submission never starts a timed job), started once, then."""
    start = soon(0.5)
    job_id = await tracker.add_job(job("sleep", "9", start_time=start))
    assert tracker.cached_state(job_id) is QUEUED
    assert engine.container(job_id).status == "created"
    assert await tracker.wait(job_id, RUNNING, timeout=5) is RUNNING
    assert datetime.now(UTC) >= start
    assert starts(engine, job_id) == 1
    assert tracker._rt.timers.pending == 0


async def test_a_past_start_time_starts_at_once(tracker: DockerTracker) -> None:
    """By the timer (the one starter of a timed job), on the next turn of the loop."""
    job_id = await tracker.add_job(job("sleep", "9", start_time=soon(-60)))
    assert await tracker.wait(job_id, RUNNING, timeout=5) is RUNNING


async def test_a_deadline_terminates_a_running_job(tracker: DockerTracker) -> None:
    job_id = await tracker.add_job(job("sleep", "9", deadline_time=soon(0.2)))
    assert tracker.cached_state(job_id) is RUNNING
    assert await tracker.wait(job_id, timeout=5) is FAILED
    assert tracker._rt.timers.pending == 0  # an ended job's timers are dropped


async def test_a_deadline_before_the_start_fails_the_queued_job(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """A job whose deadline comes while it waits for its start never runs."""
    job_id = await tracker.add_job(
        job("sleep", "9", start_time=soon(0.6), deadline_time=soon(0.8), submit_as_hold=True)
    )
    assert await tracker.wait(job_id, timeout=5) is FAILED
    assert engine.container(job_id).started_at is None


async def test_a_wallclock_limit_terminates_after_that_long(tracker: DockerTracker) -> None:
    job_id = await tracker.add_job(job("sleep", "9", resource_limits={"WALLCLOCK_TIME": "0.3"}))
    assert tracker.cached_state(job_id) is RUNNING
    assert await tracker.wait(job_id, timeout=5) is FAILED


async def test_a_suspended_job_is_resumed_and_terminated_at_its_deadline(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """The engine kills no paused container: the timer resumes it first; the name keeps why."""
    job_id = await tracker.add_job(job("sleep", "9", deadline_time=soon(0.3)))
    await tracker.job_control(job_id, "suspend")
    assert await tracker.wait(job_id, timeout=5) is FAILED
    assert (await tracker.job_info(job_id)).sub_state == "deadline"


async def test_a_released_job_waits_for_its_start_time(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    job_id = await tracker.add_job(job("sleep", "9", start_time=soon(1), submit_as_hold=True))
    await tracker.job_control(job_id, "release")
    assert tracker.cached_state(job_id) is QUEUED
    assert engine.container(job_id).status == "created"
    assert await tracker.wait(job_id, RUNNING, timeout=5) is RUNNING
    assert starts(engine, job_id) == 1


async def test_timers_survive_the_tracker_and_only_the_lease_holder_acts(
    engine: FakeEngine,
) -> None:
    """The start time is in the labels: a tracker opened later starts the job; an observer
    on the session never does."""
    async with DockerTracker(SESSION, engine=engine.client()) as first:
        await hold_lease(first)
        job_id = await first.add_job(job("sleep", "9", start_time=soon(0.5)))
    async with DockerTracker(SESSION, engine=engine.client(), role="observer") as watcher:
        async with DockerTracker(SESSION, engine=engine.client()) as second:
            assert await second.wait(job_id, RUNNING, timeout=5) is RUNNING
        assert await watcher.wait(job_id, RUNNING, timeout=5) is RUNNING
    assert starts(engine, job_id) == 1


async def test_a_tracker_opened_after_the_start_time_starts_the_job_once(
    engine: FakeEngine,
) -> None:
    """Its timer fires at once; the re-arming at opening (and a re-sync) start nothing twice."""
    async with DockerTracker(SESSION, engine=engine.client()) as first:
        await hold_lease(first)
        job_id = await first.add_job(job("sleep", "9", start_time=soon(0.2)))
        await first.aclose()  # before its start time
    await asyncio.sleep(0.4)
    async with DockerTracker(SESSION, engine=engine.client()) as second:
        assert await second.wait(job_id, RUNNING, timeout=5) is RUNNING
        second._rt.timers.rescan()
        second._rt.sync.request_resync()
        await asyncio.sleep(0.2)
    assert starts(engine, job_id) == 1


async def test_an_observer_alone_never_starts_a_timed_job(engine: FakeEngine) -> None:
    async with DockerTracker(SESSION, engine=engine.client()) as first:
        await hold_lease(first)
        job_id = await first.add_job(job("sleep", "9", start_time=soon(0.2)))
    async with DockerTracker(SESSION, engine=engine.client(), role="observer") as watcher:
        with pytest.raises(TimeoutError):
            await watcher.wait(job_id, RUNNING, timeout=0.6)
    assert engine.container(job_id).status == "created"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"start_time": datetime(2030, 1, 1)}, InvalidArgumentError),  # naive
        ({"start_time": soon(10), "deadline_time": soon(5)}, InvalidArgumentError),
        ({"resource_limits": {"WALLCLOCK_TIME": "0"}}, InvalidArgumentError),
    ],
    ids=["naive", "deadline-before-start", "zero-wallclock"],
)
async def test_bad_times_are_refused(
    tracker: DockerTracker, fields: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await tracker.add_job(job("true", **fields))


async def test_an_array_starts_at_its_start_time_in_index_order(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """Every task is made at once and waits QUEUED; at the start time the launcher starts
    them in index order within max_parallel."""
    start = soon(0.4)
    array_id = await tracker.add_array_job(job("sleep", "9", start_time=start), 1, 3, 1, 2)
    tasks = await tracker.list_array_jobs(array_id)
    await asyncio.sleep(0.1)
    assert [tracker.cached_state(t) for t in tasks] == [QUEUED] * 3
    assert await tracker.wait(tasks[1], RUNNING, timeout=5) is RUNNING
    assert datetime.now(UTC) >= start
    assert [tracker.cached_state(t) for t in tasks] == [RUNNING, RUNNING, QUEUED]
    assert [t for op, t in engine.call_log if op == "start" and t in tasks] == tasks[:2]
    engine.exit(tasks[0], 0)
    assert await tracker.wait(tasks[2], RUNNING, timeout=5) is RUNNING


async def test_a_held_job_released_after_its_start_time_starts(tracker: DockerTracker) -> None:
    """Held past its start time, it stays held; its release starts it (by its timer)."""
    job_id = await tracker.add_job(job("sleep", "9", start_time=soon(0.1), submit_as_hold=True))
    await asyncio.sleep(0.3)  # its start time passes while it is held
    assert tracker.cached_state(job_id) is JobState.QUEUED_HELD
    await tracker.job_control(job_id, "release")
    assert await tracker.wait(job_id, RUNNING, timeout=1) is RUNNING
