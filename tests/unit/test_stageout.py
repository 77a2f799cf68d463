"""Stage-out (``stage_out_files``): the plan's checks, the unpacking of the engine's archive
(pure file work on real temporary directories), and the tracker's part through the fake
engine (the terminal state held back until the copy is done, faults, refusals, a reopen).
The real engine's side is in tests/integration/test_resources.py."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import anyio
import pytest

from aiotracker import DockerTracker, InvalidArgumentError, JobState, JobTemplate, TrackerError
from aiotracker._engine.base import EngineCallError
from aiotracker._engine.fake import FakeEngine
from aiotracker._stageout import MARK_SUFFIX, plan_stage_out, stage_file
from tests.unit.test_races import SESSION, engine, job, tracker, until

__all__ = ["engine", "tracker"]


def tar_of(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def unpack(tmp_path: Path, body: bytes, source: str, target: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(body)
    stage_file(str(archive), source, str(target), "f" * 64)


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# -- the plan ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"out": "/tmp/x"}, "must be absolute", id="relative-source"),
        pytest.param({"/": "/tmp/x"}, "root cannot be staged", id="root"),
        pytest.param({"/out": ""}, "no host path", id="empty-target"),
        pytest.param({"/out": "/nonexistent-dir/x"}, "does not exist", id="no-directory"),
        pytest.param({"/a\x00": "/tmp/x"}, "NUL byte", id="nul"),
        pytest.param({"/a": "/tmp/x", "/b": "/tmp/./x"}, "two sources", id="same-target"),
        pytest.param({"/a": 3}, "must be strings", id="not-a-string"),
    ],
)
def test_bad_stage_out_files_are_refused(files: dict[str, object], message: str) -> None:
    """Each bad entry is an InvalidArgumentError naming what is wrong."""
    template = JobTemplate(job_category="busybox", stage_out_files=files)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=message):
        plan_stage_out(template, "/")


def test_plan_makes_host_paths_absolute(tmp_path: Path) -> None:
    """Relative host paths are taken from the submitter's working directory."""
    template = JobTemplate(job_category="busybox", stage_out_files={"/out/": "res"})
    assert plan_stage_out(template, str(tmp_path)).files == (("/out", str(tmp_path / "res")),)


# -- unpacking -----------------------------------------------------------------------------


def test_a_file_becomes_the_target_byte_for_byte(tmp_path: Path) -> None:
    """A file's bytes (all 256 values) land at the target; nothing else is left beside it."""
    data = bytes(range(256)) * 100
    target = tmp_path / "result.bin"
    target.write_bytes(b"old")
    unpack(tmp_path, tar_of({"r.bin": data}), "/out/r.bin", target)
    assert target.read_bytes() == data
    assert hidden(tmp_path) == []


def test_a_directory_becomes_the_target_and_merges_into_one(tmp_path: Path) -> None:
    """A directory is created at the target; staged again, its files replace those there and
    the other files stay."""
    target = tmp_path / "results"
    unpack(tmp_path, tar_of({"d/a": b"1", "d/sub/b": b"2"}), "/d", target)
    assert (target / "a").read_bytes() == b"1"
    assert (target / "sub" / "b").read_bytes() == b"2"
    (target / "mine").write_bytes(b"kept")
    unpack(tmp_path, tar_of({"d/a": b"new"}), "/d", target)
    assert (target / "a").read_bytes() == b"new"
    assert (target / "mine").read_bytes() == b"kept"
    assert hidden(tmp_path) == []


def test_a_file_onto_a_directory_fails_and_leaves_it(tmp_path: Path) -> None:
    """A file source cannot become an existing directory: an error, the directory as it was."""
    target = tmp_path / "d"
    target.mkdir()
    with pytest.raises(IsADirectoryError):
        unpack(tmp_path, tar_of({"f": b"x"}), "/f", target)
    assert list(target.iterdir()) == []
    assert hidden(tmp_path) == []


