"""Engine errors that escaped to the wrong place, each forced through the fake engine: a raw
engine error reaching the user, a background task stopped by one job's fault, or the tracker
stopped by an engine answer about one call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiotracker import DockerTracker, JobState, TrackerError
from aiotracker._engine.base import EngineCallError, EngineConnectionError
from aiotracker._engine.fake import FakeEngine
from aiotracker._labels import container_name
from tests.unit.test_races import job, until

IMAGE = "aiotracker/busybox:latest"
SESSION = "escapes"


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def tracker(engine: FakeEngine) -> AsyncIterator[DockerTracker]:
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2) as t:
        yield t


async def test_lease_cleanup_failure_is_not_a_raw_engine_error(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """The first submission makes the tracker's lease; its stdin attach fails (a 500) and
    the removal of the half-made lease fails too (the engine went away): the caller gets an
    error of aiotracker's tree (or the job), never the boundary's private
    EngineConnectionError."""
    engine.fail("hold_stdin", EngineCallError(500, "attach failed"))
    engine.fail("remove", EngineConnectionError("connection reset"))
    try:
        job_id = await tracker.add_job(job("sleep", "9"))
    except TrackerError:
        return
    assert await tracker.job_state(job_id) is JobState.RUNNING


async def test_event_stream_refused_on_reconnect_does_not_stop_the_tracker(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """The event stream breaks and the engine answers the reconnect with an error status (a
    daemon restarting, a proxy's 502/503): the feed retries, the tracker stays open and its
    jobs' ends are still seen."""
    job_id = await tracker.add_job(job("sleep", "9"))
    engine.fail("stream_events", EngineCallError(503, "the daemon is restarting"))
    engine.cut_streams()
    await until(lambda: engine.calls["stream_events"] >= 3)
    assert tracker.is_open
    engine.exit(job_id, 0)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE


async def test_event_stream_refused_at_opening_is_a_tracker_error(engine: FakeEngine) -> None:
    """An engine that answers the first event subscription with an error status fails the
    opening with aiotracker's error, not the boundary's EngineCallError."""
    engine.fail("stream_events", EngineCallError(500, "events: internal error"))
    with pytest.raises(TrackerError):
        await DockerTracker(SESSION, engine=engine).open()


def lease_of(engine: FakeEngine, owner: str) -> str:
    for cid in list(engine._containers):
        container = engine.container(cid)
        if (
            container.labels.get("aiotracker.lease.owner") == owner
            and container.status == "running"
        ):
            return cid
    raise AssertionError(f"no live lease of {owner}")


async def test_dead_lease_whose_image_is_gone_does_not_fail_the_opening(
    engine: FakeEngine,
) -> None:
    """A tracker died with an array's tasks queued, and their image has since been removed
    from the engine: the next tracker cannot make the dead lease again (its image is gone),
    which concerns those jobs only; the tracker opens, and its own jobs run."""
    other = "aiotracker/other:latest"
    engine.images.add(other)
    ca = engine.client()
    a = DockerTracker(SESSION, engine=ca)
    await a.open()
    array_id = await a.add_array_job(job("sleep", "9", job_category=other), 1, 3, max_parallel=1)
    tasks = await a.list_array_jobs(array_id)
    await until(lambda: engine.container(tasks[0]).status == "running")
    ca.closed = True  # a dies, and its lease with it
    engine.drop_stdin(lease_of(engine, a._rt.leases.own))
    engine.images.discard(other)  # docker rmi -f
    async with DockerTracker(SESSION, engine=engine.client()) as b:
        assert await b.job_state(tasks[1]) is JobState.QUEUED
        job_id = await b.add_job(job("sleep", "9"))
        assert await b.job_state(job_id) is JobState.RUNNING
    a._rt.closed = True
    ca.closed = False
    await a.aclose()


async def test_taken_over_output_survives_a_failed_inspect(
    engine: FakeEngine, tmp_path: Path
) -> None:
    """A tracker takes a dead tracker's lease over; the inspect that starts the recovery of a
    running job's output fails once (a 500): it is asked again and the output is completed
    (before, the recovery died with the inspect: the file cut short, and no fault said so)."""
    ca, cb = engine.client(), engine.client()
    a = DockerTracker(SESSION, engine=ca)
    await a.open()
    async with DockerTracker(SESSION, engine=cb) as b:
        first = await a.add_job(job("sleep", "9"))
        out = tmp_path / "out"
        job_id = await a.add_job(job("sleep", "9", output_path=str(out)))
        engine.write_output(job_id, 1, b"first ")
        await engine.drain()
        owner = a._rt.leases.own
        engine.fail("inspect", EngineCallError(500, "transient"), match=job_id)
        ca.closed = True  # a dies, and its lease with it
        engine.drop_stdin(lease_of(engine, owner))
        await until(lambda: owner in b._rt.leases.held)
        await until(lambda: b.statistics().tasks <= 1)
        await asyncio.sleep(0.05)
        engine.write_output(job_id, 1, b"half")
        engine.exit(job_id, 0)
        engine.exit(first, 0)
        assert await b.wait(job_id, timeout=2) is JobState.DONE
        info = await b.job_info(job_id)
        assert out.read_bytes() == b"first half", info.faults  # retried: recovered whole
        assert info.faults == ()
    a._rt.closed = True
    ca.closed = False
    await a.aclose()


async def test_takeover_survives_a_failed_inspect(engine: FakeEngine) -> None:
    """A tracker sees a dead tracker's lease die with an array's tasks queued; the first
    inspect of its takeover fails (a 500): it tries again, takes the lease over and
    launches the rest (before, the takeover was dropped until some later re-sync)."""
    ca, cb = engine.client(), engine.client()
    a = DockerTracker(SESSION, engine=ca)
    await a.open()
    async with DockerTracker(SESSION, engine=cb) as b:
        array_id = await a.add_array_job(job("sleep", "9"), 1, 2, max_parallel=1)
        tasks = await b.list_array_jobs(array_id)
        await until(lambda: engine.container(tasks[0]).status == "running")
        owner = a._rt.leases.own
        ca.closed = True  # a dies, and its lease with it
        engine.fail("inspect", EngineCallError(500, "transient"))
        engine.drop_stdin(lease_of(engine, owner))
        await until(lambda: owner in b._rt.leases.held)
        engine.exit(tasks[0], 0)
        assert await b.wait(tasks[1], JobState.RUNNING, timeout=2) is JobState.RUNNING
        engine.exit(tasks[1], 0)
        assert await b.wait(tasks[1], timeout=2) is JobState.DONE
    a._rt.closed = True
    ca.closed = False
    await a.aclose()


@pytest.mark.parametrize("max_running", [0, 2])
async def test_launcher_backs_off_a_task_whose_start_is_refused_409(max_running: int) -> None:
    """The engine answers an array task's start with a 409 (Docker: "container is marked
    for removal", Podman: "container state improper") for a while: the launcher backs off,
    as for any engine failure, instead of asking again at once in a tight loop (thousands of
    starts a second), and starts it once the engine lets it."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine, max_running=max_running) as t:
        await t._rt.leases.ensure_own(IMAGE)
        refusal = EngineCallError(409, "container is marked for removal and cannot be started")
        engine.fail("start", refusal, times=10**6, match=container_name("arr-1", SESSION))
        array_id = await t.add_array_job(job("sleep", "9", job_name="arr"), 1, 2)
        await asyncio.sleep(0.3)
        assert engine.calls["start"] < 30, engine.calls["start"]
        engine._faults._rules.clear()  # the engine lets it start now
        first, second = await t.list_array_jobs(array_id)
        assert await t.wait(first, JobState.RUNNING, timeout=8) is JobState.RUNNING
        assert await t.wait(second, JobState.RUNNING, timeout=2) is JobState.RUNNING


async def test_single_job_whose_start_is_refused_409_stays_queued_and_starts_later() -> None:
    """Under ``max_running`` a single job's start answered with a 409 for a while: the job
    stays in the queue (backing off, as an array task does) and starts once the engine lets
    it, instead of being dropped from the queue and left QUEUED for ever."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine, max_running=1) as t:
        await t._rt.leases.ensure_own(IMAGE)
        refusal = EngineCallError(409, "container is marked for removal and cannot be started")
        engine.fail("start", refusal, times=10**6, match=container_name("single", SESSION))
        job_id = await t.add_job(job("sleep", "9", job_name="single"))
        await asyncio.sleep(0.3)
        assert 1 <= engine.calls["start"] < 30, engine.calls["start"]
        assert await t.job_state(job_id) is JobState.QUEUED
        engine._faults._rules.clear()  # the engine lets it start now
        assert await t.wait(job_id, JobState.RUNNING, timeout=8) is JobState.RUNNING
