"""Leases through the fake engine: one launcher per array across trackers, and takeover when
the holder goes (killed, or closed with work left)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiotracker import DockerTracker, JobState, JobTemplate
from aiotracker._engine.base import EngineCallError
from aiotracker._engine.fake import FakeEngine
from aiotracker._engine.fake_client import FakeClient
from aiotracker._labels import LEASE_LABEL, OWNER_LABEL, SESSION_LABEL

IMAGE = "aiotracker/busybox:latest"
SESSION = "leases"


def job(**fields: Any) -> JobTemplate:
    return JobTemplate(job_category=IMAGE, remote_command="sleep", args=["9"], **fields)


async def until(predicate: Any, timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110  # a test's view of several trackers
            await asyncio.sleep(0.001)


def job_starts(*clients: FakeClient) -> list[str]:
    return [c for client in clients for c in client.started if not is_lease(client, c)]


def is_lease(client: FakeClient, cid: str) -> bool:
    try:
        return LEASE_LABEL in client.engine.container(cid).labels
    except Exception:  # removed since: only leases are removed here
        return True


def lease_of(engine: FakeEngine, owner: str) -> str:
    for cid in list(engine._containers):
        labels = engine.container(cid).labels
        if (
            labels.get("aiotracker.lease.owner") == owner
            and engine.container(cid).status == "running"
        ):
            return cid
    raise AssertionError(f"no live lease of {owner}")


def running(engine: FakeEngine, ids: list[str]) -> list[str]:
    return [i for i in ids if engine.container(i).status == "running"]


async def test_only_the_creator_launches_an_array(tmp_path: Path) -> None:
    """Three trackers on one session: the array's tasks are started once each, in index order,
    by its creator alone, never more than max_parallel at once."""
    engine = FakeEngine()
    clients = [engine.client() for _ in range(3)]
    async with (
        DockerTracker(SESSION, engine=clients[0]) as a,
        DockerTracker(SESSION, engine=clients[1]) as b,
    ):
        array_id = await a.add_array_job(job(), 1, 6, max_parallel=2)
        tasks = await a.list_array_jobs(array_id)
        c = DockerTracker(SESSION, engine=clients[2])  # opened on the array: leaves it to a
        await c.open()
        await until(lambda: len(running(engine, tasks)) == 2)
        for task in tasks:
            await until(lambda task=task: engine.container(task).status == "running")
            assert len(running(engine, tasks)) <= 2
            engine.exit(task, 0)
            for t in (a, b, c):
                assert await t.wait(task, timeout=1) is JobState.DONE
        await c.aclose()
    assert job_starts(*clients[1:]) == []
    assert job_starts(clients[0]) == tasks


async def test_killed_holder_is_taken_over(tmp_path: Path) -> None:
    """The launching tracker dies (its stdin hold vanishes, its client stops answering): another
    tracker takes its lease over, finishes the array in order within the bound, and completes
    the running task's output from the log."""
    engine = FakeEngine()
    ca, cb = engine.client(), engine.client()
    a = DockerTracker(SESSION, engine=ca)
    await a.open()
    async with DockerTracker(SESSION, engine=cb) as b:
        template = job(output_path=str(tmp_path / "out-$DRMAA2_INDEX$"))
        array_id = await a.add_array_job(template, 1, 4, max_parallel=2)
        tasks = await b.list_array_jobs(array_id)
        await until(lambda: len(running(engine, tasks)) == 2)
        engine.write_output(tasks[0], 1, b"first ")
        owner = a._rt.leases.own
        # a dies: its connection goes, and with it the stdin that kept its lease alive
        ca.closed = True
        engine.drop_stdin(lease_of(engine, owner))
        await until(lambda: owner in b._rt.leases.held)
        engine.write_output(tasks[0], 1, b"half")
        for task in tasks:
            await until(lambda task=task: engine.container(task).status == "running")
            assert len(running(engine, tasks)) <= 2
            engine.exit(task, 0)
            assert await b.wait(task, timeout=1) is JobState.DONE
        assert (tmp_path / "out-1").read_bytes() == b"first half"
    starts = job_starts(ca, cb)
    assert starts == tasks  # each once, in index order
    assert job_starts(ca) == tasks[:2]
    a._rt.closed = True  # what was left of it
    ca.closed = False
    await a.aclose()


