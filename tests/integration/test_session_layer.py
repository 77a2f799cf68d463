"""The DRMAA2 session layer, state changes and waits over many jobs, against the real engine.

The first group ports the cases of drmaa2os's root package (jobsession_test.go, job_test.go,
jobarray_test.go, monitoringsession_test.go) that apply to Docker; the rest are aiotracker's:
watch, wait_all, as_completed at 1000 jobs, a watcher that never reads, monitoring.
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from aiotracker import (
    DockerTracker,
    InvalidArgumentError,
    InvalidSessionError,
    InvalidStateError,
    Job,
    JobInfo,
    JobNotFoundError,
    JobSession,
    JobState,
    JobTemplate,
    MonitoringSession,
    StateChange,
    UnsupportedOperationError,
    destroy_job_session,
    list_job_sessions,
)
from tests.conftest import ENGINE
from tests.integration._cli import eventually
from tests.integration.conftest import make_monitor
from tests.integration.test_tracker import session_containers

Make = Callable[..., JobTemplate]
DONE, FAILED, RUNNING, SUSPENDED = (
    JobState.DONE, JobState.FAILED, JobState.RUNNING, JobState.SUSPENDED,
)  # fmt: skip


# -- ported from drmaa2os ----------------------------------------------------------------------


async def test_session_name_and_contact(session_name: str, labels: dict[str, str]) -> None:
    """Ported: a session opened by name reports its name and a contact (the engine)."""
    async with JobSession(session_name, labels=labels) as session:
        assert session.session_name == session_name
        assert session.contact.startswith(("unix://", "tcp://"))
        assert session.tracker.is_open
    assert not session.tracker.is_open  # its own tracker closes with it


async def test_run_job_and_find_it_by_id(tracker: DockerTracker, template: Make) -> None:
    """Ported: a job run in the session is found by a filter on its id, and only it."""
    async with JobSession(tracker) as session:
        job = await session.run_job(template("sleep", "30"))
        other = await session.run_job(template("true"))
        assert await session.get_jobs(JobInfo(job_id=job.job_id)) == [job]
        assert set(await session.get_jobs()) == {job, other}  # an unset filter: all
        assert set(await session.get_jobs(JobInfo())) == {job, other}
        await job.terminate()


async def test_wait_any_on_an_empty_list_fails(tracker: DockerTracker) -> None:
    """Ported: waiting for any of no jobs is an invalid argument, at once."""
    async with JobSession(tracker) as session:
        for wait in (session.wait_any_started, session.wait_any_terminated):
            with pytest.raises(InvalidArgumentError):
                await wait([], timeout=1)


async def test_wait_any_started_and_terminated_return_the_job(
    tracker: DockerTracker, template: Make
) -> None:
    """Ported: wait_any_started and wait_any_terminated return the job that got there; a job
    that already ended counts as started."""
    async with JobSession(tracker) as session:
        job = await session.run_job(template("sleep", "1"))
        assert await session.wait_any_started([job], timeout=60) is job
        assert job.state in (RUNNING, DONE)
        assert await session.wait_any_terminated([job], timeout=60) is job
        assert job.state is DONE
        assert await session.wait_any_started([job], timeout=0) is job  # ended: at once
        assert await job.wait_started(timeout=0) is DONE


async def test_exit_status_filters_select_done_and_failed(
    tracker: DockerTracker, template: Make
) -> None:
    """Ported: a filter on exit status 0 selects the DONE job, on 1 the FAILED one."""
    async with JobSession(tracker) as session:
        ok = await session.run_job(template("true"))
        bad = await session.run_job(template("false"))
        await session.wait_all_terminated([ok, bad], timeout=60)
        assert await session.get_jobs(JobInfo(exit_status=0)) == [ok]
        assert await session.get_jobs(JobInfo(exit_status=1)) == [bad]
        assert await session.get_jobs(JobInfo(state=DONE)) == [ok]
        assert await session.get_jobs(JobInfo(state=FAILED, exit_status=1)) == [bad]


async def test_double_close_is_an_error(session_name: str, labels: dict[str, str]) -> None:
    """Ported: closing a job session twice is InvalidSessionError; so is using it after."""
    session = JobSession(session_name, labels=labels)
    await session.open()
    await session.close()
    with pytest.raises(InvalidSessionError):
        await session.close()
    with pytest.raises(InvalidSessionError):
        await session.run_job(JobTemplate(remote_command="true"))


async def test_run_job_of_an_empty_template_fails(
    tracker: DockerTracker, session_name: str
) -> None:
    """Ported: an empty template is an invalid argument, and nothing is made."""
    async with JobSession(tracker) as session:
        with pytest.raises(InvalidArgumentError):
            await session.run_job(JobTemplate())
        assert await session.get_jobs() == []
    assert session_containers(session_name) == []


async def test_bulk_job_drained_by_wait_any_terminated(
    tracker: DockerTracker, template: Make
) -> None:
    """Ported: a 10-task bulk job with max_parallel 2, drained by wait_any_terminated ten
    times: each call returns a task not returned before, and all end DONE."""
    async with JobSession(tracker) as session:
        array = await session.run_bulk_jobs(template("sleep", "0.2"), 1, 10, max_parallel=2)
        assert len(array.jobs) == 10
        left = list(array.jobs)
        ended: list[Job] = []
        for _ in range(10):
            job = await session.wait_any_terminated(left, timeout=120)
            left.remove(job)
            ended.append(job)
        assert sorted(j.job_id for j in ended) == sorted(j.job_id for j in array.jobs)
        assert {j.state for j in array.jobs} == {DONE}


async def test_terminated_array_ends_all_failed(tracker: DockerTracker, template: Make) -> None:
    """Ported: terminating a 10-task array (2 running, 8 queued) ends every task FAILED."""
    async with JobSession(tracker) as session:
        array = await session.run_bulk_jobs(template("sleep", "60"), 1, 10, max_parallel=2)
        await session.wait_any_started(array.jobs, timeout=60)
        await array.terminate()
        await session.wait_all_terminated(array.jobs, timeout=60)
        assert [j.state for j in array.jobs] == [FAILED] * 10


async def test_get_job_array_of_an_unknown_id_fails(tracker: DockerTracker) -> None:
    """Ported: an array id the session does not have is an invalid argument."""
    async with JobSession(tracker) as session:
        with pytest.raises(InvalidArgumentError):
            await session.get_job_array("0123456789abcdef")


async def test_reap_only_after_the_end(
    tracker: DockerTracker, template: Make, session_name: str
) -> None:
    """Ported: reaping a running job is InvalidStateError; after its end it removes the
    container, and the job is then unknown (InvalidArgumentError)."""
    async with JobSession(tracker) as session:
        job = await session.run_job(template("sleep", "1"))
        await job.wait_started(timeout=60)
        if job.state is RUNNING:
            with pytest.raises(InvalidStateError):
                await job.reap()
        await job.wait_terminated(timeout=60)
        await job.reap()
        assert session_containers(session_name) == []
        with pytest.raises(InvalidArgumentError):
            await job.get_info()


# -- aiotracker's --------------------------------------------------------------------------


async def test_wait_all_terminated_on_50_jobs(tracker: DockerTracker, template: Make) -> None:
    """wait_all_terminated returns the 50 jobs in the order given, each ended as it should."""
    async with JobSession(tracker) as session:
        sem = asyncio.Semaphore(8)

        async def run(i: int) -> Job:
            async with sem:
                return await session.run_job(template("sh", "-c", f"exit {i % 3 == 0:d}"))

        jobs = list(await asyncio.gather(*(run(i) for i in range(50))))
        assert await session.wait_all_terminated(jobs, timeout=180) == jobs
        assert [j.state for j in jobs] == [FAILED if i % 3 == 0 else DONE for i in range(50)]
    assert tracker.statistics().waiters == 0


async def test_watch_sees_one_jobs_changes_in_order(tracker: DockerTracker, template: Make) -> None:
    """watch reports RUNNING -> SUSPENDED -> RUNNING -> DONE for one job, in that order, with
    the exit status on the end."""
    job_id = await tracker.add_job(template("sleep", "2"))
    await tracker.wait(job_id, RUNNING, timeout=60)
    seen: list[StateChange] = []
    async with tracker.watch([job_id]) as changes:
        await tracker.job_control(job_id, "suspend")
        await tracker.job_control(job_id, "resume")
        async with asyncio.timeout(60):
            async for change in changes:
                seen.append(change)
                if change.new_state is DONE:
                    break
    assert [(c.old_state, c.new_state) for c in seen] == [
        (RUNNING, SUSPENDED), (SUSPENDED, RUNNING), (RUNNING, DONE),
    ]  # fmt: skip
    assert seen[-1].exit_status == 0
    assert all(c.job_id == job_id for c in seen)
    assert tracker.statistics().watchers == 0  # left: nothing registered


async def _wait_latency(tracker: DockerTracker, template: Make, n: int) -> float:
    """Median ms from each of ``n`` jobs' exit (the engine's FinishedAt) to its wait's return."""
    latencies = []
    for _ in range(n):
        job_id = await tracker.add_job(template("sleep", "0.3"))
        await tracker.wait(job_id, timeout=60)
        returned = datetime.now(UTC)
        finished = (await tracker.job_info(job_id)).finish_time
        assert finished is not None
        latencies.append((returned - finished).total_seconds() * 1000)
    return statistics.median(latencies)


