"""Engine room (issue "engine room"): what the tracker owes its caller when files, engines,
event loops and descriptors misbehave, against the real engine.

A job's file error is that job's fault (``JobInfo.faults``), never the tracker's end; an engine
failure that is not the job's is ``EngineError``; special output files (``/dev/null``, FIFOs,
symlinks) are written in place; relative paths are fixed at submission; ``tcp://`` engines get
bounded pools and timeouts; a tracker leaves no socket whichever loop closes it.

Jobs that must run at the same time block on a FIFO "gate" (``read x < /gate/go``) that the test
opens; ``tcp://`` engines are a TCP listener of the tests' own (``_proxy.TcpProxy``) in front of
the main engine's socket; the full disk is an extra dockerd (``_dockerd.py``) whose data root is
a small tmpfs. Every container carries the run's label and is removed after each test.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import gc
import json
import os
import resource
import select
import shutil
import stat
import subprocess
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from aiotracker import (
    DockerTracker,
    DrmCommunicationError,
    InvalidArgumentError,
    InvalidStateError,
    JobInfo,
    JobState,
    JobTemplate,
    TrackerClosedError,
    TrackerError,
)
from tests.integration._cli import (
    MAIN_SOCKET,
    adocker,
    eventually,
    gather_bounded,
    remove_session_containers,
    session_containers,
)
from tests.integration._dockerd import ExtraEngine
from tests.integration._proxy import TcpProxy

Make = Callable[..., JobTemplate]

# drmaa2os's session label (shared with the Go tracker): stable whatever aiotracker's layout.
SESSION_LABEL = "drmaa2_jobsession"
DEV_NULL = os.makedev(1, 3)


# -- helpers ------------------------------------------------------------------------------------


def faults_of(info: JobInfo) -> tuple[str, ...]:
    """``JobInfo.faults``: what the tracker could not do for the job ("<kind>: <reason>")."""
    return tuple(info.faults)


def fault(info: JobInfo, kind: str) -> str | None:
    """The first fault of ``kind`` ("output incomplete", "not started", ...), also checking
    that the annotation carries every fault text."""
    found = faults_of(info)
    for text in found:
        assert text in info.annotation, f"fault {text!r} missing from {info.annotation!r}"
    return next((text for text in found if text.startswith(kind)), None)


async def container_states(ids: Sequence[str]) -> dict[str, str]:
    """``State.Status`` of each container (``docker inspect``)."""
    out: dict[str, str] = {}
    for i in range(0, len(ids), 200):
        docs = json.loads(await adocker("inspect", *ids[i : i + 200]))
        out.update({d["Id"]: d["State"]["Status"] for d in docs})
    return out


async def settle(awaitables: Sequence[Awaitable[Any]], timeout: float) -> list[Any]:
    """Await all of them; each one's result, or the exception it raised (kept shallow: a test
    asserts on values, so a failure is reported without the tracker's traceback)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    assert not pending, f"{len(pending)} of {len(tasks)} still pending after {timeout} s"
    return [task.exception() or task.result() for task in tasks]


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print a measurement into the test output, past pytest's capture."""
    with capsys.disabled():
        print(f"\n[engine-room] {text}")


