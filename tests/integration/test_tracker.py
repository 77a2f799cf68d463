"""DockerTracker against the real engine: the Go dockertracker_test.go cases and more."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from aiotracker import (
    DockerTracker,
    ImageNotFoundError,
    InvalidArgumentError,
    InvalidStateError,
    JobNotFoundError,
    JobState,
    JobTemplate,
    UnsupportedOperationError,
    WaitTimeoutError,
)
from aiotracker._labels import SESSION_LABEL
from tests.conftest import ENGINE, TEST_IMAGE
from tests.integration._cli import eventually
from tests.integration.conftest import make_tracker

Make = Callable[..., JobTemplate]


def session_containers(session: str) -> list[str]:
    """The session's job containers (its trackers' lease containers left out)."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--no-trunc", "--filter", f"label={SESSION_LABEL}={session}",
         "--format", '{{.ID}} {{.Label "aiotracker.lease"}}{{.Label "com.docker.swarm.task.id"}}'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    jobs = [line.split()[0] for line in out.stdout.splitlines() if len(line.split()) == 1]
    if ENGINE == "swarm":  # its jobs are services (their task containers go with them)
        jobs += subprocess.run(
            ["docker", "service", "ls", "-q", "--filter", f"label={SESSION_LABEL}={session}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
    return jobs


# -- ported from drmaa2os dockertracker_test.go ------------------------------------------------


async def add_running(tracker: DockerTracker, submitted: JobTemplate) -> str:
    """A job added and running: at once on one engine; on Swarm once a node runs its task."""
    job_id = await tracker.add_job(submitted)
    if ENGINE == "swarm":
        await tracker.wait(job_id, JobState.RUNNING, timeout=30)
    return job_id


async def test_create_tracker(session_name: str, labels: dict[str, str]) -> None:
    """A tracker opens on the engine and starts with no jobs."""
    async with make_tracker(session_name, labels=labels) as tracker:
        assert await tracker.list_jobs() == []
        assert len(tracker) == 0
        assert repr(tracker).startswith(f"<DockerTracker session={session_name!r} jobs=0")


async def test_list_job_categories(tracker: DockerTracker) -> None:
    """The local images' tags are the job categories, sorted, the test image among them."""
    categories = await tracker.list_job_categories()
    assert TEST_IMAGE in categories
    assert categories == sorted(categories)
    assert "<none>:<none>" not in categories


async def test_add_job_and_state_right_after(tracker: DockerTracker, template: Make) -> None:
    """A job just added is known at once, RUNNING (or already finished)."""
    job_id = await tracker.add_job(template("sleep", "2"))
    if ENGINE == "swarm":  # a service id; QUEUED until a node runs its task
        assert len(job_id) == 25
        assert await tracker.job_state(job_id) in (JobState.QUEUED, JobState.RUNNING)
        await tracker.wait(job_id, JobState.RUNNING, timeout=30)
    else:
        assert len(job_id) == 64
        assert await tracker.job_state(job_id) is JobState.RUNNING
    assert job_id in await tracker.list_jobs()
    await tracker.job_control(job_id, "terminate")
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED


async def test_missing_job_category(tracker: DockerTracker, session_name: str) -> None:
    """A template without a job category is refused before anything is created."""
    with pytest.raises(InvalidArgumentError, match="job_category"):
        await tracker.add_job(JobTemplate(remote_command="true"))
    assert session_containers(session_name) == []


async def test_image_not_present(tracker: DockerTracker, session_name: str) -> None:
    """An image that is not on the engine is ImageNotFoundError, and nothing is pulled or left."""
    with pytest.raises(ImageNotFoundError) as err:
        await tracker.add_job(
            JobTemplate(job_category="aiotracker/absent:v0", remote_command="true")
        )
    assert err.value.image == "aiotracker/absent:v0"
    assert session_containers(session_name) == []


async def test_stdout_to_file_exact(tracker: DockerTracker, template: Make, tmp_path: Path) -> None:
    """stdout goes byte for byte to output_path, complete when wait returns."""
    out = tmp_path / "out"
    job_id = await tracker.add_job(
        template("sh", "-c", "echo line1; printf 'line2'", output_path=str(out))
    )
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert out.read_bytes() == b"line1\nline2"


async def test_stderr_to_file_exact(tracker: DockerTracker, template: Make, tmp_path: Path) -> None:
    """stderr goes byte for byte to error_path; stdout is not mixed in."""
    err = tmp_path / "err"
    job_id = await tracker.add_job(
        template("sh", "-c", "echo out; echo oops >&2; exit 2", error_path=str(err))
    )
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED
    assert err.read_bytes() == b"oops\n"


async def test_stdout_and_stderr_apart(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """Both paths set: each stream in its own file."""
    out, err = tmp_path / "out", tmp_path / "err"
    job_id = await tracker.add_job(
        template(
            "sh", "-c", "echo a; echo b >&2; echo c", output_path=str(out), error_path=str(err)
        )
    )
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert out.read_bytes() == b"a\nc\n"
    assert err.read_bytes() == b"b\n"


@pytest.mark.parametrize("how", ["join_files", "same_path"])
async def test_joined_output_in_order(
    tracker: DockerTracker, template: Make, tmp_path: Path, how: str
) -> None:
    """join_files, or the same path for both, gives one file with both streams in order."""
    out = tmp_path / "both"
    fields = {"join_files": True} if how == "join_files" else {"error_path": str(out)}
    script = "echo 1; sleep 0.1; echo 2 >&2; sleep 0.1; echo 3"
    job_id = await tracker.add_job(template("sh", "-c", script, output_path=str(out), **fields))
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert out.read_bytes() == b"1\n2\n3\n"


async def test_life_cycle_done(tracker: DockerTracker, template: Make) -> None:
    """A job that exits 0 is DONE after wait, with exit status 0 in its info."""
    job_id = await tracker.add_job(template("true"))
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert await tracker.job_state(job_id) is JobState.DONE
    info = await tracker.job_info(job_id)
    assert info.exit_status == 0
    assert info.state is JobState.DONE
    assert info.finish_time is not None
    assert info.dispatch_time is not None
    # Docker may stamp FinishedAt before StartedAt for a job that exits at once.
    assert info.wallclock_time is not None
    assert info.wallclock_time.total_seconds() >= 0


async def test_terminate_then_failed_then_delete(tracker: DockerTracker, template: Make) -> None:
    """Terminate ends a job FAILED (SIGKILL); delete removes it; then it is not found."""
    job_id = await add_running(tracker, template("sleep", "100"))
    await tracker.job_control(job_id, "terminate")
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED
    info = await tracker.job_info(job_id)
    assert (info.exit_status, info.terminating_signal) == (137, "SIGKILL")
    await tracker.delete_job(job_id)
    with pytest.raises(JobNotFoundError):
        await tracker.job_state(job_id)
    assert job_id not in await tracker.list_jobs()


async def test_list_jobs_by_session(
    tracker: DockerTracker, template: Make, session_name: str, labels: dict[str, str]
) -> None:
    """list_jobs shows the session's jobs (finished too) and never another session's."""
    mine = [await tracker.add_job(template("true")) for _ in range(3)]
    async with make_tracker(session_name + "-other", labels=labels) as other:
        theirs = await other.add_job(template("true"))
        assert await other.list_jobs() == [theirs]
        await other.wait(theirs, timeout=30)
        await other.delete_job(theirs)
    for job_id in mine:
        await tracker.wait(job_id, timeout=30)
    assert sorted(await tracker.list_jobs()) == sorted(mine)
    await tracker.delete_job(mine[0])
    assert sorted(await tracker.list_jobs()) == sorted(mine[1:])


@pytest.mark.not_swarm(
    "candidate_machines names a node there (jobhost is none): test_swarm.py places jobs"
)
async def test_template_round_trip(tracker: DockerTracker, template: Make, tmp_path: Path) -> None:
    """job_template reads back exactly the template that was submitted."""
    submitted = template(
        "sh", "-c", "exit 0",
        job_name=f"rt-{os.getpid()}-{tmp_path.name[-6:]}",
        job_environment={"A": "1", "B": "two words"},
        working_directory="/tmp",
        output_path=str(tmp_path / "o"),
        extensions={"user": "nobody"},
        candidate_machines=["jobhost"],
        priority=5,
        accounting_id="acct",
    )  # fmt: skip
    job_id = await tracker.add_job(submitted)
    assert await tracker.job_template(job_id) == submitted
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    info = await tracker.job_info(job_id)
    assert info.job_name == submitted.job_name
    assert info.job_owner == getpass.getuser()  # who submitted it (DRMAA2's job owner)
    assert info.extensions["user"] == "nobody"  # the container's user
    assert info.extensions["hostname"] == "jobhost"


async def test_network_disabled_job_has_only_loopback(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """extensions network-disabled: the job runs, in a network namespace of its own (not the
    host's) with loopback only; on Docker, no network endpoint is made for it."""
    out = tmp_path / "out"
    job_id = await tracker.add_job(
        template(
            "sh", "-c", "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1",
            output_path=str(out), extensions={"network-disabled": "true"},
        )
    )  # fmt: skip
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    netns, *interfaces = out.read_text().split()
    assert netns != os.readlink("/proc/self/ns/net")
    assert interfaces == ["lo"]
    if ENGINE == "docker":
        inspect = ["docker", "inspect", "--format", "{{json .Config.NetworkDisabled}} "
                   "{{json .NetworkSettings.Networks}}", job_id]  # fmt: skip
        assert subprocess.check_output(inspect, text=True).split() == ["true", "{}"]


# -- beyond the Go tests -----------------------------------------------------------------------


async def test_suspend_resume(tracker: DockerTracker, template: Make, tmp_path: Path) -> None:
    """Suspend pauses every process (SUSPENDED), resume continues (RUNNING), then DONE."""
    out = tmp_path / "out"
    job_id = await add_running(
        tracker, template("sh", "-c", "sleep 1 & wait; echo finished", output_path=str(out))
    )
    await tracker.job_control(job_id, "suspend")
    assert await tracker.job_state(job_id) is JobState.SUSPENDED
    assert await tracker.wait(job_id, JobState.SUSPENDED, timeout=0) is JobState.SUSPENDED
    with pytest.raises(WaitTimeoutError):
        await tracker.wait(job_id, timeout=1.5)  # frozen: the 1 s sleep cannot end
    with pytest.raises(InvalidStateError):
        await tracker.job_control(job_id, "suspend")
    await tracker.job_control(job_id, "resume")
    assert await tracker.job_state(job_id) is JobState.RUNNING
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert out.read_bytes() == b"finished\n"
    with pytest.raises(InvalidStateError):
        await tracker.job_control(job_id, "suspend")


async def test_terminate_suspended(tracker: DockerTracker, template: Make) -> None:
    """A suspended job can be terminated, and ends FAILED."""
    job_id = await add_running(tracker, template("sleep", "100"))
    await tracker.job_control(job_id, "suspend")
    await tracker.job_control(job_id, "terminate")
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED


async def test_wait_timeout(tracker: DockerTracker, template: Make) -> None:
    """A wait that runs out of time raises WaitTimeoutError (a TimeoutError), leaving no waiter."""
    job_id = await tracker.add_job(template("sleep", "100"))
    with pytest.raises(TimeoutError):
        await tracker.wait(job_id, timeout=0.3)
    assert tracker.statistics().waiters == 0
    await tracker.job_control(job_id, "terminate")
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED


async def test_wait_timeout_zero_checks_once(tracker: DockerTracker, template: Make) -> None:
    """timeout=0 answers from the current state: the state if wanted, else WaitTimeoutError."""
    job_id = await add_running(tracker, template("sleep", "100"))
    assert await tracker.wait(job_id, JobState.RUNNING, timeout=0) is JobState.RUNNING
    with pytest.raises(WaitTimeoutError):
        await tracker.wait(job_id, timeout=0)
    await tracker.job_control(job_id, "terminate")
    await tracker.wait(job_id, timeout=30)


async def test_wait_unreachable_state(tracker: DockerTracker, template: Make) -> None:
    """Waiting for RUNNING on a finished job is InvalidStateError at once, and also when it ends."""
    done = await tracker.add_job(template("true"))
    await tracker.wait(done, timeout=30)
    with pytest.raises(InvalidStateError):
        await tracker.wait(done, JobState.RUNNING, timeout=30)
    running = await tracker.add_job(template("sleep", "100"))
    pending = asyncio.ensure_future(tracker.wait(running, JobState.SUSPENDED, timeout=30))
    await asyncio.sleep(0)
    await tracker.job_control(running, "terminate")
    with pytest.raises(InvalidStateError):
        await pending


async def test_wait_negative_timeout(tracker: DockerTracker, template: Make) -> None:
    """A negative timeout is an InvalidArgumentError."""
    job_id = await tracker.add_job(template("true"))
    with pytest.raises(InvalidArgumentError):
        await tracker.wait(job_id, timeout=-1)
    await tracker.wait(job_id, timeout=30)


async def test_wait_deleted_job(tracker: DockerTracker, template: Make) -> None:
    """A job removed (by anyone) while waited on wakes the wait with JobNotFoundError."""
    job_id = await tracker.add_job(template("true", submit_as_hold=True))
    pending = asyncio.ensure_future(tracker.wait(job_id))
    await asyncio.sleep(0.1)
    remove = ["docker", "service", "rm"] if ENGINE == "swarm" else ["docker", "rm", "-f"]
    subprocess.run([*remove, job_id], capture_output=True, check=True)
    with pytest.raises(JobNotFoundError):
        await asyncio.wait_for(pending, 30)
    with pytest.raises(JobNotFoundError):
        await tracker.job_state(job_id)


@pytest.mark.not_swarm("no docker rm -f: a service removed leaves its running task to finish")
async def test_wait_running_job_force_removed(tracker: DockerTracker, template: Make) -> None:
    """docker rm -f kills a running job before removing it: the wait sees it end FAILED."""
    job_id = await tracker.add_job(template("sleep", "100"))
    pending = asyncio.ensure_future(tracker.wait(job_id))
    await asyncio.sleep(0.1)
    subprocess.run(["docker", "rm", "-f", job_id], capture_output=True, check=True)
    assert await asyncio.wait_for(pending, 30) is JobState.FAILED


async def test_concurrent_waits_one_stream(tracker: DockerTracker, template: Make) -> None:
    """200 concurrent waits on 200 jobs resolve from the one event stream."""
    jobs: list[str] = []
    sem = asyncio.Semaphore(8)

    async def submit(i: int) -> str:
        async with sem:
            return await tracker.add_job(template("sh", "-c", f"sleep 2; exit {i % 2}"))

    jobs = list(await asyncio.gather(*(submit(i) for i in range(200))))
    inspects_before = tracker.statistics().inspects
    states = await asyncio.wait_for(asyncio.gather(*(tracker.wait(j) for j in jobs)), timeout=240)
    assert states == [JobState.DONE if i % 2 == 0 else JobState.FAILED for i in range(200)]
    stats = tracker.statistics()
    assert stats.waiters == 0
    assert stats.reconnects == 0
    # No polling: the die of a job of aiotracker's (no restart policy) is final and carries
    # its exit code, so no inspect follows it on Docker; at most one per die elsewhere.
    assert stats.inspects - inspects_before <= (0 if ENGINE == "docker" else 200)


async def test_binary_output_exact(tracker: DockerTracker, template: Make, tmp_path: Path) -> None:
    """1 MB of random bytes arrives byte-identical (not through the json-file log's decoding)."""
    src = tmp_path / "random.bin"
    src.write_bytes(os.urandom(1 << 20))
    out = tmp_path / "copy.bin"
    job_id = await tracker.add_job(
        template("cat", "/data/random.bin", output_path=str(out),
                 stage_in_files={str(src): "/data/random.bin"})
    )  # fmt: skip
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.not_swarm("a service has no stdin: input_path is refused (test_swarm.py)")
async def test_input_path_feeds_stdin(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """input_path is fed to the job's stdin, and the job sees its end."""
    src = tmp_path / "in"
    src.write_bytes(b"alpha\nbeta\n")
    out = tmp_path / "out"
    job_id = await tracker.add_job(
        template("sh", "-c", "wc -l; cat >/dev/null", input_path=str(src), output_path=str(out))
    )
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert out.read_bytes().strip() == b"2"


@pytest.mark.not_swarm(
    "a start only schedules the task: the job ends FAILED instead (test_swarm.py)"
)
async def test_command_that_cannot_start(
    tracker: DockerTracker, template: Make, session_name: str, tmp_path: Path
) -> None:
    """A missing executable raises InvalidArgumentError; no container and no output file remain."""
    out = tmp_path / "out"
    with pytest.raises(InvalidArgumentError, match="no-such-binary"):
        await tracker.add_job(template("/no-such-binary", output_path=str(out)))
    assert session_containers(session_name) == []
    assert not out.exists()
    assert await tracker.list_jobs() == []


async def test_job_name_in_use(tracker: DockerTracker, template: Make, tmp_path: Path) -> None:
    """A job name in use in the session is a JobNameInUseError (an InvalidArgumentError)."""
    name = f"named-{tmp_path.name[-8:]}-{os.getpid()}"
    job_id = await tracker.add_job(template("true", job_name=name))
    with pytest.raises(InvalidArgumentError, match="in use"):
        await tracker.add_job(template("true", job_name=name))
    assert (await tracker.job_info(job_id)).job_name == name
    await tracker.wait(job_id, timeout=30)


@pytest.mark.parametrize("action", ["hold", "release"])
async def test_hold_release_of_running_job(
    tracker: DockerTracker, template: Make, action: str
) -> None:
    """Hold or release of a running job is InvalidStateError."""
    job_id = await add_running(tracker, template("sleep", "100"))
    with pytest.raises(InvalidStateError):
        await tracker.job_control(job_id, action)
    await tracker.job_control(job_id, "terminate")
    await tracker.wait(job_id, timeout=30)


async def test_unknown_action(tracker: DockerTracker, template: Make) -> None:
    """An unknown job-control action is InvalidArgumentError."""
    job_id = await tracker.add_job(template("true"))
    with pytest.raises(InvalidArgumentError, match="unknown job control action"):
        await tracker.job_control(job_id, "explode")
    await tracker.wait(job_id, timeout=30)


async def test_delete_running_job_refused(tracker: DockerTracker, template: Make) -> None:
    """Deleting an unfinished job is InvalidStateError, and the job stays."""
    job_id = await add_running(tracker, template("sleep", "100"))
    with pytest.raises(InvalidStateError):
        await tracker.delete_job(job_id)
    assert await tracker.job_state(job_id) is JobState.RUNNING
    await tracker.job_control(job_id, "terminate")
    await tracker.wait(job_id, timeout=30)


UNKNOWN = "0" * 64


@pytest.mark.parametrize(
    "call",
    [
        lambda t, j: t.job_state(j),
        lambda t, j: t.job_info(j),
        lambda t, j: t.job_template(j),
        lambda t, j: t.job_control(j, "suspend"),
        lambda t, j: t.wait(j, timeout=1),
        lambda t, j: t.delete_job(j),
        lambda t, j: t.list_array_jobs(j),
    ],
    ids=["job_state", "job_info", "job_template", "job_control", "wait", "delete_job",
         "list_array_jobs"],
)  # fmt: skip
@pytest.mark.parametrize("job_id", [UNKNOWN, "not-an-id", "", "a" * 12])
async def test_unknown_ids(tracker: DockerTracker, call, job_id: str) -> None:
    """Every method raises JobNotFoundError, carrying the id, for an id that is no job here."""
    with pytest.raises(JobNotFoundError) as err:
        await call(tracker, job_id)
    assert err.value.job_id == job_id


async def test_job_of_second_tracker_seen(
    tracker: DockerTracker, template: Make, session_name: str, labels: dict[str, str]
) -> None:
    """A job made by a second tracker in the same session is listed, waited on and controlled."""
    async with make_tracker(session_name, labels=labels) as second:
        job_id = await second.add_job(template("sleep", "100"))
    # Known at once (asked of the engine if no event told of it yet); RUNNING once the start
    # event arrives: within a millisecond on Docker, up to ~0.4 s late on Podman.
    assert await tracker.job_state(job_id) in (JobState.QUEUED, JobState.RUNNING)
    assert await tracker.wait(job_id, JobState.RUNNING, timeout=5) is JobState.RUNNING
    assert job_id in await tracker.list_jobs()
    await tracker.job_control(job_id, "terminate")
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED


async def test_jobs_made_before_opening(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """Jobs made before a tracker opened are seeded with the right states."""
    async with make_tracker(session_name, labels=labels) as first:
        done = await first.add_job(template("true"))
        failed = await first.add_job(template("sh", "-c", "exit 4"))
        running = await first.add_job(template("sleep", "100"))
        await first.wait(done, timeout=30)
        await first.wait(failed, timeout=30)
    async with make_tracker(session_name, labels=labels) as second:
        assert await second.job_state(done) is JobState.DONE
        assert await second.job_state(failed) is JobState.FAILED
        assert await second.job_state(running) is JobState.RUNNING
        await second.job_control(running, "terminate")
        assert await second.wait(running, timeout=30) is JobState.FAILED


async def test_go_drmaa2os_job_is_tracked(
    tracker: DockerTracker, session_name: str, labels: dict[str, str]
) -> None:
    """A container labelled like the Go drmaa2os tracker makes it is listed and waited on."""
    from aiotracker._template_label import encode_template_label

    go_label = encode_template_label(
        JobTemplate(job_category=TEST_IMAGE, remote_command="sleep", args=["0.5"])
    )
    cid = subprocess.run(
        ["docker", "run", "-d", "--network", "none",
         "--label", f"{SESSION_LABEL}={session_name}", "--label", f"drmaa2jobtemplate={go_label}",
         *[a for k, v in labels.items() for a in ("--label", f"{k}={v}")],
         TEST_IMAGE, "sleep", "0.5"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert await tracker.wait(cid, timeout=30) is JobState.DONE
    assert cid in await tracker.list_jobs()
    assert (await tracker.job_template(cid)).args == ("0.5",)


async def test_job_state_needs_no_engine_call(tracker: DockerTracker, template: Make) -> None:
    """job_state of a known job is answered from the cache: no inspect is made."""
    job_id = await tracker.add_job(template("true"))
    await tracker.wait(job_id, timeout=30)
    before = tracker.statistics().inspects
    for _ in range(1000):
        assert await tracker.job_state(job_id) is JobState.DONE
    assert tracker.statistics().inspects == before


async def test_hold_unsupported_is_not_raised_for_queued(
    tracker: DockerTracker, template: Make
) -> None:
    """submit_as_hold makes a QUEUED_HELD job that release starts."""
    job_id = await tracker.add_job(template("true", submit_as_hold=True))
    assert await tracker.job_state(job_id) is JobState.QUEUED_HELD
    await tracker.job_control(job_id, "hold")  # already held: nothing changes
    assert await tracker.job_state(job_id) is JobState.QUEUED_HELD
    await tracker.job_control(job_id, "release")
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert not issubclass(UnsupportedOperationError, InvalidStateError)


@pytest.mark.not_swarm("no attach: output is read from the task's log once it ends")
async def test_output_interrupted_by_a_closed_tracker_is_rewritten_on_reopen(
    session_name: str, labels: dict[str, str], template: Make, tmp_path: Path
) -> None:
    """A tracker closed mid-job leaves its files as far as they got, marked incomplete; the
    next tracker rewrites them from the log, and only them: a complete file is left alone."""
    early, late, done = tmp_path / "early", tmp_path / "late", tmp_path / "done"
    async with make_tracker(session_name, labels=labels) as first:
        finished = await first.add_job(template("echo", "done", output_path=str(done)))
        assert await first.wait(finished, timeout=30) is JobState.DONE
        ends_while_closed = await first.add_job(
            template("sh", "-c", "echo a; sleep 1; printf 'b\\0\\377'", output_path=str(early))
        )
        runs_past_reopen = await first.add_job(
            template(
                "sh", "-c", "echo c; sleep 4; echo d >&2", output_path=str(late), join_files=True
            )
        )
        await eventually(lambda: early.exists() and early.read_bytes() == b"a\n", "a at early")
        await eventually(lambda: late.exists() and late.read_bytes() == b"c\n", "c at late")
    assert early.read_bytes() == b"a\n"  # as far as it got
    marks = {p.name for p in tmp_path.iterdir() if p.name.endswith(".aiotracker-incomplete")}
    assert marks == {
        f".early.{ends_while_closed[:12]}.aiotracker-incomplete",
        f".late.{runs_past_reopen[:12]}.aiotracker-incomplete",
    }
    done.write_bytes(b"edited by the user\n")
    await asyncio.sleep(1.5)
    async with make_tracker(session_name, labels=labels) as second:
        assert await second.wait(ends_while_closed, timeout=30) is JobState.DONE
        assert early.read_bytes() == b"a\nb\0\377"
        assert await second.wait(runs_past_reopen, timeout=30) is JobState.DONE
        assert late.read_bytes() == b"c\nd\n"
    assert done.read_bytes() == b"edited by the user\n"  # complete: never rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done", "early", "late"]


async def test_large_output_not_held_in_memory(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """100 MB of output streams to the file; the tracker's allocations stay far below that."""
    import tracemalloc

    out = tmp_path / "big"
    tracemalloc.start()
    try:
        job_id = await tracker.add_job(
            template("sh", "-c", "head -c 104857600 /dev/zero", output_path=str(out))
        )
        assert await tracker.wait(job_id, timeout=120) is JobState.DONE
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.stat().st_size == 100 << 20
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/nonexistent-dir/out", "does not exist"), ("/proc/aiotracker-out", "not writable"),
     ("/tmp", "is a directory")],
)  # fmt: skip
async def test_bad_output_path(
    tracker: DockerTracker, template: Make, session_name: str, path: str, reason: str
) -> None:
    """An output path that cannot be written is InvalidArgumentError before anything is made."""
    with pytest.raises(InvalidArgumentError, match=reason):
        await tracker.add_job(template("true", output_path=path))
    with pytest.raises(InvalidArgumentError, match=reason):
        await tracker.add_job(template("true", error_path=path))
    assert session_containers(session_name) == []


@pytest.mark.not_swarm("the rm extension is refused: a service is removed by delete_job")
async def test_auto_removed_job_waited_on(tracker: DockerTracker, template: Make) -> None:
    """With the rm extension the container goes at exit; wait still returns how it ended."""
    job_id = await tracker.add_job(
        template("sh", "-c", "sleep 0.5; exit 3", extensions={"rm": "true"})
    )
    assert await tracker.wait(job_id, timeout=30) is JobState.FAILED
