"""Stage-out against the real engine (issue 14): files and directories copied out of the
container after its exit, byte for byte, before the terminal state is published."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from aiotracker import DockerTracker, JobState, JobTemplate

Make = Callable[..., JobTemplate]

# Every byte value, then 1 MiB of /dev/urandom: the file's digest is printed by the job.
WRITE = (
    "mkdir -p /out/dir/sub && "
    'i=0; while [ $i -lt 256 ]; do printf "\\\\$(printf %o $i)"; i=$((i+1)); done > /out/all && '
    "head -c 1048576 /dev/urandom > /out/dir/sub/random && echo hi > /out/dir/top && "
    "sha256sum /out/all /out/dir/sub/random"
)


async def test_a_file_and_a_directory_are_staged_byte_for_byte(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """At DONE, the file and the directory are at their targets with the bytes the job wrote
    (its own sha256sum says which), and no hidden file is left beside them."""
    out = tmp_path / "job.out"
    stage = {"/out/all": str(tmp_path / "all.bin"), "/out/dir": str(tmp_path / "dir")}
    job_id = await tracker.add_job(
        template("sh", "-c", WRITE, output_path=str(out), stage_out_files=stage)
    )
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    sums = dict(line.split()[::-1] for line in out.read_text().splitlines())
    all_bin = (tmp_path / "all.bin").read_bytes()
    assert all_bin == bytes(range(256))
    assert hashlib.sha256(all_bin).hexdigest() == sums["/out/all"]
    random = (tmp_path / "dir" / "sub" / "random").read_bytes()
    assert hashlib.sha256(random).hexdigest() == sums["/out/dir/sub/random"]
    assert (tmp_path / "dir" / "top").read_bytes() == b"hi\n"
    assert sorted(os.listdir(tmp_path)) == ["all.bin", "dir", "job.out"]
    assert (await tracker.job_info(job_id)).faults == ()


async def test_a_missing_source_is_recorded_and_the_state_is_the_jobs(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """A source the job never wrote is named in the annotation; the job is DONE and the
    other file is staged."""
    stage = {"/nonexistent": str(tmp_path / "a"), "/etc/passwd": str(tmp_path / "passwd")}
    job_id = await tracker.add_job(template("true", stage_out_files=stage))
    assert await tracker.wait(job_id, timeout=60) is JobState.DONE
    info = await tracker.job_info(job_id)
    assert info.faults == ("stage-out of /nonexistent: not found in the container",)
    assert "root:" in (tmp_path / "passwd").read_text()
    assert sorted(os.listdir(tmp_path)) == ["passwd"]


async def test_a_failed_job_is_staged_and_others_go_on(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """A job that fails after writing its log still has it copied out; a job beside it
    without stage-out ends as it would."""
    failing = await tracker.add_job(
        template("sh", "-c", "echo why > /tmp/log; exit 3",
                 stage_out_files={"/tmp/log": str(tmp_path / "log")})
    )  # fmt: skip
    plain = await tracker.add_job(template("true"))
    assert await tracker.wait(failing, timeout=60) is JobState.FAILED
    assert await tracker.wait(plain, timeout=60) is JobState.DONE
    assert (tmp_path / "log").read_bytes() == b"why\n"