@pytest.mark.docker_only(
    "the bound is 5 ms: Podman delivers events ~0.1 s after the exit, with more jitter than that"
)
async def test_a_watcher_that_never_reads_delays_no_wait(
    tracker: DockerTracker, template: Make
) -> None:
    """A watcher that never reads, flooded past its buffer by an array's changes, does not
    delay a wait on another job by more than 5 ms (median of 5, against the same waits with
    no watcher), and is told how many changes it lost."""
    before = await _wait_latency(tracker, template, 5)
    async with tracker.watch(max_buffer=4) as stuck:
        array_id = await tracker.add_array_job(template("true"), 1, 20)  # 60 changes or so
        await tracker.wait_array(array_id, timeout=120)  # full: from now on it only counts
        during = await _wait_latency(tracker, template, 5)
        kept = [await anext(stuck) for _ in range(5)]
    assert during - before < 5.0, (
        f"waits took {during:.1f} ms with the watcher, {before:.1f} without"
    )
    assert [c.lost > 0 for c in kept] == [False] * 4 + [True]
    assert kept[-1].lost >= 40


@pytest.mark.timeout(900)
async def test_as_completed_over_1000_jobs(tracker: DockerTracker, template: Make) -> None:
    """1000 array tasks through one as_completed: each reported once, as it ended, DONE,
    with one registration (no waiter per job). 200 on Podman (its starts and events take
    ~0.34 s a job: 1000 took 7 minutes) and 100 on Swarm (a job there is a service: 1000 take
    minutes to schedule on one host's 3 nodes)."""
    n = {"swarm": 100, "podman": 200}.get(ENGINE, 1000)
    array_id = await tracker.add_array_job(template("true"), 1, n)
    ids = await tracker.list_array_jobs(array_id)
    seen: list[str] = []
    async with tracker.as_completed(ids, timeout=900) as completed:
        assert tracker.statistics().waiters == 0
        async for job_id, state in completed:
            assert state is DONE
            seen.append(job_id)
    assert sorted(seen) == sorted(ids)
    assert tracker.statistics().watchers == 0


