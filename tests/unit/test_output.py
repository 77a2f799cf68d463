"""Output at its path as it comes, its completeness marks, and ``stream_output``, through the
fake engine (each interleaving forced: frames written, streams cut, readers joining, at chosen
moments). The real engine's side is in tests/integration/test_output.py."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aiotracker import (
    DockerTracker,
    InvalidArgumentError,
    JobNotFoundError,
    JobState,
    OutputOverrunError,
    OutputStreamError,
    TrackerError,
)
from aiotracker._engine.fake import FakeEngine
from aiotracker._exits import EXIT_GRACE
from aiotracker._fanout import Fanout
from aiotracker._output import MARK_SUFFIX
from aiotracker._watch import OutputStream, last_lines
from tests.unit.test_races import SESSION, engine, job, tracker, until

__all__ = ["engine", "tracker"]  # the fixtures of test_races: a fake engine, a tracker on it


def on(engine: FakeEngine) -> DockerTracker:
    """Another tracker of the session on the same fake engine (a reopen)."""
    return DockerTracker(SESSION, engine=engine, engine_timeout=2)


async def closed_mid_job(engine: FakeEngine, out: Path) -> str:
    """A job whose tracker closed after it wrote "a\\n" to ``out``; it runs on."""
    async with on(engine) as first:
        job_id = await running(first, out)
        engine.write_output(job_id, 1, b"a\n")
        await until(lambda: content(out) == b"a\n")
    return job_id


def marks(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(MARK_SUFFIX))


async def running(tracker: DockerTracker, template_path: Path | None = None, **fields: Any) -> str:
    if template_path is not None:
        fields["output_path"] = str(template_path)
    job_id = await tracker.add_job(job("sh", **fields))
    assert await tracker.wait(job_id, JobState.RUNNING, timeout=2) is JobState.RUNNING
    return job_id


@asynccontextmanager
async def reading(stream: OutputStream) -> AsyncIterator[list[bytes]]:
    """Read ``stream`` in the background while the block runs; the list then holds all."""
    result: list[bytes] = []

    async def read() -> None:
        result.append(await collect(stream))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        yield result


def content(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def collect(stream: OutputStream, timeout: float = 5.0) -> bytes:
    with anyio.fail_after(timeout):
        async with stream:
            return b"".join([chunk async for chunk in stream])


# -- the file at its path --------------------------------------------------------------------


async def test_file_grows_at_its_path_and_is_complete_at_the_end(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    out = tmp_path / "job.out"
    job_id = await running(tracker, out)
    assert not out.exists()  # no byte yet: an older file at the path would still be there
    assert marks(tmp_path) == [f".job.out.{job_id[:12]}{MARK_SUFFIX}"]  # marked from the start
    sizes = []
    for i in range(10):
        engine.write_output(job_id, 1, f"line {i}\n".encode())
        await until(lambda i=i: out.exists() and out.read_bytes().endswith(f"{i}\n".encode()))
        sizes.append(out.stat().st_size)
    assert len(set(sizes)) == 10  # seen growing, frame by frame
    engine.exit(job_id)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE
    assert out.read_bytes() == b"".join(f"line {i}\n".encode() for i in range(10))
    assert marks(tmp_path) == []


async def test_job_without_output_gets_an_empty_file(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    out = tmp_path / "empty.out"
    out.write_bytes(b"an older run's output")
    job_id = await running(tracker, out)
    engine.exit(job_id)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE
    assert out.read_bytes() == b""


async def test_job_that_never_starts_leaves_the_path_alone(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    out = tmp_path / "kept.out"
    out.write_bytes(b"an older run's output")
    job_id = await tracker.add_job(job("sh", output_path=str(out), submit_as_hold=True))
    engine.refuse_start(job_id)
    with pytest.raises(TrackerError):  # the start's refusal
        await tracker.job_control(job_id, "release")
    assert await tracker.wait(job_id, timeout=2) is JobState.FAILED
    assert "not started" in (await tracker.job_info(job_id)).annotation
    assert out.read_bytes() == b"an older run's output"
    assert marks(tmp_path) == []


async def test_file_removed_while_the_job_runs_is_named_incomplete(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    out = tmp_path / "gone.out"
    job_id = await running(tracker, out)
    engine.write_output(job_id, 1, b"before\n")
    await until(out.exists)
    out.unlink()
    engine.write_output(job_id, 1, b"after\n")
    engine.exit(job_id)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE
    info = await tracker.job_info(job_id)
    assert info.incomplete_output == (str(out),)
    assert "removed or replaced while the job ran" in info.annotation
    assert info.to_dict()["incomplete_output"] == [str(out)]
    assert marks(tmp_path) == []


async def test_closed_tracker_leaves_the_mark_and_the_next_rewrites_the_file(
    engine: FakeEngine, tmp_path: Path
) -> None:
    out = tmp_path / "job.out"
    job_id = await closed_mid_job(engine, out)
    engine.write_output(job_id, 1, b"b\n")  # while no tracker copies
    engine.exit(job_id)
    assert out.read_bytes() == b"a\n"
    assert marks(tmp_path) == [f".job.out.{job_id[:12]}{MARK_SUFFIX}"]  # incomplete
    async with on(engine) as second:
        assert await second.wait(job_id, timeout=2) is JobState.DONE
        assert out.read_bytes() == b"a\nb\n"
    assert marks(tmp_path) == []


async def test_complete_file_is_never_rewritten_by_a_later_tracker(
    engine: FakeEngine, tmp_path: Path
) -> None:
    out = tmp_path / "job.out"
    async with on(engine) as first:
        job_id = await running(first, out)
        engine.write_output(job_id, 1, b"a\n")
        engine.exit(job_id)
        assert await first.wait(job_id, timeout=2) is JobState.DONE
    out.write_bytes(b"the user's own edit\n")
    async with on(engine) as second:
        assert await second.wait(job_id, timeout=2) is JobState.DONE
        await anyio.sleep(0.05)
    assert out.read_bytes() == b"the user's own edit\n"


async def test_running_job_is_rewritten_whole_after_a_reopen(
    engine: FakeEngine, tmp_path: Path
) -> None:
    """Joined streams: the file is rewritten from the log's order (never a seam guessed)."""
    out = tmp_path / "joined.out"
    async with on(engine) as first:
        job_id = await running(first, out, join_files=True)
        engine.write_output(job_id, 1, b"o1\n")
        await until(lambda: out.exists() and out.read_bytes() == b"o1\n")
    engine.write_output(job_id, 2, b"e1\n")
    async with on(engine) as second:
        await until(lambda: out.read_bytes() == b"o1\ne1\n")
        engine.write_output(job_id, 1, b"o2\n")
        engine.exit(job_id)
        assert await second.wait(job_id, timeout=2) is JobState.DONE
    assert out.read_bytes() == b"o1\ne1\no2\n"
    assert marks(tmp_path) == []


