"""Swarm's own scenarios (issue 16), on scripts/swarm-engine.sh's 3 nodes: placement by
candidate_machines, an array's bound and order across nodes, byte-exact output from the task
logs, a worker that goes down mid-job, a tracker reopened, the poller alone (no node hints),
and what Swarm cannot run. Run with AIOTRACKER_TEST_ENGINE=swarm (skipped otherwise); the
tracker suite runs there too (tests/integration/SWARM.md lists what does not apply)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from aiotracker import (
    DockerTracker,
    JobInfo,
    JobState,
    JobTemplate,
    StateChange,
    SwarmMonitoringSession,
    SwarmTracker,
    UnsupportedOperationError,
)
from tests.conftest import SWARM_MANAGER, SWARM_NODES
from tests.integration._cli import eventually
from tests.integration.conftest import make_tracker
from tests.integration.test_arrays import (
    TIMED,
    assert_launched_in_order,
    max_concurrent,
    read_times,
)
from tests.integration.test_tracker import session_containers

pytestmark = pytest.mark.swarm_only

Make = Callable[..., JobTemplate]
HOSTS = ["aiotracker-n1", "aiotracker-n2", "aiotracker-n3"]
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "swarm-engine.sh"


async def test_jobs_land_on_every_node_as_candidate_machines_say(
    tracker: DockerTracker, template: Make
) -> None:
    """candidate_machines places a job on a node by its hostname, or by a constraint of the
    swarm's own (a node label); allocated_machines says where it ran."""
    by_host = {h: await tracker.add_job(template("true", candidate_machines=[h])) for h in HOSTS}
    by_label = await tracker.add_job(
        template("true", candidate_machines=["node.labels.aiotracker.node==n2"])
    )
    for host, job_id in by_host.items():
        assert await tracker.wait(job_id, timeout=60) is JobState.DONE
        assert (await tracker.job_info(job_id)).allocated_machines == (host,)
    assert await tracker.wait(by_label, timeout=60) is JobState.DONE
    assert (await tracker.job_info(by_label)).allocated_machines == ("aiotracker-n2",)


async def test_delete_job_leaves_no_container_on_its_node(
    tracker: DockerTracker, template: Make
) -> None:
    """delete_job removes the job's service and its task's container on the worker that ran
    it (workers were seen to keep them)."""
    job_id = await tracker.add_job(template("true", candidate_machines=[HOSTS[2]]))
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    node = SWARM_NODES[2]
    on_node = ["docker", "-H", node, "ps", "-aq", "--filter",
               f"label=com.docker.swarm.service.id={job_id}"]  # fmt: skip
    assert subprocess.run(on_node, capture_output=True, text=True, check=True).stdout.split()
    await tracker.delete_job(job_id)
    assert subprocess.run(on_node, capture_output=True, text=True, check=True).stdout.split() == []


async def test_unknown_candidate_machine_stays_queued(
    tracker: DockerTracker, template: Make
) -> None:
    """A job no node can take waits QUEUED (as Swarm keeps its task pending), and can be
    terminated."""
    job_id = await tracker.add_job(template("true", candidate_machines=["no-such-node"]))
    await asyncio.sleep(1.0)
    assert await tracker.job_state(job_id) is JobState.QUEUED
    await tracker.job_control(job_id, "terminate")
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED
    assert (await tracker.job_info(job_id)).dispatch_time is None