def test_links_out_of_the_tree_are_refused(tmp_path: Path) -> None:
    """A symlink pointing out of the staged tree is refused (tarfile's data filter): nothing
    is written outside the target."""
    with pytest.raises(tarfile.TarError):
        unpack(tmp_path, tar_of({"d/a": b"1"}, links={"d/evil": "/etc"}), "/d", tmp_path / "t")
    assert not (tmp_path / "t").exists()
    assert hidden(tmp_path) == []


def test_a_path_escaping_the_archive_is_refused(tmp_path: Path) -> None:
    """An entry named ``../x`` is refused, and nothing lands outside."""
    with pytest.raises(tarfile.TarError):
        unpack(tmp_path, tar_of({"../escaped": b"1"}), "/d", tmp_path / "t")
    assert not (tmp_path.parent / "escaped").exists()


# -- the tracker, on the fake engine -------------------------------------------------------


async def test_end_is_published_after_the_files_are_staged(
    tracker: DockerTracker, engine: FakeEngine, tmp_path: Path
) -> None:
    """DONE is published only once the file and the directory are at their targets (the
    archive call held open, the job reads RUNNING), and the marks are gone then."""
    stage = {"/out/r.txt": str(tmp_path / "r.txt"), "/out/dir": str(tmp_path / "dir")}
    job_id = await tracker.add_job(job("sh", stage_out_files=stage))
    assert sorted(os.listdir(tmp_path)) == sorted(
        f".{n}.{job_id[:12]}{MARK_SUFFIX}" for n in ("r.txt", "dir")
    )
    engine.write_file(job_id, "/out/r.txt", b"result\n")
    engine.write_file(job_id, "/out/dir/x/y", b"\x00\xff")
    gate = engine.hold("copy_out")
    engine.exit(job_id, 0)
    with anyio.fail_after(2):
        await gate.arrived.wait()
    await engine.drain()
    assert tracker.cached_state(job_id) is JobState.RUNNING
    gate.release()
    assert await tracker.wait(job_id, JobState.DONE, timeout=2) is JobState.DONE
    assert (tmp_path / "r.txt").read_bytes() == b"result\n"
    assert (tmp_path / "dir" / "x" / "y").read_bytes() == b"\x00\xff"
    assert sorted(os.listdir(tmp_path)) == ["dir", "r.txt"]
    assert (await tracker.job_info(job_id)).faults == ()


async def test_a_missing_source_is_a_fault_not_a_state(
    tracker: DockerTracker, engine: FakeEngine, tmp_path: Path
) -> None:
    """A source the job did not write: the job still ends DONE, the annotation says which,
    and the other file is staged all the same."""
    stage = {"/nope": str(tmp_path / "a"), "/out/b": str(tmp_path / "b")}
    job_id = await tracker.add_job(job("sh", stage_out_files=stage))
    engine.write_file(job_id, "/out/b", b"b")
    engine.exit(job_id, 0)
    assert await tracker.wait(job_id, JobState.DONE, timeout=2) is JobState.DONE
    info = await tracker.job_info(job_id)
    assert info.faults == ("stage-out of /nope: not found in the container",)
    assert "stage-out of /nope" in info.annotation
    assert sorted(os.listdir(tmp_path)) == ["b"]


async def test_a_failed_job_is_staged_too(
    tracker: DockerTracker, engine: FakeEngine, tmp_path: Path
) -> None:
    """A job that fails still has its files copied out (they may tell why)."""
    job_id = await tracker.add_job(job("sh", stage_out_files={"/log": str(tmp_path / "log")}))
    engine.write_file(job_id, "/log", b"why")
    engine.exit(job_id, 3)
    assert await tracker.wait(job_id, JobState.FAILED, timeout=2) is JobState.FAILED
    assert (tmp_path / "log").read_bytes() == b"why"


