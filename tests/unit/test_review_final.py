"""Review of 517dede..HEAD: interleavings forced on the fake engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio

from aiotracker import DockerTracker, JobState
from aiotracker._engine.fake import FakeEngine
from tests.unit.test_error_escapes import SESSION, lease_of
from tests.unit.test_races import job, until


async def test_take_output_does_not_release_the_end_its_launched_copier_holds(
    tmp_path: Path,
) -> None:
    """b takes a dead tracker's array over; _take_output's inspect of the queued task 2 is
    answered only after b's launcher has attached task 2's copier (its start held): the
    task is still QUEUED in the cache, so _take_output finds nothing to recover and calls
    output_done, clearing the output_pending its copier set. The task's end must still wait
    for its copier (here completing the output from the log)."""
    engine = FakeEngine()
    ca, cb = engine.client(), engine.client()
    a = DockerTracker(SESSION, engine=ca)
    await a.open()
    out = tmp_path / "out"
    async with DockerTracker(SESSION, engine=cb) as b:
        taken = asyncio.Event()
        take_output = b._rt._take_output

        async def traced(job_id: str) -> None:
            try:
                await take_output(job_id)
            finally:
                if job_id == tasks[1]:
                    taken.set()

        b._rt._take_output = traced  # type: ignore[method-assign]
        array_id = await a.add_array_job(
            job("sleep", "9", output_path=str(out)), 1, 2, max_parallel=1
        )
        tasks = await b.list_array_jobs(array_id)
        await until(lambda: engine.container(tasks[0]).status == "running")
        await until(lambda: tasks[1] in b._rt.cache)
        await engine.drain()
        looked_up = engine.hold("inspect", match=tasks[1], after=True)  # _take_output's
        owner = a._rt.leases.own
        ca.closed = True  # a dies, and its lease with it
        engine.drop_stdin(lease_of(engine, owner))
        with anyio.fail_after(2):
            await looked_up.arrived.wait()
        assert not taken.is_set()
        starting = engine.hold("start", match=tasks[1])  # attached, not started yet
        engine.exit(tasks[0], 0)  # the launcher's turn for task 2
        with anyio.fail_after(2):
            await starting.arrived.wait()
        looked_up.release()
        with anyio.fail_after(2):
            await taken.wait()
        starting.release()
        assert await b.wait(tasks[1], JobState.RUNNING, timeout=2) is JobState.RUNNING
        reading = engine.hold("read_logs", match=tasks[1])  # the copier's completion
        asked = engine.hold("inspect", match=tasks[1], after=True)  # did it exit? not yet
        engine.cut_attach(tasks[1])  # its stream ends early: completed from the log
        engine.write_output(tasks[1], 1, b"hello")
        with anyio.fail_after(3):
            await asked.arrived.wait()
        asked.release()
        await engine.drain()
        engine.exit(tasks[1], 0)
        with anyio.fail_after(3):
            await reading.arrived.wait()  # the die is known: the copier completes the file
        await engine.drain()
        # The end waits for the output file: not DONE while its copier still writes it.
        assert await b.job_state(tasks[1]) is JobState.RUNNING
        reading.release()
        assert await b.wait(tasks[1], timeout=2) is JobState.DONE
        assert out.read_bytes().endswith(b"hello")
    a._rt.closed = True
    ca.closed = False
    await a.aclose()


async def test_a_single_job_refused_409_does_not_hold_up_the_queue() -> None:
    """Under ``max_running`` the engine answers a single job's start with a 409 (for as long
    as it likes): that concerns that job only (docs/semantics.md, "Faults stay with their
    job"); a job queued after it, with a free slot, still starts."""
    from aiotracker._engine.base import EngineCallError
    from aiotracker._labels import container_name

    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine, max_running=2) as t:
        await t._rt.leases.ensure_own("aiotracker/busybox:latest")
        refusal = EngineCallError(409, "container is marked for removal and cannot be started")
        engine.fail("start", refusal, times=10**6, match=container_name("stuck", SESSION))
        stuck = await t.add_job(job("sleep", "9", job_name="stuck"))
        other = await t.add_job(job("sleep", "9", job_name="other"))
        assert await t.wait(other, JobState.RUNNING, timeout=2) is JobState.RUNNING
        assert await t.job_state(stuck) is JobState.QUEUED
        engine._faults._rules.clear()  # the engine lets it start now
        assert await t.wait(stuck, JobState.RUNNING, timeout=8) is JobState.RUNNING


async def test_an_array_task_refused_409_does_not_hold_up_the_queue() -> None:
    """The same for an array task under ``max_running``: while the engine answers its start
    with a 409, a single job queued after it, with a free slot, still starts."""
    from aiotracker._engine.base import EngineCallError
    from aiotracker._labels import container_name

    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine, max_running=2) as t:
        await t._rt.leases.ensure_own("aiotracker/busybox:latest")
        refusal = EngineCallError(409, "container is marked for removal and cannot be started")
        engine.fail("start", refusal, times=10**6, match=container_name("arr-1", SESSION))
        array_id = await t.add_array_job(job("sleep", "9", job_name="arr"), 1, 1)
        other = await t.add_job(job("sleep", "9", job_name="other"))
        assert await t.wait(other, JobState.RUNNING, timeout=2) is JobState.RUNNING
        engine._faults._rules.clear()  # the engine lets it start now
        (task,) = await t.list_array_jobs(array_id)
        assert await t.wait(task, JobState.RUNNING, timeout=8) is JobState.RUNNING
