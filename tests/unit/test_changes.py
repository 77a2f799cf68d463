"""watch, wait_any, wait_all and as_completed, driven through the fake engine."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aiotracker import (
    DockerTracker,
    InvalidArgumentError,
    InvalidStateError,
    JobState,
    StateChange,
    TrackerClosedError,
    WaitTimeoutError,
)
from aiotracker._cache import Change, StateCache
from aiotracker._changes import ChangeFeed
from aiotracker._engine.base import ContainerEvent
from aiotracker._engine.fake import FakeEngine
from aiotracker._labels import MANAGED_LABEL
from tests.unit.test_races import engine, job, tracker, until

__all__ = ["engine", "tracker"]  # the fixtures of test_races

DONE, FAILED, RUNNING = JobState.DONE, JobState.FAILED, JobState.RUNNING


async def started(tracker: DockerTracker, n: int = 1) -> list[str]:
    ids = [await tracker.add_job(job("sleep", "100")) for _ in range(n)]
    for job_id in ids:
        assert await tracker.wait(job_id, RUNNING, timeout=2) is RUNNING
    return ids


async def test_watch_sees_one_jobs_changes_in_order(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    [job_id] = await started(tracker)
    seen: list[StateChange] = []
    async with tracker.watch([job_id]) as changes:
        await tracker.job_control(job_id, "suspend")
        await tracker.job_control(job_id, "resume")
        engine.exit(job_id, 0)
        async for change in changes:
            seen.append(change)
            if change.new_state is DONE:
                break
    assert [(c.old_state, c.new_state) for c in seen] == [
        (RUNNING, JobState.SUSPENDED), (JobState.SUSPENDED, RUNNING), (RUNNING, DONE),
    ]  # fmt: skip
    assert seen[-1].exit_status == 0
    assert tracker._rt.changes.watchers == 0


async def test_initial_states_come_first_and_nothing_falls_between(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    a, b = await started(tracker, 2)
    async with tracker.watch(initial=True, states=None) as changes:
        engine.exit(a, 3)
        first = [await changes.__anext__(), await changes.__anext__()]
        assert {(c.job_id, c.old_state, c.new_state) for c in first} == {
            (a, None, RUNNING), (b, None, RUNNING),
        }  # fmt: skip
        end = await changes.__anext__()
    assert (end.job_id, end.new_state, end.exit_status) == (a, FAILED, 3)


async def test_a_watcher_that_never_reads_loses_changes_and_is_told(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    ids = await started(tracker, 5)
    async with tracker.watch(max_buffer=2) as sleepy:
        # Registration happens when the iteration starts: start it, then stop reading.
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleepy.__anext__)
            await anyio.sleep(0.01)
            for job_id in ids:
                engine.exit(job_id, 0)
            with anyio.fail_after(0.5):  # a wait on another job is not held back
                assert await tracker.wait(ids[-1], timeout=1) is DONE
        got = [await sleepy.__anext__() for _ in range(3)]
    # Five changes: the first read took one, two waited in the buffer, two were dropped.
    assert [c.new_state for c in got[:2]] == [DONE, DONE]
    assert (got[2].job_id, got[2].lost) == ("", 2)
    assert tracker._rt.changes.watchers == 0


async def test_wait_any_returns_the_first_to_end(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    ids = await started(tracker, 3)
    async with anyio.create_task_group() as tg:
        result: list[tuple[str, JobState]] = []

        async def wait() -> None:
            result.append(await tracker.wait_any(ids))

        tg.start_soon(wait)
        await anyio.sleep(0.01)
        engine.exit(ids[1], 1)
    assert result == [(ids[1], FAILED)]
    assert await tracker.wait_any(ids) == (ids[1], FAILED)  # already ended: at once
    assert await tracker.wait_any(ids, RUNNING) in {(ids[0], RUNNING), (ids[2], RUNNING)}


async def test_wait_any_refuses_no_jobs_and_fails_when_none_can_get_there(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    with pytest.raises(InvalidArgumentError):
        await tracker.wait_any([])
    ids = await started(tracker, 2)
    for job_id in ids:
        engine.exit(job_id, 1)
    with pytest.raises(InvalidStateError):
        await tracker.wait_any(ids, DONE)
    with pytest.raises(WaitTimeoutError):
        await tracker.wait_any(await started(tracker), timeout=0.05)


async def test_wait_all_on_50_jobs(engine: FakeEngine, tracker: DockerTracker) -> None:
    ids = await started(tracker, 50)
    async with anyio.create_task_group() as tg:
        result: list[dict[str, JobState]] = []

        async def wait() -> None:
            result.append(await tracker.wait_all(ids))

        tg.start_soon(wait)
        for i, job_id in enumerate(random.sample(ids, len(ids))):
            engine.exit(job_id, i % 2)
            await anyio.lowlevel.checkpoint()
    assert set(result[0]) == set(ids)
    assert set(result[0].values()) == {DONE, FAILED}


async def test_as_completed_yields_each_of_1000_jobs_once(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    ids = [await tracker.add_job(job("sleep", "100")) for _ in range(1000)]
    await until(lambda: all(tracker._cache.require(j).state is RUNNING for j in ids), 10)
    early = ids[:10]
    for job_id in early:
        engine.exit(job_id, 0)
    await until(lambda: all(tracker._cache.require(j).state is DONE for j in early))
    order = random.sample(ids[10:], len(ids) - 10)
    seen: list[str] = []
    async with tracker.as_completed(ids) as completed:
        async for job_id, state in completed:
            assert state is DONE
            seen.append(job_id)
            if len(seen) == 10:  # the ended ones came first; now end the rest
                assert set(seen) == set(early)
                for other in order:
                    engine.exit(other, 0)
    assert sorted(seen) == sorted(ids)
    assert tracker._rt.changes.watchers == 0


async def test_a_watch_registers_when_its_block_is_entered(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """Changes from the ``async with`` on are kept, read or not; closing a watch that was
    never read leaves nothing registered."""
    [job_id] = await started(tracker)
    async with tracker.watch([job_id]) as changes:
        assert tracker._rt.changes.watchers == 1
        engine.exit(job_id, 0)
        await until(lambda: tracker.cached_state(job_id) is DONE)
        with anyio.fail_after(2):
            change = await changes.__anext__()
    assert (change.old_state, change.new_state) == (RUNNING, DONE)
    async with tracker.watch():
        assert tracker._rt.changes.watchers == 1
    assert tracker._rt.changes.watchers == 0


async def test_events_of_confirmed_actions_never_move_a_job_back(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """A suspend and a resume confirmed before their events arrive: the late pause event
    does not publish SUSPENDED again (a watcher sees each change once, in order)."""
    [job_id] = await started(tracker)
    async with tracker.watch([job_id]) as changes:
        reconnect = engine.hold("stream_events")  # the events wait until both actions returned
        engine.cut_streams()
        await tracker.job_control(job_id, "suspend")
        await tracker.job_control(job_id, "resume")
        assert [a for a, _ in tracker._cache.require(job_id).awaited or ()] == ["pause", "unpause"]
        await tracker._sync.refresh(job_id)  # an inspect in between forgets nothing
        reconnect.release()
        engine.exit(job_id, 0)
        seen = []
        with anyio.fail_after(2):
            async for change in changes:
                seen.append((change.old_state, change.new_state))
                if change.new_state is DONE:
                    break
    assert seen == [(RUNNING, JobState.SUSPENDED), (JobState.SUSPENDED, RUNNING), (RUNNING, DONE)]


async def test_an_action_whose_event_came_first_awaits_nothing(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """When the pause event is applied before the suspend returns, the event made the
    change: nothing is left to absorb, so a later pause by someone else still counts."""
    [job_id] = await started(tracker)
    gate = engine.hold("pause", match=job_id, after=True)  # paused, the call not returned
    suspend = asyncio.create_task(tracker.job_control(job_id, "suspend"))
    await gate.arrived.wait()
    await until(lambda: tracker.cached_state(job_id) is JobState.SUSPENDED)  # by the event
    gate.release()
    await suspend
    assert not tracker._cache.require(job_id).awaited
    await engine.unpause(job_id)  # someone else: events only
    await until(lambda: tracker.cached_state(job_id) is RUNNING)
    await engine.pause(job_id)
    await until(lambda: tracker.cached_state(job_id) is JobState.SUSPENDED)


async def test_someone_elses_event_after_the_actions_own_decides(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """Our pause's event is applied before the call returns, then someone else resumes the
    job: the late answer to our suspend does not make it SUSPENDED again."""
    [job_id] = await started(tracker)
    gate = engine.hold("pause", match=job_id, after=True)
    suspend = asyncio.create_task(tracker.job_control(job_id, "suspend"))
    await gate.arrived.wait()
    await until(lambda: tracker.cached_state(job_id) is JobState.SUSPENDED)
    await engine.unpause(job_id)  # someone else
    await until(lambda: tracker.cached_state(job_id) is RUNNING)
    gate.release()
    await suspend
    assert tracker.cached_state(job_id) is RUNNING
    assert not tracker._cache.require(job_id).awaited


def test_an_awaited_event_that_never_came_expires() -> None:
    """An action's event is awaited for a while only: a later event of the same kind (a
    pause by someone else, long after) is applied."""
    cache = StateCache()
    labels = {MANAGED_LABEL: "1"}
    cache.apply(ContainerEvent("c1", "create", 1, labels))
    cache.apply(ContainerEvent("c1", "start", 2))
    cache.set_state("c1", JobState.SUSPENDED, "pause", until_ns=10)
    cache.apply(ContainerEvent("c1", "unpause", 20))  # ours never came; this one is later
    assert cache.require("c1").state is RUNNING
    cache.apply(ContainerEvent("c1", "pause", 30))
    assert cache.require("c1").state is JobState.SUSPENDED


def test_a_wait_over_many_jobs_holds_one_entry_per_job() -> None:
    """A burst of changes (a job RUNNING, DONE, then deleted, before the waiter reads) leaves
    the first wanted or terminal state of each job: nothing to overflow, nothing misread."""
    cache = StateCache()
    for job_id in ("a", "b"):
        cache.add(job_id, JobState.QUEUED)
    feed = ChangeFeed(cache, lambda: datetime.now(UTC))
    waiter = feed.completions(["a", "b"], frozenset({RUNNING}))
    burst = [
        Change(j, None, s, old) for j in ("a", "b")
        for old, s in ((JobState.QUEUED, RUNNING), (RUNNING, DONE), (DONE, None))
    ]  # fmt: skip
    feed.on_changes(burst * 3)
    assert waiter.take() == [("a", RUNNING), ("b", RUNNING)]
    feed.unregister(waiter)
    assert feed.watchers == 0


async def test_waits_over_many_jobs_fail_when_the_tracker_closes(engine: FakeEngine) -> None:
    """wait_any, wait_all, as_completed and watch end with TrackerClosedError at the close
    (a watch after what it holds), never hang."""
    tracker = DockerTracker("closing", engine=engine)
    await tracker.open()
    [job_id] = await started(tracker)
    results: dict[str, BaseException] = {}

    async def catch(name: str, coro: Any) -> None:
        try:
            await coro
        except BaseException as exc:  # what each ended with is the point
            results[name] = exc

    async def drain(stream: Any) -> None:
        async with stream as items:
            async for _ in items:
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(catch, "wait_any", tracker.wait_any([job_id]))
        tg.start_soon(catch, "wait_all", tracker.wait_all([job_id]))
        tg.start_soon(catch, "as_completed", drain(tracker.as_completed([job_id])))
        tg.start_soon(catch, "watch", drain(tracker.watch()))
        await until(lambda: tracker._rt.changes.watchers == 4)
        with anyio.fail_after(2):
            await tracker.aclose()
    assert {name: type(exc) for name, exc in results.items()} == dict.fromkeys(
        ("wait_any", "wait_all", "as_completed", "watch"), TrackerClosedError
    )


async def test_a_late_unrelated_event_does_not_undo_a_hold(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """A late ``create`` applied while a hold's rename is under way (Podman delivers events
    up to 0.4 s late), the rename's own event not yet come: the hold is published when the
    rename returns, and the launcher never starts the held task."""
    array_id = await tracker.add_array_job(job("sleep", "9"), 1, 2, max_parallel=1)
    t1, t2 = await tracker.list_array_jobs(array_id)
    await tracker.wait(t1, RUNNING, timeout=2)
    gate = engine.hold("rename", match=t2)
    hold = asyncio.create_task(tracker.job_control(t2, "hold"))
    await gate.arrived.wait()
    engine.emit(t2, "create", name=engine.container(t2).name)  # late, and says nothing new
    await until(lambda: tracker._cache.require(t2).seq > 1)
    reconnect = engine.hold("stream_events")  # the rename's event comes after the answer
    engine.cut_streams()
    gate.release()
    await hold
    assert tracker.cached_state(t2) is JobState.QUEUED_HELD
    reconnect.release()
    engine.exit(t1, 0)
    await tracker.wait(t1, timeout=2)
    await until(lambda: tracker.statistics().connected)
    assert tracker.cached_state(t2) is JobState.QUEUED_HELD
    assert engine.container(t2).status == "created"