async def test_an_engine_failure_is_the_jobs_fault_and_the_tracker_goes_on(
    tracker: DockerTracker, engine: FakeEngine, tmp_path: Path
) -> None:
    """The archive call fails (an engine 500): that job's annotation says so, it ends, and
    the next job is staged."""
    first = await tracker.add_job(job("sh", stage_out_files={"/a": str(tmp_path / "a")}))
    engine.write_file(first, "/a", b"1")
    engine.fail("copy_out", EngineCallError(500, "disk on fire"), match=first)
    engine.exit(first, 0)
    assert await tracker.wait(first, JobState.DONE, timeout=2) is JobState.DONE
    assert "disk on fire" in (await tracker.job_info(first)).faults[0]
    second = await tracker.add_job(job("sh", stage_out_files={"/a": str(tmp_path / "b")}))
    engine.write_file(second, "/a", b"2")
    engine.exit(second, 0)
    assert await tracker.wait(second, JobState.DONE, timeout=2) is JobState.DONE
    assert (tmp_path / "b").read_bytes() == b"2"
    assert not (tmp_path / "a").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


async def test_a_refused_start_leaves_no_mark(
    tracker: DockerTracker, engine: FakeEngine, tmp_path: Path
) -> None:
    """A job whose start the engine refuses (released from a hold): FAILED, nothing staged,
    no mark left."""
    stage = {"/a": str(tmp_path / "a")}
    job_id = await tracker.add_job(job("sh", stage_out_files=stage, submit_as_hold=True))
    engine.refuse_start(job_id)
    with pytest.raises(TrackerError):
        await tracker.job_control(job_id, "release")
    assert await tracker.wait(job_id, timeout=2) is JobState.FAILED
    assert os.listdir(tmp_path) == []
    assert engine.calls["copy_out"] == 0


async def test_rm_with_stage_out_is_refused(tracker: DockerTracker, tmp_path: Path) -> None:
    """The engine removes an rm job at its exit: nothing would be left to copy."""
    template = job("sh", stage_out_files={"/a": str(tmp_path / "a")}, extensions={"rm": "true"})
    with pytest.raises(InvalidArgumentError, match="'rm'"):
        await tracker.add_job(template)
    assert len(tracker) == 0


async def test_array_tasks_stage_to_their_own_targets(
    tracker: DockerTracker, engine: FakeEngine, tmp_path: Path
) -> None:
    """``$DRMAA2_INDEX$`` in a target names each task's own."""
    target = str(tmp_path / "r-$DRMAA2_INDEX$")
    array_id = await tracker.add_array_job(job("sh", stage_out_files={"/r": target}), 1, 3)
    tasks = await tracker.list_array_jobs(array_id)
    await until(lambda: all(tracker.cached_state(t) is JobState.RUNNING for t in tasks))
    for index, task in enumerate(tasks, 1):
        engine.write_file(task, "/r", str(index).encode())
        engine.exit(task, 0)
    await tracker.wait_array(array_id, timeout=2)
    assert [(tmp_path / f"r-{i}").read_bytes() for i in (1, 2, 3)] == [b"1", b"2", b"3"]


async def test_a_tracker_opened_later_stages_what_is_still_marked(
    engine: FakeEngine, tmp_path: Path
) -> None:
    """The tracker closed while the job ran; it ended meanwhile; the next tracker copies its
    files before it publishes DONE (a reopen), and a third one copies nothing again."""
    target = tmp_path / "r"
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2) as first:
        job_id = await first.add_job(job("sh", stage_out_files={"/r": str(target)}))
    engine.write_file(job_id, "/r", b"late")
    engine.exit(job_id, 0)
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2) as second:
        assert await second.wait(job_id, JobState.DONE, timeout=2) is JobState.DONE
        assert target.read_bytes() == b"late"
    target.write_bytes(b"edited by the user")
    calls = engine.calls["copy_out"]
    async with DockerTracker(SESSION, engine=engine, engine_timeout=2) as third:
        assert await third.wait(job_id, JobState.DONE, timeout=2) is JobState.DONE
    assert engine.calls["copy_out"] == calls
    assert target.read_bytes() == b"edited by the user"
