"""7. Scale: memory per tracked job, and the cost of opening a tracker on existing jobs.

One tracker runs ``true`` jobs (``add_job``, 8 at a time, each waited for) until its cache
holds each size of ``Sizes.scale_jobs`` finished jobs; at each size the memory allocated in
the tracker's code paths and still alive is measured with tracemalloc (traces whose stack
holds an aiotracker frame: the benchmark's own bookkeeping is left out). RSS is not
reported: with tracemalloc on, it mostly grows with tracemalloc's own traces.

At ``Sizes.open_jobs`` jobs (and at the largest size), a second tracker is opened on the same
session: the time ``open()`` takes (one list, and inspects only where the list says too
little), against the engine's own answer to that list (``GET /containers/json`` filtered
by the session label, raw), and the memory of its seeded cache.
"""

from __future__ import annotations

import gc
import json
import time
import tracemalloc

import aiodocker

from aiotracker import DockerTracker

from .adapters import AiotrackerMethod, JobSpec
from .common import (
    DOCKER_URL,
    SESSION_LABEL,
    Context,
    Section,
    Table,
    bounded,
    fmt,
    fmt_ratio,
    ratio,
    remove_containers,
)

PART = "scale"
FRAMES = 12  # deep enough to reach the aiotracker frame above json and aiohttp
CHUNK = 500  # progress is printed between chunks
_OURS = tracemalloc.Filter(True, "*/aiotracker/*", all_frames=True)


def _traced() -> int:
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces([_OURS])
    return sum(stat.size for stat in snapshot.statistics("filename"))


class OpenResult:
    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.seconds = 0.0
        self.list_seconds = 0.0
        self.inspects = 0
        self.bytes = 0


async def _open_on(ctx: Context, session: str, jobs: int) -> OpenResult:
    result = OpenResult(jobs)
    async with aiodocker.Docker(url=DOCKER_URL) as client:
        filters = json.dumps({"label": [f"{SESSION_LABEL}={session}"]})
        await client.containers.list(all=True, filters=filters)  # warm: version, connection
        start = time.perf_counter()
        await client.containers.list(all=True, filters=filters)
        result.list_seconds = time.perf_counter() - start
    before = _traced()
    tracker = DockerTracker(session, labels=ctx.labels(PART))
    start = time.perf_counter()
    await tracker.open()
    result.seconds = time.perf_counter() - start
    try:
        result.bytes = _traced() - before
        result.inspects = tracker.statistics().inspects
        jobs_seen = len(tracker)
        if jobs_seen != jobs:
            print(f"  (the second tracker sees {jobs_seen} jobs, not {jobs})", flush=True)
    finally:
        await tracker.aclose()
    return result


async def run(ctx: Context) -> Section:
    sizes = ctx.sizes.scale_jobs
    method = AiotrackerMethod(ctx, PART)
    spec = JobSpec(("true",))
    memory: list[tuple[int, int]] = []  # (jobs, traced bytes)
    opened: list[OpenResult] = []
    tracemalloc.start(FRAMES)
    try:
        await method.open()
        opened_at = _traced()
        done = 0
        start = time.perf_counter()

        async def one() -> None:
            await method.wait(await method.submit(spec))

        for size in sizes:
            while done < size:
                chunk = min(CHUNK, size - done)
                await bounded(8, (one() for _ in range(chunk)))
                done += chunk
                if done < size:
                    print(f"  {done} jobs ({time.perf_counter() - start:.0f} s)", flush=True)
            stats = method.tracker.statistics()
            memory.append((size, _traced() - opened_at))
            print(
                f"  {size} finished jobs in the cache after {time.perf_counter() - start:.0f} s "
                f"(tracker: {stats.jobs} jobs, {stats.tasks} tasks)",
                flush=True,
            )
            if size == ctx.sizes.open_jobs or size == sizes[-1]:
                opened.append(await _open_on(ctx, method.session, size))
    finally:
        tracemalloc.stop()
        await method.close()
        await remove_containers(ctx, PART)

    a = Table(
        "Memory of the tracker's cache with finished jobs",
        ["finished jobs", "allocated by aiotracker (MB)", "bytes per job",
         "marginal bytes per job"],
    )  # fmt: skip
    previous = (0, 0)
    for jobs, traced in memory:
        marginal = (traced - previous[1]) / (jobs - previous[0])
        a.add(jobs, fmt(traced / 2**20, 2), fmt(traced / jobs, 0), fmt(marginal, 0))
        previous = (jobs, traced)
    a.notes.append(
        "tracemalloc: blocks still allocated whose stack holds an aiotracker frame, after "
        "gc, from the tracker's open to now (includes aiohttp/aiodocker buffers it holds)"
    )
    b = Table(
        "Opening a tracker on a session of existing finished jobs",
        ["jobs", "open() (s)", "engine's list (s)", "open x list", "inspects",
         "bytes per job"],
    )  # fmt: skip
    for o in opened:
        b.add(
            o.jobs, fmt(o.seconds, 3), fmt(o.list_seconds, 3),
            fmt_ratio(ratio(o.seconds, o.list_seconds)), o.inspects, fmt(o.bytes / o.jobs, 0),
        )  # fmt: skip
    b.notes.append("open() = connect, start the event stream, list, seed the cache")
    section = Section(7, "Scale", [a, b])
    per_job = memory[-1][1] / memory[-1][0]
    headline = f"{per_job:,.0f} bytes per finished job at {memory[-1][0]:,} jobs"
    if len(memory) > 1:
        (n0, b0), (n1, b1) = memory[-2], memory[-1]
        headline += f" ({(b1 - b0) / (n1 - n0):,.0f} marginal)"
    if opened:
        o = opened[0]
        headline += (
            f"; open on {o.jobs:,} jobs {o.seconds:.2f} s = "
            f"{fmt_ratio(ratio(o.seconds, o.list_seconds))} the engine's list"
        )
    section.headlines = [headline]
    return section
