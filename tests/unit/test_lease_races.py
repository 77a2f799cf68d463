"""Lease and submission races found in review, each forced through the fake engine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiotracker import DockerTracker, JobNameInUseError, JobState, JobTemplate
from aiotracker._engine.base import EngineCallError, EngineConnectionError
from aiotracker._engine.fake import FakeEngine
from aiotracker._labels import LEASE_LABEL, lease_name

IMAGE = "aiotracker/busybox:latest"
SESSION = "review"


def job(**fields: Any) -> JobTemplate:
    return JobTemplate(job_category=IMAGE, remote_command="sleep", args=["9"], **fields)


async def until(predicate: Any, timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def lease_of(engine: FakeEngine, owner: str) -> str:
    for cid in list(engine._containers):
        c = engine.container(cid)
        if c.labels.get("aiotracker.lease.owner") == owner and c.status == "running":
            return cid
    raise AssertionError(f"no live lease of {owner}")


def job_starts(*clients: Any) -> list[str]:
    out = []
    for client in clients:
        for cid in client.started:
            try:
                if LEASE_LABEL in client.engine.container(cid).labels:
                    continue
            except Exception:
                continue
            out.append(cid)
    return out


# 1 -------------------------------------------------------------------------------------------
async def test_lone_tracker_retakes_its_own_lease_after_losing_it() -> None:
    """A's lease dies under it (its stdin connection broke) and no other tracker is open:
    A, an open tracker, must win the lease again and go on launching its array."""
    engine = FakeEngine()
    ca = engine.client()
    async with DockerTracker(SESSION, engine=ca) as a:
        array_id = await a.add_array_job(job(), 1, 2, max_parallel=1)
        t1, t2 = await a.list_array_jobs(array_id)
        await until(lambda: engine.container(t1).status == "running")
        engine.drop_stdin(lease_of(engine, a._rt.leases.own))
        await engine.drain()
        engine.exit(t1, 0)
        assert await a.wait(t1, timeout=1) is JobState.DONE
        # the lease's only contender is its holder: it takes the lease again and goes on
        assert await a.wait(t2, JobState.RUNNING, timeout=1) is JobState.RUNNING


# 2 -------------------------------------------------------------------------------------------
@pytest.mark.xfail(
    strict=True,
    reason="known limit (README): a start call already at the engine when its launcher's lease "
    "is lost cannot be withdrawn; Docker re-runs an exited container it is asked to start",
)
async def test_ex_holder_in_flight_start_restarts_a_finished_task() -> None:
    """A decided to start t1 (holds() was true) and its start call is slow; meanwhile A's
    lease dies and B takes it over, starts t1, t1 exits, B starts t2. A's start then lands:
    t1 runs a second time, above max_parallel=1."""
    engine = FakeEngine()
    ca, cb = engine.client(), engine.client()
    async with DockerTracker(SESSION, engine=ca) as a, DockerTracker(SESSION, engine=cb) as b:
        array_id = await a.add_array_job(job(), 1, 2, max_parallel=1)
        t1, t2 = await a.list_array_jobs(array_id)
        gate = engine.hold("start", match=t1)  # A's launcher has not run yet
        with anyio.fail_after(2):
            await gate.arrived.wait()
        owner = a._rt.leases.own
        ca.refuse.add("create")  # B, not A, wins the lease
        engine.drop_stdin(lease_of(engine, owner))
        await until(lambda: owner in b._rt.leases.held)
        ca.refuse.clear()
        await until(lambda: engine.container(t1).status == "running")
        engine.exit(t1, 0)
        await until(lambda: engine.container(t2).status == "running")
        gate.release()  # A's start of t1 lands now
        await engine.drain()
        await asyncio.sleep(0.05)
        starts = job_starts(ca, cb)
        running = [t for t in (t1, t2) if engine.container(t).status == "running"]
        assert starts.count(t1) == 1, starts
        assert len(running) <= 1


# 3 -------------------------------------------------------------------------------------------
async def test_retry_of_a_cut_short_submission_starts_it_when_a_third_tracker_took_over() -> None:
    """A dies between create and start of a keyed job. C wins A's lease; the client retries on
    B: the retry sees A's lease 'held elsewhere' and returns without starting; C never starts
    single jobs on takeover: the job stays QUEUED for ever."""
    engine = FakeEngine()
    ca, cb, cc = engine.client(), engine.client(), engine.client()
    a = DockerTracker(SESSION, engine=ca)
    await a.open()
    await a._rt.leases.ensure_own(IMAGE)
    owner = a._rt.leases.own
    async with DockerTracker(SESSION, engine=cb) as b, DockerTracker(SESSION, engine=cc) as c:
        gate = engine.hold("start")
        first = asyncio.create_task(a.add_job(job(), key="order-1"))
        with anyio.fail_after(2):
            await gate.arrived.wait()
        # A's process dies: its connection goes, and its lease's stdin with it
        ca.closed = True
        cb.refuse.add("create")  # C, not B, wins A's lease
        engine.drop_stdin(lease_of(engine, owner))
        await until(lambda: owner in c._rt.leases.held)
        cb.refuse.clear()
        job_id = await b.add_job(job(), key="order-1")
        try:
            assert await b.wait(job_id, JobState.RUNNING, timeout=1) is JobState.RUNNING
        finally:
            gate.fail(EngineConnectionError("gone"))
            await asyncio.gather(first, return_exceptions=True)
    a._rt.closed = True
    ca.closed = False
    await a.aclose()


# 4 -------------------------------------------------------------------------------------------
async def test_second_tracker_does_not_launch_a_no_lease_trackers_array() -> None:
    """A's image has no `cat`: A has no lease and its jobs no owner. B, opened later, treats
    them as 'legacy' (holds(None) is True) and launches A's array too: t2 is started by both."""
    engine = FakeEngine()
    ca, cb = engine.client(), engine.client()
    async with DockerTracker(SESSION, engine=ca) as a:
        engine.fail(
            "start",
            EngineCallError(400, 'exec: "cat": executable file not found in $PATH'),
            match=lease_name(a._rt.leases.own, SESSION),
        )
        array_id = await a.add_array_job(job(), 1, 3, max_parallel=1)
        assert a._rt.leases.held == {}
        t1, t2, _ = await a.list_array_jobs(array_id)
        await until(lambda: engine.container(t1).status == "running")
        async with DockerTracker(SESSION, engine=cb) as b:
            await engine.drain()
            engine.exit(t1, 0)
            await until(lambda: engine.container(t2).status == "running")
            await engine.drain()
            await asyncio.sleep(0.05)
            assert job_starts(cb) == []
            assert b.statistics().arrays == 0


