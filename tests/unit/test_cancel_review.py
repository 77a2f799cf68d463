"""Cancellation and clean-up of the public calls, each interleaving forced on the fake engine:
a call cancelled at an await point, or in flight while the tracker closes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import anyio
import pytest

from aiotracker import DockerTracker, JobState, TrackerClosedError, TrackerError
from aiotracker._engine.fake import FakeEngine
from aiotracker._engine.faults import Gate
from tests.unit.test_races import SESSION, foreign_job, hold_lease, job, until


async def opened(engine: FakeEngine) -> DockerTracker:
    tracker = DockerTracker(SESSION, engine=engine, engine_timeout=1)
    await tracker.open()
    await hold_lease(tracker)
    return tracker


async def close_while_held(
    tracker: DockerTracker, gate: Gate, call: Coroutine[Any, Any, Any], error: type[Exception]
) -> None:
    """Run ``call`` until the engine call held at ``gate`` arrives, close the tracker, let the
    held call answer: ``call`` must then raise ``error`` (not wait forever)."""
    running = asyncio.create_task(call)
    with anyio.fail_after(2):
        await gate.arrived.wait()
    await tracker.aclose()
    gate.release()
    with anyio.fail_after(2), pytest.raises(error):
        await running


# -- a wait whose lookup is in flight when the tracker closes -------------------------------


async def test_wait_by_prefix_in_flight_at_aclose_fails_with_tracker_closed() -> None:
    """``wait`` on an id prefix asks the engine (an inspect); the tracker closes while the
    answer is on its way: the wait must fail with TrackerClosedError, not register a waiter
    nobody will ever wake."""
    engine = FakeEngine()
    tracker = await opened(engine)
    job_id = await tracker.add_job(job("sleep", "9"))
    gate = engine.hold("inspect", match=job_id, after=True)  # acted, answer not returned yet
    await close_while_held(tracker, gate, tracker.wait(job_id[:12]), TrackerClosedError)
    assert tracker.statistics().waiters == 0


@pytest.mark.parametrize("call", ["wait_any", "wait_all", "as_completed"])
async def test_many_waits_in_flight_at_aclose_fail_with_tracker_closed(call: str) -> None:
    """The same for the waits over many jobs: their lookup of an unknown id is in flight when
    the tracker closes."""
    engine = FakeEngine()
    tracker = await opened(engine)
    job_id = await tracker.add_job(job("sleep", "9"))
    gate = engine.hold("inspect", match=job_id, after=True)

    async def run() -> object:
        if call == "as_completed":
            async with tracker.as_completed([job_id[:12]]) as completed:
                return [x async for x in completed]
        return await getattr(tracker, call)([job_id[:12]])

    await close_while_held(tracker, gate, run(), TrackerClosedError)
    assert tracker.statistics().watchers == 0


async def test_stream_output_of_a_held_job_in_flight_at_aclose_ends() -> None:
    """``stream_output`` of a job not started yet waits for its start; its lookup (an id
    prefix) in flight when the tracker closes: the reader must end, not wait forever."""
    engine = FakeEngine()
    tracker = await opened(engine)
    job_id = await tracker.add_job(job("sleep", "9", submit_as_hold=True))
    gate = engine.hold("inspect", match=job_id, after=True)

    async def read() -> list[bytes]:
        async with tracker.stream_output(job_id[:12]) as output:
            return [chunk async for chunk in output]

    await close_while_held(tracker, gate, read(), TrackerError)
    assert tracker.statistics().waiters == 0


async def test_watch_first_read_after_aclose_fails_with_tracker_closed() -> None:
    """A watch made while the tracker was open and first read after it closed must end with
    TrackerClosedError, not wait forever for changes that will never come."""
    engine = FakeEngine()
    tracker = await opened(engine)
    changes = tracker.watch()
    await tracker.aclose()

    async def read() -> list[object]:
        async with changes:
            return [change async for change in changes]

    with anyio.fail_after(2), pytest.raises(TrackerClosedError):
        await read()
    assert tracker.statistics().watchers == 0


# -- a reader cancelled while its relay is starting -----------------------------------------


async def test_stream_output_cancelled_before_the_relay_is_ready_leaves_no_relay() -> None:
    """``stream_output`` of a running job with no output file starts a shared relay (an
    attach); a reader cancelled while the relay reads the log back (before it joined) must not
    leave the relay, its task and its attach, running on with no reader."""
    engine = FakeEngine()
    tracker = await opened(engine)
    try:
        job_id = await tracker.add_job(job("sleep", "9"))
        assert await tracker.wait(job_id, JobState.RUNNING, timeout=2) is JobState.RUNNING
        await until(lambda: tracker.statistics().tasks == 0)
        gate = engine.hold("read_logs", match=job_id)

        async def read() -> None:
            async with tracker.stream_output(job_id) as output:
                async for _ in output:
                    pass

        with anyio.move_on_after(2) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await gate.arrived.wait()
                tg.cancel_scope.cancel()  # the reader gives up (a timeout, say)
        assert not scope.cancelled_caught
        gate.release()
        await engine.drain()
        await until(  # the job runs on: only the reader's leaving may stop the relay
            lambda: (
                (tracker._rt.watch.relays, engine.open_attaches, tracker.statistics().tasks)
                == (0, 0, 0)
            )
        )
    finally:
        await tracker.aclose()


# -- a call that reaches the task group after it ended, while the tracker still closes -------


async def test_stream_output_in_flight_while_aclose_removes_leases_raises_a_tracker_error() -> None:
    """The tracker's task group ends before ``aclose`` removes its finished leases; a reader
    whose lookup returns then must fail with the library's error (the tracker closed), not
    anyio's RuntimeError about an inactive task group, and leave no relay behind."""
    engine = FakeEngine()
    tracker = await opened(engine)  # its lease has no unfinished job: removed at the close
    other = await foreign_job(engine)
    await engine.start(other)
    assert await tracker.wait(other, JobState.RUNNING, timeout=2) is JobState.RUNNING
    looked_up = engine.hold("inspect", match=other, after=True)

    async def read() -> list[bytes]:
        async with tracker.stream_output(other[:12]) as output:
            return [chunk async for chunk in output]

    reading = asyncio.create_task(read())
    with anyio.fail_after(2):
        await looked_up.arrived.wait()
    removing = engine.hold("remove")  # the lease's removal at the close
    closing = asyncio.create_task(tracker.aclose())
    with anyio.fail_after(2):
        await removing.arrived.wait()
    looked_up.release()
    try:
        with anyio.fail_after(2), pytest.raises(TrackerError):
            await reading
    finally:
        removing.release()
        await closing
    assert tracker._rt.watch.relays == 0


# -- a second aclose while the first is still closing ----------------------------------------


async def test_second_aclose_returns_only_once_the_tracker_is_closed() -> None:
    """``aclose`` called again while a first call still closes (leaving ``async with`` while
    another task closes the tracker, say) must not return before the background work has
    stopped and the engine's connections are closed."""
    engine = FakeEngine()
    tracker = await opened(engine)  # its lease is removed at the close: held there
    removing = engine.hold("remove")
    first = asyncio.create_task(tracker.aclose())
    with anyio.fail_after(2):
        await removing.arrived.wait()
    second = asyncio.create_task(tracker.aclose())
    await asyncio.sleep(0.05)
    returned_early = second.done()
    removing.release()
    with anyio.fail_after(2):
        await first
        await second
    assert not returned_early, "the second aclose returned while the tracker was still closing"
    assert engine.closed