async def test_sessions_listed_and_destroyed(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """list_job_sessions names a session with jobs; destroy_job_session refuses while one
    runs, then removes every finished job, and the session is no longer listed."""
    async with JobSession(session_name, labels=labels) as session:
        done = await session.run_job(template("true"))
        running = await session.run_job(template("sleep", "60"))
        await done.wait_terminated(timeout=60)
        assert session_name in await list_job_sessions()
        with pytest.raises(InvalidStateError):
            await destroy_job_session(session_name)
        assert len(session_containers(session_name)) == 2
        await running.terminate()
        await running.wait_terminated(timeout=60)
        assert sorted(await destroy_job_session(session_name)) == sorted(
            [done.job_id, running.job_id]
        )
    assert session_containers(session_name) == []
    assert session_name not in await list_job_sessions()
    with pytest.raises(JobNotFoundError):
        await destroy_job_session(session_name)


def _engine_arch() -> str:
    done = subprocess.run(
        ["docker", "info", "--format", "{{.Architecture}}"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.mark.not_swarm("the machines are the swarm's nodes there (test_swarm.py)")
async def test_machines_and_their_filter() -> None:
    """The engine's machine, its architecture in DRMAA2's words (x64 for x86-64), returned
    when a filter names it and not otherwise; no queues."""
    async with MonitoringSession() as monitor:
        [machine] = await monitor.get_all_machines()
        assert machine.available
        assert machine.cores_per_socket >= 1
        assert machine.physical_memory > 1 << 10  # KiB
        assert machine.os == "linux"
        expected = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
            _engine_arch(), "other"
        )
        assert machine.architecture == expected, platform.machine()
        assert await monitor.get_all_machines([machine.name]) == [machine]
        assert await monitor.get_all_machines(["not-" + machine.name]) == []
        assert await monitor.get_all_queues() == []


async def test_monitoring_views_cannot_be_controlled(
    tracker: DockerTracker, template: Make
) -> None:
    """get_all_jobs sees the session's job among the engine's containers, filtered by the
    engine on id and state; controlling a view is UnsupportedOperationError and leaves the
    job as it was."""
    job_id = await tracker.add_job(template("sleep", "60"))
    await tracker.wait(job_id, RUNNING, timeout=60)
    async with make_monitor() as monitor:
        if ENGINE == "swarm":  # the manager's word lags the node's (the tracker's) by ~0.1 s

            async def seen_running() -> bool:
                return bool(await monitor.get_all_jobs(JobInfo(job_id=job_id, state=RUNNING)))

            await eventually(seen_running, "the monitor sees the job RUNNING", timeout=10)
        assert job_id in {v.job_id for v in await monitor.get_all_jobs()}
        [view] = await monitor.get_all_jobs(JobInfo(job_id=job_id))
        assert (view.session_name, view.state) == (tracker.job_session, RUNNING)
        running = await monitor.get_all_jobs(JobInfo(state=RUNNING))
        assert job_id in {v.job_id for v in running}
        assert job_id not in {v.job_id for v in await monitor.get_all_jobs(JobInfo(state=DONE))}
        assert (await view.get_info()).state is RUNNING
        for verb in ("suspend", "resume", "hold", "release", "terminate", "reap"):
            with pytest.raises(UnsupportedOperationError):
                await getattr(view, verb)()
    assert await tracker.job_state(job_id) is RUNNING
    await tracker.job_control(job_id, "terminate")
    await tracker.wait(job_id, timeout=60)