async def test_second_tracker_does_not_write_a_no_lease_trackers_output(tmp_path: Path) -> None:
    """Same root: B, opened while A's (lease-less) job runs, 'recovers' its output: two
    writers of one partial file."""
    engine = FakeEngine()
    ca, cb = engine.client(), engine.client()
    async with DockerTracker(SESSION, engine=ca) as a:
        engine.fail(
            "start",
            EngineCallError(400, 'exec: "cat": executable file not found in $PATH'),
            match=lease_name(a._rt.leases.own, SESSION),
        )
        out = tmp_path / "out"
        job_id = await a.add_job(job(output_path=str(out)))
        await until(lambda: engine.container(job_id).status == "running")
        engine.write_output(job_id, 1, b"one ")
        async with DockerTracker(SESSION, engine=cb) as b:
            await engine.drain()
            await asyncio.sleep(0.01)
            assert b.statistics().output_streams == 0  # A writes it, alone
            engine.write_output(job_id, 1, b"two")
            engine.exit(job_id, 0)
            assert await a.wait(job_id, timeout=1) is JobState.DONE
            assert await b.wait(job_id, timeout=1) is JobState.DONE
            assert (await a.job_info(job_id)).faults == ()
            assert (await b.job_info(job_id)).faults == ()
        assert out.read_bytes() == b"one two"