# -- stream_output -----------------------------------------------------------------------------


async def test_readers_at_different_speeds(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    """A fast reader gets every byte; a reader that stops reading is cut off at its buffer's
    limit; the file and the job never wait for it; one attach serves all."""
    out = tmp_path / "out"
    job_id = await running(tracker, out)
    fast, slow = tracker.stream_output(job_id), tracker.stream_output(job_id, max_buffer=64)
    got_fast: list[bytes] = []

    async def read_fast() -> None:
        got_fast.append(await collect(fast))

    lines = [f"line {i:03d}\n".encode() for i in range(100)]
    engine.write_output(job_id, 1, lines[0])
    await until(out.exists)
    async with anyio.create_task_group() as tg:
        tg.start_soon(read_fast)
        first = await slow.__anext__()  # the slow reader joins, then stops reading
        for line in lines[1:]:
            engine.write_output(job_id, 1, line)
            await anyio.lowlevel.checkpoint()
        engine.exit(job_id)
        assert await tracker.wait(job_id, timeout=2) is JobState.DONE
    assert b"".join(got_fast) == b"".join(lines)
    assert out.read_bytes() == b"".join(lines)
    assert first == lines[0]
    assert engine.calls["attach_output"] == 1  # the copier's: none per reader
    with pytest.raises(OutputOverrunError, match="more than 64 bytes behind"):
        await collect(slow)


async def test_late_reader_gets_everything_once_across_the_seam(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    """Frames published while the reader reads its history from the log are in the log too:
    the history stops at the byte where the reader joined, so none comes twice."""
    job_id = await running(tracker, tmp_path / "out")
    engine.write_output(job_id, 1, b"a1\n")
    engine.write_output(job_id, 2, b"err\n")
    engine.write_output(job_id, 1, b"a2\n")
    await until(lambda: content(tmp_path / "out") == b"a1\na2\n")
    gate = engine.hold("read_logs", match=job_id)
    async with reading(tracker.stream_output(job_id)) as result:
        await until(gate.arrived.is_set)  # joined at byte 6; its history read is held
        engine.write_output(job_id, 1, b"a3\n")  # live to the reader, and in the log
        gate.release()
        engine.write_output(job_id, 1, b"a4\n")
        engine.exit(job_id)
    assert result == [b"a1\na2\na3\na4\n"]


async def test_tail_gives_the_last_lines_then_what_comes(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    job_id = await running(tracker, tmp_path / "out")
    for i in range(5):
        engine.write_output(job_id, 1, f"{i}\n".encode())
    await until(lambda: content(tmp_path / "out").endswith(b"4\n"))
    async with reading(tracker.stream_output(job_id, tail=2)) as result:
        await until(lambda: tracker._rt.copier.fanouts[job_id].readers == 1)
        engine.write_output(job_id, 1, b"5\n")
        engine.exit(job_id)
    assert result == [b"3\n4\n5\n"]


@pytest.mark.parametrize(("tail", "want"), [(None, b"0\n1\n2\nnew\n"), (1, b"2\nnew\n"),
                                            (0, b"new\n")])  # fmt: skip
async def test_tail_holds_for_the_reader_that_starts_a_relay(
    engine: FakeEngine, tracker: DockerTracker, tail: int | None, want: bytes
) -> None:
    """A relay replays the log: what was there before it began is history, cut by tail."""
    job_id = await running(tracker)
    for i in range(3):
        engine.write_output(job_id, 1, f"{i}\n".encode())
    async with reading(tracker.stream_output(job_id, tail=tail)) as result:
        await until(lambda: engine.calls["attach_output"] == 1)
        await anyio.sleep(0.01)
        engine.write_output(job_id, 1, b"new\n")
        engine.exit(job_id)
    assert result == [want]


async def test_job_without_files_shares_one_relay_among_its_readers(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    job_id = await running(tracker)
    engine.write_output(job_id, 1, b"x\n")
    engine.write_output(job_id, 2, b"oops\n")
    results: dict[str, bytes] = {}
    async with anyio.create_task_group() as tg:

        async def read(name: str, stderr: bool) -> None:
            results[name] = await collect(tracker.stream_output(job_id, stderr=stderr))

        tg.start_soon(read, "out", False)
        tg.start_soon(read, "err", True)
        await until(lambda: engine.calls["attach_output"] == 1)
        await anyio.sleep(0.01)
        assert engine.calls["attach_output"] == 1  # one attach for both readers
        engine.write_output(job_id, 1, b"y\n")
        engine.exit(job_id)
    assert results == {"out": b"x\ny\n", "err": b"oops\n"}
    assert tracker._rt.watch.relays == 0


async def test_relay_stops_when_its_last_reader_leaves_and_a_new_reader_starts_another(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    job_id = await running(tracker)
    engine.write_output(job_id, 1, b"x\n")
    async with tracker.stream_output(job_id) as stream:
        assert await stream.__anext__() == b"x\n"
        assert tracker._rt.watch.relays == 1
    assert tracker._rt.watch.relays == 0  # at once: no reader may join a relay that stops
    async with tracker.stream_output(job_id) as again:
        assert await again.__anext__() == b"x\n"
    await until(lambda: not engine.container(job_id).pipes)
    assert engine.calls["attach_output"] == 2


async def test_closing_a_stream_leaves_the_jobs_readers_at_once(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    job_id = await running(tracker, tmp_path / "out")
    engine.write_output(job_id, 1, b"x\n")
    stream = tracker.stream_output(job_id)
    assert await stream.__anext__() == b"x\n"
    assert tracker._rt.copier.fanouts[job_id].readers == 1
    await stream.aclose()
    assert tracker._rt.copier.fanouts[job_id].readers == 0


async def test_relay_cut_while_the_job_runs_is_an_error(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    job_id = await running(tracker)
    engine.write_output(job_id, 1, b"x\n")
    async with tracker.stream_output(job_id) as stream:
        assert await stream.__anext__() == b"x\n"
        engine.cut_attach(job_id)
        with anyio.fail_after(3), pytest.raises(OutputStreamError):
            await stream.__anext__()


async def test_relay_ends_cleanly_when_the_die_follows_the_end_of_its_stream(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    """Docker ends the attach a moment before it logs the die: not a cut stream."""
    job_id = await running(tracker)
    engine.write_output(job_id, 1, b"x\n")
    gate = engine.hold("inspect", match=job_id)  # the exit is known only from the die
    async with reading(tracker.stream_output(job_id)) as result:
        await until(lambda: engine.calls["attach_output"] == 1)
        engine.cut_attach(job_id)  # the stream ends first...
        await anyio.sleep(0.05)
        engine.exit(job_id)  # ...the die follows within the grace
        gate.release()
    assert result == [b"x\n"]


async def test_a_job_not_started_yet_is_waited_for(
    engine: FakeEngine, tracker: DockerTracker
) -> None:
    job_id = await tracker.add_job(job("sh", submit_as_hold=True))
    async with reading(tracker.stream_output(job_id)) as result:
        await anyio.sleep(0.05)
        assert result == []  # held: nothing yet, and not an empty end
        await tracker.job_control(job_id, "release")
        await until(lambda: engine.calls["attach_output"] == 1)
        engine.write_output(job_id, 1, b"hello\n")
        engine.exit(job_id)
    assert result == [b"hello\n"]


async def test_a_file_fault_does_not_touch_the_readers(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    """stdout's directory goes; stderr's file, and every reader, still get everything; only
    stdout's file is named incomplete."""
    (tmp_path / "o").mkdir()
    out, err = tmp_path / "o" / "out", tmp_path / "err"
    job_id = await running(tracker, out, error_path=str(err))
    async with reading(tracker.stream_output(job_id)) as result:
        await until(lambda: tracker._rt.copier.fanouts[job_id].readers == 1)
        shutil.rmtree(tmp_path / "o")  # before the first byte: stdout's file cannot be made
        engine.write_output(job_id, 1, b"out\n")
        engine.write_output(job_id, 2, b"err\n")
        engine.exit(job_id)
    assert result == [b"out\n"]
    assert err.read_bytes() == b"err\n"
    info = await tracker.job_info(job_id)
    assert info.incomplete_output == (str(out),)


async def test_cut_stream_completed_for_readers_after_a_file_fault(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    (tmp_path / "o").mkdir()
    job_id = await running(tracker, tmp_path / "o" / "out")
    async with reading(tracker.stream_output(job_id)) as result:
        await until(lambda: tracker._rt.copier.fanouts[job_id].readers == 1)
        shutil.rmtree(tmp_path / "o")
        engine.write_output(job_id, 1, b"a\n")
        engine.cut_attach(job_id)  # the stream is cut while the job goes on...
        engine.write_output(job_id, 1, b"b\n")
        await anyio.sleep(EXIT_GRACE + 0.1)  # ...past the grace: the log completes it
        engine.exit(job_id)
    assert result == [b"a\nb\n"]


async def test_one_large_frame_does_not_cut_off_a_reader_that_keeps_up(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    job_id = await running(tracker, tmp_path / "out")
    async with reading(tracker.stream_output(job_id, max_buffer=10)) as result:
        await until(lambda: tracker._rt.copier.fanouts[job_id].readers == 1)
        engine.write_output(job_id, 1, b"x" * 100)
        engine.exit(job_id)
    assert result == [b"x" * 100]


async def test_jobs_writing_one_path_at_once_interleave_and_say_so(
    engine: FakeEngine, tracker: DockerTracker, tmp_path: Path
) -> None:
    """Two jobs of one tracker, one output path, at the same time: whole frames of both, no
    byte of either lost or written over, and each job's faults say the file is shared."""
    shared = tmp_path / "shared.out"
    first, second = await running(tracker, shared), await running(tracker, shared)
    engine.write_output(first, 1, b"A1\n")
    engine.write_output(second, 1, b"B1\n")
    engine.write_output(first, 1, b"A2\n")
    engine.exit(first)
    engine.exit(second)
    assert await tracker.wait(first, timeout=2) is JobState.DONE
    assert await tracker.wait(second, timeout=2) is JobState.DONE
    assert sorted(shared.read_bytes().splitlines()) == [b"A1", b"A2", b"B1"]
    for job_id in (first, second):
        info = await tracker.job_info(job_id)
        assert "output shared" in info.annotation
        assert info.incomplete_output == ()


async def test_unreadable_log_at_recovery_is_a_fault_and_keeps_the_mark(
    engine: FakeEngine, tmp_path: Path
) -> None:
    out = tmp_path / "job.out"
    job_id = await closed_mid_job(engine, out)
    engine.write_output(job_id, 1, b"b\n")
    engine.exit(job_id)
    engine.fail("read_logs", match=job_id)  # the recovery's log read breaks
    async with on(engine) as second:
        await second.wait(job_id, timeout=2)
        info = await second.job_info(job_id)
    assert "the engine's log could not be read" in info.annotation
    assert marks(tmp_path) == [f".job.out.{job_id[:12]}{MARK_SUFFIX}"]  # the next one retries
    async with on(engine) as third:
        assert await third.wait(job_id, timeout=2) is JobState.DONE
    assert out.read_bytes() == b"a\nb\n"
    assert marks(tmp_path) == []


async def test_finished_job_streams_its_log(engine: FakeEngine, tracker: DockerTracker) -> None:
    job_id = await running(tracker)
    engine.write_output(job_id, 1, b"1\n2\n")
    engine.write_output(job_id, 2, b"e\n")
    engine.exit(job_id)
    assert await tracker.wait(job_id, timeout=2) is JobState.DONE
    assert await collect(tracker.stream_output(job_id)) == b"1\n2\n"
    assert await collect(tracker.stream_output(job_id, stderr=True)) == b"e\n"
    assert await collect(tracker.stream_output(job_id, tail=1)) == b"2\n"
    assert await collect(tracker.stream_output(job_id, tail=0)) == b""


async def test_stream_output_refuses_bad_arguments(tracker: DockerTracker) -> None:
    with pytest.raises(InvalidArgumentError):
        tracker.stream_output("x", tail=-1)
    with pytest.raises(InvalidArgumentError):
        tracker.stream_output("x", max_buffer=0)
    with pytest.raises(JobNotFoundError):
        await collect(tracker.stream_output("no-such-job"))


# -- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "n", "want"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\nc\n", 5, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 3, b""),
        (b"\n\n", 1, b"\n"),
    ],
)
def test_last_lines(data: bytes, n: int, want: bytes) -> None:
    assert last_lines(data, n) == want


async def test_fanout_counts_offsets_and_cuts_off_only_the_slow_reader() -> None:
    idle: list[bool] = []
    fanout = Fanout(on_idle=lambda: idle.append(True))
    fanout.publish(1, b"abc")
    fast, slow, err = fanout.join(1, 100), fanout.join(1, 4), fanout.join(2, 100)
    assert (fast.start, slow.start, err.start) == (3, 3, 0)
    fanout.publish(1, b"de")
    fanout.publish(1, b"fgh")  # the slow reader is over 4 bytes behind: cut off
    fanout.publish(2, b"E")
    assert await fast.next() == b"defgh"
    with pytest.raises(OutputOverrunError, match="after 3 bytes"):
        await slow.next()
    fanout.end()
    assert await fast.next() is None
    assert await err.next() == b"E"
    assert await err.next() is None
    fanout.leave(fast)
    assert idle == []  # ended: nothing to stop
