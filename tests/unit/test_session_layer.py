"""The DRMAA2 session layer (JobSession, Job, ArrayJob, MonitoringSession) and its pure parts
(filters, machines), on the fake engine. The real engine's cases are in
tests/integration/test_session_layer.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiotracker import (
    ArrayJob,
    DockerTracker,
    InvalidArgumentError,
    InvalidSessionError,
    InvalidStateError,
    Job,
    JobInfo,
    JobNotFoundError,
    JobSession,
    JobState,
    MonitoringSession,
    UnsupportedOperationError,
    WaitTimeoutError,
    destroy_job_session,
    list_job_sessions,
)
from aiotracker._engine.base import ContainerDetails, EngineCallError, EngineInfo
from aiotracker._engine.fake import FakeEngine
from aiotracker._engine.podman import podman_statuses
from aiotracker._filters import engine_filters, matches, wanted
from aiotracker._mapping import drmaa_architecture, machine_from_info, state_from_details
from tests.unit.test_mapping import details
from tests.unit.test_races import SESSION, engine, job, tracker, until

__all__ = ["engine", "tracker"]  # the fixtures of test_races

DONE, FAILED, RUNNING = JobState.DONE, JobState.FAILED, JobState.RUNNING
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- filters (pure) ----------------------------------------------------------------------------


def test_an_unset_filter_counts_no_field() -> None:
    """``None`` and ``JobInfo()`` match every job (drmaa2os's zero value matches none)."""
    assert wanted(None) == {} == wanted(JobInfo())
    assert matches(JobInfo(job_id="a", state=RUNNING), wanted(JobInfo()))


@pytest.mark.parametrize(
    ("job_filter", "info", "expected"),
    [
        (JobInfo(job_id="a"), JobInfo(job_id="a"), True),
        (JobInfo(job_id="a"), JobInfo(job_id="b"), False),
        (JobInfo(exit_status=0), JobInfo(exit_status=0, state=DONE), True),
        (JobInfo(exit_status=0), JobInfo(exit_status=None, state=RUNNING), False),
        (JobInfo(exit_status=1), JobInfo(exit_status=0, state=DONE), False),
        (JobInfo(state=FAILED), JobInfo(state=FAILED), True),
        (JobInfo(allocated_machines=("h1",)), JobInfo(allocated_machines=("h1", "h2")), True),
        (JobInfo(allocated_machines=("h3",)), JobInfo(allocated_machines=("h1", "h2")), False),
        (JobInfo(wallclock_time=timedelta(seconds=5)), JobInfo(), False),
        (JobInfo(wallclock_time=timedelta(seconds=5)),
         JobInfo(wallclock_time=timedelta(seconds=5)), True),
        (JobInfo(cpu_time=timedelta(seconds=5)), JobInfo(cpu_time=timedelta(seconds=4)), False),
        (JobInfo(submission_time=T0), JobInfo(submission_time=T0 + timedelta(1)), True),
        (JobInfo(submission_time=T0), JobInfo(submission_time=T0 - timedelta(1)), False),
        (JobInfo(finish_time=T0), JobInfo(), False),
        (JobInfo(extensions={"user": "1000"}), JobInfo(extensions={"user": "1000", "x": "y"}),
         True),
        (JobInfo(extensions={"user": "1000"}), JobInfo(extensions={"user": "0"}), False),
        (JobInfo(job_owner="ann", state=DONE), JobInfo(job_owner="ann", state=DONE), True),
        (JobInfo(job_owner="ann", state=DONE), JobInfo(job_owner="ann", state=FAILED), False),
    ],
)  # fmt: skip
def test_filter_fields_match_as_drmaa2_says(
    job_filter: JobInfo, info: JobInfo, expected: bool
) -> None:
    """Equal, except machines (a superset), durations (at least) and times (at or after)."""
    assert matches(info, wanted(job_filter)) is expected


@pytest.mark.parametrize(
    "job_filter",
    [JobInfo(submission_time=datetime(2026, 1, 1)), JobInfo(cpu_time=5)],  # type: ignore[arg-type]
)
def test_a_filter_with_a_value_no_job_can_have_is_refused(job_filter: JobInfo) -> None:
    """A naive time cannot be compared with a job's (UTC) times; a duration must be one."""
    with pytest.raises(InvalidArgumentError):
        wanted(job_filter)


def test_filters_the_engine_applies_are_a_superset() -> None:
    """Id, state and name go to the engine's list filters; a state maps to every container
    state it can be read from."""
    assert engine_filters(wanted(JobInfo(job_id="abc"))) == {"id": ["abc"]}
    assert engine_filters(wanted(JobInfo(state=FAILED))) == {
        "status": ["exited", "dead", "removing", "created"]
    }
    assert engine_filters(wanted(JobInfo(state=JobState.REQUEUED))) is None
    assert engine_filters(wanted(JobInfo(job_name="a.b"))) == {"name": ["a\\.b"]}
    assert engine_filters(wanted(JobInfo(job_owner="ann"))) == {}


@pytest.mark.parametrize(
    "d",
    [
        details(status="created"),
        details(status="created", error="no such file"),
        details(status="created", name="/j.aiotracker-held"),
        details(status="created", name="/j.aiotracker-terminated"),
        details(status="running", running=True),
        details(status="paused", paused=True),
        details(status="restarting", restarting=True),
        *(details(status=s, exit_code=c) for s in ("exited", "dead", "removing") for c in (0, 3)),
        details(status="exited", started_at=None),
    ],
    ids=lambda d: f"{d.status}-{d.name}-{d.exit_code}-{d.error}",
)
def test_every_containers_state_passes_its_engine_filter(d: ContainerDetails) -> None:
    """Whatever state a container is read in, the engine's filter for that state lists it
    (the filter is a superset: the state read from each entry decides)."""
    state = state_from_details(d)
    filters = engine_filters(wanted(JobInfo(state=state)))
    assert filters is not None
    assert d.status in filters["status"]


def test_podman_gets_only_the_statuses_it_knows() -> None:
    """Podman refuses Docker's "restarting" and "dead" in a list filter; "exited" includes
    its "stopped" moment."""
    assert podman_statuses(["exited", "dead", "removing", "created"]) == [
        "exited", "removing", "created", "stopped",
    ]  # fmt: skip
    assert podman_statuses(["running", "restarting"]) == ["running"]
    assert podman_statuses(["restarting"]) == []


@pytest.mark.parametrize(
    "job_filter",
    [JobInfo(state="running"), JobInfo(allocated_machines="h1"), JobInfo(extensions=["a"])],  # type: ignore[arg-type]
)
def test_a_filter_of_the_wrong_type_is_refused(job_filter: JobInfo) -> None:
    with pytest.raises(InvalidArgumentError):
        wanted(job_filter)


# -- machines (pure) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine_arch", "drmaa"),
    [("x86_64", "x64"), ("amd64", "x64"), ("aarch64", "arm64"), ("arm64", "arm64"),
     ("i686", "x86"), ("armv7l", "arm"), ("ppc64le", "ppc64le"), ("s390x", "other")],
)  # fmt: skip
def test_architectures_get_drmaa2_names(engine_arch: str, drmaa: str) -> None:
    """x86-64 is DRMAA2's x64 (drmaa2os says IA64, Itanium's name)."""
    assert drmaa_architecture(engine_arch) == drmaa