async def test_next_tracker_takes_over_a_lease_let_go(tmp_path: Path) -> None:
    """A tracker closed with tasks queued lets its lease go; the next one opened takes it over
    and launches the rest."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine.client()) as a:
        array_id = await a.add_array_job(job(), 1, 3, max_parallel=1)
        tasks = await a.list_array_jobs(array_id)
        await until(lambda: engine.container(tasks[0]).status == "running")
    await engine.drain()
    engine.exit(tasks[0], 0)
    async with DockerTracker(SESSION, engine=engine.client()) as b:
        for task in tasks[1:]:
            assert await b.wait(task, JobState.RUNNING, timeout=1) is JobState.RUNNING
            engine.exit(task, 0)
        assert set((await b.wait_array(array_id, timeout=1)).values()) == {JobState.DONE}


async def test_finished_leases_are_removed_and_observers_take_nothing() -> None:
    """A lease with nothing left to do is removed at closing; an observer never takes one."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine.client(), role="observer") as observer:
        async with DockerTracker(SESSION, engine=engine.client()) as a:
            job_id = await a.add_job(job())
            engine.exit(job_id, 0)
            assert await a.wait(job_id, timeout=1) is JobState.DONE
        assert await engine.list_containers(LEASE_LABEL) == []
        assert len(await engine.list_containers(SESSION_LABEL)) == 1  # the job stays, alone
        assert observer._rt.leases.held == {}


async def test_next_tracker_leaves_the_lease_of_finished_jobs_alone() -> None:
    """A tracker opened on a session whose jobs all ended under a tracker now closed takes no
    lease over: nothing is left to launch or write (each opening made a lease container, per
    owner, and warned of a takeover)."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine.client()) as a:
        job_id = await a.add_job(job())
        engine.exit(job_id, 0)
        assert await a.wait(job_id, timeout=1) is JobState.DONE
    b_client = engine.client()
    async with DockerTracker(SESSION, engine=b_client) as b:
        assert await b.job_state(job_id) is JobState.DONE
        assert b._rt.leases.takeovers == 0
    assert [c for c in b_client.started if is_lease(b_client, c)] == []


async def test_a_lease_let_go_is_removed_once_its_jobs_ended() -> None:
    """A tracker closed with a job running leaves its lease ended; the job ends while no
    tracker is open: the next one opened removes that lease instead of taking it over."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine.client()) as a:
        job_id = await a.add_job(job())
        assert await a.wait(job_id, JobState.RUNNING, timeout=1) is JobState.RUNNING
    await engine.drain()
    assert len(await engine.list_containers(LEASE_LABEL)) == 1
    engine.exit(job_id, 0)
    async with DockerTracker(SESSION, engine=engine.client()) as b:
        assert await b.job_state(job_id) is JobState.DONE
        await until(lambda: not engine._containers.keys() - {job_id})
        assert b._rt.leases.takeovers == 0


@pytest.mark.parametrize("seed", range(3))
async def test_racing_trackers_take_a_dead_lease_once(seed: int) -> None:
    """Three trackers see one lease die; exactly one takes it over."""
    engine = FakeEngine()
    clients = [engine.client() for _ in range(4)]
    dead = DockerTracker(SESSION, engine=clients[0])
    await dead.open()
    async with (
        DockerTracker(SESSION, engine=clients[1]) as b,
        DockerTracker(SESSION, engine=clients[2]) as c,
        DockerTracker(SESSION, engine=clients[3]) as d,
    ):
        array_id = await dead.add_array_job(job(), 1, 3, max_parallel=1)
        tasks = await b.list_array_jobs(array_id)
        await until(lambda: engine.container(tasks[0]).status == "running")
        owner = dead._rt.leases.own
        clients[0].closed = True
        engine.drop_stdin(lease_of(engine, owner))
        await until(lambda: any(owner in t._rt.leases.held for t in (b, c, d)))
        await engine.drain()
        assert sum(owner in t._rt.leases.held for t in (b, c, d)) == 1
        for task in tasks:
            await until(lambda task=task: engine.container(task).status == "running")
            engine.exit(task, 0)
            assert await b.wait(task, timeout=1) is JobState.DONE
    assert job_starts(*clients) == tasks
    dead._rt.closed = True
    clients[0].closed = False
    await dead.aclose()


