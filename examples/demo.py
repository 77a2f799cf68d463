"""A real job end to end: submit, wait from events, read the output file, print JobInfo;
a job's output watched as it comes.

Then an array of 6 tasks with at most 2 running at once.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time

from aiotracker import DockerTracker, JobState, JobTemplate

IMAGE = os.environ.get("AIOTRACKER_TEST_IMAGE", "aiotracker/busybox:latest")


async def main() -> None:
    out_dir = tempfile.mkdtemp(prefix="aiotracker-demo-")
    output = os.path.join(out_dir, "hello.out")
    async with DockerTracker("aiotracker-demo") as tracker:
        print(tracker)
        print("job categories:", await tracker.list_job_categories())
        started = time.perf_counter()
        job_id = await tracker.add_job(
            JobTemplate(
                job_category=IMAGE,
                remote_command="sh",
                args=["-c", "echo hello from $(hostname); echo to stderr >&2"],
                output_path=output,
                join_files=True,
            )
        )
        print(f"submitted {job_id[:12]}, state {await tracker.job_state(job_id)}")
        state = await tracker.wait(job_id, JobState.DONE, JobState.FAILED, timeout=60)
        print(f"finished {state} after {time.perf_counter() - started:.3f} s")
        with open(output, "rb") as f:
            print(f"{output}:\n{f.read().decode()}", end="")
        print(await tracker.job_info(job_id))
        await tracker.delete_job(job_id)

        # Output watched as it comes: the tracker's one copy of the stream feeds the reader.
        ticker = await tracker.add_job(
            JobTemplate(
                job_category=IMAGE, remote_command="sh",
                args=["-c", "for i in 1 2 3; do echo tick $i; sleep 0.3; done"],
                output_path=os.path.join(out_dir, "ticks.out"),
            )
        )  # fmt: skip
        started = time.perf_counter()
        async with tracker.stream_output(ticker) as output_stream:
            async for chunk in output_stream:
                for line in chunk.decode().splitlines():
                    print(f"  +{time.perf_counter() - started:.2f} s  {line}")
        assert await tracker.wait(ticker, timeout=60) is JobState.DONE
        await tracker.delete_job(ticker)

        array_id = await tracker.add_array_job(
            JobTemplate(job_category=IMAGE, remote_command="sh", args=["-c", "sleep 0.5"]),
            1, 6, max_parallel=2,
        )  # fmt: skip
        started = time.perf_counter()
        states = await tracker.wait_array(array_id, timeout=120)
        print(
            f"array {array_id}: {len(states)} tasks "
            f"{sorted({s.name for s in states.values()})} in {time.perf_counter() - started:.2f} s"
            " (max_parallel=2)"
        )
        for task in await tracker.list_array_jobs(array_id):
            await tracker.delete_job(task)
        print(tracker.statistics())


if __name__ == "__main__":
    asyncio.run(main())