def test_machine_from_the_engines_info() -> None:
    info = EngineInfo(
        "h1", 0, "1.41", cpus=8, memory_bytes=16 << 30, architecture="aarch64",
        os_type="linux", operating_system="Debian GNU/Linux 12", kernel_version="6.1.0-9",
    )  # fmt: skip
    m = machine_from_info(info)
    assert (m.name, m.available, m.sockets, m.cores_per_socket, m.threads_per_core) == (
        "h1", True, 1, 8, 1,
    )  # fmt: skip
    assert (m.physical_memory, m.architecture, m.os, m.os_version) == (
        16 << 20, "arm64", "linux", "6.1.0-9",
    )  # fmt: skip


# -- JobSession ------------------------------------------------------------------------------


async def test_session_over_a_tracker_runs_and_finds_jobs(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    async with JobSession(tracker) as session:
        assert session.session_name == SESSION
        assert session.contact == engine.url
        job_obj = await session.run_job(job("sleep", "9"))
        assert isinstance(job_obj, Job)
        assert job_obj.session_name == SESSION
        assert await job_obj.wait_started(timeout=2) is RUNNING
        assert job_obj.state is RUNNING
        assert repr(job_obj).endswith("RUNNING>")
        [found] = await session.get_jobs(JobInfo(job_id=job_obj.job_id))
        assert found == job_obj
        assert hash(found) == hash(job_obj)
        assert await session.get_jobs(JobInfo(job_id="0" * 64)) == []
        assert await session.get_jobs() == [job_obj] == await session.get_jobs(JobInfo())
        assert await session.get_job_categories() == ["aiotracker/busybox:latest"]
    assert tracker.is_open  # a session over a tracker leaves it open


async def test_exit_status_filters_select_done_and_failed(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    async with JobSession(tracker) as session:
        ok, bad = await session.run_job(job("true")), await session.run_job(job("false"))
        engine.exit(ok.job_id, 0)
        engine.exit(bad.job_id, 1)
        await session.wait_all_terminated([ok, bad], timeout=2)
        assert await session.get_jobs(JobInfo(exit_status=0)) == [ok]
        assert await session.get_jobs(JobInfo(exit_status=1)) == [bad]
        assert await session.get_jobs(JobInfo(state=FAILED)) == [bad]


async def test_waits_return_the_jobs_given(engine: FakeEngine, tracker: DockerTracker) -> None:
    """wait_any_* return one of the objects passed in; wait_all_* all of them, in order;
    a finished job counts as started."""
    async with JobSession(tracker) as session:
        a, b = await session.run_job(job("sleep", "9")), await session.run_job(job("sleep", "9"))
        assert await session.wait_any_started([a, b], timeout=2) in (a, b)
        engine.exit(b.job_id, 0)
        assert await session.wait_any_terminated([a, b], timeout=2) is b
        assert await session.wait_all_started([b, a], timeout=2) == [b, a]
        assert await b.wait_started(timeout=0) is DONE  # ended: started at once
        with pytest.raises(WaitTimeoutError):
            await session.wait_all_terminated([a, b], timeout=0.05)
        engine.exit(a.job_id, 2)
        assert await session.wait_all_terminated([a, b], timeout=2) == [a, b]
        assert a.state is FAILED


async def test_waits_refuse_bad_job_lists(tracker: DockerTracker) -> None:
    async with JobSession(tracker) as session:
        with pytest.raises(InvalidArgumentError, match="no jobs"):
            await session.wait_any_terminated([])
        with pytest.raises(InvalidArgumentError):
            await session.wait_any_started(await session.run_job(job("true")))  # type: ignore[arg-type]
        with pytest.raises(JobNotFoundError):
            await session.wait_all_terminated(["0" * 64])


async def test_job_of_another_session_is_refused(engine: FakeEngine) -> None:
    async with (
        DockerTracker("one", engine=engine) as one,
        DockerTracker("two", engine=engine) as two,
        JobSession(one) as s1,
        JobSession(two) as s2,
    ):
        j1 = await s1.run_job(job("sleep", "9"))
        with pytest.raises(InvalidArgumentError, match="session 'one'"):
            await s2.wait_any_terminated([j1], timeout=0)


async def test_reap_only_after_the_end(engine: FakeEngine, tracker: DockerTracker) -> None:
    async with JobSession(tracker) as session:
        j = await session.run_job(job("sleep", "9"))
        await j.wait_started(timeout=2)
        with pytest.raises(InvalidStateError):
            await j.reap()
        engine.exit(j.job_id, 0)
        await j.wait_terminated(timeout=2)
        await j.reap()
        assert j.state is JobState.UNDETERMINED
        with pytest.raises(JobNotFoundError):  # an InvalidArgumentError, as DRMAA2 asks
            await j.get_state()
        assert await session.get_jobs() == []


async def test_double_close_and_calls_after_close_are_errors(engine: FakeEngine) -> None:
    """The session's own tracker closes with it; a second close is InvalidSessionError."""
    session = JobSession(SESSION, engine=engine)
    with pytest.raises(InvalidSessionError):
        await session.run_job(job("true"))  # not open yet
    await session.open()
    tracker = session.tracker
    await session.close()
    assert not tracker.is_open
    with pytest.raises(InvalidSessionError):
        await session.close()
    with pytest.raises(InvalidSessionError):
        await session.get_jobs()


async def test_bulk_jobs_and_arrays(engine: FakeEngine, tracker: DockerTracker) -> None:
    async with JobSession(tracker) as session:
        array = await session.run_bulk_jobs(job("sleep", "9"), 1, 5, 2, max_parallel=1)
        assert isinstance(array, ArrayJob)
        assert len(array) == 3
        again = await session.get_job_array(array.array_id)
        assert again.jobs == array.jobs
        first = await session.wait_any_started(array.jobs, timeout=2)
        assert first == array.jobs[0]
        await array.terminate()
        assert await session.wait_all_terminated(array.jobs, timeout=2) == list(array.jobs)
        assert {j.state for j in array.jobs} == {FAILED}
        assert "FAILED=3" in repr(array)
        with pytest.raises(JobNotFoundError):
            await session.get_job_array("nonexistent")


async def test_array_control_gathers_each_tasks_failure(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """An engine failure for some tasks does not stop the others: one exception group
    names each failing task."""
    async with JobSession(tracker) as session:
        array = await session.run_bulk_jobs(job("sleep", "9"), 1, 3)
        await session.wait_all_started(array.jobs, timeout=2)
        bad = array.jobs[1].job_id
        engine.fail("pause", EngineCallError(500, "injected"), match=bad)
        with pytest.raises(ExceptionGroup) as caught:
            await array.suspend()
        assert [getattr(e, "job_id", None) for e in caught.value.exceptions] == [bad]
        assert "1 of 3 tasks" in str(caught.value)
        await until(lambda: [j.state for j in array.jobs] == [
            JobState.SUSPENDED, RUNNING, JobState.SUSPENDED
        ])  # fmt: skip
        await array.terminate()


async def test_list_and_destroy_job_sessions(engine: FakeEngine) -> None:
    async with DockerTracker("alpha", engine=engine.client()) as alpha:
        done = await alpha.add_job(job("true"))
        running = await alpha.add_job(job("sleep", "9"))
        engine.exit(done, 0)
        await alpha.wait(done, timeout=2)
        assert await list_job_sessions(engine=engine.client()) == ["alpha"]
        with pytest.raises(InvalidStateError, match="1 job"):
            await destroy_job_session("alpha", engine=engine.client())
        assert len(await alpha.list_jobs()) == 2  # nothing removed
        engine.exit(running, 0)
        await alpha.wait(running, timeout=2)
        removed = await destroy_job_session("alpha", engine=engine.client())
        assert sorted(removed) == sorted([done, running])
        await until(lambda: len(alpha) == 0)
    assert await list_job_sessions(engine=engine.client()) == []
    with pytest.raises(JobNotFoundError):
        await destroy_job_session("alpha", engine=engine.client())


# -- MonitoringSession -----------------------------------------------------------------------


async def test_monitoring_machines_and_queues(engine: FakeEngine) -> None:
    async with MonitoringSession(engine=engine.client()) as monitor:
        [machine] = await monitor.get_all_machines()
        assert (machine.name, machine.architecture, machine.cores_per_socket) == (
            "fake-host", "x64", 4,
        )  # fmt: skip
        assert await monitor.get_all_machines(["fake-host"]) == [machine]
        assert await monitor.get_all_machines(["other"]) == []
        assert await monitor.get_all_queues() == []
    with pytest.raises(InvalidSessionError):
        await monitor.close()


async def test_monitoring_sees_every_container_read_only(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    mine = await tracker.add_job(job("sleep", "9"))
    other = await engine.create({"Image": "aiotracker/busybox:latest", "Labels": {}}, "loner")
    async with MonitoringSession(engine=engine.client()) as monitor:
        views = {v.job_id: v for v in await monitor.get_all_jobs()}
        assert mine in views
        assert other in views
        assert views[mine].session_name == SESSION
        assert views[other].session_name == ""
        assert views[other].state is JobState.QUEUED  # created, never started: by its info
        [running] = await monitor.get_all_jobs(JobInfo(state=RUNNING))
        assert running.job_id == mine
        [by_id] = await monitor.get_all_jobs(JobInfo(job_id=other))
        assert by_id.job_name == "loner"
        [by_name] = await monitor.get_all_jobs(JobInfo(job_name="loner"))
        assert by_name.job_id == other
        assert (await views[mine].get_info()).state is RUNNING
        for verb in ("suspend", "resume", "hold", "release", "terminate", "reap"):
            with pytest.raises(UnsupportedOperationError):
                await getattr(views[mine], verb)()
    assert engine.container(mine).status == "running"
