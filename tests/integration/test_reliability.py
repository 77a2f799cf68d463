"""Reliability (issue 5): lost streams, daemon restarts, load, cancellation, bad input, isolation.

Stream loss runs the tracker behind a unix-socket proxy of the tests' own (``_proxy.py``) and
cuts it; daemon restarts use an extra dockerd of the tests' own (``_dockerd.py``), shared by
the module and stopped only by its pid. The long versions of the load scenarios are marked
``slow``: ``.venv/bin/pytest tests/integration/test_reliability.py -m slow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import math
import os
import shutil
import subprocess
import time
import tracemalloc
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiotracker import (
    DockerTracker,
    DrmCommunicationError,
    ImageNotFoundError,
    InvalidArgumentError,
    InvalidStateError,
    JobNotFoundError,
    JobState,
    JobTemplate,
    TrackerClosedError,
    TrackerError,
)
from aiotracker._engine.base import EVENT_ACTIONS
from aiotracker._labels import SESSION_LABEL, container_name
from tests.conftest import ENGINE, RUN_LABEL, RUN_TOKEN, TEST_IMAGE
from tests.integration._cli import (
    MAIN_SOCKET,
    adocker,
    eventually,
    remove_session_containers,
    session_containers,
)
from tests.integration._dockerd import ExtraEngine
from tests.integration._engine import EngineAPI, parse_ns, parse_since
from tests.integration._proxy import UnixProxy

Make = Callable[..., JobTemplate]

# A job that ends DONE on SIGTERM (docker stop) and FAILED on SIGKILL (docker kill).
TRAP_TERM = "trap 'exit 0' TERM; sleep 1000 & wait"


# -- helpers ------------------------------------------------------------------------------------


async def inspect_all(ids: list[str], host: str | None = None) -> dict[str, dict[str, Any]]:
    """``docker inspect`` of many containers at once: id -> inspect document."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 200):
        text = await adocker("inspect", *ids[i : i + 200], host=host)
        out.update({doc["Id"]: doc for doc in json.loads(text)})
    return out


def docker_state(state: Mapping[str, Any]) -> JobState:
    """The job state a container's inspect ``State`` means (independent of aiotracker's mapping)."""
    status = state["Status"]
    if status in ("exited", "dead"):
        return JobState.DONE if state["ExitCode"] == 0 else JobState.FAILED
    if status == "paused":
        return JobState.SUSPENDED
    if status == "running":
        return JobState.RUNNING
    if status == "created":
        return JobState.FAILED if state.get("Error") else JobState.QUEUED
    raise AssertionError(f"unexpected container state {state!r}")


async def gather_bounded(
    calls: Sequence[Callable[[], Awaitable[Any]]], limit: int = 8
) -> list[Any]:
    """Run the calls concurrently, at most ``limit`` at a time, results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


def session_filters(session: str) -> dict[str, list[str]]:
    """The event filters the tracker uses for a session."""
    return {
        "type": ["container"],
        "label": [f"{SESSION_LABEL}={session}"],
        "event": list(EVENT_ACTIONS),
    }


def tracker_warnings(caplog: pytest.LogCaptureFixture, session: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiotracker" and r.levelno >= logging.WARNING and session in r.getMessage()
    ]


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print a measurement into the test output, past pytest's capture."""
    with capsys.disabled():
        print(f"\n[reliability] {text}")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.asynccontextmanager
async def reaped(tasks: list[asyncio.Task[Any]]) -> AsyncIterator[None]:
    """Cancel and await ``tasks`` at the end (also when the test fails): an exception no one
    retrieved is logged when the task is collected, and a collection during pytest's report
    of a later failure has crashed pytest (CPython 3.11's "AST constructor recursion depth
    mismatch", see PODMAN.md)."""
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def sessions(session_name: str) -> Iterator[list[str]]:
    """Sessions whose containers (carrying this run's label) are removed after the test."""
    names = [session_name]
    yield names
    for name in names:
        remove_session_containers(name)


@pytest.fixture
async def plain_container(sessions: list[str]) -> AsyncIterator[str]:
    """A container made with the docker CLI (no session label): not a job of any tracker."""
    cid = (
        await adocker(
            "run",
            "-d",
            "--network",
            "none",
            "--label",
            f"{RUN_LABEL}={RUN_TOKEN}",
            TEST_IMAGE,
            "sleep",
            "1000",
        )
    ).strip()
    yield cid
    await adocker("rm", "-f", cid, check=False)


@contextlib.asynccontextmanager
async def open_proxy(upstream: str) -> AsyncIterator[UnixProxy]:
    """A proxy to an engine's socket; its own path is short (unix paths max 107 bytes)."""
    directory = Path(f"/tmp/aitp.{uuid.uuid4().hex[:8]}")
    directory.mkdir()
    p = UnixProxy(str(directory / "docker.sock"), upstream)
    await p.start()
    try:
        yield p
    finally:
        await p.aclose()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def proxy() -> AsyncIterator[UnixProxy]:
    """A proxy to the main engine."""
    async with open_proxy(MAIN_SOCKET) as p:
        yield p


@pytest.fixture
async def api() -> AsyncIterator[EngineAPI]:
    async with EngineAPI(MAIN_SOCKET) as engine_api:
        yield engine_api


@pytest.fixture(scope="module")
def extra_engine() -> Iterator[ExtraEngine]:
    """A second dockerd of this module's own, with the test image loaded; destroyed at the end."""
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.fail("the daemon tests need root and dockerd (scripts/docker-engine.sh)")
    engine = ExtraEngine()
    try:
        engine.start()
        engine.load_image()
        yield engine
    finally:
        engine.destroy()


# -- stream loss ------------------------------------------------------------------------------