async def test_holder_that_loses_its_lease_stops_launching() -> None:
    """A live tracker whose lease dies under it (its stdin connection dropped) stops launching;
    the tracker that took the lease over launches the rest, each task once, within the bound."""
    engine = FakeEngine()
    ca, cb = engine.client(), engine.client()
    async with DockerTracker(SESSION, engine=ca) as a, DockerTracker(SESSION, engine=cb) as b:
        array_id = await a.add_array_job(job(), 1, 4, max_parallel=1)
        tasks = await a.list_array_jobs(array_id)
        await until(lambda: engine.container(tasks[0]).status == "running")
        owner = a._rt.leases.own
        ca.refuse.add("create")  # a cannot win its lease back: b takes it
        engine.drop_stdin(lease_of(engine, owner))
        await until(lambda: owner in b._rt.leases.held and owner not in a._rt.leases.held)
        ca.refuse.clear()
        for task in tasks:
            await until(lambda task=task: engine.container(task).status == "running")
            assert len(running(engine, tasks)) <= 1
            engine.exit(task, 0)
            assert await a.wait(task, timeout=1) is JobState.DONE
    assert job_starts(ca, cb) == tasks  # each once, in order
    assert job_starts(ca) == tasks[:1]


async def test_observer_opened_on_a_dead_lease_takes_nothing(tmp_path: Path) -> None:
    """An observer opened while a dead lease has a running job with output and queued tasks
    never takes the lease, writes the output or starts a task."""
    engine = FakeEngine()
    ca, co = engine.client(), engine.client()
    a = DockerTracker(SESSION, engine=ca)
    await a.open()
    template = job(output_path=str(tmp_path / "out-$DRMAA2_INDEX$"))
    array_id = await a.add_array_job(template, 1, 3, max_parallel=1)
    tasks = await a.list_array_jobs(array_id)
    await until(lambda: engine.container(tasks[0]).status == "running")
    ca.closed = True  # a dies, and its lease with it
    engine.drop_stdin(lease_of(engine, a._rt.leases.own))
    async with DockerTracker(SESSION, engine=co, role="observer") as observer:
        engine.write_output(tasks[0], 1, b"x")
        engine.exit(tasks[0], 0)
        assert await observer.wait(tasks[0], timeout=1) is JobState.DONE
        await engine.drain()
        await asyncio.sleep(0.05)
        assert co.started == []
        assert observer.statistics().output_streams == 0
        assert observer._rt.leases.held == {}
        assert await observer.job_state(tasks[1]) is JobState.QUEUED
    a._rt.closed = True
    ca.closed = False
    await a.aclose()


async def test_own_lease_made_again_while_another_opening_removes_the_dead_one() -> None:
    """A tracker whose lease ended makes it again at its next submission while another
    tracker's opening is removing the dead one (Docker answers the second removal with 409
    "removal ... already in progress"): the lease is made once the first removal is done, and
    the job carries it (it was made with no owner, after a warning: no takeover)."""
    engine = FakeEngine()
    async with DockerTracker(SESSION, engine=engine.client()) as a:
        first = await a.add_job(job())
        engine.exit(first, 0)
        assert await a.wait(first, timeout=1) is JobState.DONE
        own = a._rt.leases.own
        dead = lease_of(engine, own)
        engine.exit(dead, 137)  # a's lease ends under it; a stays open
        await until(lambda: own not in a._rt.leases.held)
        removing = engine.hold("remove", match=dead)  # b's opening clears it
        async with DockerTracker(SESSION, engine=engine.client()):
            with anyio.fail_after(2):
                await removing.arrived.wait()
            busy = EngineCallError(409, f"removal of container {dead} is already in progress")
            engine.fail("remove", busy, match=dead)
            second = await a.add_job(job())
            removing.release()
            assert engine.container(second).labels.get(OWNER_LABEL) == own
            assert lease_of(engine, own) != dead