async def test_array_of_12_keeps_the_bound_and_the_order(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """12 tasks, max_parallel 3, spread over the nodes: never more than 3 run at once, they
    are submitted in index order, each knows its index, and they ran on more than one node."""
    t = template(
        "sh", "-c", f'echo "task $TASK_ID"; {TIMED.format(secs="0.5")}',
        output_path=str(tmp_path / "$DRMAA2_INDEX$"),
    )  # fmt: skip
    array_id = await tracker.add_array_job(t, 1, 12, max_parallel=3)
    states = await tracker.wait_array(array_id, timeout=180)
    assert set(states.values()) == {JobState.DONE}
    times = [read_times_skipping_first(tmp_path / str(i)) for i in range(1, 13)]
    assert max_concurrent(times) <= 3
    assert max_concurrent(times) >= 2  # a bound, not a sequence
    assert_launched_in_order(list(states), [s for s, _ in times])
    for i in range(1, 13):
        assert (tmp_path / str(i)).read_text().splitlines()[0] == f"task {i}"
    machines = {m for job_id in states for m in (await tracker.job_info(job_id)).allocated_machines}
    assert len(machines) >= 2


def read_times_skipping_first(path: Path) -> tuple[float, float]:
    trimmed = path.with_suffix(".times")
    trimmed.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")
    return read_times(trimmed)


async def test_stdout_and_stderr_byte_exact_and_apart(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """256 KiB of random bytes on stdout and another on stderr arrive byte-identical, each in
    its own file (read from the task's log, kept by the local log driver)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "out.bin").write_bytes(os.urandom(1 << 18))
    (data / "err.bin").write_bytes(os.urandom(1 << 18))
    out, err = tmp_path / "job.out", tmp_path / "job.err"
    job_id = await tracker.add_job(
        template("sh", "-c", "cat /d/out.bin; cat /d/err.bin >&2",
                 output_path=str(out), error_path=str(err),
                 stage_in_files={str(data): "/d"})
    )  # fmt: skip
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    assert out.read_bytes() == (data / "out.bin").read_bytes()
    assert err.read_bytes() == (data / "err.bin").read_bytes()


@pytest.mark.timeout(600)  # the node's return is slow on a loaded host
async def test_worker_down_mid_job(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """A worker's dockerd stopped while it runs a job, as a crashed host would be (its engine
    not among the tracker's node_urls: no die from it): that job is UNDETERMINED as soon as
    the manager says the node is down, then FAILED after the grace (nothing waits forever); a
    job on another node finishes DONE. (With the node's engine reachable, the die it sends as
    it stops its containers ends the job FAILED at once.)"""
    async with SwarmTracker(
        session_name, docker_url=SWARM_MANAGER, node_urls=SWARM_NODES[:2], labels=labels,
        node_down_grace=2.0,
    ) as tracker:  # fmt: skip
        lost = await tracker.add_job(template("sleep", "300", candidate_machines=[HOSTS[2]]))
        other = await tracker.add_job(template("sleep", "20", candidate_machines=[HOSTS[1]]))
        await tracker.wait(lost, JobState.RUNNING, timeout=60)
        await tracker.wait(other, JobState.RUNNING, timeout=60)
        changes: list[JobState | None] = []
        stream = tracker.watch([lost])
        await stream.__aenter__()  # registered now: no change is missed
        watching = asyncio.ensure_future(_states_of(stream, changes))
        stopped = subprocess.run(["bash", str(SCRIPT), "stop-node", "3"], check=False)
        try:
            assert stopped.returncode == 0
            assert await tracker.wait(lost, JobState.UNDETERMINED, timeout=60) in (
                JobState.UNDETERMINED,
            )
            assert await tracker.wait(lost, timeout=30) is JobState.FAILED
            info = await tracker.job_info(lost)
            assert info.exit_status == 255
            assert "down" in info.annotation
            assert await tracker.wait(other, timeout=60) is JobState.DONE
        finally:
            subprocess.run(["bash", str(SCRIPT), "start-node", "3"], check=False, timeout=180)
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await stream.__aexit__(None, None, None)
        assert changes == [JobState.UNDETERMINED, JobState.FAILED]
        # The node back: Swarm fails the task ("No such container"); the job stays FAILED.
        await asyncio.sleep(2)
        assert await tracker.job_state(lost) is JobState.FAILED


async def _states_of(stream: AsyncIterator[StateChange], out: list[JobState | None]) -> None:
    async for change in stream:  # each as it comes: the watch is cancelled, never ends
        out.append(change.new_state)  # noqa: PERF401


async def test_reopened_tracker_finds_every_job(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """Jobs made by a tracker that closed are all found by the next, in their states."""
    async with make_tracker(session_name, labels=labels) as first:
        done = await first.add_job(template("true"))
        failed = await first.add_job(template("sh", "-c", "exit 3"))
        running = await first.add_job(template("sleep", "100"))
        held = await first.add_job(template("true", submit_as_hold=True))
        await first.wait(done, timeout=60)
        await first.wait(failed, timeout=60)
        await first.wait(running, JobState.RUNNING, timeout=60)
    async with make_tracker(session_name, labels=labels) as second:
        assert sorted(await second.list_jobs()) == sorted([done, failed, running, held])
        assert await second.job_state(done) is JobState.DONE
        assert await second.job_state(failed) is JobState.FAILED
        assert (await second.job_info(failed)).exit_status == 3
        assert await second.job_state(running) is JobState.RUNNING
        assert await second.job_state(held) is JobState.QUEUED_HELD
        await second.job_control(held, "release")
        assert await second.wait(held, timeout=60) is JobState.DONE
        await second.job_control(running, "terminate")
        assert await second.wait(running, timeout=60) is JobState.FAILED


async def test_poller_alone_without_node_engines(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """Without the nodes' engines the task poller alone tracks jobs (exit codes, a
    terminate through the manager); suspend needs a node's engine: UnsupportedOperationError."""
    async with SwarmTracker(
        session_name, docker_url=SWARM_MANAGER, labels=labels, poll_interval=0.1
    ) as tracker:
        ok = await tracker.add_job(template("true"))
        bad = await tracker.add_job(template("sh", "-c", "exit 7"))
        # On a worker: the manager's own engine could pause a job it runs.
        long = await tracker.add_job(template("sleep", "100", candidate_machines=[HOSTS[1]]))
        assert await tracker.wait(ok, timeout=60) is JobState.DONE
        assert await tracker.wait(bad, timeout=60) is JobState.FAILED
        assert (await tracker.job_info(bad)).exit_status == 7
        await tracker.wait(long, JobState.RUNNING, timeout=60)
        with pytest.raises(UnsupportedOperationError):
            await tracker.job_control(long, "suspend")
        await tracker.job_control(long, "terminate")
        assert await tracker.wait(long, timeout=60) is JobState.FAILED
        assert tracker._rt.engine.polls > 0  # type: ignore[attr-defined]


async def test_command_that_cannot_start_fails_with_the_reason(
    tracker: DockerTracker, template: Make
) -> None:
    """A command missing from the image: the start only schedules it, so add_job returns; the
    job ends FAILED with the engine's reason, and never ran."""
    job_id = await tracker.add_job(template("/no-such-binary"))
    assert await tracker.wait(job_id, timeout=60) is JobState.FAILED
    info = await tracker.job_info(job_id)
    assert "no-such-binary" in info.annotation


@pytest.mark.parametrize(
    "fields",
    [
        {"input_path": "/etc/hostname"},
        {"extensions": {"privileged": "true"}},
        {"extensions": {"rm": "true"}},
    ],
    ids=["input_path", "privileged", "rm"],
)
async def test_what_swarm_cannot_run_is_refused_and_leaves_nothing(
    tracker: DockerTracker, template: Make, session_name: str, fields: dict[str, object]
) -> None:
    """What a service cannot do is UnsupportedOperationError at add_job, and no service is
    left behind."""
    with pytest.raises(UnsupportedOperationError, match="Swarm"):
        await tracker.add_job(template("true", **fields))
    assert await tracker.list_jobs() == []
    assert session_containers(session_name) == []


async def test_machines_are_the_swarms_nodes(tracker: DockerTracker, template: Make) -> None:
    """A monitoring session over the swarm lists its nodes as machines (by name, with their
    CPUs, memory and platform), filtered by name, and sees a running job among its jobs."""
    async with SwarmMonitoringSession(SWARM_MANAGER, node_urls=SWARM_NODES) as monitor:
        machines = await monitor.get_all_machines()
        assert [m.name for m in machines] == HOSTS
        for machine in machines:
            assert machine.available
            assert machine.cores_per_socket >= 1
            assert machine.physical_memory > 1 << 10  # KiB
            assert (machine.os, machine.architecture) == ("linux", machines[0].architecture)
        assert [m.name for m in await monitor.get_all_machines([HOSTS[1]])] == [HOSTS[1]]
        assert await monitor.get_all_machines(["no-such-node"]) == []
        job_id = await tracker.add_job(template("sleep", "60"))
        await tracker.wait(job_id, JobState.RUNNING, timeout=60)

        async def seen_running() -> bool:  # the manager's word lags the node's by ~0.1 s
            [view] = await monitor.get_all_jobs(JobInfo(job_id=job_id))
            return view.state is JobState.RUNNING

        await eventually(seen_running, "the monitor sees the job RUNNING", timeout=10)
    await tracker.job_control(job_id, "terminate")
    await tracker.wait(job_id, timeout=60)


@pytest.fixture
def manager_lag(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """The manager's lag, held while ``lag["on"]``: every ended task reads as still running
    (a manager learns of an exit from the node's agent: 63 ms median after the node's die
    here, more under load)."""
    from aiotracker._engine import swarm, swarm_tasks
    from aiotracker._engine.docker import DockerEngine
    from aiotracker._engine.swarm_spec import TaskView

    real = swarm_tasks.get_tasks
    lag = {"on": False}

    async def lagging(manager: DockerEngine, service_ids: list[str]) -> list[TaskView]:
        tasks = await real(manager, service_ids)
        if not lag["on"]:
            return tasks
        return [
            dataclasses.replace(t, state="running", status="running", exit_code=None)
            if t.ended else t
            for t in tasks
        ]  # fmt: skip

    monkeypatch.setattr(swarm_tasks, "get_tasks", lagging)
    monkeypatch.setattr(swarm, "get_tasks", lagging)
    return lag


@pytest.mark.parametrize("nodes", [True, False], ids=["node-engines", "poller-alone"])
async def test_reopened_while_the_manager_has_not_heard_of_the_exits(
    session_name: str, labels: dict[str, str], template: Make, manager_lag: dict[str, bool],
    nodes: bool,
) -> None:  # fmt: skip
    """Jobs that ended on every node under a tracker now closed, while the manager still lists
    their tasks as running: the nodes' engines tell the next tracker at its opening (states,
    exit codes, no lease taken over); without them each job reads RUNNING until the manager
    hears, then ends (its die, stamped before the opening, is not dropped as stale)."""
    async with make_tracker(session_name, labels=labels) as first:
        jobs = {
            await first.add_job(template("sh", "-c", f"exit {code}", candidate_machines=[h])): code
            for code, h in enumerate(HOSTS)
        }
        for job_id in jobs:
            await first.wait(job_id, timeout=60)
    manager_lag["on"] = True
    async with SwarmTracker(
        session_name, docker_url=SWARM_MANAGER, node_urls=SWARM_NODES if nodes else (),
        labels=labels, poll_interval=0.1,
    ) as second:  # fmt: skip
        states = {j: await second.job_state(j) for j in jobs}
        if nodes:
            assert states == {j: JobState.DONE if c == 0 else JobState.FAILED
                              for j, c in jobs.items()}  # fmt: skip
            for job_id, code in jobs.items():
                assert (await second.job_info(job_id)).exit_status == code
            assert second._rt.leases.takeovers == 0
        else:
            # The manager's own node is a node: its job is known; the workers' are not.
            on_workers = [j for j, c in jobs.items() if HOSTS[c] != "aiotracker-n1"]
            assert [states[j] for j in on_workers] == [JobState.RUNNING] * 2
        manager_lag["on"] = False
        for job_id, code in jobs.items():
            expected = JobState.DONE if code == 0 else JobState.FAILED
            assert await second.wait(job_id, timeout=30) is expected
            assert (await second.job_info(job_id)).exit_status == code
