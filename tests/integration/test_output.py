"""Output and the engine's log against the real engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiotracker import DockerTracker, JobState, JobTemplate, OutputOverrunError
from tests.conftest import ENGINE
from tests.integration._cli import MAIN_SOCKET
from tests.integration.test_reliability import open_proxy

Make = Callable[..., JobTemplate]


async def test_log_size_is_set_from_the_template(tracker: DockerTracker, template: Make) -> None:
    """The engine accepts the log rotation a template asks for, and keeps it on the job."""
    job_id = await tracker.add_job(
        template("true", extensions={"log-max-size": "1m", "log-max-file": "2"})
    )
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    if ENGINE == "podman":
        # Its compat inspect always says json-file; its own says what it keeps: k8s-file (the
        # local driver is refused), the size asked for (it has no rotation count).
        argv = ["podman", "inspect", "-f", "{{.HostConfig.LogConfig.Type}} "
                "{{.HostConfig.LogConfig.Size}}", job_id]  # fmt: skip
    else:
        argv = ["docker", "inspect", "-f", "{{json .HostConfig.LogConfig}}", job_id]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if ENGINE == "podman":
        assert out.decode().split() == ["k8s-file", "1.049MB"]  # 2**20 bytes, in decimal MB
        return
    assert json.loads(out) == {
        "Type": "local",
        "Config": {"max-size": str(1 << 20), "max-file": "2"},
    }


async def test_cut_output_stream_is_completed_from_the_log(
    session_name: str, labels: dict[str, str], template: Make, tmp_path: Path
) -> None:
    """A job prints a line every 100 ms for 3 s; every connection to the engine is cut
    mid-job: at the end the file is complete and identical to what the job wrote, once."""
    out = tmp_path / "out"
    script = "i=0; while [ $i -lt 30 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"
    async with (
        open_proxy(MAIN_SOCKET) as proxy,
        DockerTracker(session_name, docker_url=f"unix://{proxy.path}", labels=labels) as tracker,
    ):
        job_id = await tracker.add_job(template("sh", "-c", script, output_path=str(out)))
        await asyncio.sleep(1.0)
        assert await proxy.cut() >= 2  # the event stream and the output stream, at least
        await asyncio.sleep(0.2)
        await proxy.restore()
        assert await tracker.wait(job_id, timeout=60) is JobState.DONE
        info = await tracker.job_info(job_id)
    assert out.read_text() == "".join(f"line-{i}\n" for i in range(30))
    assert info.faults == ()


LINES_3S = "i=0; while [ $i -lt 30 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"
EXPECTED_3S = "".join(f"line-{i}\n" for i in range(30)).encode()


async def test_file_grows_at_its_path_while_the_job_runs(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """A line every 100 ms for 3 s: the file at output_path is seen at 10 sizes or more while
    the job runs, and is complete when wait returns."""
    out = tmp_path / "out"
    job_id = await tracker.add_job(template("sh", "-c", LINES_3S, output_path=str(out)))
    sizes: set[int] = set()
    while await tracker.job_state(job_id) not in (JobState.DONE, JobState.FAILED):
        if out.exists():
            sizes.add(out.stat().st_size)
        await asyncio.sleep(0.02)
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert out.read_bytes() == EXPECTED_3S
    sizes.discard(len(EXPECTED_3S))
    assert len(sizes) >= 10, f"seen at {len(sizes)} sizes before the end: {sorted(sizes)}"
    print(f"\n[output] file seen at {len(sizes)} sizes while the job ran")


async def test_two_readers_at_different_speeds(
    tracker: DockerTracker, template: Make, tmp_path: Path
) -> None:
    """One reader keeps up; one reads a chunk every 0.5 s with a 16-byte buffer (the job writes
    ~40 bytes in that time) and is cut off; a third joins mid-job and still gets every byte
    once. One attach serves them all, and the file is complete."""
    out = tmp_path / "out"
    job_id = await tracker.add_job(template("sh", "-c", LINES_3S, output_path=str(out)))
    assert await tracker.wait(job_id, JobState.RUNNING, timeout=30) is JobState.RUNNING

    async def read_all(delay: float = 0.0, **kwargs: Any) -> bytes:
        await asyncio.sleep(delay)
        async with tracker.stream_output(job_id, **kwargs) as stream:
            return b"".join([chunk async for chunk in stream])

    async def read_slowly() -> bytes:
        got = b""
        async with tracker.stream_output(job_id, max_buffer=16) as stream:
            async for chunk in stream:
                got += chunk
                await asyncio.sleep(0.5)
        return got

    fast, late, slow = await asyncio.gather(
        read_all(), read_all(1.5), read_slowly(), return_exceptions=True
    )
    assert fast == EXPECTED_3S
    assert late == EXPECTED_3S
    assert isinstance(slow, OutputOverrunError), slow
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert out.read_bytes() == EXPECTED_3S
    assert tracker.statistics().output_streams == 0


async def test_stream_output_of_a_job_without_files_and_after_its_end(
    tracker: DockerTracker, template: Make
) -> None:
    """A job with no output path is read through one shared relay while it runs; once it has
    ended, from its log (stderr apart, tail as asked)."""
    job_id = await tracker.add_job(template("sh", "-c", f"{LINES_3S}; echo oops >&2"))

    async def read(**kwargs: Any) -> bytes:
        async with tracker.stream_output(job_id, **kwargs) as stream:
            return b"".join([chunk async for chunk in stream])

    both = await asyncio.gather(read(), read())
    assert list(both) == [EXPECTED_3S, EXPECTED_3S]
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    assert await read() == EXPECTED_3S
    assert await read(stderr=True) == b"oops\n"
    assert await read(tail=2) == b"line-28\nline-29\n"
