"""Array jobs against the real engine: strict sequence, max_parallel, hold/release, reopening."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from aiotracker import (
    DockerTracker,
    InvalidArgumentError,
    InvalidStateError,
    JobNotFoundError,
    JobState,
    JobTemplate,
)
from aiotracker._engine.swarm_spec import service_name
from aiotracker._labels import container_name
from tests.conftest import ENGINE, RUN_LABEL, RUN_TOKEN, TEST_IMAGE
from tests.integration.conftest import make_tracker
from tests.integration.test_tracker import session_containers

Make = Callable[..., JobTemplate]

# The task's own clock: /proc/uptime is the host's (not namespaced), 10 ms resolution.
TIMED = (
    'read s _ < /proc/uptime; echo "start $s"; sleep {secs}; read e _ < /proc/uptime; echo "end $e"'
)


def read_times(path: Path) -> tuple[float, float]:
    lines = dict(line.split() for line in path.read_text().splitlines())
    return float(lines["start"]), float(lines["end"])


def assert_launched_in_order(tasks: list[str], starts: list[float]) -> None:
    """The tasks were launched in index order. One engine runs a container when it is
    started: their own start times are in order. Swarm places the tasks of a batch on several
    nodes, each at its own speed: the order kept is the submission's (each task's start is
    an update of its service, stamped by the manager), not the nodes' start times."""
    if ENGINE != "swarm":
        assert starts == sorted(starts)
        return
    stamps = subprocess.run(
        ["docker", "service", "inspect", "-f", "{{json .UpdatedAt}}", *tasks],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    moments = [datetime.fromisoformat(json.loads(s).replace("Z", "+00:00")) for s in stamps]
    assert moments == sorted(moments)


def max_concurrent(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at once (an end at t closes before a start at t)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    return peak


async def test_array_of_ten_listed(tracker: DockerTracker, template: Make) -> None:
    """Ported: an array of 10 tasks has 10 task ids, in index order, all jobs of the session."""
    array_id = await tracker.add_array_job(template("true"), 1, 10)
    tasks = await tracker.list_array_jobs(array_id)
    assert len(tasks) == 10
    assert len(set(tasks)) == 10
    assert sorted(await tracker.list_jobs()) == sorted(tasks)
    states = await tracker.wait_array(array_id, timeout=120)
    assert set(states.values()) == {JobState.DONE}
    assert list(states) == tasks
    # drmaa2os array ids (a JSON list of container ids) are accepted too.
    assert await tracker.list_array_jobs(json.dumps(tasks[:3])) == tasks[:3]


async def test_terminate_array(tracker: DockerTracker, template: Make) -> None:
    """Ported: terminating a 10-task array ends every task FAILED, queued ones without running."""
    array_id = await tracker.add_array_job(template("sleep", "100"), 1, 10, max_parallel=3)
    tasks = await tracker.list_array_jobs(array_id)
    await tracker.wait(tasks[0], JobState.RUNNING, timeout=30)
    await tracker.array_job_control(array_id, "terminate")
    states = await tracker.wait_array(array_id, timeout=60)
    assert list(states.values()) == [JobState.FAILED] * 10
    never_ran = [(await tracker.job_info(t)).dispatch_time for t in tasks[3:]]
    assert never_ran == [None] * 7


@pytest.mark.parametrize("bad_id", ["no-such-array", "[]", '["' + "0" * 64 + '"]', "[1, 2]", "{"])
async def test_list_array_jobs_bad_id(tracker: DockerTracker, bad_id: str) -> None:
    """Ported: list_array_jobs of an id that is no array of this session is JobNotFoundError."""
    with pytest.raises(JobNotFoundError):
        await tracker.list_array_jobs(bad_id)


async def test_each_task_sees_its_task_id(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """Each task gets TASK_ID=<index>; $DRMAA2_INDEX$ in output_path names a file per task."""
    env = {"KEEP": "me"}
    t = template(
        "sh", "-c", "echo $TASK_ID $KEEP",
        output_path=str(tmp_path / "task-$DRMAA2_INDEX$.out"), job_environment=env,
    )  # fmt: skip
    array_id = await tracker.add_array_job(t, 3, 11, step=4)
    assert env == {"KEEP": "me"}  # the caller's template is not changed
    assert t.job_environment == {"KEEP": "me"}
    await tracker.wait_array(array_id, timeout=60)
    for index in (3, 7, 11):
        assert (tmp_path / f"task-{index}.out").read_text() == f"{index} me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task-11.out", "task-3.out", "task-7.out"]


async def test_max_parallel_bound_and_order(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """With max_parallel=2 never more than 2 tasks run at once, and tasks start in index order."""
    t = template("sh", "-c", TIMED.format(secs="0.7"), output_path=str(tmp_path / "$DRMAA2_INDEX$"))
    array_id = await tracker.add_array_job(t, 1, 8, max_parallel=2)
    states = await tracker.wait_array(array_id, timeout=120)
    assert set(states.values()) == {JobState.DONE}
    times = [read_times(tmp_path / str(i)) for i in range(1, 9)]
    assert max_concurrent(times) == 2
    assert_launched_in_order(list(states), [s for s, _ in times])


async def test_unbounded_array_starts_in_strict_sequence(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """max_parallel=0: all tasks run, started one after another in index order."""
    t = template("sh", "-c", TIMED.format(secs="2"), output_path=str(tmp_path / "$DRMAA2_INDEX$"))
    array_id = await tracker.add_array_job(t, 1, 5)
    states = await tracker.wait_array(array_id, timeout=120)
    times = [read_times(tmp_path / str(i)) for i in range(1, 6)]
    assert_launched_in_order(list(states), [s for s, _ in times])
    assert max_concurrent(times) >= 2  # no bound: they overlap


@pytest.mark.parametrize(
    ("begin", "end", "step", "expected"),
    [(1, 1, 1, [1]), (2, 10, 3, [2, 5, 8]), (1, 10, 20, [1]), (5, 6, 1, [5, 6])],
)
async def test_index_ranges(
    tracker: DockerTracker, template: Make, tmp_path: Path,
    begin: int, end: int, step: int, expected: list[int],
) -> None:  # fmt: skip
    """Indexes run begin, begin+step, ... <= end, inclusive."""
    t = template("sh", "-c", "echo $TASK_ID", output_path=str(tmp_path / "$DRMAA2_INDEX$"))
    array_id = await tracker.add_array_job(t, begin, end, step)
    assert len(await tracker.list_array_jobs(array_id)) == len(expected)
    await tracker.wait_array(array_id, timeout=60)
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == expected


@pytest.mark.parametrize(
    ("begin", "end", "step", "max_parallel"),
    [(5, 4, 1, 0), (1, 5, 0, 0), (1, 5, -1, 0), (0, 5, 1, 0), (1, 5, 1, -1), (-3, 2, 1, 0)],
)
async def test_bad_bounds(
    tracker: DockerTracker, template: Make, session_name: str,
    begin: int, end: int, step: int, max_parallel: int,
) -> None:  # fmt: skip
    """Bad bounds are InvalidArgumentError and nothing is created."""
    with pytest.raises(InvalidArgumentError):
        await tracker.add_array_job(template("true"), begin, end, step, max_parallel)
    assert session_containers(session_name) == []


async def test_task_names_unique(tracker: DockerTracker, template: Make, session_name: str) -> None:
    """A job name becomes <name>-<index> per task (the Go tracker's task 2 fails on a clash)."""
    name = f"arr-{session_name[-8:]}"
    array_id = await tracker.add_array_job(template("true", job_name=name), 1, 3)
    names = [(await tracker.job_info(t)).job_name for t in await tracker.list_array_jobs(array_id)]
    assert names == [f"{name}-1", f"{name}-2", f"{name}-3"]
    await tracker.wait_array(array_id, timeout=60)


async def test_failed_creation_leaves_nothing(
    tracker: DockerTracker, template: Make, session_name: str
) -> None:
    """If task 3 cannot be created, tasks 1 and 2 are removed: an array is whole or nothing
    (task 3's container name is taken by a container outside the session)."""
    name = f"clash-{session_name[-8:]}"
    taken = container_name(f"{name}-3", session_name)
    if ENGINE == "swarm":  # a service of that job name's (a job is a service there)
        make = ["docker", "service", "create", "--detach", "--mode", "replicated-job",
                "--replicas", "0", "--name", service_name(taken)]  # fmt: skip
        remove = ["docker", "service", "rm"]
    else:
        make = ["docker", "create", "--network", "none", "--name", taken]
        remove = ["docker", "rm", "-f"]
    blocker = subprocess.run(
        [*make, "--label", f"{RUN_LABEL}={RUN_TOKEN}", TEST_IMAGE, "true"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        with pytest.raises(InvalidArgumentError, match="in use"):
            await tracker.add_array_job(template("sleep", "100", job_name=name), 1, 5)
        assert session_containers(session_name) == []
        assert await tracker.list_jobs() == []
    finally:
        subprocess.run([*remove, blocker], capture_output=True, check=False)


async def test_task_that_cannot_start_fails_and_launcher_goes_on(
    tracker: DockerTracker, template: Make
) -> None:
    """Tasks whose command is missing end FAILED with the reason; the launcher goes on."""
    array_id = await tracker.add_array_job(template("/no-such-binary"), 1, 3, max_parallel=1)
    states = await tracker.wait_array(array_id, timeout=60)
    assert list(states.values()) == [JobState.FAILED] * 3
    for task in states:
        info = await tracker.job_info(task)
        assert "no-such-binary" in info.annotation
        assert info.state is JobState.FAILED


async def test_hold_and_release_array_tasks(tracker: DockerTracker, template: Make) -> None:
    """submit_as_hold holds every task; release starts one; hold re-holds a queued task."""
    array_id = await tracker.add_array_job(template("true", submit_as_hold=True), 1, 3)
    tasks = await tracker.list_array_jobs(array_id)
    assert [await tracker.job_state(t) for t in tasks] == [JobState.QUEUED_HELD] * 3
    await tracker.job_control(tasks[1], "release")
    assert await tracker.wait(tasks[1], timeout=30) is JobState.DONE
    assert await tracker.job_state(tasks[0]) is JobState.QUEUED_HELD
    # A released task that is still queued (bound reached) can be held again.
    await tracker.job_control(tasks[0], "release")
    await tracker.job_control(tasks[2], "release")
    states = await tracker.wait_array(array_id, timeout=60)
    assert list(states.values()) == [JobState.DONE] * 3
    with pytest.raises(InvalidStateError):
        await tracker.job_control(tasks[0], "hold")


async def test_hold_queued_task_under_bound(tracker: DockerTracker, template: Make) -> None:
    """A task queued behind max_parallel can be held, and is skipped until released."""
    array_id = await tracker.add_array_job(template("sleep", "1"), 1, 3, max_parallel=1)
    t1, t2, t3 = await tracker.list_array_jobs(array_id)
    await tracker.job_control(t2, "hold")
    assert await tracker.job_state(t2) is JobState.QUEUED_HELD
    assert await tracker.wait(t3, timeout=30) is JobState.DONE
    assert await tracker.job_state(t1) is JobState.DONE
    assert await tracker.job_state(t2) is JobState.QUEUED_HELD
    await tracker.job_control(t2, "release")
    assert await tracker.wait(t2, timeout=30) is JobState.DONE


async def test_terminate_held_task(tracker: DockerTracker, template: Make) -> None:
    """Terminate of a held task ends it FAILED without it ever running."""
    job_id = await tracker.add_job(template("true", submit_as_hold=True))
    await tracker.job_control(job_id, "terminate")
    assert await tracker.wait(job_id, timeout=5) is JobState.FAILED
    info = await tracker.job_info(job_id)
    assert info.dispatch_time is None
    assert info.state is JobState.FAILED


async def test_reopen_resumes_array(
    session_name: str, labels: dict[str, str], template: Make, tmp_path: Path
) -> None:
    """Close with an array (10 tasks, max 2) half done, reopen: same ids, holds kept, resumed."""
    t = template("sh", "-c", TIMED.format(secs="1"), output_path=str(tmp_path / "$DRMAA2_INDEX$"))
    async with make_tracker(session_name, labels=labels) as first:
        array_id = await first.add_array_job(t, 1, 10, max_parallel=2)
        tasks = await first.list_array_jobs(array_id)
        await first.job_control(tasks[8], "hold")
        await first.job_control(tasks[9], "terminate")
        await first.wait(tasks[2], JobState.RUNNING, timeout=60)
    # No tracker open: queued tasks wait.
    await asyncio.sleep(2.5)
    if ENGINE != "swarm":  # on Swarm: services whose task waits for a constraint
        docker_states = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Status}}", *tasks[4:]],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert docker_states == ["created"] * 6
    async with make_tracker(session_name, labels=labels) as second:
        assert await second.list_array_jobs(array_id) == tasks
        assert await second.job_state(tasks[8]) is JobState.QUEUED_HELD
        assert await second.job_state(tasks[9]) is JobState.FAILED
        for task in tasks[:8]:
            assert await second.wait(task, timeout=120) is JobState.DONE
        assert await second.job_state(tasks[8]) is JobState.QUEUED_HELD
        await second.job_control(tasks[8], "release")
        assert await second.wait(tasks[8], timeout=60) is JobState.DONE
    times = [read_times(tmp_path / str(i)) for i in range(1, 10)]
    assert max_concurrent(times) <= 2
    assert_launched_in_order(tasks[:8], [s for s, _ in times[:8]])
    assert not (tmp_path / "10").exists()
