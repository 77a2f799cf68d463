"""Several trackers on one session, through the fake engine: per-session job names,
idempotent submission, cancelled submissions, observers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from aiotracker import (
    DockerTracker,
    InvalidArgumentError,
    JobNameInUseError,
    JobNotFoundError,
    JobState,
    JobTemplate,
    UnsupportedOperationError,
)
from aiotracker._engine.fake import FakeEngine
from aiotracker._labels import LEASE_LABEL, SESSION_LABEL

IMAGE = "aiotracker/busybox:latest"


def job(*command: str, **fields: Any) -> JobTemplate:
    fields.setdefault("job_category", IMAGE)
    fields.setdefault("remote_command", command[0] if command else "sleep")
    fields.setdefault("args", list(command[1:]) if command else ["9"])
    return JobTemplate(**fields)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def tracker(engine: FakeEngine) -> AsyncIterator[DockerTracker]:
    async with DockerTracker("s1", engine=engine, engine_timeout=1) as t:
        yield t


async def containers(engine: FakeEngine, session: str) -> list[str]:
    summaries = await engine.list_containers(f"{SESSION_LABEL}={session}")
    return [s.container_id for s in summaries if LEASE_LABEL not in s.labels]


def job_starts(engine: FakeEngine) -> list[str]:
    """The containers started that are jobs (lease names start with "aiotracker-lease")."""
    return [
        t for op, t in engine.call_log
        if op == "start" and t is not None and not is_lease(engine, t)
    ]  # fmt: skip


def is_lease(engine: FakeEngine, cid: str) -> bool:
    try:
        return LEASE_LABEL in engine.container(cid).labels
    except Exception:  # removed since: only leases are removed here
        return True


async def test_job_names_are_per_session(engine: FakeEngine, tracker: DockerTracker) -> None:
    """Two sessions may use one job name; within a session it is JobNameInUseError naming
    the existing job; find_job finds a job by its name."""
    first = await tracker.add_job(job(job_name="build"))
    async with DockerTracker("s2", engine=engine.client()) as other:
        second = await other.add_job(job(job_name="build"))
        assert await other.find_job("build") == second
    assert first != second
    with pytest.raises(JobNameInUseError) as err:
        await tracker.add_job(job(job_name="build"))
    assert err.value.job_id == first
    assert err.value.job_name == "build"
    assert isinstance(err.value, InvalidArgumentError)
    assert await tracker.find_job("build") == first
    assert (await tracker.job_info(first)).job_name == "build"
    with pytest.raises(JobNotFoundError):
        await tracker.find_job("nothing")


async def test_same_key_returns_the_same_job(engine: FakeEngine, tracker: DockerTracker) -> None:
    """A second add_job with the key returns the first job; another key makes another."""
    first = await tracker.add_job(job(), key="order-42")
    assert await tracker.add_job(job(), key="order-42") == first
    async with DockerTracker("s1", engine=engine.client()) as second_tracker:
        assert await second_tracker.add_job(job(), key="order-42") == first
    assert await tracker.add_job(job(), key="order-43") != first
    assert len(await containers(engine, "s1")) == 2
    assert len(job_starts(engine)) == 2


async def test_same_key_returns_the_same_array(engine: FakeEngine, tracker: DockerTracker) -> None:
    """add_array_job with a key is idempotent too."""
    array_id = await tracker.add_array_job(job(), 1, 3, key="sweep-1")
    assert await tracker.add_array_job(job(), 1, 3, key="sweep-1") == array_id
    assert len(await containers(engine, "s1")) == 3


async def test_bad_key_is_invalid_argument(tracker: DockerTracker) -> None:
    """An empty key is refused before anything is made."""
    with pytest.raises(InvalidArgumentError):
        await tracker.add_job(job(), key="")


@pytest.mark.parametrize("seed", range(8))
async def test_cancelled_keyed_add_job_then_retry_makes_one_job(
    engine: FakeEngine, tracker: DockerTracker, seed: int
) -> None:
    """add_job cancelled at any point, then retried with its key: exactly one job, running,
    never killed."""
    rng = random.Random(seed)
    for i in range(10):
        key = f"k-{seed}-{i}"
        task = asyncio.create_task(tracker.add_job(job(), key=key))
        for _ in range(rng.randrange(0, 12)):
            await asyncio.sleep(0)
        task.cancel()
        # Cancelled, or finished before the cancel: either way a retry returns the job.
        await asyncio.gather(task, return_exceptions=True)
        job_id = await tracker.add_job(job(), key=key)
        assert await tracker.wait(job_id, JobState.RUNNING, timeout=1) is JobState.RUNNING
    assert len(await containers(engine, "s1")) == 10
    assert [op for op, _ in engine.call_log].count("kill") == 0


async def test_closing_during_a_start_never_kills_the_job(engine: FakeEngine) -> None:
    """A tracker closed while a submission's start is in flight lets the start finish and
    keeps the job; a retry with the key (in a new tracker) returns it."""
    tracker = DockerTracker("s1", engine=engine.client(), engine_timeout=1)
    await tracker.open()
    await tracker._rt.leases.ensure_own(IMAGE)  # the lease's start is not the one held
    gate = engine.hold("start")
    task = asyncio.create_task(tracker.add_job(job(), key="late"))
    with anyio.fail_after(2):
        await gate.arrived.wait()
    closing = asyncio.create_task(tracker.aclose())
    await asyncio.sleep(0.01)
    gate.release()
    await closing
    (outcome,) = await asyncio.gather(task, return_exceptions=True)
    ids = await containers(engine, "s1")
    assert len(ids) == 1
    assert outcome == ids[0] or isinstance(outcome, Exception)
    assert engine.container(ids[0]).status == "running"
    async with DockerTracker("s1", engine=engine.client()) as again:
        assert await again.add_job(job(), key="late") == ids[0]


async def test_closing_before_the_start_leaves_nothing(engine: FakeEngine) -> None:
    """A tracker closed while a submission is still attaching leaves no container."""
    tracker = DockerTracker("s1", engine=engine.client(), engine_timeout=1)
    await tracker.open()
    gate = engine.hold("attach_output")
    task = asyncio.create_task(tracker.add_job(job(output_path="/dev/null"), key="early"))
    with anyio.fail_after(2):
        await gate.arrived.wait()
    closing = asyncio.create_task(tracker.aclose())
    await asyncio.sleep(0.01)
    gate.release()
    await closing
    with pytest.raises(Exception):  # noqa: B017, PT011
        await task
    assert await containers(engine, "s1") == []


async def test_observer_watches_and_never_acts(engine: FakeEngine, tracker: DockerTracker) -> None:
    """An observer sees every state change of the session and never starts, launches, writes
    output or controls anything."""
    async with DockerTracker("s1", engine=engine.client(), role="observer") as observer:
        array_id = await tracker.add_array_job(job(output_path="/dev/null"), 1, 2, max_parallel=1)
        first, second = await tracker.list_array_jobs(array_id)
        assert await observer.wait(first, JobState.RUNNING, timeout=1) is JobState.RUNNING
        starts = job_starts(engine)
        engine.exit(first, 0)
        assert await observer.wait(first, timeout=1) is JobState.DONE
        assert await observer.wait(second, JobState.RUNNING, timeout=1) is JobState.RUNNING
        for call in (
            observer.add_job(job()),
            observer.add_array_job(job(), 1, 2),
            observer.job_control(second, "suspend"),
            observer.delete_job(first),
        ):
            with pytest.raises(UnsupportedOperationError):
                await call
        assert observer.statistics().output_streams == 0
        assert observer.statistics().arrays == 0
    assert len(job_starts(engine)) == len(starts) + 1
    with pytest.raises(InvalidArgumentError):
        DockerTracker("s1", engine=engine, role="boss")  # type: ignore[arg-type]