def fd_links() -> dict[int, str]:
    """This process's open descriptors: number -> what /proc says it is."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


def socket_fds() -> set[int]:
    return {fd for fd, link in fd_links().items() if link.startswith("socket:")}


class Gate:
    """A FIFO the jobs block on (``WAIT`` reads one line of it) until ``release(n)``.

    The test holds it open read-write, so a job's read blocks (no data) instead of seeing end of
    file; closing it (leaving the ``with``) lets any job still blocked go on.
    """

    WAIT = "read x < /gate/go"

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        fifo = directory / "go"
        os.mkfifo(fifo)
        self.mount = {str(directory): "/gate"}
        self._fd = os.open(fifo, os.O_RDWR)

    def release(self, count: int) -> None:
        os.write(self._fd, b"\n" * count)

    def close(self) -> None:
        os.close(self._fd)


@contextlib.contextmanager
def gate(directory: Path) -> Iterator[Gate]:
    g = Gate(directory)
    try:
        yield g
    finally:
        g.close()


class FifoReader:
    """Reads a FIFO in a thread until stopped, across writers that come and go.

    The FIFO is opened non-blocking here (no writer needed); the thread polls it, so it can never
    hang on a FIFO that a broken tracker replaced or never opened.
    """

    def __init__(self, path: Path) -> None:
        self.data = bytearray()
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fifo-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stop.is_set():
            for _, events in poller.poll(20):
                if not events & (select.POLLIN | select.POLLHUP):
                    continue
                try:
                    chunk = os.read(self._fd, 1 << 16)
                except BlockingIOError:
                    continue
                if chunk:
                    self.data += chunk
                else:  # every writer closed (for now): POLLHUP stays set until the next one
                    time.sleep(0.01)

    def stop(self) -> bytes:
        """Stop reading (after taking what is left); returns everything read."""
        self._stop.set()
        self._thread.join(10)
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._fd, 1 << 16):
                self.data += chunk
        os.close(self._fd)
        return bytes(self.data)


def _dev_null_like(path: str) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == DEV_NULL


def _null_entries() -> set[str]:
    return {name for name in os.listdir("/dev") if "null" in name}


def _restore_dev_null(entries_before: set[str]) -> None:
    """Put the host's /dev/null back if a tracker replaced it, and remove what it left in /dev."""
    if not _dev_null_like("/dev/null"):
        spare = f"/dev/.aiotracker-test-null-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spare)
        os.mknod(spare, stat.S_IFCHR | 0o666, DEV_NULL)
        os.chmod(spare, 0o666)
        os.replace(spare, "/dev/null")
    for name in _null_entries() - entries_before:
        path = f"/dev/{name}"
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


@contextlib.asynccontextmanager
async def tcp_proxy() -> AsyncIterator[TcpProxy]:
    """A ``tcp://127.0.0.1:<port>`` engine: a TCP listener piped to the main engine's socket."""
    proxy = TcpProxy(MAIN_SOCKET)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()


async def _remove_dir(path: Path) -> None:
    """Take a directory away at once (a rename needs no descriptor), then delete it.

    The delete is retried while this process has no descriptor to spare (the squeeze).
    """
    gone = path.with_name(path.name + ".gone")
    os.rename(path, gone)
    while True:
        try:
            shutil.rmtree(gone)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
        else:
            return
        await asyncio.sleep(0.05)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def sessions(session_name: str) -> Iterator[list[str]]:
    """Remove the session's containers (carrying this run's label) after each test.

    It also collects garbage first, so that a client a tracker left open is reported (as an
    unraisable ResourceWarning) against the test that left it.
    """
    names = [session_name]
    yield names
    gc.collect()
    for name in names:
        remove_session_containers(name)


@pytest.fixture(scope="module")
def small_disk_engine() -> Iterator[ExtraEngine]:
    """An extra dockerd whose data root is a 64 MiB tmpfs (so a test can fill its disk)."""
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.fail("the full-disk test needs root and dockerd (scripts/docker-engine.sh)")
    engine = ExtraEngine()
    try:
        engine.data_root.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(engine.data_root)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        engine.start()
        engine.load_image()
        yield engine
    finally:
        engine.destroy()  # also unmounts the tmpfs (everything mounted under its root)


# -- the tracker object ---------------------------------------------------------------------------


