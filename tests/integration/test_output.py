"""Output and the engine's log against the real engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiotracker import DockerTracker, JobState, JobTemplate

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
