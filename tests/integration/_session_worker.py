"""A tracker in a process of its own, for the several-processes tests.

``python -m tests.integration._session_worker SESSION RUN_TOKEN DIR submit|follow``: ``submit``
makes the array (30 tasks, max_parallel 3) and writes its id to DIR/array; ``follow`` waits for
that file. Both then wait for every task and write DIR/done-<pid>. Prints one line per event.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiotracker import DockerTracker, JobTemplate
from tests.conftest import RUN_LABEL, TEST_IMAGE

TASKS, MAX_PARALLEL = 30, 3
SCRIPT = (
    'read a b < /proc/uptime; echo "start $a" >> /stamps/$TASK_ID; sleep 1; '
    'read a b < /proc/uptime; echo "end $a" >> /stamps/$TASK_ID; echo out-$TASK_ID'
)


async def main(session: str, token: str, where: Path, role: str) -> None:
    async with DockerTracker(session, labels={RUN_LABEL: token}) as tracker:
        array_file = where / "array"
        if role == "submit":
            template = JobTemplate(
                job_category=TEST_IMAGE, remote_command="sh", args=["-c", SCRIPT],
                stage_in_files={str(where / "stamps"): "/stamps"},
                output_path=str(where / "out" / "$DRMAA2_INDEX$"),
            )  # fmt: skip
            array_id = await tracker.add_array_job(template, 1, TASKS, max_parallel=MAX_PARALLEL)
            (where / "array.tmp").write_text(array_id)
            os.replace(where / "array.tmp", array_file)
        while not array_file.exists():  # noqa: ASYNC110  # another process writes it
            await asyncio.sleep(0.05)
        print("following", flush=True)
        states = await tracker.wait_array(array_file.read_text(), timeout=240)
        (where / f"done-{os.getpid()}").write_text(
            " ".join(sorted({s.name for s in states.values()}))
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]))
