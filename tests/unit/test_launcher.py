"""The launcher's queue with ``max_running``: priorities, submission order, arrays among
single jobs, the bound, holds and terminations of queued jobs, a takeover, through the fake
engine (each job's exit chosen by the test). The real engine's side is in
tests/integration/test_priorities.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from aiotracker import DockerTracker, InvalidArgumentError, JobState
from aiotracker._cache import ACTIVE, Job
from aiotracker._engine.fake import FakeEngine
from aiotracker._launcher import pick
from tests.unit.test_races import SESSION, engine, hold_lease, job, until

__all__ = ["engine"]


@pytest.fixture
async def bounded(engine: FakeEngine) -> AsyncIterator[DockerTracker]:
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2, max_running=2) as t:
        await hold_lease(t)
        yield t
    assert t.statistics().waiters == 0


def starts(engine: FakeEngine, ids: list[str]) -> list[str]:
    """The jobs among ``ids`` in the order the engine was asked to start them."""
    return [target for op, target in engine.call_log if op == "start" and target in ids]


def running(tracker: DockerTracker, ids: list[str]) -> list[str]:
    return [i for i in ids if tracker.cached_state(i) in ACTIVE]


def test_pick_ranks_priority_then_submission_then_index() -> None:
    """Higher priority first; equal priority: submitted first; within an array: index."""
    a = Job("a", JobState.QUEUED, priority=1, order_ns=30)
    b = Job("b", JobState.QUEUED, priority=5, order_ns=20)
    c = Job("c", JobState.QUEUED, priority=5, order_ns=10, index=2)
    d = Job("d", JobState.QUEUED, priority=5, order_ns=10, index=1)
    assert pick([a, b, c, d]) is d
    assert pick([a, b, c]) is c
    assert pick([a, b]) is b
    assert pick([]) is None


def test_max_running_must_be_a_count() -> None:
    for bad in (-1, True, 1.5):
        with pytest.raises(InvalidArgumentError, match="max_running"):
            DockerTracker(SESSION, engine=FakeEngine(), max_running=bad)  # type: ignore[arg-type]


async def test_queued_jobs_start_by_priority_then_submission(
    bounded: DockerTracker, engine: FakeEngine
) -> None:
    """Two jobs fill the bound; five more wait QUEUED; as slots free they start highest
    priority first, equal priorities in submission order, never more than two at once."""
    blockers = [await bounded.add_job(job("sh")) for _ in range(2)]
    await until(lambda: running(bounded, blockers) == blockers)
    queued = [await bounded.add_job(job("sh", priority=p)) for p in (0, 5, 1, 5, -2)]
    await engine.drain()
    assert [bounded.cached_state(i) for i in queued] == [JobState.QUEUED] * 5
    everyone = blockers + queued
    left = set(everyone)
    while left:
        await until(lambda: len(running(bounded, everyone)) == min(2, len(left)))
        await engine.drain()
        assert len(running(bounded, everyone)) <= 2
        oldest = next(i for i in starts(engine, everyone) if i in left)
        engine.exit(oldest, 0)
        left.discard(oldest)
        await until(lambda i=oldest: bounded.cached_state(i) is JobState.DONE)
    assert starts(engine, queued) == [queued[1], queued[3], queued[2], queued[0], queued[4]]


async def test_an_array_competes_with_single_jobs_by_its_priority(
    engine: FakeEngine,
) -> None:
    """max_running=1: a priority-5 job, then the priority-3 array's tasks in index order,
    then the priority-0 job, whatever the submission order."""
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2, max_running=1) as t:
        await hold_lease(t)
        blocker = await t.add_job(job("sh"))
        await until(lambda: t.cached_state(blocker) is JobState.RUNNING)
        low = await t.add_job(job("sh"))
        array_id = await t.add_array_job(job("sh", priority=3), 1, 3)
        high = await t.add_job(job("sh", priority=5))
        tasks = await t.list_array_jobs(array_id)
        order = [blocker, high, *tasks, low]
        for current in order:
            await until(lambda i=current: t.cached_state(i) is JobState.RUNNING)
            assert running(t, order) == [current]
            engine.exit(current, 0)
        await until(lambda: t.cached_state(low) is JobState.DONE)
        assert starts(engine, order) == order


async def test_an_arrays_own_bound_still_holds(engine: FakeEngine) -> None:
    """max_running=3 and an array with max_parallel=1: its tasks run one at a time while a
    single job takes another slot."""
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2, max_running=3) as t:
        await hold_lease(t)
        array_id = await t.add_array_job(job("sh"), 1, 3, max_parallel=1)
        single = await t.add_job(job("sh"))
        tasks = await t.list_array_jobs(array_id)
        await until(lambda: t.cached_state(single) is JobState.RUNNING)
        for task in tasks:
            await until(lambda i=task: t.cached_state(i) is JobState.RUNNING)
            assert running(t, tasks) == [task]
            engine.exit(task, 0)
        await t.wait_array(array_id, timeout=2)


async def test_held_and_terminated_queued_jobs_are_passed_over(
    bounded: DockerTracker, engine: FakeEngine
) -> None:
    """A queued job held is passed over until released (then queued again, at its rank); a
    queued job terminated never starts."""
    blockers = [await bounded.add_job(job("sh")) for _ in range(2)]
    await until(lambda: running(bounded, blockers) == blockers)
    held = await bounded.add_job(job("sh", priority=9))
    gone = await bounded.add_job(job("sh", priority=8))
    plain = await bounded.add_job(job("sh"))
    await bounded.job_control(held, "hold")
    await bounded.job_control(gone, "terminate")
    assert bounded.cached_state(held) is JobState.QUEUED_HELD
    engine.exit(blockers[0], 0)
    await until(lambda: bounded.cached_state(plain) is JobState.RUNNING)
    assert bounded.cached_state(gone) is JobState.FAILED
    await bounded.job_control(held, "release")
    engine.exit(blockers[1], 0)
    await until(lambda: bounded.cached_state(held) is JobState.RUNNING)
    assert starts(engine, [held, gone, plain]) == [plain, held]


async def test_a_held_submission_waits_for_its_release_and_its_turn(
    bounded: DockerTracker, engine: FakeEngine
) -> None:
    """submit_as_hold: released while the bound is full, it starts when a slot frees."""
    blockers = [await bounded.add_job(job("sh")) for _ in range(2)]
    held = await bounded.add_job(job("sh", submit_as_hold=True))
    await until(lambda: running(bounded, blockers) == blockers)
    await bounded.job_control(held, "release")
    await engine.drain()
    assert bounded.cached_state(held) is JobState.QUEUED
    engine.exit(blockers[0], 0)
    assert await bounded.wait(held, JobState.RUNNING, timeout=2) is JobState.RUNNING


async def test_a_timed_job_joins_the_queue_at_its_time(
    bounded: DockerTracker, engine: FakeEngine
) -> None:
    """A start time that has passed queues the job; it starts when a slot frees."""
    blockers = [await bounded.add_job(job("sh")) for _ in range(2)]
    await until(lambda: running(bounded, blockers) == blockers)
    past = datetime.now(UTC) - timedelta(seconds=1)
    timed = await bounded.add_job(job("sh", start_time=past))
    await engine.drain()
    assert bounded.cached_state(timed) is JobState.QUEUED
    engine.exit(blockers[1], 0)
    assert await bounded.wait(timed, JobState.RUNNING, timeout=2) is JobState.RUNNING


async def test_a_tracker_that_takes_over_starts_the_queue_by_priority(
    engine: FakeEngine,
) -> None:
    """The first tracker closes with jobs queued behind its bound; the next one (bound 1)
    takes its lease over and starts them highest priority first, one at a time."""
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2, max_running=1) as first:
        await hold_lease(first)
        blocker = await first.add_job(job("sh"))
        await until(lambda: first.cached_state(blocker) is JobState.RUNNING)
        queued = [await first.add_job(job("sh", priority=p)) for p in (1, 7, 4)]
    engine.exit(blocker, 0)
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2, max_running=1) as second:
        for current in (queued[1], queued[2], queued[0]):
            await until(lambda i=current: second.cached_state(i) is JobState.RUNNING)
            assert running(second, queued) == [current]
            engine.exit(current, 0)
        await until(lambda: second.cached_state(queued[0]) is JobState.DONE)
    assert starts(engine, queued) == [queued[1], queued[2], queued[0]]


async def test_array_bound_counts_started_jobs_a_scheduler_has_not_placed() -> None:
    """On an engine whose start only schedules (Swarm), a started task takes its slot while it
    waits for a node (QUEUED still): the bound holds before any task runs, and the next task
    starts when one ends, in index order."""
    engine = FakeEngine(scheduling=True)
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2) as tracker:
        await hold_lease(tracker)
        array_id = await tracker.add_array_job(job("sleep", "9"), 1, 4, max_parallel=2)
        tasks = await tracker.list_array_jobs(array_id)
        await until(lambda: len(starts(engine, tasks)) == 2)
        await engine.drain()
        assert starts(engine, tasks) == tasks[:2]
        assert [tracker.cached_state(t) for t in tasks] == [JobState.QUEUED] * 4
        engine.place(tasks[1])
        engine.exit(tasks[1], 0)
        await until(lambda: len(starts(engine, tasks)) == 3)
        await engine.drain()
        assert starts(engine, tasks) == tasks[:3]
        for task in tasks[:3]:
            if task != tasks[1]:
                engine.place(task)
                engine.exit(task, 0)
        await until(lambda: len(starts(engine, tasks)) == 4)
        engine.place(tasks[3])
        engine.exit(tasks[3], 0)
        states = await tracker.wait_array(array_id, timeout=2)
        assert set(states.values()) == {JobState.DONE}