# 5 -------------------------------------------------------------------------------------------
async def test_same_key_after_release_returns_the_same_job() -> None:
    """A held keyed job released (its name loses the held mark), then the same call again:
    a second job is made."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine.client()) as t:
        first = await t.add_job(job(submit_as_hold=True), key="k")
        await t.job_control(first, "release")
        again = await t.add_job(job(submit_as_hold=True), key="k")
        assert again == first


async def test_same_key_held_and_not_held_is_one_job() -> None:
    """The held mark is part of the name: key 'k' with and without submit_as_hold are two jobs."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine.client()) as t:
        first = await t.add_job(job(submit_as_hold=True), key="k")
        again = await t.add_job(job(), key="k")
        assert again == first


async def test_job_name_clash_after_release() -> None:
    """A named held job released; a second held job with that name is made (no clash)."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine.client()) as t:
        first = await t.add_job(job(job_name="build", submit_as_hold=True))
        await t.job_control(first, "release")
        with pytest.raises(JobNameInUseError):
            await t.add_job(job(job_name="build", submit_as_hold=True))


async def test_keyed_array_retry_after_a_task_was_terminated_makes_no_stray_task() -> None:
    """Task 1 of a keyed array terminated while queued (renamed ...-terminated): the retry
    creates a new task 1, finds task 2, returns the old array and leaves the new task."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine.client()) as t:
        array_id = await t.add_array_job(job(submit_as_hold=True), 1, 2, key="sweep")
        t1, _ = await t.list_array_jobs(array_id)
        await t.job_control(t1, "terminate")
        assert await t.add_array_job(job(submit_as_hold=True), 1, 2, key="sweep") == array_id
        assert len(await t.list_jobs()) == 2, await t.list_jobs()


# 6 -------------------------------------------------------------------------------------------
async def test_terminate_of_a_queued_task_from_a_non_holder_races_the_holders_launcher() -> None:
    """B terminates queued t2 (inspect says created, then rename); between the two, A (the
    holder) starts t2. B then marks a running task FAILED: the job runs on, and B reports
    FAILED for good."""
    engine = FakeEngine()
    ca, cb = engine.client(), engine.client()
    async with DockerTracker(SESSION, engine=ca) as a, DockerTracker(SESSION, engine=cb) as b:
        array_id = await a.add_array_job(job(), 1, 2, max_parallel=1)
        t1, t2 = await a.list_array_jobs(array_id)
        await until(lambda: engine.container(t1).status == "running")
        await engine.drain()
        gate = engine.hold("rename", match=t2)
        term = asyncio.create_task(b.job_control(t2, "terminate"))
        with anyio.fail_after(2):
            await gate.arrived.wait()
        engine.exit(t1, 0)
        await until(lambda: engine.container(t2).status == "running")  # A launched it
        gate.release()
        await asyncio.gather(term, return_exceptions=True)
        await engine.drain()
        await asyncio.sleep(0.02)
        status = engine.container(t2).status
        assert not (status == "running" and await b.job_state(t2) is JobState.FAILED), (
            status,
            await b.job_state(t2),
            await a.job_state(t2),
        )


# 7 -------------------------------------------------------------------------------------------
async def test_close_during_the_first_submission_leaves_no_lease_container() -> None:
    """The own lease's create is not shielded: closed while it is in flight, the engine makes
    it all the same and nobody ever removes it."""
    engine = FakeEngine()
    t = DockerTracker(SESSION, engine=engine.client(), engine_timeout=1)
    await t.open()
    gate = engine.hold("create", after=True)  # the first create: the lease's
    task = asyncio.create_task(t.add_job(job()))
    with anyio.fail_after(2):
        await gate.arrived.wait()
    closing = asyncio.create_task(t.aclose())
    await asyncio.sleep(0.01)
    gate.release()
    await closing
    await asyncio.gather(task, return_exceptions=True)
    left = [(c.name, c.status) for c in engine._containers.values()]
    assert left == []