async def test_tracker_is_always_truthy_and_disconnected_once_closed(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """bool(tracker) is True whatever it holds, and statistics().connected is False after aclose."""
    tracker = DockerTracker(session_name, labels=labels)
    assert bool(tracker), "a tracker not yet opened (no job) is falsy"
    async with tracker:
        assert bool(tracker), "an open tracker with no job is falsy"
        await eventually(lambda: tracker.statistics().connected, "connected", timeout=10)
        job = await tracker.add_job(template("true"))
        assert await tracker.wait(job, timeout=60) is JobState.DONE
        assert bool(tracker)
    assert bool(tracker)
    assert tracker.statistics().connected is False, "still 'connected' after aclose()"


@pytest.mark.parametrize("url", ["not a url", "ftp://x"])
def test_bad_docker_url_refused_at_construction(url: str) -> None:
    """A docker_url that is no engine address is InvalidArgumentError at once; nothing is opened."""
    before = fd_links()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InvalidArgumentError):
            DockerTracker("s", docker_url=url)
        gc.collect()
    assert fd_links() == before
    assert not [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_tracker_closed_under_another_loop_leaves_no_socket(
    session_name: str, labels: dict[str, str]
) -> None:
    """Opened under one event loop and closed under another, a tracker leaves no socket open."""
    gc.collect()
    before = socket_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = DockerTracker(session_name, labels=labels)

        async def open_it(t: DockerTracker) -> set[int]:
            await t.open()
            return socket_fds()  # while the first loop runs

        opened = asyncio.run(open_it(tracker))
        asyncio.run(tracker.aclose())
        after = socket_fds()  # closed by now (the first loop ending, or aclose), not by gc
        connected = tracker.statistics().connected
        del tracker
        gc.collect()
    assert opened - before, "the tracker opened no socket: the test proves nothing"
    assert after <= before, f"{len(after - before)} socket(s) left open after aclose()"
    assert socket_fds() <= before
    assert not connected
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks


# -- paths ----------------------------------------------------------------------------------------


async def test_relative_paths_resolved_once_at_submission(
    tracker: DockerTracker, template: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative output, error, input and stage-in paths are fixed against the cwd of add_job."""
    home = tmp_path / "submitted-here"
    home.mkdir()
    (home / "in.txt").write_text("from stdin\n")
    (home / "data").mkdir()
    (home / "data" / "f").write_text("staged\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    job = await tracker.add_job(
        template(
            "sh", "-c", "cat; cat /data/f; echo oops >&2",
            output_path="out.txt", error_path="err.txt", input_path="in.txt",
            stage_in_files={"data": "/data"}, submit_as_hold=True,
        )
    )  # fmt: skip
    monkeypatch.chdir(elsewhere)  # held: it starts only now, under another cwd
    back = await tracker.job_template(job)
    assert (back.output_path, back.error_path, back.input_path) == (
        str(home / "out.txt"),
        str(home / "err.txt"),
        str(home / "in.txt"),
    )
    assert dict(back.stage_in_files) == {str(home / "data"): "/data"}
    await tracker.job_control(job, "release")
    assert await tracker.wait(job, timeout=60) is JobState.DONE
    assert (home / "out.txt").read_text() == "from stdin\nstaged\n"
    assert (home / "err.txt").read_text() == "oops\n"
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("kind", ["dev-null", "char-device", "fifo", "symlink"])
async def test_output_path_that_is_not_a_regular_file_is_written_in_place(
    tracker: DockerTracker, template: Make, tmp_path: Path, kind: str
) -> None:
    """/dev/null and other character devices, FIFOs and symlinks are written through, kept."""
    path = tmp_path / "out"
    target = tmp_path / "target"
    reader: FifoReader | None = None
    null_before = _null_entries()
    if kind == "dev-null":
        path = Path("/dev/null")
        assert _dev_null_like("/dev/null")
    elif kind == "char-device":
        os.mknod(path, stat.S_IFCHR | 0o666, DEV_NULL)
    elif kind == "fifo":
        os.mkfifo(path)
        reader = FifoReader(path)
    else:
        target.write_text("old content\n")
        path.symlink_to(target)
    try:
        job = await tracker.add_job(template("echo", "hi", output_path=str(path)))
        state = await tracker.wait(job, timeout=60)
        st = os.lstat(path)
        null_after = _null_entries()
    finally:
        received = reader.stop() if reader is not None else b""
        if kind == "dev-null":
            _restore_dev_null(null_before)
    assert state is JobState.DONE
    if kind in ("dev-null", "char-device"):
        assert stat.S_ISCHR(st.st_mode), f"{path} was replaced by mode {oct(st.st_mode)}"
        assert st.st_rdev == DEV_NULL
    elif kind == "fifo":
        assert stat.S_ISFIFO(st.st_mode), f"the FIFO was replaced by mode {oct(st.st_mode)}"
        assert received == b"hi\n"
    else:
        assert stat.S_ISLNK(st.st_mode), f"the symlink was replaced by mode {oct(st.st_mode)}"
        assert os.readlink(path) == str(target)
        assert target.read_text() == "hi\n"
    if kind == "dev-null":
        assert null_after == null_before, f"left in /dev: {sorted(null_after - null_before)}"
    else:
        expected = {"out", "target"} if kind == "symlink" else {"out"}
        assert {p.name for p in tmp_path.iterdir()} == expected, "a file was left beside it"
    assert faults_of(await tracker.job_info(job)) == ()


# -- a job's file error is the job's fault ------------------------------------------------------


@pytest.mark.parametrize("how", ["dir-removed", "dir-at-output-path"])
async def test_output_file_error_is_a_job_fault_never_the_trackers_end(
    tracker: DockerTracker, template: Make, tmp_path: Path, how: str
) -> None:
    """A job whose output cannot be completed ends in its real state with an "output incomplete"
    fault; every other job and the tracker carry on."""
    with gate(tmp_path / "gate") as g:
        command = f"echo before; {g.WAIT}; echo after"
        outs = []
        for name in ("victim", "other-1", "other-2", "other-3"):
            (tmp_path / name).mkdir()
            outs.append(tmp_path / name / "out")
        jobs = [
            await tracker.add_job(
                template("sh", "-c", command, output_path=str(out), stage_in_files=g.mount)
            )
            for out in outs
        ]
        waits = [asyncio.create_task(tracker.wait(j)) for j in jobs]
        # Every job is running (blocked on the gate) with its output attached.
        if how == "dir-removed":
            shutil.rmtree(outs[0].parent)
        else:  # the final rename of the victim's output would meet a directory
            with contextlib.suppress(FileExistsError):  # unless it is written in place
                outs[0].mkdir()
        g.release(len(jobs))
        outcomes = await settle(waits, 60)
    assert outcomes == [JobState.DONE] * 4, outcomes
    victim = await tracker.job_info(jobs[0])
    assert victim.state is JobState.DONE
    assert victim.exit_status == 0
    complete = outs[0].is_file() and outs[0].read_text() == "before\nafter\n"
    incomplete = fault(victim, "output incomplete")
    if how == "dir-removed":
        assert incomplete, f"no 'output incomplete' fault: {faults_of(victim)}"
    else:
        assert incomplete or complete, f"neither a fault nor the file: {faults_of(victim)}"
    for job, out in zip(jobs[1:], outs[1:], strict=True):
        assert out.read_text() == "before\nafter\n"
        assert faults_of(await tracker.job_info(job)) == ()
    # The tracker is still open and working.
    tracker.statistics()
    again = await tracker.add_job(template("echo", "again", output_path=str(tmp_path / "again")))
    assert await tracker.wait(again, timeout=60) is JobState.DONE
    assert (tmp_path / "again").read_text() == "again\n"


async def test_array_tasks_sharing_one_output_path_all_end_done(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """Array tasks writing one output path at the same time all end DONE; the file holds every
    task's output once, and each task's faults say the file was shared."""
    out = tmp_path / "shared.out"
    with gate(tmp_path / "gate") as g:
        array = await tracker.add_array_job(
            template(
                "sh", "-c", f"{g.WAIT}; echo task $TASK_ID",
                output_path=str(out), stage_in_files=g.mount,
            ),
            1, 4,
        )  # fmt: skip
        tasks = await tracker.list_array_jobs(array)
        for task in tasks:  # all four running at once: their outputs overlap in time
            assert await tracker.wait(task, JobState.RUNNING, timeout=60) is JobState.RUNNING
        g.release(len(tasks))
        [states] = await settle([tracker.wait_array(array)], 60)
    assert isinstance(states, dict), f"wait_array raised {states!r}"
    assert list(states.values()) == [JobState.DONE] * 4
    # Appended, whole frames interleaved: every task's line once, none written over.
    assert sorted(out.read_text().splitlines()) == [f"task {i}" for i in range(1, 5)]
    for task in tasks:
        assert "output shared" in (await tracker.job_info(task)).annotation
    assert {p.name for p in tmp_path.iterdir()} == {"shared.out", "gate"}, "partial files left"
    again = await tracker.add_job(template("true"))
    assert await tracker.wait(again, timeout=60) is JobState.DONE


async def test_array_task_whose_input_vanished_fails_not_started(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """An array task whose input file is deleted before it starts ends FAILED ("not started");
    the launcher goes on with the next tasks."""
    for index, text in ((1, "one"), (2, "two"), (3, "three")):
        (tmp_path / f"in-{index}").write_text(f"{text}\n")
    with gate(tmp_path / "gate") as g:
        array = await tracker.add_array_job(
            template(
                "sh", "-c", f"cat; {g.WAIT}",
                input_path=str(tmp_path / "in-$DRMAA2_INDEX$"),
                output_path=str(tmp_path / "out-$DRMAA2_INDEX$"),
                stage_in_files=g.mount,
            ),
            1, 3, max_parallel=1,
        )  # fmt: skip
        first, second, third = await tracker.list_array_jobs(array)
        assert await tracker.wait(first, JobState.RUNNING, timeout=60) is JobState.RUNNING
        (tmp_path / "in-2").unlink()  # task 2 is queued behind task 1 (max_parallel=1)
        g.release(3)
        [states] = await settle([tracker.wait_array(array)], 60)
    assert states == {first: JobState.DONE, second: JobState.FAILED, third: JobState.DONE}
    info = await tracker.job_info(second)
    assert fault(info, "not started"), f"no 'not started' fault: {faults_of(info)}"
    assert (tmp_path / "out-1").read_text() == "one\n"
    assert (tmp_path / "out-3").read_text() == "three\n"
    for task in (first, third):
        assert faults_of(await tracker.job_info(task)) == ()
    again = await tracker.add_job(template("true"))
    assert await tracker.wait(again, timeout=60) is JobState.DONE


# -- job control races ------------------------------------------------------------------------


async def test_suspend_racing_the_jobs_exit_is_invalid_state(
    tracker: DockerTracker, template: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    """Suspending a job that exits meanwhile either suspends it or raises InvalidStateError.

    The engine's answer in the race is a 500 ("cannot pause a stopped container") in about one
    try in eight here; 30 tries miss it about once in fifty runs. Podman's runtime says
    "`runc pause ...` failed: exit status 1" in 29 tries of 30.
    """
    tries = 30
    outcomes: collections.Counter[str] = collections.Counter()
    unexpected: list[str] = []
    for _ in range(tries):
        job = await tracker.add_job(template("sh", "-c", "exit 0"))
        try:
            await tracker.job_control(job, "suspend")
        except TrackerClosedError:
            raise
        except InvalidStateError:
            outcomes["InvalidStateError"] += 1
        except TrackerError as exc:
            outcomes[type(exc).__name__] += 1
            unexpected.append(f"{type(exc).__name__}: {exc}")
        else:
            outcomes["suspended"] += 1
            await tracker.job_control(job, "resume")
        assert await tracker.wait(job, timeout=60) is JobState.DONE
    report(capsys, f"suspend right after add_job of 'exit 0', {tries} times: {dict(outcomes)}")
    assert not unexpected, f"{len(unexpected)} of {tries}, e.g. {unexpected[0]}"


async def test_second_tracker_suspends_a_job_the_first_just_started(
    session_name: str, labels: dict[str, str], template: Make
) -> None:
    """A second tracker on the session suspends a job right after the first's add_job returns.

    The second tracker may have seen the job's create event and not yet its start: about one
    job in eight here; 30 jobs miss it about once in fifty runs.
    """
    count = 30
    async with (
        DockerTracker(session_name, labels=labels) as first,
        DockerTracker(session_name, labels=labels) as second,
    ):
        jobs: list[str] = []
        refused: list[str] = []
        for _ in range(count):
            job = await first.add_job(template("sleep", "30"))
            jobs.append(job)
            try:
                await second.job_control(job, "suspend")
            except TrackerError as exc:
                refused.append(f"{type(exc).__name__}: {exc}")
        suspended = await container_states(jobs)
        for job in jobs:
            await second.job_control(job, "terminate")
        states = await settle([first.wait(j) for j in jobs], 60)
    assert not refused, f"{len(refused)} of {count} suspends refused, e.g. {refused[0]}"
    assert set(suspended.values()) == {"paused"}
    assert states == [JobState.FAILED] * count


# -- engines that fail ----------------------------------------------------------------------------


def _fill_disk(path: Path) -> None:
    """Write zeros into ``path`` until its file system is full."""
    chunk = bytes(1 << 20)
    with open(path, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


@pytest.mark.docker_only(
    "fills the disk of a dockerd of its own (ExtraEngine) whose data root is a 64 MiB tmpfs; "
    "the Podman service under test shares its storage with the host's Podman and cannot be "
    "given a small disk of its own"
)
async def test_full_disk_is_an_engine_error_not_the_jobs(
    small_disk_engine: ExtraEngine, session_name: str, labels: dict[str, str], template: Make
) -> None:
    """An engine that cannot create a job for its own reason (a full disk, a 500) raises
    EngineError, not InvalidArgumentError; the job's own error (unknown user, also a 500) stays
    InvalidArgumentError; nothing is left and the tracker works once the disk has room."""
    engine = small_disk_engine
    filler = engine.data_root / "filler"
    async with DockerTracker(session_name, docker_url=engine.url, labels=labels) as tracker:
        with pytest.raises(TrackerError) as own:
            await tracker.add_job(template("true", extensions={"user": "nosuchuser"}))
        assert type(own.value) is InvalidArgumentError, f"{type(own.value).__name__}: {own.value}"
        _fill_disk(filler)
        try:
            with pytest.raises(TrackerError) as caught:
                await tracker.add_job(template("true"))
            left = await session_containers(session_name, host=engine.url)
        finally:
            filler.unlink()
        error = caught.value
        assert not isinstance(error, InvalidArgumentError), (
            f"a full disk is not the job's fault: {type(error).__name__}: {error}"
        )
        from aiotracker import EngineError

        assert isinstance(error, EngineError), f"{type(error).__name__}: {error}"
        assert left == []
        job = await tracker.add_job(template("true"))
        assert await tracker.wait(job, timeout=60) is JobState.DONE


async def test_tcp_engine_output_streams_do_not_starve_api_calls(
    session_name: str, labels: dict[str, str], template: Make, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """On a tcp:// engine with connection_limit=4, 40 open output streams do not delay a quick
    job's add_job and wait, and API calls stay within the limit.

    The 40 jobs block on a gate instead of sleeping 5 s, so that all 40 streams are surely open.
    """
    limit = 4
    async with (
        tcp_proxy() as proxy,
        DockerTracker(
            session_name, docker_url=proxy.url, labels=labels, connection_limit=limit
        ) as tracker,
    ):
        with gate(tmp_path / "gate") as g:
            outs = [tmp_path / f"out-{i}" for i in range(40)]
            templates = [
                template(
                    "sh", "-c", f"echo start {i}; {g.WAIT}; echo end {i}",
                    output_path=str(out), stage_in_files=g.mount,
                )
                for i, out in enumerate(outs)
            ]  # fmt: skip
            calls = [functools.partial(tracker.add_job, t) for t in templates]
            jobs = await gather_bounded(calls, 16)
            waits = [asyncio.create_task(tracker.wait(j)) for j in jobs]
            assert {await tracker.job_state(j) for j in jobs} == {JobState.RUNNING}
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(20):
                    quick = await tracker.add_job(
                        template("echo", "quick", output_path=str(tmp_path / "quick"))
                    )
                    assert await tracker.wait(quick) is JobState.DONE
            except TimeoutError:
                pytest.fail("add_job + wait of a quick job took over 20 s beside 40 streams")
            quick_s = time.monotonic() - t0
            g.release(len(jobs))
            states = await settle(waits, 120)
    assert (tmp_path / "quick").read_text() == "quick\n"
    assert states == [JobState.DONE] * 40
    for i, out in enumerate(outs):
        assert out.read_text() == f"start {i}\nend {i}\n"
    report(
        capsys,
        f"tcp://, 40 output streams open: quick job in {quick_s:.2f} s; at most "
        f"{proxy.max_api_open} API connections, {proxy.max_open} connections in all",
    )
    # aiohttp closes an idle keep-alive connection after 15 s and opens a new one when needed:
    # for a moment the proxy may still see the old one open next to its replacement.
    assert proxy.max_api_open <= limit + 1, f"{proxy.max_api_open} API connections at once"


async def test_frozen_tcp_engine_fails_calls_and_aclose_is_bounded(
    session_name: str, labels: dict[str, str], template: Make,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """An engine that stops answering (sockets open, no bytes) fails an API call with
    DrmCommunicationError within about engine_timeout, and aclose() returns in 2x that."""
    engine_timeout = 3.0
    async with tcp_proxy() as proxy:
        tracker = DockerTracker(
            session_name, docker_url=proxy.url, labels=labels, engine_timeout=engine_timeout
        )
        await tracker.open()
        try:
            job = await tracker.add_job(template("sleep", "1000"))
            proxy.freeze()
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(15):
                    await tracker.job_info(job)
            except DrmCommunicationError:
                pass
            except TimeoutError:
                pytest.fail("job_info hung for 15 s on a frozen engine")
            else:
                pytest.fail("job_info answered through a frozen proxy")
            failed_s = time.monotonic() - t0
            t1 = time.monotonic()
            try:
                await asyncio.wait_for(tracker.aclose(), 30)
            except TimeoutError:
                pytest.fail("aclose() hung for 30 s on a frozen engine")
            closed_s = time.monotonic() - t1
        finally:
            proxy.thaw()
            await tracker.aclose()
    report(capsys, f"frozen engine: job_info failed in {failed_s:.2f} s, aclose {closed_s:.2f} s")
    assert closed_s <= 2 * engine_timeout + 1, f"aclose() took {closed_s:.2f} s"


# -- everything at once -------------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_300_jobs_survive_file_faults_and_a_descriptor_squeeze(
    tracker: DockerTracker, template: Make, tmp_path: Path, session_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """300 jobs with output: 50 lose their output directory, 50 meet a directory at their output
    path, and the descriptor limit drops to nearly nothing for 3 s; every wait resolves, untouched
    outputs are complete, touched jobs have a fault or a complete file, the tracker works on.

    While descriptors are short, add_job may refuse (a TrackerError, nothing left behind), and a
    job it accepted may find no descriptor for its output file: its fault must then say so ("Too
    many open files"); every other untouched job's file must be complete.
    300 jobs take about 25 s here (2 vCPUs).
    """
    n = 300
    removed = {i for i in range(n) if i % 6 == 1}  # 50: output directory removed while running
    blocked = {i for i in range(n) if i % 6 == 4}  # 50: a directory put at the output path
    outs = [tmp_path / f"j{i:03d}" / "out" for i in range(n)]
    for out in outs:
        out.parent.mkdir()
    jobs: dict[int, str] = {}
    refused: dict[int, TrackerError] = {}
    waits: dict[int, asyncio.Task[JobState]] = {}
    halfway, squeezed, released = asyncio.Event(), asyncio.Event(), asyncio.Event()
    attempts = [0]
    sem = asyncio.Semaphore(16)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    squeeze: dict[str, int] = {}

    async def submit(i: int) -> None:
        async with sem:
            try:
                job = await tracker.add_job(
                    template("sh", "-c", f"sleep 2; echo job-{i}", output_path=str(outs[i]))
                )
            except TrackerClosedError:
                raise  # not a refusal: the tracker must stay open
            except TrackerError as exc:
                refused[i] = exc
                if squeezed.is_set():  # back off, keeping the slot, until descriptors are back
                    await released.wait()
                return
            finally:
                attempts[0] += 1
                if attempts[0] >= n // 2:
                    halfway.set()
        jobs[i] = job
        waits[i] = asyncio.create_task(tracker.wait(job))
        if i in removed:
            await _remove_dir(outs[i].parent)
        elif i in blocked:
            with contextlib.suppress(FileExistsError):  # unless it is written in place
                outs[i].mkdir()

    async def squeeze_descriptors() -> None:
        """For 3 s, keep the soft limit at the open count + 2, following the count down (jobs
        that end free descriptors); ``bites``: probes that found no descriptor to spare."""
        await halfway.wait()
        loop = asyncio.get_running_loop()
        end = loop.time() + 3
        limit = len(os.listdir("/proc/self/fd")) + 2
        squeeze.update(start=limit, bites=0)
        squeezed.set()
        try:
            while loop.time() < end:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
                await asyncio.sleep(0.02)
                try:
                    limit = min(limit, len(os.listdir("/proc/self/fd")) + 2)
                except OSError as exc:
                    if exc.errno != errno.EMFILE:
                        raise
                    squeeze["bites"] += 1
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            released.set()
        squeeze["end"] = limit

    t0 = time.monotonic()
    try:
        results = await asyncio.gather(
            *(submit(i) for i in range(n)), squeeze_descriptors(), return_exceptions=True
        )
        submitted_s = time.monotonic() - t0
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"{len(errors)} add_job raised other than a refusal: {errors[:3]}"
        _, pending = await asyncio.wait(waits.values(), timeout=120)
        assert not pending, f"{len(pending)} of {len(waits)} waits pending after 120 s"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        released.set()
        for task in waits.values():
            task.cancel()
    waited_s = time.monotonic() - t0
    outcomes = {i: w.exception() or w.result() for i, w in waits.items()}
    not_done = {i: s for i, s in outcomes.items() if s is not JobState.DONE}
    assert not not_done, f"{len(not_done)} jobs not DONE, e.g. {list(not_done.items())[:3]}"

    # A job accepted while descriptors were short may have found none for its output file:
    # then (and only then) its fault must say so; no output is ever lost silently.
    untouched_bad = []
    squeezed_out = 0
    for i in jobs:
        if i in removed | blocked:
            continue
        if outs[i].is_file() and outs[i].read_text() == f"job-{i}\n":
            continue
        emfile = fault(await tracker.job_info(jobs[i]), "output incomplete")
        if emfile is not None and "Too many open files" in emfile:
            squeezed_out += 1
            continue
        untouched_bad.append(i)
    if untouched_bad:
        details = []
        for i in untouched_bad[:5]:
            content = outs[i].read_bytes() if outs[i].is_file() else None
            info = await tracker.job_info(jobs[i])
            details.append((i, content, faults_of(info)))
        pytest.fail(f"{len(untouched_bad)} untouched outputs wrong (i, file, faults): {details}")
    touched = sorted(set(jobs) & (removed | blocked))
    unexplained = []
    with_fault = 0
    for i in touched:
        info = await tracker.job_info(jobs[i])
        complete = outs[i].is_file() and outs[i].read_text() == f"job-{i}\n"
        has_fault = fault(info, "output incomplete") is not None
        with_fault += has_fault
        if not (complete or has_fault):
            unexplained.append((i, faults_of(info)))
    assert not unexplained, f"{len(unexplained)} touched jobs with neither: {unexplained[:3]}"

    # Refused submissions left nothing behind.
    assert await session_containers(session_name) == sorted(jobs.values())
    # The tracker is open and works.
    tracker.statistics()
    await eventually(lambda: tracker.statistics().connected, "the tracker is connected")
    (tmp_path / "after").mkdir()
    after = tmp_path / "after" / "out"
    job = await tracker.add_job(template("echo", "after", output_path=str(after)))
    assert await tracker.wait(job, timeout=60) is JobState.DONE
    assert after.read_text() == "after\n"
    report(
        capsys,
        f"{n} jobs: submitted in {submitted_s:.1f} s, all waits resolved at {waited_s:.1f} s; "
        f"{len(refused)} add_job refused during the squeeze ({squeeze}), "
        f"{len(touched)} touched, {with_fault} with an 'output incomplete' fault, "
        f"{squeezed_out} untouched ones found no descriptor for their file (a fault says so)",
    )
