"""The engine room's races, each forced through the fake engine (no daemon, no sleeps to hope).

Each test names the finding of the engine-room issue it proves fixed; each fails on the
tracker before the split (where the finding's interleaving leaves a wait hanging, a ghost, a
crash or the wrong error class).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiotracker import (
    DockerTracker,
    DrmCommunicationError,
    EngineError,
    InvalidArgumentError,
    InvalidStateError,
    JobState,
    JobTemplate,
    TrackerClosedError,
)
from aiotracker._cache import StateCache
from aiotracker._engine.base import ContainerEvent, EngineCallError, EngineConnectionError
from aiotracker._engine.fake import FakeEngine
from aiotracker._labels import (
    AUTO_REMOVE_LABEL,
    LEASE_LABEL,
    MANAGED_LABEL,
    SESSION_LABEL,
    container_name,
)

IMAGE = "aiotracker/busybox:latest"
SESSION = "races"


def job(*command: str, **fields: Any) -> JobTemplate:
    fields.setdefault("job_category", IMAGE)
    if command:
        fields.setdefault("remote_command", command[0])
        fields.setdefault("args", list(command[1:]))
    return JobTemplate(**fields)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def tracker(engine: FakeEngine) -> AsyncIterator[DockerTracker]:
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2) as t:
        await hold_lease(t)
        yield t
    assert t.statistics().waiters == 0
    assert t.statistics().watchers == 0


async def hold_lease(tracker: DockerTracker) -> None:
    """Make the tracker's lease now (it is made at the first submission), so that a fault
    aimed at the next start or create hits the job, not the lease."""
    await tracker._rt.leases.ensure_own(IMAGE)


async def until(predicate: Any, timeout: float = 2.0) -> None:
    """Let the tracker's tasks run until ``predicate()`` holds (fails the test after timeout)."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110  # a test's view of many parts at once
            await asyncio.sleep(0.001)


async def foreign_job(engine: FakeEngine) -> str:
    """A job made by another tool (the Go tracker): no aiotracker label, so its end needs an
    inspect (its die is not known to be final)."""
    return await engine.create({"Image": IMAGE, "Labels": {SESSION_LABEL: SESSION}}, None)


# -- 3: the reconcile after a reconnect forgets jobs created while it was listing ----------


