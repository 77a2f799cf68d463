"""Several trackers on one session, in several processes, against the real engine: one
launcher per array across them, takeover after a SIGKILL, observers, idempotent submission,
per-session job names."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aiotracker import (
    DockerTracker,
    JobNameInUseError,
    JobNotFoundError,
    JobState,
    JobTemplate,
    UnsupportedOperationError,
)
from tests.conftest import RUN_TOKEN
from tests.integration._cli import MAIN_SOCKET, session_containers
from tests.integration._proxy import TcpProxy
from tests.integration._session_worker import MAX_PARALLEL, TASKS

Make = Callable[..., JobTemplate]
ROOT = Path(__file__).resolve().parents[2]


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[sessions] {text}")


def worker(session: str, where: Path, role: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration._session_worker", session, RUN_TOKEN,
         str(where), role],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def stamps(where: Path) -> dict[int, list[tuple[str, float]]]:
    out: dict[int, list[tuple[str, float]]] = {}
    for path in (where / "stamps").iterdir():
        out[int(path.name)] = [
            (kind, float(t)) for kind, t in (line.split() for line in path.read_text().splitlines())
        ]
    return out


@pytest.mark.timeout(300)
async def test_three_processes_one_array_and_a_sigkill(
    session_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three processes track one session; one makes a 30-task array (max_parallel 3) and is
    SIGKILLed mid-array; the others finish it: every task ran exactly once, in index order,
    never more than 3 at once, and every output file is complete exactly once."""
    (tmp_path / "stamps").mkdir()
    (tmp_path / "out").mkdir()
    followers = [worker(session_name, tmp_path, "follow") for _ in range(2)]
    submitter = worker(session_name, tmp_path, "submit")
    try:
        deadline = time.monotonic() + 120
        while len(list((tmp_path / "stamps").iterdir())) < 9:  # mid-array
            assert time.monotonic() < deadline, "the array did not get going"
            assert submitter.poll() is None, submitter.stdout.read() if submitter.stdout else ""
            await asyncio.sleep(0.05)
        submitter.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        submitter.wait()
        seen = len(list((tmp_path / "stamps").iterdir()))
        while len(list((tmp_path / "stamps").iterdir())) == seen:
            assert time.monotonic() - killed_at < 30, "nobody took the array over"
            await asyncio.sleep(0.02)
        takeover = time.monotonic() - killed_at
        for proc in followers:
            out, _ = await asyncio.to_thread(proc.communicate, timeout=240)
            assert proc.returncode == 0, out.decode(errors="replace")
    finally:
        for proc in (submitter, *followers):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    done = [p.read_text() for p in tmp_path.glob("done-*")]
    assert done == ["DONE", "DONE"], done
    runs = stamps(tmp_path)
    assert sorted(runs) == list(range(1, TASKS + 1))
    for index, lines in runs.items():
        assert [kind for kind, _ in lines] == ["start", "end"], f"task {index} ran {lines}"
    starts = [runs[i][0][1] for i in range(1, TASKS + 1)]
    assert starts == sorted(starts), "not started in index order"
    events = sorted([(t, +1) for t in starts] + [(runs[i][1][1], -1) for i in runs])
    running = most = 0
    for _, delta in events:
        running += delta
        most = max(most, running)
    assert most <= MAX_PARALLEL
    for i in range(1, TASKS + 1):
        assert (tmp_path / "out" / str(i)).read_text() == f"out-{i}\n"
    assert not list((tmp_path / "out").glob("*partial*"))
    report(
        capsys,
        f"3 processes, {TASKS} tasks: launcher SIGKILLed with {seen} started; the next task "
        f"started {takeover:.2f} s later (a /proc/uptime stamp); at most {most} at once",
    )


async def test_observer_sees_everything_and_asks_nothing(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """An observer (through a proxy that records its requests) sees every state change and
    never creates, starts, attaches to or changes anything."""
    proxy = TcpProxy(MAIN_SOCKET)
    await proxy.start()
    try:
        async with (
            DockerTracker(session_name, labels=labels) as worker_tracker,
            DockerTracker(session_name, docker_url=proxy.url, role="observer") as observer,
        ):
            job_id = await worker_tracker.add_job(template("sh", "-c", "sleep 1"))
            assert await observer.wait(job_id, JobState.RUNNING, timeout=30) is JobState.RUNNING
            assert await observer.wait(job_id, timeout=30) is JobState.DONE
            with pytest.raises(UnsupportedOperationError):
                await observer.add_job(template("true"))
        writes = [r for r in proxy.requests if r.method not in ("GET", "HEAD")]
        assert writes == [], writes
        assert not [r for r in proxy.requests if "/attach" in r.path or "/logs" in r.path]
    finally:
        await proxy.aclose()


async def test_cancelled_keyed_submissions_retried_make_each_job_once(
    tracker: DockerTracker, template: Make, session_name: str
) -> None:
    """100 keyed add_job calls, each cancelled at a random point within 300 ms, then retried
    with the same key: exactly 100 jobs exist, each running, none killed."""
    rng = random.Random(7)
    sem = asyncio.Semaphore(10)

    async def one(i: int) -> str:
        async with sem:
            key = f"order-{i}"
            task = asyncio.create_task(tracker.add_job(template("sleep", "120"), key=key))
            await asyncio.sleep(rng.uniform(0, 0.3))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return await tracker.add_job(template("sleep", "120"), key=key)

    ids = await asyncio.gather(*(one(i) for i in range(100)))
    assert len(set(ids)) == 100
    assert sorted(await session_containers(session_name)) == sorted(ids)
    for job_id in ids:
        assert await tracker.wait(job_id, JobState.RUNNING, timeout=60) is JobState.RUNNING
    await asyncio.gather(*(tracker.job_control(j, "terminate") for j in ids))


async def test_job_names_are_per_session(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """Two sessions use one job name; a clash within a session names the session's job;
    find_job finds it."""
    name = f"build-{os.getpid()}"
    async with (
        DockerTracker(session_name, labels=labels) as one,
        DockerTracker(session_name + "-other", labels=labels) as other,
    ):
        first = await one.add_job(template("true", job_name=name))
        second = await other.add_job(template("true", job_name=name))
        assert first != second
        with pytest.raises(JobNameInUseError) as err:
            await one.add_job(template("true", job_name=name))
        assert err.value.job_id == first
        assert await one.find_job(name) == first
        assert await other.find_job(name) == second
        assert (await one.job_info(first)).job_name == name
        with pytest.raises(JobNotFoundError):
            await one.find_job("no-such-job")
