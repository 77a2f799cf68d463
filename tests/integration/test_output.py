"""Output and the engine's log against the real engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from aiotracker import DockerTracker, JobState, JobTemplate
from tests.integration._cli import MAIN_SOCKET
from tests.integration.test_reliability import open_proxy

Make = Callable[..., JobTemplate]


async def test_log_size_is_set_from_the_template(tracker: DockerTracker, template: Make) -> None:
    """The engine accepts the log rotation a template asks for, and keeps it on the job."""
    job_id = await tracker.add_job(
        template("true", extensions={"log-max-size": "1m", "log-max-file": "2"})
    )
    assert await tracker.wait(job_id, timeout=30) is JobState.DONE
    proc = await asyncio.create_subprocess_exec(
        "docker", "inspect", "-f", "{{json .HostConfig.LogConfig}}", job_id,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
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