async def test_reconcile_keeps_jobs_created_while_it_lists(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """A job created while the re-sync's listing is in flight is not forgotten (finding 3)."""
    gate = engine.hold("list_containers", after=True)  # the listing predates the create
    engine.cut_streams()  # reconnect -> re-sync
    with anyio.fail_after(2):
        await gate.arrived.wait()
    job_id = await tracker.add_job(job("sleep", "9"))
    gate.release()
    await until(lambda: tracker.statistics().resyncs >= 1)
    assert job_id in await tracker.list_jobs()
    engine.exit(job_id, 0)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE


# -- 4: a destroy while the inspect after a die is in flight -------------------------------


@pytest.mark.parametrize("tombstones", [True, False])
async def test_destroy_during_inspect_leaves_no_ghost(
    engine: FakeEngine, tracker: DockerTracker, tombstones: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inspect that returns after the job's destroy does not bring it back (finding 4),
    by its sequence check alone too (no memory of removed ids). A job with a restart policy:
    its die is not final, so an inspect follows it (an own job's die needs none)."""
    if not tombstones:
        monkeypatch.setattr("aiotracker._cache._GONE_KEPT", 0)
    job_id = await tracker.add_job(job("sleep", "9", extensions={"restart": "on-failure"}))
    gate = engine.hold("inspect", match=job_id, after=True)  # snapshot: exited, not yet gone
    engine.exit(job_id, 0)  # on-failure: not restarted
    with anyio.fail_after(2):
        await gate.arrived.wait()
    await engine.remove(job_id)  # someone removes it: destroy
    await until(lambda: job_id not in tracker._cache)
    gate.release()
    await until(lambda: tracker.statistics().tasks == 0)
    assert job_id not in await tracker.list_jobs()


# -- 5: rm=true with output: the destroy must not publish the end before the file ----------


def test_auto_removed_job_ends_only_when_its_output_is_done() -> None:
    """A destroy that overtakes the output copy holds the end back until the file is done
    (finding 5)."""
    cache = StateCache()
    labels = {MANAGED_LABEL: "1", AUTO_REMOVE_LABEL: "1"}
    cache.add("c1", JobState.RUNNING, labels=labels)
    cache.begin_output("c1")
    loop = asyncio.new_event_loop()
    try:
        waiter = cache.add_waiter("c1", frozenset({JobState.DONE}), loop)
        assert not isinstance(waiter, JobState)
        for action, attrs in (("die", {"exitCode": "0"}), ("destroy", {})):
            wakeups, _, _ = cache.apply(ContainerEvent("c1", action, 10, attrs))
            assert not wakeups
        assert cache.require("c1").state is JobState.RUNNING
        cache.output_done("c1")[0].resolve()
        assert waiter.future.result() is JobState.DONE  # the end, then forgotten
        assert "c1" not in cache
    finally:
        loop.close()


# -- 6: a lost inspect is retried, not left to a reconnect that never comes ----------------


async def test_failed_inspect_after_die_is_retried(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """The inspect a foreign job's end needs fails twice; the wait still resolves (finding 6)."""
    job_id = await foreign_job(engine)
    await engine.start(job_id)
    await until(lambda: job_id in tracker._cache)
    engine.fail("inspect", EngineConnectionError("reset"), times=2, match=job_id)
    engine.exit(job_id, 0)
    assert await tracker.wait(job_id, timeout=3) is JobState.DONE
    assert engine.calls["inspect"] >= 3


# -- 7: the array launcher ---------------------------------------------------------------


async def test_launcher_survives_engine_errors(engine: FakeEngine, tracker: DockerTracker) -> None:
    """An engine 500 on a task's start makes the launcher retry, not stop (finding 7)."""
    engine.fail("start", EngineCallError(500, "containerd is down"), times=2)
    array_id = await tracker.add_array_job(job("sleep", "9"), 1, 3, max_parallel=1)
    tasks = await tracker.list_array_jobs(array_id)
    for task in tasks:
        assert await tracker.wait(task, JobState.RUNNING, timeout=3) is JobState.RUNNING
        engine.exit(task, 0)
    assert set((await tracker.wait_array(array_id, timeout=2)).values()) == {JobState.DONE}


async def test_task_whose_start_failed_is_not_started_again(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """A task the engine refuses ends FAILED with a fault and is never started twice; the
    next task runs (finding 7)."""
    refusal = EngineCallError(500, "unable to find user nobody2: no matching entries in passwd")
    engine.fail("start", refusal, match=container_name(f"{SESSION}-arr-1", SESSION))
    array_id = await tracker.add_array_job(job("true", job_name=f"{SESSION}-arr"), 1, 2)
    first, second = await tracker.list_array_jobs(array_id)
    assert await tracker.wait(first, timeout=2) is JobState.FAILED
    assert await tracker.wait(second, JobState.RUNNING, timeout=2) is JobState.RUNNING
    engine.exit(second, 0)
    assert await tracker.wait(second, timeout=2) is JobState.DONE
    assert [op for op, target in engine.call_log if op == "start" and target == first] == ["start"]
    info = await tracker.job_info(first)
    assert any(f.startswith("not started") for f in info.faults)
    assert info.state is JobState.FAILED  # in Docker too: its name carries the mark


async def test_refused_task_stays_failed_when_its_mark_is_lost(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    """A task refused for a missing input file stays FAILED and is never started, even while
    the engine loses the renames that mark it (finding 7)."""
    for i in (1, 2):
        (tmp_path / f"in-{i}").write_bytes(b"x")
    template = job("cat", input_path=str(tmp_path / "in-$DRMAA2_INDEX$"))
    array_id = await tracker.add_array_job(template, 1, 2, max_parallel=1)
    first, second = await tracker.list_array_jobs(array_id)
    await tracker.wait(first, JobState.RUNNING, timeout=2)
    (tmp_path / "in-2").unlink()
    engine.fail("rename", EngineConnectionError("reset"), match=second, times=2)
    engine.exit(first, 0)
    assert await tracker.wait(second, timeout=2) is JobState.FAILED
    (tmp_path / "in-2").write_bytes(b"x")
    with pytest.raises(InvalidStateError):
        await tracker.job_control(second, "release")  # its inspect says "created"
    await until(lambda: engine.container(second).name.endswith(".aiotracker-terminated"))
    assert [t for op, t in engine.call_log if op == "start" and t == second] == []
    assert any("input_path" in f for f in (await tracker.job_info(second)).faults)


async def test_lost_start_answer_keeps_the_output(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    """A start whose answer is lost but that started the job keeps its output file."""
    out = tmp_path / "out"
    job_id = await tracker.add_job(job("sleep", "9", submit_as_hold=True, output_path=str(out)))
    gate = engine.hold("start", match=job_id, after=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(tracker.job_control, job_id, "release")
        with anyio.fail_after(2):
            await gate.arrived.wait()
        gate.fail(EngineConnectionError("connection reset"))
    engine.write_output(job_id, 1, b"kept")
    engine.exit(job_id, 0)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE
    assert out.read_bytes() == b"kept"


async def test_array_rollback_is_bounded_once(engine: FakeEngine) -> None:
    """Rolling back an array on a hung engine takes one engine_timeout, not one per task."""
    async with DockerTracker(SESSION, engine=engine, engine_timeout=0.3) as tracker:
        refusal = EngineCallError(500, "no space left on device")
        engine.fail("create", refusal, match=container_name("arr-10", SESSION))
        engine.hold("remove")
        start = anyio.current_time()
        with pytest.raises(EngineError):
            await tracker.add_array_job(job("true", job_name="arr"), 1, 10)
        assert anyio.current_time() - start < 1.0
        with anyio.fail_after(3):
            await tracker.aclose()


async def test_array_with_deleted_task_launches_after_reopen(engine: FakeEngine) -> None:
    """An array whose finished first task was deleted is launched by the next tracker
    (finding 7)."""
    async with DockerTracker(SESSION, engine=engine) as first:
        array_id = await first.add_array_job(job("sleep", "9"), 1, 3, max_parallel=1)
        tasks = await first.list_array_jobs(array_id)
        await first.wait(tasks[0], JobState.RUNNING, timeout=2)
        engine.exit(tasks[0], 0)
        await first.wait(tasks[0], timeout=2)
        await first.delete_job(tasks[0])
        await first.wait(tasks[1], JobState.RUNNING, timeout=2)
        await first.job_control(tasks[1], "terminate")
        await first.wait(tasks[1], timeout=2)
        await first.delete_job(tasks[1])
        await engine.rename(tasks[2], "kept")  # leave only a queued task, as if never started
    async with DockerTracker(SESSION, engine=engine) as second:
        assert await second.wait(tasks[2], JobState.RUNNING, timeout=2) is JobState.RUNNING
        engine.exit(tasks[2], 0)
        assert await second.wait(tasks[2], timeout=2) is JobState.DONE


# -- 8: release is start-then-unmark; a second release recovers a failed one ---------------


async def test_failed_release_leaves_job_held_and_a_second_release_starts_it(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """A release whose start fails leaves the job held and releasable (finding 8)."""
    job_id = await tracker.add_job(job("sleep", "9", submit_as_hold=True))
    engine.fail("start", EngineConnectionError("reset"), match=job_id)
    with pytest.raises(DrmCommunicationError):
        await tracker.job_control(job_id, "release")
    assert await tracker.job_state(job_id) is JobState.QUEUED_HELD
    await tracker.job_control(job_id, "release")
    assert await tracker.wait(job_id, JobState.RUNNING, timeout=2) is JobState.RUNNING
    engine.exit(job_id, 0)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE


@pytest.mark.parametrize("after", [False, True])
async def test_cancelled_release_never_strands_the_job(
    engine: FakeEngine, tracker: DockerTracker, after: bool
) -> None:
    """A release cancelled while its start is in flight (before or after the engine acted)
    leaves the job running or still held, never queued-but-never-started (finding 8)."""
    job_id = await tracker.add_job(job("sleep", "9", submit_as_hold=True))
    gate = engine.hold("start", match=job_id, after=after)
    async with anyio.create_task_group() as tg:
        tg.start_soon(tracker.job_control, job_id, "release")
        with anyio.fail_after(2):
            await gate.arrived.wait()
        tg.cancel_scope.cancel()
        gate.release()  # the engine answers after the caller gave up
    await until(lambda: tracker.statistics().tasks == 0)
    await engine.drain()
    assert await tracker.job_state(job_id) in (JobState.RUNNING, JobState.QUEUED_HELD)


# -- 9: clean-ups are bounded; shutdown closes the client even when cancelled --------------


async def test_hung_engine_cleanup_is_bounded(engine: FakeEngine) -> None:
    """A half-made job's removal on a hung engine gives up after engine_timeout (finding 9)."""
    async with DockerTracker(SESSION, engine=engine, engine_timeout=0.3) as tracker:
        await hold_lease(tracker)
        engine.fail("start", EngineCallError(500, "no space left on device"))
        engine.hold("remove")  # never released: the engine hangs
        with anyio.fail_after(3), pytest.raises(EngineError):
            await tracker.add_job(job("true"))
        with anyio.fail_after(3):
            await tracker.aclose()
    assert engine.closed


async def test_cancelled_aclose_still_closes_the_engine(engine: FakeEngine) -> None:
    """Cancelling the task that closes the tracker still closes the engine (finding 9)."""
    tracker = DockerTracker(SESSION, engine=engine, engine_timeout=1)
    await tracker.open()
    async with anyio.create_task_group() as tg:
        tg.start_soon(tracker.aclose)
        await asyncio.sleep(0)
        tg.cancel_scope.cancel()
    await until(lambda: engine.closed)


# -- 10: an engine 500 is EngineError unless it is the job's own config ---------------------


@pytest.mark.parametrize(
    ("op", "message", "error"),
    [("create", "no space left on device", EngineError),
     ("start", "failed to create shim: containerd is not running", EngineError),
     ("start", "driver failed programming external connectivity: port is already allocated",
      EngineError),
     ("start", "unable to find user nobody2: no matching entries in passwd file",
      InvalidArgumentError)],
)  # fmt: skip
async def test_engine_500_is_not_the_templates_fault(
    engine: FakeEngine, tracker: DockerTracker, op: str, message: str, error: type[Exception]
) -> None:
    """Only the job's own config is InvalidArgumentError; nothing is left (finding 10)."""
    engine.fail(op, EngineCallError(500, message))
    with pytest.raises(error) as raised:
        await tracker.add_job(job("true"))
    if error is EngineError:
        assert not isinstance(raised.value, InvalidArgumentError)
    assert await tracker.list_jobs() == []
    summaries = await engine.list_containers(f"{SESSION_LABEL}={SESSION}")
    assert [s for s in summaries if LEASE_LABEL not in s.labels] == []  # the lease is the tracker's


# -- 12: bool and statistics ---------------------------------------------------------------


async def test_empty_tracker_is_true_and_closed_is_not_connected(engine: FakeEngine) -> None:
    """``tracker or other`` keeps an empty tracker; a closed one is not connected (finding 12)."""
    async with DockerTracker(SESSION, engine=engine) as tracker:
        assert tracker
        assert tracker.statistics().connected
    assert tracker
    assert not tracker.statistics().connected


# -- 13, 14: control against a job that moved, and against a stale cache -------------------


async def test_suspend_of_a_job_that_just_exited_is_invalid_state(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """The job exits between the cache check and the pause: InvalidStateError (finding 13)."""
    job_id = await tracker.add_job(job("sleep", "9"))
    gate = engine.hold("pause", match=job_id)
    async with anyio.create_task_group() as tg:

        async def suspend() -> None:
            with pytest.raises(InvalidStateError):
                await tracker.job_control(job_id, "suspend")

        tg.start_soon(suspend)
        with anyio.fail_after(2):
            await gate.arrived.wait()
        engine.exit(job_id, 0)
        # An answer that names no state: the tracker asks the engine what happened.
        gate.fail(EngineCallError(500, "OCI runtime pause failed: unknown"))
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE


@pytest.mark.parametrize("action", ["resume", "terminate"])
async def test_control_of_a_job_that_just_exited_is_invalid_state(
    engine: FakeEngine, tracker: DockerTracker, action: str
) -> None:
    """Resume and terminate of a job that ended in between: InvalidStateError (finding 13)."""
    job_id = await tracker.add_job(job("sleep", "9"))
    if action == "resume":
        await tracker.job_control(job_id, "suspend")
    op = {"resume": "unpause", "terminate": "kill"}[action]
    gate = engine.hold(op, match=job_id)
    async with anyio.create_task_group() as tg:

        async def act() -> None:
            with pytest.raises(InvalidStateError):
                await tracker.job_control(job_id, action)

        tg.start_soon(act)
        with anyio.fail_after(2):
            await gate.arrived.wait()
        engine.exit(job_id, 0)
        gate.release()  # the engine's own answer: not running / not paused


async def test_control_error_while_job_still_runs_is_the_engines(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """An engine failure while the job still runs is EngineError, not InvalidStateError."""
    job_id = await tracker.add_job(job("sleep", "9"))
    engine.fail("pause", EngineCallError(500, "OCI runtime pause failed: unknown"))
    with pytest.raises(EngineError):
        await tracker.job_control(job_id, "suspend")
    assert await tracker.job_state(job_id) is JobState.RUNNING


async def test_stale_cache_asks_the_engine_before_refusing(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """A cache that has not seen the start yet does not refuse a suspend (finding 14)."""
    job_id = await tracker.add_job(job("sleep", "9"))
    tracker._cache.add(job_id, JobState.QUEUED)  # as a second tracker's lagging cache
    assert await tracker.job_state(job_id) is JobState.QUEUED
    await tracker.job_control(job_id, "suspend")
    assert await tracker.job_state(job_id) is JobState.SUSPENDED


# -- 15: a malformed docker_url --------------------------------------------------------


@pytest.mark.parametrize("url", ["not a url", "ftp://x", "tcp://", "tcp://host", "unix://"])
def test_malformed_docker_url_is_invalid_argument(url: str) -> None:
    """A docker_url that is no engine address is InvalidArgumentError (finding 15)."""
    with pytest.raises(InvalidArgumentError):
        DockerTracker(SESSION, docker_url=url)


# -- 16, 1, 2: paths and file errors ---------------------------------------------------


async def test_relative_paths_are_stored_absolute(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative host paths are resolved once at submission and stored absolute (finding 16)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").write_bytes(b"x")
    job_id = await tracker.add_job(job("cat", output_path="out", input_path="in"))
    template = await tracker.job_template(job_id)
    assert template.output_path == str(tmp_path / "out")
    assert template.input_path == str(tmp_path / "in")
    monkeypatch.chdir("/")
    engine.write_output(job_id, 1, b"hello")
    engine.exit(job_id, 0)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE
    assert (tmp_path / "out").read_bytes() == b"hello"


async def test_removed_output_directory_is_the_jobs_fault_only(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    """A job whose output directory goes away ends DONE with a fault; the tracker and the
    other jobs go on (finding 1)."""
    doomed, fine = tmp_path / "doomed", tmp_path / "fine"
    doomed.mkdir()
    fine.mkdir()
    victim = await tracker.add_job(job("sleep", "9", output_path=str(doomed / "out")))
    other = await tracker.add_job(job("sleep", "9", output_path=str(fine / "out")))
    engine.write_output(victim, 1, b"lost")
    for p in doomed.iterdir():
        p.unlink()
    doomed.rmdir()
    engine.exit(victim, 0)
    assert await tracker.wait(victim, timeout=2) is JobState.DONE
    info = await tracker.job_info(victim)
    assert any(f.startswith("output incomplete") for f in info.faults), info
    assert "output incomplete" in info.annotation
    engine.write_output(other, 1, b"kept")
    engine.exit(other, 0)
    assert await tracker.wait(other, timeout=2) is JobState.DONE
    assert (fine / "out").read_bytes() == b"kept"
    third = await tracker.add_job(job("true"))
    engine.exit(third, 0)
    assert await tracker.wait(third, timeout=2) is JobState.DONE


async def test_output_error_on_open_is_the_jobs_fault_only(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No descriptor left when the output file opens: the job runs, its fault says so."""
    import aiotracker._output as output

    def no_descriptor(*args: Any, **kwargs: Any) -> Any:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(output, "_open_append", no_descriptor)
    job_id = await tracker.add_job(job("sleep", "9", output_path=str(tmp_path / "out")))
    engine.write_output(job_id, 1, b"x" * 100)
    engine.exit(job_id, 0)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE
    assert any("Too many open files" in f for f in (await tracker.job_info(job_id)).faults)
    assert not list(tmp_path.iterdir())


async def test_special_and_symlinked_output_paths_are_written_in_place(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    """/dev/null stays a device, a symlink stays a link to the output (finding 2)."""
    target = tmp_path / "target"
    link = tmp_path / "link"
    link.symlink_to(target)
    to_null = await tracker.add_job(job("sleep", "9", output_path="/dev/null"))
    to_link = await tracker.add_job(job("sleep", "9", output_path=str(link)))
    for job_id in (to_null, to_link):
        engine.write_output(job_id, 1, b"out")
        engine.exit(job_id, 0)
        assert await tracker.wait(job_id, timeout=2) is JobState.DONE
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert link.is_symlink()
    assert target.read_bytes() == b"out"
    for job_id in (to_null, to_link):
        assert not (await tracker.job_info(job_id)).faults


async def test_fifo_output_is_written_in_place_without_blocking(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    """A FIFO output path stays a FIFO and gets the output; waiting for its reader never
    blocks the tracker (finding 2)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    job_id = await tracker.add_job(job("sleep", "9", output_path=str(fifo)))
    other = await tracker.add_job(job("true"))
    engine.exit(other, 0)  # the tracker goes on while the FIFO has no reader
    assert await tracker.wait(other, timeout=2) is JobState.DONE
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        engine.write_output(job_id, 1, b"out")
        engine.exit(job_id, 0)
        assert await tracker.wait(job_id, timeout=2) is JobState.DONE
        assert os.read(reader, 10) == b"out"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not (await tracker.job_info(job_id)).faults


async def test_tracker_that_dies_closes_its_engine_and_fails_waits_with_cause(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the tracker truly cannot go on, pending waits get TrackerClosedError chained to the
    cause and the engine is closed."""
    tracker = DockerTracker(SESSION, engine=engine)
    await tracker.open()
    job_id = await tracker.add_job(job("sleep", "9"))

    async def broken(handler: Any) -> Any:
        raise RuntimeError("the event processor broke")

    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            with pytest.raises(TrackerClosedError) as err:
                await tracker.wait(job_id)
            assert isinstance(err.value.__cause__, BaseException)

        tg.start_soon(wait)
        await until(lambda: tracker.statistics().waiters == 1)
        tracker._rt.tasks.group().start_soon(broken, None)
    await until(lambda: engine.closed)
    await tracker.aclose()


@pytest.mark.parametrize("log_readable", [True, False])
async def test_output_stream_that_ends_before_the_job_is_completed_from_the_log(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path, log_readable: bool
) -> None:
    """An output stream that ends while the job runs (a dropped connection, a daemon restart
    with live-restore) is not the end of its output: at the exit, the file is completed from
    the engine's log, exactly once; if the log cannot be read, the fault says so."""
    out = tmp_path / "out"
    job_id = await tracker.add_job(job("sleep", "9", output_path=str(out), join_files=True))
    engine.write_output(job_id, 1, b"one ")
    engine.write_output(job_id, 2, b"two ")
    await until(lambda: tracker.statistics().output_streams == 1)
    await asyncio.sleep(0.01)  # the copier has taken what was sent
    if not log_readable:
        engine.fail("read_logs", EngineConnectionError("reset"), match=job_id)
    engine.cut_attach(job_id)
    await asyncio.sleep(0.6)  # the job runs on past the stream's end
    engine.write_output(job_id, 1, b"three ")
    engine.write_output(job_id, 2, b"four")
    engine.exit(job_id, 0)
    assert await tracker.wait(job_id, timeout=5) is JobState.DONE
    info = await tracker.job_info(job_id)
    if log_readable:
        assert out.read_bytes() == b"one two three four"
        assert info.faults == ()
    else:
        assert any(f.startswith("output incomplete") for f in info.faults), info.faults


# -- a cancelled open (Ctrl-C while the tracker seeds) ---------------------------------------


async def test_open_cancelled_while_seeding_closes_quietly(
    engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelling ``open`` while the tracker seeds its cache (the CLI's Ctrl-C at start) closes
    it without an error from the background work: the seed that ends after the cancel finds
    open() gone, not a future to resolve."""
    gate = engine.hold("list_containers", after=True)
    tracker = DockerTracker(SESSION, engine=engine, engine_timeout=2)
    opening = asyncio.create_task(tracker.__aenter__())
    with anyio.fail_after(2):
        await gate.arrived.wait()
    opening.cancel()
    await asyncio.sleep(0)  # open() is now in _stop, awaiting the seeding task
    gate.release()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert "background work failed" not in caplog.text
    assert "InvalidStateError" not in caplog.text
    assert engine.open_streams == 0
    with pytest.raises(TrackerClosedError):
        await tracker.list_jobs()