async def test_cut_stream_waits_survive_and_gap_is_replayed(
    proxy: UnixProxy, api: EngineAPI, session_name: str, labels: dict[str, str],
    template: Make, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A cut stream keeps waits pending, then replays the gap from the last event exactly once."""
    caplog.set_level(logging.INFO, logger="aiotracker")
    t0 = await api.system_time_ns()
    tasks: list[asyncio.Task[Any]] = []
    async with (
        api.witness(session_filters(session_name), t0) as witness,
        DockerTracker(session_name, docker_url=proxy.url, labels=labels) as tracker,
        reaped(tasks),
    ):
        done = await tracker.add_job(template("sh", "-c", TRAP_TERM))
        failed = await tracker.add_job(template("sleep", "1000"))
        paused = await tracker.add_job(template("sleep", "1000"))
        waits = [asyncio.create_task(tracker.wait(j)) for j in (done, failed)]
        suspended = asyncio.create_task(tracker.wait(paused, JobState.SUSPENDED))
        tasks += [*waits, suspended]
        # Both subscribers have seen create and start of all three jobs before the cut.
        await witness.until(6)
        await eventually(
            lambda: tracker.statistics().events == 6 and tracker.statistics().waiters == 3,
            "the tracker saw the 6 events and registered the 3 waits",
        )
        last_seen = max(e["timeNano"] for e in witness.events)
        events_requests = len(proxy.events_requests)

        assert await proxy.cut() >= 1  # the event stream at least
        await adocker("stop", "-t", "30", done)  # exits 0 on SIGTERM
        await adocker("kill", failed)
        await adocker("wait", failed)
        await adocker("pause", paused)
        await witness.until(9)  # die, die, pause: the daemon has logged the gap
        # The tracker keeps trying: three more failed reconnects after the transitions.
        dropped = proxy.dropped
        await proxy.until(lambda: proxy.dropped >= dropped + 3)

        stats = tracker.statistics()
        assert not stats.connected
        assert stats.reconnects == 1
        assert not any(w.done() for w in [*waits, suspended]), "a wait ended during the outage"
        # job_state answers from the cache while disconnected (the engine is unreachable).
        assert await tracker.job_state(done) is JobState.RUNNING
        assert await tracker.job_state(paused) is JobState.RUNNING
        assert len(tracker_warnings(caplog, session_name)) == 1, "one warning per outage"

        await proxy.restore()
        assert await asyncio.wait_for(asyncio.gather(*waits), 60) == [
            JobState.DONE,
            JobState.FAILED,
        ]
        assert await asyncio.wait_for(suspended, 60) is JobState.SUSPENDED

        # Replay: the reconnect asked for the events since the last one the tracker had seen.
        reconnect = proxy.events_requests[events_requests]
        assert parse_since(reconnect.query["since"][0]) == last_seen
        # ... then reconciled by listing the session's containers.
        # (The replayed die events may resolve the waits before the list reaches the proxy.)
        start = proxy.requests.index(reconnect)
        await eventually(
            lambda: any(r.path.endswith("/containers/json") for r in proxy.requests[start:]),
            "a listing of the session's containers after the reconnect",
        )
        # The replay re-sends the boundary event (since is inclusive): it must count once. A
        # live event after the reconnect comes after everything replayed, on the same stream.
        still_held = await api.replay(
            session_filters(session_name), last_seen, await api.system_time_ns()
        )
        await adocker("unpause", paused)
        assert await tracker.wait(paused, JobState.RUNNING, timeout=60) is JobState.RUNNING
        await witness.until(10)
        if len(still_held) == 4:  # the ring still held the boundary event and the 3 of the gap
            assert tracker.statistics().events == witness.count == 10
        else:  # other traffic pushed the gap out of the ring: reconcile found it, not replay
            assert tracker.statistics().events <= witness.count == 10

        stats = tracker.statistics()
        assert stats.connected
        assert (stats.reconnects, stats.waiters) == (1, 0)
        warned = tracker_warnings(caplog, session_name)
        assert len(warned) == 2, f"lost + reconnected, once each: {warned}"

        # A second outage is counted and logged again.
        dropped = proxy.dropped
        await proxy.cut()
        await proxy.until(lambda: proxy.dropped > dropped)
        assert not tracker.statistics().connected
        await proxy.restore()
        await eventually(lambda: tracker.statistics().connected, "the tracker reconnected")
        assert tracker.statistics().reconnects == 2
        assert len(tracker_warnings(caplog, session_name)) == 4


@pytest.mark.docker_only(
    "pushes the gap out of dockerd's 256-event replay ring; Podman's file events backend "
    "replays its whole log since `since` (no ring; the log is rotated only at "
    "events_logfile_max_size, 1 GiB here), so the gap cannot be made unreplayable"
)
async def test_gap_longer_than_replay_ring_is_reconciled(
    proxy: UnixProxy, api: EngineAPI, session_name: str, labels: dict[str, str],
    template: Make, plain_container: str,
) -> None:  # fmt: skip
    """Transitions pushed out of the daemon's 256-event ring are found by listing and inspecting."""
    # Making a gap of over 256 events can take longer than the default engine_timeout on a
    # loaded machine; this test is about reconciling, not about giving up on the engine.
    async with DockerTracker(
        session_name, docker_url=proxy.url, labels=labels, engine_timeout=600
    ) as tracker:
        done = await tracker.add_job(template("sh", "-c", TRAP_TERM))
        failed = await tracker.add_job(template("sleep", "1000"))
        removed = await tracker.add_job(template("sleep", "1000"))
        waits = [asyncio.create_task(tracker.wait(j)) for j in (done, failed, removed)]
        await eventually(lambda: tracker.statistics().waiters == 3, "3 waits registered")

        cut_ns = await api.system_time_ns()
        await proxy.cut()
        await adocker("stop", "-t", "30", done)
        await adocker("kill", failed)
        await adocker("wait", failed)
        await adocker("rm", "-f", removed)
        # A job of the session made during the gap, by another tracker on the engine itself.
        async with DockerTracker(session_name, labels=labels) as other:
            late = await other.add_job(template("true"))
            assert await other.wait(late, timeout=60) is JobState.DONE
        # Flood the daemon-wide ring (256 events) until the gap's transitions have left it.
        for _ in range(5):
            await api.signal_many(plain_container, "SIGWINCH", 300)
            held = await api.replay(
                session_filters(session_name), cut_ns, await api.system_time_ns()
            )
            if not held:
                break
        assert held == [], "the ring still holds the gap: the test would not test reconcile"

        await proxy.restore()
        done_state, failed_state, gone = await asyncio.wait_for(
            asyncio.gather(*waits, return_exceptions=True), 60
        )
        assert (done_state, failed_state) == (JobState.DONE, JobState.FAILED)
        assert isinstance(gone, JobNotFoundError)
        assert gone.job_id == removed

        # The job made during the gap is found by the reconcile's listing (no event told of it).
        async def late_listed() -> bool:
            return late in await tracker.list_jobs()  # from the cache: no engine call

        await eventually(late_listed, "the late job is listed")
        assert set(await tracker.list_jobs()) == {done, failed, late}
        assert await tracker.job_state(late) is JobState.DONE
        stats = tracker.statistics()
        assert (stats.reconnects, stats.waiters) == (1, 0)


# -- daemon restart and engine loss ---------------------------------------------------------


@pytest.mark.docker_only(
    "stops and restarts a dockerd of its own (ExtraEngine, by its pid); the Podman service "
    "under test is shared by the whole run and its containers are not its children (conmon "
    "keeps them running across a service restart), so there is no daemon restart to test"
)
@pytest.mark.parametrize("cut_first", [False, True], ids=["stream-open", "stream-cut-first"])
async def test_daemon_restart_fails_pending_waits_within_2s(
    extra_engine: ExtraEngine, session_name: str, labels: dict[str, str], template: Make,
    cut_first: bool,
) -> None:  # fmt: skip
    """20 waits on jobs of a restarted engine resolve FAILED within 2 s of it answering again.

    stream-open: the tracker's stream stays open while the daemon stops (it may see the jobs
    die then). stream-cut-first: a proxy cuts the tracker off before the daemon stops and lets
    it back only once the engine answers again, so only reconciliation can find the deaths.
    """
    async with contextlib.AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(open_proxy(extra_engine.socket))
        url = proxy.url if cut_first else extra_engine.url
        tracker = await stack.enter_async_context(
            DockerTracker(session_name, docker_url=url, labels=labels, engine_timeout=600)
        )
        sleeper = template("sleep", "1000")
        jobs = await gather_bounded([functools.partial(tracker.add_job, sleeper)] * 20)
        finished: dict[str, float] = {}

        async def wait_one(job_id: str) -> JobState:
            state = await tracker.wait(job_id)
            finished[job_id] = time.monotonic()
            return state

        waits = [asyncio.create_task(wait_one(j)) for j in jobs]
        await eventually(lambda: tracker.statistics().waiters == 20, "20 waits registered")

        if cut_first:
            await proxy.cut()
        pid = extra_engine.pid
        assert pid is not None
        await extra_engine.stop()  # SIGTERM to our dockerd by pid; it stops the jobs
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        extra_engine.spawn()
        answered = await extra_engine.wait_ready()
        if cut_first:
            assert not any(w.done() for w in waits), "the tracker saw the jobs end"
            await proxy.restore()
            answered = time.monotonic()  # for the tracker, the engine answers from now on

        states = await asyncio.wait_for(asyncio.gather(*waits), 60)
        assert states == [JobState.FAILED] * 20
        late = {
            j[:12]: round(finished[j] - answered, 3) for j in jobs if finished[j] - answered > 2
        }
        assert not late, f"waits resolved more than 2 s after the engine answered: {late}"
        docs = await inspect_all(jobs, host=extra_engine.url)
        assert {docker_state(d["State"]) for d in docs.values()} == {JobState.FAILED}
        assert [await tracker.job_state(j) for j in jobs] == [JobState.FAILED] * 20
        assert tracker.statistics().reconnects == 1
        # The tracker works on the restarted engine.
        again = await tracker.add_job(template("true"))
        assert await tracker.wait(again, timeout=60) is JobState.DONE


async def test_engine_gone_behind_proxy(
    proxy: UnixProxy, session_name: str, labels: dict[str, str], template: Make
) -> None:
    """With the engine's socket gone past engine_timeout, waits and calls fail; then all works."""

    async def go_away() -> None:
        await proxy.cut(refuse=True)  # the socket file is gone: connecting fails

    await _engine_gone(proxy.url, None, go_away, proxy.restore, session_name, labels, template)


@pytest.mark.docker_only(
    "stops and restarts a dockerd of its own (ExtraEngine, by its pid); an engine that goes "
    "away is tested on Podman too, behind a proxy (test_engine_gone_behind_proxy)"
)
async def test_engine_stopped_then_started(
    extra_engine: ExtraEngine, session_name: str, labels: dict[str, str], template: Make
) -> None:
    """With the engine stopped past engine_timeout, waits and calls fail; restarted, all works."""

    async def come_back() -> None:
        extra_engine.spawn()
        await extra_engine.wait_ready()

    await _engine_gone(
        extra_engine.url, extra_engine.url, extra_engine.stop, come_back, session_name, labels,
        template,
    )  # fmt: skip


async def _engine_gone(
    url: str, host: str | None, go_away: Callable[[], Awaitable[None]],
    come_back: Callable[[], Awaitable[None]], session_name: str, labels: dict[str, str],
    template: Make,
) -> None:  # fmt: skip
    timeout = 2.0
    async with DockerTracker(
        session_name, docker_url=url, labels=labels, engine_timeout=timeout
    ) as tracker:
        # A held job is not stopped by a daemon shutdown: its waits stay pending until failed.
        held = await tracker.add_job(template("true", submit_as_hold=True))
        pending = [asyncio.create_task(tracker.wait(held)) for _ in range(3)]
        await eventually(lambda: tracker.statistics().waiters == 3, "3 waits registered")
        before = await session_containers(session_name, host=host)

        t0 = time.monotonic()
        await go_away()
        for task in pending:
            with pytest.raises(DrmCommunicationError):
                await asyncio.wait_for(task, 60)
        elapsed = time.monotonic() - t0
        assert timeout <= elapsed <= timeout + 6, f"waits failed after {elapsed:.2f} s"
        assert tracker.statistics().waiters == 0
        # Calls that need the engine fail the same way; a new wait too, at once.
        with pytest.raises(DrmCommunicationError):
            await tracker.job_info(held)
        with pytest.raises(DrmCommunicationError):
            await tracker.add_job(template("true"))
        with pytest.raises(DrmCommunicationError):
            await tracker.wait(held, timeout=30)
        assert await tracker.job_state(held) is JobState.QUEUED_HELD  # from the cache

        await come_back()
        await eventually(lambda: tracker.statistics().connected, "the tracker reconnected")
        assert await session_containers(session_name, host=host) == before  # add_job made nothing
        job = await tracker.add_job(template("true"))
        assert await tracker.wait(job, timeout=60) is JobState.DONE
        await tracker.job_control(held, "release")
        assert await tracker.wait(held, timeout=60) is JobState.DONE
        assert (await tracker.job_info(held)).exit_status == 0


# -- load -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n",
    [
        pytest.param(100, id="100"),
        pytest.param(500, id="500", marks=[pytest.mark.slow, pytest.mark.timeout(900)]),
    ],
)
async def test_burst_of_exits_loses_no_transition(
    tracker: DockerTracker, template: Make, tmp_path: Path, n: int,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """n jobs released at the same instant all end, each cached state matching inspect."""
    gate = tmp_path / "gate"
    gate.mkdir()
    fifo = gate / "go"
    os.mkfifo(fifo)
    # Held open read-write: the jobs' reads block (no data) instead of seeing end of file.
    fd = os.open(fifo, os.O_RDWR)
    try:
        t0 = time.monotonic()
        templates = [
            template(
                "sh",
                "-c",
                f"read x < /gate/go; exit {3 if i % 3 == 0 else 0}",
                stage_in_files={str(gate): "/gate"},
            )
            for i in range(n)
        ]
        jobs = await gather_bounded([functools.partial(tracker.add_job, t) for t in templates])
        created = time.monotonic() - t0
        waits = [asyncio.create_task(tracker.wait(j)) for j in jobs]
        await eventually(lambda: tracker.statistics().waiters == n, f"{n} waits registered")
        t1 = time.monotonic()
        os.write(fd, b"\n" * n)  # one byte per job: all are released at once
        states = await asyncio.wait_for(asyncio.gather(*waits), 600)
        resolved = time.monotonic() - t1
    finally:
        os.close(fd)
    expected = [JobState.FAILED if i % 3 == 0 else JobState.DONE for i in range(n)]
    assert states == expected
    docs = await inspect_all(jobs)
    mismatched = [
        (j[:12], cached, docker_state(docs[j]["State"]))
        for j in jobs
        if (cached := await tracker.job_state(j)) is not docker_state(docs[j]["State"])
    ]
    assert not mismatched, f"cache differs from inspect: {mismatched}"
    stats = tracker.statistics()
    assert stats.events == 3 * n, "create, start and die of every job, each counted once"
    assert stats.reconnects == 0
    ends = sorted(parse_ns(docs[j]["State"]["FinishedAt"]) for j in jobs)
    spread = (ends[-1] - ends[0]) / 1e9
    report(
        capsys,
        f"burst of {n}: created in {created:.1f} s, exits spread over {spread:.2f} s, "
        f"all waits resolved {resolved:.2f} s after the release",
    )


@pytest.mark.parametrize(
    "n",
    [
        pytest.param(200, id="200"),
        pytest.param(1000, id="1000", marks=[pytest.mark.slow, pytest.mark.timeout(900)]),
    ],
)
async def test_many_jobs_and_waits_one_stream_bounded_pool(
    proxy: UnixProxy, session_name: str, labels: dict[str, str], template: Make, n: int,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """n tracked jobs and n pending waits use one event stream and no more than the pool."""
    limit = 4
    tracemalloc.start()
    try:
        async with DockerTracker(
            session_name, docker_url=proxy.url, labels=labels, connection_limit=limit
        ) as tracker:
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
            held = template("true", submit_as_hold=True)
            jobs = await gather_bounded([functools.partial(tracker.add_job, held)] * n, 32)
            gc.collect()
            with_jobs = tracemalloc.get_traced_memory()[0]
            waits = [asyncio.create_task(tracker.wait(j)) for j in jobs]
            await eventually(lambda: tracker.statistics().waiters == n, f"{n} waits registered")
            gc.collect()
            with_waits = tracemalloc.get_traced_memory()[0]
            stats = tracker.statistics()
            assert (stats.jobs, stats.waiters) == (n, n)
            assert not any(w.done() for w in waits)

            terminate = [functools.partial(tracker.job_control, j, "terminate") for j in jobs]
            await gather_bounded(terminate, 32)
            assert await asyncio.wait_for(asyncio.gather(*waits), 300) == [JobState.FAILED] * n
            assert tracker.statistics().waiters == 0
    finally:
        tracemalloc.stop()
    assert len(proxy.events_requests) == 1, "one event stream, never reopened"
    # The API pool, the event stream and the stdin held for the tracker's lease.
    assert proxy.max_open <= limit + 2, f"{proxy.max_open} connections open at once"
    per_job = (with_jobs - base) / n
    per_wait = (with_waits - with_jobs) / n
    report(
        capsys,
        f"{n} jobs tracked: {per_job / 1024:.1f} KiB per tracked job, {per_wait / 1024:.1f} KiB "
        f"per pending wait (tracemalloc, incl. the test's task); at most {proxy.max_open} "
        f"connections, {len(proxy.requests)} requests",
    )
    assert per_job < 64 * 1024, "a tracked job should cost well under 64 KiB"


# -- cancellation ----------------------------------------------------------------------------


async def test_cancelled_wait_leaves_no_waiter(tracker: DockerTracker, template: Make) -> None:
    """Cancelling one wait (by cancel, wait_for or a cancel scope) removes it and no other."""
    job = await tracker.add_job(template("sleep", "1000"))
    kept = asyncio.create_task(tracker.wait(job))
    cancelled = asyncio.create_task(tracker.wait(job, JobState.SUSPENDED))
    await eventually(lambda: tracker.statistics().waiters == 2, "2 waits registered")
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert tracker.statistics().waiters == 1
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(tracker.wait(job), 0.05)
    assert tracker.statistics().waiters == 1
    with anyio.move_on_after(0.05) as scope:
        await tracker.wait(job)
    assert scope.cancelled_caught
    assert tracker.statistics().waiters == 1
    assert not kept.done()
    await tracker.job_control(job, "terminate")
    assert await asyncio.wait_for(kept, 60) is JobState.FAILED
    assert tracker.statistics().waiters == 0


async def _cancel_after(task: asyncio.Task[Any], delay: float | int | None) -> None:
    """Cancel ``task`` at once (None), after ``int`` loop iterations, or after ``float`` seconds."""
    if isinstance(delay, float):
        await asyncio.sleep(delay)
    elif isinstance(delay, int):
        for _ in range(delay):
            await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TrackerError):
        await task


CANCEL_POINTS: list[float | int | None] = [None, 1, 2, 3, 5, 8, 0.002, 0.01, 0.05, 0.15, 0.3]


async def test_cancelled_add_job_makes_whole_job_or_nothing(
    tracker: DockerTracker, template: Make, session_name: str
) -> None:
    """A cancelled add_job leaves either no container or a running job the tracker knows."""
    names = {}
    for point in CANCEL_POINTS:
        name = f"cx-{uuid.uuid4().hex[:12]}"
        names[container_name(name, session_name)] = point  # job names are per session
        task = asyncio.create_task(tracker.add_job(template("sleep", "1000", job_name=name)))
        await _cancel_after(task, point)
    await eventually(lambda: tracker.statistics().tasks == 0, "the tracker is idle")
    docs = await inspect_all(await session_containers(session_name))
    by_name = {d["Name"].lstrip("/"): d for d in docs.values()}
    assert set(by_name) <= set(names)
    known = set(await tracker.list_jobs())
    for name, doc in by_name.items():
        assert doc["State"]["Status"] == "running", f"{name} (cancel at {names[name]}) half made"
        assert doc["Id"] in known
        assert await tracker.job_state(doc["Id"]) is JobState.RUNNING
    assert not [n for n in by_name if names[n] is None], "cancelled before it ran, yet made"
    assert len(known) == len(by_name)


async def test_add_job_cut_short_by_aclose_leaves_no_half_made_job(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """Closing the tracker during a cancelled add_job leaves no container that never started."""
    names = {}
    for point in CANCEL_POINTS[1:] * 2:
        name = f"cz-{uuid.uuid4().hex[:12]}"
        names[container_name(name, session_name)] = point  # job names are per session
        async with DockerTracker(session_name, labels=labels) as tracker:
            task = asyncio.create_task(tracker.add_job(template("sleep", "1000", job_name=name)))
            await _cancel_after(task, point)
    # A create may still be in flight at the engine: look once it has surely answered.
    await asyncio.sleep(0.5)
    docs = await inspect_all(await session_containers(session_name))
    half_made = [
        names[d["Name"].lstrip("/")] for d in docs.values() if d["State"]["Status"] == "created"
    ]
    assert not half_made, f"created but never started, cancelled at {half_made}"
    for doc in docs.values():
        assert doc["Name"].lstrip("/") in names
        assert doc["State"]["Status"] == "running"


async def test_aclose_wakes_waits_and_leaves_nothing_behind(
    session_name: str, labels: dict[str, str], template: Make, tmp_path: Path
) -> None:
    """aclose wakes pending waits with TrackerClosedError and leaves no task, socket or file."""
    tasks_before = asyncio.all_tasks()
    fds_before = fd_count()

    async def use_and_close() -> list[str]:
        """Everything that touches the tracker: it is garbage once this returns."""
        tracker = DockerTracker(session_name, labels=labels)
        await tracker.open()
        try:
            out = str(tmp_path / "out")
            job = await tracker.add_job(
                template("sh", "-c", "echo started; sleep 1000", output_path=out)
            )
            other = await tracker.add_job(template("sleep", "1000"))
            waits = [asyncio.create_task(tracker.wait(j)) for j in (job, job, other)]
            await eventually(lambda: tracker.statistics().waiters == 3, "3 waits registered")
            # The output file is open (under whatever name the tracker writes it until the end).
            await eventually(lambda: any(tmp_path.iterdir()), "the output file exists")
            assert tracker.statistics().output_streams == 1
            assert fd_count() > fds_before
        finally:
            await tracker.aclose()
        outcomes = await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 30)
        assert all(isinstance(o, TrackerClosedError) for o in outcomes), outcomes
        with pytest.raises(TrackerClosedError):
            await tracker.wait(job)
        with pytest.raises(TrackerClosedError):
            await tracker.add_job(template("true"))
        await tracker.aclose()  # twice is fine
        return [job, other]

    jobs = await use_and_close()
    left = asyncio.all_tasks() - tasks_before - {asyncio.current_task()}
    assert not left, f"tasks left after aclose: {left}"
    # The jobs keep running in Docker.
    docs = await inspect_all(jobs)
    assert {d["State"]["Status"] for d in docs.values()} == {"running"}
    # An unclosed aiohttp session would warn when collected (and fail the run).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    await eventually(lambda: fd_count() <= fds_before, f"fds back to {fds_before}", timeout=10)
    await adocker("rm", "-f", *jobs)


# -- bad input -----------------------------------------------------------------------------


def _unwritable_dir(path: Path) -> Callable[[], None]:
    """Make ``path`` unwritable even for root; returns the undo."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    chattr = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if chattr.returncode != 0:
        pytest.skip("cannot make a directory unwritable for root here (no chattr +i)")

    def undo() -> None:
        subprocess.run(["chattr", "-i", str(path)], check=False)

    return undo


# (id, template fields, the error class, why it fails today if it does). "{tmp}": a fresh
# directory, "{ro}": a directory nobody can write to (root included).
_BAD: list[tuple[str, dict[str, Any], type[TrackerError], str]] = [
    # job category
    ("category-empty", {"job_category": ""}, InvalidArgumentError, ""),
    ("category-missing", {"job_category": None}, InvalidArgumentError, ""),
    ("category-blank", {"job_category": "  "}, InvalidArgumentError, ""),
    ("image-absent", {"job_category": "aiotracker/absent:v0"}, ImageNotFoundError, ""),
    ("image-absent-digest", {"job_category": "aiotracker/absent@sha256:" + "0" * 64},
     ImageNotFoundError, ""),
    ("image-upper", {"job_category": "Aiotracker/BusyBox"}, InvalidArgumentError, ""),
    ("image-space", {"job_category": "busy box"}, InvalidArgumentError, ""),
    ("image-empty-tag", {"job_category": "busybox:"}, InvalidArgumentError, ""),
    ("image-no-name", {"job_category": ":latest"}, InvalidArgumentError, ""),
    ("image-digest", {"job_category": "busybox@sha256:xyz"}, InvalidArgumentError, ""),
    ("image-too-long", {"job_category": "a" * 300}, InvalidArgumentError, ""),
    ("image-newline", {"job_category": "busybox\n"}, InvalidArgumentError, ""),
    # command
    ("command-absent", {"remote_command": "/no/such/command"}, InvalidArgumentError, ""),
    ("command-not-on-path", {"remote_command": "no-such-command"}, InvalidArgumentError, ""),
    ("command-directory", {"remote_command": "/tmp"}, InvalidArgumentError, ""),
    ("command-nul", {"remote_command": "tr\x00ue"}, InvalidArgumentError, ""),
    ("args-nul", {"args": ["a\x00b"]}, InvalidArgumentError, ""),
    ("job-name", {"job_name": "bad name!"}, InvalidArgumentError, ""),
    ("workdir-relative", {"working_directory": "relative"}, InvalidArgumentError, ""),
    # every extension with a bad value (syntax, or something the engine cannot do)
    ("user-syntax", {"extensions": {"user": "bad user"}}, InvalidArgumentError, ""),
    ("user-nul", {"extensions": {"user": "x\x00"}}, InvalidArgumentError, ""),
    ("user-absent", {"extensions": {"user": "nosuchuser"}}, InvalidArgumentError, ""),
    ("ports-range", {"extensions": {"exposedPorts": "99999"}}, InvalidArgumentError, ""),
    ("ports-name", {"extensions": {"exposedPorts": "http"}}, InvalidArgumentError, ""),
    ("ports-proto", {"extensions": {"exposedPorts": "80/xyz"}}, InvalidArgumentError, ""),
    ("ports-ip", {"extensions": {"exposedPorts": "1.2.3:80:80"}}, InvalidArgumentError, ""),
    ("ports-ranges-differ", {"extensions": {"exposedPorts": "8000-8001:80-82"}},
     InvalidArgumentError, ""),
    ("ports-empty", {"extensions": {"exposedPorts": ""}}, InvalidArgumentError, ""),
    ("entrypoint-empty", {"extensions": {"entrypoint": "  "}}, InvalidArgumentError, ""),
    ("entrypoint-absent", {"extensions": {"entrypoint": "/no/such/entrypoint"}},
     InvalidArgumentError, ""),
    ("net-syntax", {"extensions": {"net": "bad mode!"}}, InvalidArgumentError, ""),
    ("net-absent", {"extensions": {"net": "no-such-network"}}, InvalidArgumentError, ""),
    ("net-container-absent", {"extensions": {"net": "container:no-such-container"}},
     InvalidArgumentError, ""),
    ("privileged", {"extensions": {"privileged": "yes"}}, InvalidArgumentError, ""),
    ("restart", {"extensions": {"restart": "sometimes"}}, InvalidArgumentError, ""),
    ("restart-count", {"extensions": {"restart": "on-failure:x"}}, InvalidArgumentError, ""),
    ("ipc", {"extensions": {"ipc": "bogus"}}, InvalidArgumentError, ""),
    ("ipc-container-absent", {"extensions": {"ipc": "container:no-such-container"}},
     InvalidArgumentError, ""),
    ("uts", {"extensions": {"uts": "private"}}, InvalidArgumentError, ""),
    ("pid", {"extensions": {"pid": "bogus"}}, InvalidArgumentError, ""),
    ("rm", {"extensions": {"rm": "maybe"}}, InvalidArgumentError, ""),
    ("gpus-word", {"extensions": {"gpus": "zero"}}, InvalidArgumentError, ""),
    ("gpus-0", {"extensions": {"gpus": "0"}}, InvalidArgumentError, ""),
    ("gpus-negative", {"extensions": {"gpus": "-1"}}, InvalidArgumentError, ""),
    ("gpus-none-here", {"extensions": {"gpus": "1"}}, InvalidArgumentError, ""),
    ("shm-size-word", {"extensions": {"shm-size": "lots"}}, InvalidArgumentError, ""),
    ("shm-size-0", {"extensions": {"shm-size": "0"}}, InvalidArgumentError, ""),
    ("ulimit-no-value", {"extensions": {"ulimit": "nofile"}}, InvalidArgumentError, ""),
    ("ulimit-word", {"extensions": {"ulimit": "nofile=a"}}, InvalidArgumentError, ""),
    ("ulimit-name", {"extensions": {"ulimit": "bogus=1"}}, InvalidArgumentError, ""),
    ("ulimit-soft-above-hard", {"extensions": {"ulimit": "nofile=10:5"}},
     InvalidArgumentError, ""),
    ("ulimit-too-high", {"extensions": {"ulimit": "nofile=99999999999"}},
     InvalidArgumentError, ""),
    ("extension-unknown", {"extensions": {"bogus": "1"}}, InvalidArgumentError, ""),
    ("extension-wrong-case", {"extensions": {"Privileged": "true"}}, InvalidArgumentError, ""),
    # environment
    ("env-key-equals", {"job_environment": {"A=B": "1"}}, InvalidArgumentError, ""),
    ("env-key-nul", {"job_environment": {"A\x00": "1"}}, InvalidArgumentError, ""),
    ("env-key-empty", {"job_environment": {"": "1"}}, InvalidArgumentError, ""),
    ("env-value-nul", {"job_environment": {"A": "x\x00"}}, InvalidArgumentError, ""),
    # paths
    ("output-missing-dir", {"output_path": "{tmp}/missing/out"}, InvalidArgumentError, ""),
    ("error-missing-dir", {"error_path": "{tmp}/missing/err"}, InvalidArgumentError, ""),
    ("output-is-dir", {"output_path": "{tmp}"}, InvalidArgumentError, ""),
    ("output-not-writable", {"output_path": "{ro}/out"}, InvalidArgumentError, ""),
    ("error-not-writable", {"error_path": "{ro}/err"}, InvalidArgumentError, ""),
    ("input-missing", {"input_path": "{tmp}/no-such-input"}, InvalidArgumentError, ""),
    ("stage-in-missing", {"stage_in_files": {"{tmp}/missing": "/data"}},
     InvalidArgumentError, ""),
    ("stage-in-relative-target", {"stage_in_files": {"{tmp}": "relative"}},
     InvalidArgumentError, ""),
]  # fmt: skip


def _bad_param(name: str, fields: dict[str, Any], error: type[TrackerError], why: str) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
    return pytest.param(fields, error, id=name, marks=marks)


BAD_TEMPLATES = [_bad_param(*case) for case in _BAD]


def _fill(value: Any, paths: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**paths) if "{" in value else value
    if isinstance(value, dict):
        return {_fill(k, paths): _fill(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, paths) for v in value]
    return value


@pytest.mark.parametrize(("fields", "error"), BAD_TEMPLATES)
async def test_bad_template_refused_and_nothing_left(
    tracker: DockerTracker, session_name: str, tmp_path: Path,
    fields: dict[str, Any], error: type[TrackerError],
) -> None:  # fmt: skip
    """A bad template raises its specific error class; no container and no output file remain."""
    paths = {"tmp": str(tmp_path), "ro": str(tmp_path / "ro")}
    undo: Callable[[], None] | None = None
    if "{ro}" in repr(fields):
        undo = _unwritable_dir(tmp_path / "ro")
    try:
        values = {"job_category": TEST_IMAGE, "remote_command": "true", **_fill(fields, paths)}
        if values["job_category"] is None:
            del values["job_category"]
        before = await session_containers(session_name)
        files_before = sorted(p.name for p in tmp_path.rglob("*"))
        with pytest.raises(TrackerError) as caught:
            await tracker.add_job(JobTemplate(**values))
        assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
        assert await session_containers(session_name) == before == []
        assert await tracker.list_jobs() == []
        assert sorted(p.name for p in tmp_path.rglob("*")) == files_before
    finally:
        if undo is not None:
            undo()


@pytest.mark.parametrize(
    ("begin", "end", "step", "max_parallel"),
    [(5, 1, 1, 0), (1, 5, 0, 0), (1, 5, -1, 0), (1, 5, 1, -1), (0, 5, 1, 0), (-3, 5, 1, 0)],
    ids=["begin-above-end", "step-0", "step-negative", "max-parallel-negative", "begin-0",
         "begin-negative"],
)  # fmt: skip
async def test_bad_array_bounds_refused(
    tracker: DockerTracker, template: Make, session_name: str,
    begin: int, end: int, step: int, max_parallel: int,
) -> None:  # fmt: skip
    """Bad array bounds are InvalidArgumentError, before any task is created."""
    with pytest.raises(TrackerError) as caught:
        await tracker.add_array_job(template("true"), begin, end, step, max_parallel)
    assert type(caught.value) is InvalidArgumentError
    assert await session_containers(session_name) == []
    assert tracker.statistics().arrays == 0


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda t, j, a: t.wait(j, timeout=-1), id="wait-negative"),
        pytest.param(lambda t, j, a: t.wait(j, timeout=math.nan), id="wait-nan"),
        pytest.param(lambda t, j, a: t.wait(j, timeout=-math.inf), id="wait-minus-inf"),
        pytest.param(lambda t, j, a: t.wait_array(a, timeout=-1), id="wait-array-negative"),
    ],
)
async def test_negative_timeout_refused(
    tracker: DockerTracker, template: Make, session_name: str,
    call: Callable[[DockerTracker, str, str], Awaitable[Any]],
) -> None:  # fmt: skip
    """A negative (or NaN) timeout is InvalidArgumentError and changes nothing."""
    job = await tracker.add_job(template("sleep", "1000"))
    array = await tracker.add_array_job(template("sleep", "1000"), 1, 2)
    before = await session_containers(session_name)
    with pytest.raises(TrackerError) as caught:
        await call(tracker, job, array)
    assert type(caught.value) is InvalidArgumentError
    assert tracker.statistics().waiters == 0
    assert await session_containers(session_name) == before
    await tracker.array_job_control(array, "terminate")
    await tracker.job_control(job, "terminate")
    await tracker.wait(job, timeout=60)
    await tracker.wait_array(array, timeout=60)


JobCall = Callable[[DockerTracker, str], Awaitable[Any]]
ACTIONS = ["suspend", "resume", "hold", "release", "terminate"]


def _job_control(action: str) -> JobCall:
    return lambda t, j: t.job_control(j, action)


def _array_control(action: str) -> JobCall:
    return lambda t, a: t.array_job_control(a, action)


JOB_METHODS: dict[str, JobCall] = {
    "job_state": lambda t, j: t.job_state(j),
    "job_info": lambda t, j: t.job_info(j),
    "job_template": lambda t, j: t.job_template(j),
    "wait": lambda t, j: t.wait(j, timeout=5),
    "wait-running": lambda t, j: t.wait(j, JobState.RUNNING, timeout=5),
    "delete_job": lambda t, j: t.delete_job(j),
    **{f"job_control-{a}": _job_control(a) for a in ACTIONS},
}
ARRAY_METHODS: dict[str, JobCall] = {
    "list_array_jobs": lambda t, a: t.list_array_jobs(a),
    "wait_array": lambda t, a: t.wait_array(a, timeout=5),
    **{f"array_job_control-{a}": _array_control(a) for a in ACTIONS},
}
UNKNOWN_JOB_IDS = ["0" * 64, uuid.uuid4().hex + uuid.uuid4().hex, "f" * 12, "not-an-id", "", "Zz"]
UNKNOWN_ARRAY_IDS = ["nosuch", "0" * 16, json.dumps(["0" * 64]), "[]", "[not json", ""]


@pytest.mark.parametrize("method", list(JOB_METHODS))
async def test_unknown_job_id_every_method(
    tracker: DockerTracker, session_name: str, method: str
) -> None:
    """Every job method raises JobNotFoundError (with the id) for ids that are no job."""
    for job_id in UNKNOWN_JOB_IDS:
        with pytest.raises(TrackerError) as caught:
            await JOB_METHODS[method](tracker, job_id)
        assert type(caught.value) is JobNotFoundError, f"{job_id!r}: {caught.value!r}"
        assert caught.value.job_id == job_id
    assert tracker.statistics().waiters == 0
    assert await session_containers(session_name) == []


@pytest.mark.parametrize("method", list(ARRAY_METHODS))
async def test_unknown_array_id_every_method(
    tracker: DockerTracker, session_name: str, method: str
) -> None:
    """Every array method raises JobNotFoundError for ids that are no array job."""
    for array_id in UNKNOWN_ARRAY_IDS:
        with pytest.raises(TrackerError) as caught:
            await ARRAY_METHODS[method](tracker, array_id)
        assert type(caught.value) is JobNotFoundError, f"{array_id!r}: {caught.value!r}"
    assert await session_containers(session_name) == []


async def test_ambiguous_id_prefix_is_not_found(
    tracker: DockerTracker, sessions: list[str], session_name: str
) -> None:
    """A short id that prefixes several containers (none of them a job here) is JobNotFoundError."""
    other = f"{session_name}-amb"
    sessions.append(other)
    ids: list[str] = []
    for _ in range(17):  # 17 ids over 16 hex digits: two share their first digit
        out = await adocker(
            "create", "--network", "none", "--label", f"{RUN_LABEL}={RUN_TOKEN}",
            "--label", f"{SESSION_LABEL}={other}", TEST_IMAGE, "true",
        )  # fmt: skip
        ids.append(out.strip())
    firsts = [i[0] for i in ids]
    prefix = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(TrackerError) as caught:
        await tracker.job_state(prefix)
    assert type(caught.value) is JobNotFoundError, repr(caught.value)


@pytest.mark.parametrize("action", ["explode", "", "SUSPEND ", "kill"])
async def test_unknown_action_refused(
    tracker: DockerTracker, template: Make, session_name: str, action: str
) -> None:
    """An unknown job-control action is InvalidArgumentError, for a job and for an array."""
    job = await tracker.add_job(template("sleep", "1000"))
    array = await tracker.add_array_job(template("sleep", "1000"), 1, 2)
    before = await session_containers(session_name)
    for call in (tracker.job_control(job, action), tracker.array_job_control(array, action)):
        with pytest.raises(TrackerError) as caught:
            await call
        assert type(caught.value) is InvalidArgumentError
    assert await tracker.job_state(job) is JobState.RUNNING
    assert await session_containers(session_name) == before
    await tracker.array_job_control(array, "terminate")
    await tracker.job_control(job, "terminate")
    await tracker.wait(job, timeout=60)
    await tracker.wait_array(array, timeout=60)


@pytest.mark.parametrize(
    ("finished", "call"),
    [
        pytest.param(False, lambda t, j: t.delete_job(j), id="delete-running"),
        pytest.param(False, lambda t, j: t.job_control(j, "resume"), id="resume-running"),
        pytest.param(True, lambda t, j: t.job_control(j, "suspend"), id="suspend-finished"),
        pytest.param(True, lambda t, j: t.job_control(j, "resume"), id="resume-finished"),
        pytest.param(True, lambda t, j: t.job_control(j, "terminate"), id="terminate-finished"),
        pytest.param(True, lambda t, j: t.job_control(j, "release"), id="release-finished"),
    ],
)
async def test_action_in_wrong_state_refused(
    tracker: DockerTracker, template: Make, session_name: str, finished: bool, call: JobCall
) -> None:
    """An action the job's state does not allow is InvalidStateError, and the job is unchanged."""
    job = await tracker.add_job(template("true") if finished else template("sleep", "1000"))
    if finished:
        await tracker.wait(job, timeout=60)
    state = await tracker.job_state(job)
    docker_before = docker_state((await inspect_all([job]))[job]["State"])
    with pytest.raises(TrackerError) as caught:
        await call(tracker, job)
    assert type(caught.value) is InvalidStateError
    assert caught.value.job_id == job
    assert await tracker.job_state(job) is state
    assert docker_state((await inspect_all([job]))[job]["State"]) is docker_before is state
    assert await session_containers(session_name) == [job]
    if not finished:
        await tracker.job_control(job, "terminate")
        await tracker.wait(job, timeout=60)


# -- isolation and safety ----------------------------------------------------------------------


async def test_other_containers_are_not_jobs(
    tracker: DockerTracker, template: Make, session_name: str, labels: dict[str, str],
    sessions: list[str], plain_container: str,
) -> None:  # fmt: skip
    """Another session's job and a plain container are JobNotFoundError for every method."""
    other_session = f"{session_name}-x"  # the tracker's session is a prefix of it
    sessions.append(other_session)
    mine = await tracker.add_job(template("sleep", "1000"))
    await eventually(lambda: tracker.statistics().events == 2, "create and start of mine seen")
    async with DockerTracker(other_session, labels=labels) as other:
        theirs = await other.add_job(template("sleep", "1000"))
        their_array = await other.add_array_job(template("sleep", "1000"), 1, 2)
        their_tasks = await other.list_array_jobs(their_array)
        foreign = [theirs, theirs[:12], plain_container, plain_container[:12], *their_tasks]
        for name, method in JOB_METHODS.items():
            for job_id in foreign:
                with pytest.raises(TrackerError) as caught:
                    await method(tracker, job_id)
                assert type(caught.value) is JobNotFoundError, f"{name}({job_id[:12]})"
        for name, method in ARRAY_METHODS.items():
            for array_id in (their_array, json.dumps([theirs]), json.dumps(their_tasks)):
                with pytest.raises(TrackerError) as caught:
                    await method(tracker, array_id)
                assert type(caught.value) is JobNotFoundError, f"{name}({array_id})"
        assert await tracker.list_jobs() == [mine]
        assert tracker.statistics().waiters == 0
        # Nothing was done to the foreign containers.
        docs = await inspect_all([theirs, plain_container, *their_tasks])
        assert {d["State"]["Status"] for d in docs.values()} == {"running"}
        # Their transitions do not reach this tracker: the die of mine comes after theirs on
        # the daemon's stream, so once it is seen, any of theirs would have been seen too.
        await other.job_control(theirs, "terminate")
        assert await other.wait(theirs, timeout=60) is JobState.FAILED
        await other.array_job_control(their_array, "terminate")
        await other.wait_array(their_array, timeout=60)
    await adocker("kill", plain_container)
    await adocker("wait", plain_container)
    await adocker("kill", mine)
    assert await tracker.wait(mine, timeout=60) is JobState.FAILED
    stats = tracker.statistics()
    assert (stats.events, stats.jobs) == (3, 1), "create, start and die of mine only"


# inspect key -> (value when not asked, extension that asks, value when asked)
HOST_OPTIONS = {
    "Privileged": (False, {"privileged": "true"}, True),
    "NetworkMode": ("default", {"net": "host"}, "host"),
    "PidMode": ("", {"pid": "host"}, "host"),
    "IpcMode": ("private", {"ipc": "host"}, "host"),
    "UTSMode": ("", {"uts": "host"}, "host"),
}
# Podman's inspect says so where nothing is asked (the same namespaces: a private one of the
# container's own; Docker's "private" IPC is Podman's "shareable"), and lists no binds as [].
PODMAN_DEFAULTS: dict[str, Any] = {
    "PidMode": "private", "IpcMode": "shareable", "UTSMode": "private", "Binds": [],
}  # fmt: skip


def default(key: str) -> Any:
    """The inspect value of ``key`` when the template does not ask for it, on this engine."""
    if ENGINE == "podman" and key in PODMAN_DEFAULTS:
        return PODMAN_DEFAULTS[key]
    return HOST_OPTIONS[key][0] if key in HOST_OPTIONS else None


@pytest.mark.parametrize("asked", [None, *HOST_OPTIONS, "Binds"])
async def test_host_options_only_when_asked(
    tracker: DockerTracker, template: Make, tmp_path: Path, asked: str | None
) -> None:
    """privileged, host namespaces and binds appear in inspect only when the template asks."""
    fields: dict[str, Any] = {}
    if asked == "Binds":
        fields["stage_in_files"] = {str(tmp_path): "/data"}
    elif asked is not None:
        fields["extensions"] = HOST_OPTIONS[asked][1]
    # Held: created, never started (this host may not allow privileged containers to run).
    job = await tracker.add_job(template("true", submit_as_hold=True, **fields))
    host = (await inspect_all([job]))[job]["HostConfig"]
    podman_ipc = ENGINE == "podman" and asked in (None, "IpcMode")
    if podman_ipc:
        # Podman 4.3's inspect says "shareable" also for the host's IPC namespace: the job
        # itself tells which namespace it has.
        out = tmp_path / "ipc"
        reader = await tracker.add_job(
            template("readlink", "/proc/self/ns/ipc", output_path=str(out), **fields)
        )
        assert await tracker.wait(reader, timeout=60) is JobState.DONE
        assert (out.read_text().strip() == os.readlink("/proc/self/ns/ipc")) == bool(asked)
    for key, (_, _, value) in HOST_OPTIONS.items():
        expected = value if key == asked else default(key)
        if key == "IpcMode" and podman_ipc:
            assert host[key] == default(key), key
        elif key == "NetworkMode" and expected == "default":
            assert host[key] != "host"
        else:
            assert host[key] == expected, key
    # Podman's inspect lists a bind with the options it applied (its defaults, nothing asked).
    bind = f"{tmp_path}:/data" + (":rw,rprivate,rbind" if ENGINE == "podman" else "")
    assert host["Binds"] == ([bind] if asked == "Binds" else default("Binds"))
    assert not host.get("Mounts")
    assert not host.get("CapAdd")
    assert not host.get("Devices")
    if asked not in ("Privileged", "PidMode", "IpcMode"):  # Docker adds label=disable for those
        assert not host.get("SecurityOpt")


async def test_command_is_an_argument_list_never_a_shell(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """remote_command and args reach the container as an argument list: no shell interprets them."""
    args = ["$(id -u)", "; echo injected", "`id`", "a  b", "*", "'q'", "$HOME"]
    out = tmp_path / "out"
    job = await tracker.add_job(template("echo", *args, output_path=str(out)))
    assert await tracker.wait(job, timeout=60) is JobState.DONE
    assert out.read_text() == " ".join(args) + "\n"
    config = (await inspect_all([job]))[job]["Config"]
    assert config["Cmd"] == ["echo", *args]
    # No entrypoint wraps the command (Podman's inspect shows none as [], Docker's as null).
    assert config["Entrypoint"] == ([] if ENGINE == "podman" else None)
