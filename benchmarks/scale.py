"""7. Scale: memory per tracked job, and the cost of opening a tracker on existing jobs.

One tracker runs ``true`` jobs (``add_job``, 8 at a time, each waited for) until its cache
holds each size of ``Sizes.scale_jobs`` finished jobs; at each size the memory allocated in
the tracker's code paths and still alive is measured with tracemalloc (traces whose stack
holds an aiotracker frame: the benchmark's own bookkeeping is left out). RSS is not
reported: with tracemalloc on, it mostly grows with tracemalloc's own traces.

At ``Sizes.open_jobs`` jobs (and at the largest size: 10,000 in full mode, issue 17),
trackers are opened on the same session: in fresh processes without tracemalloc (it slows
Python code several times), the time ``open()`` takes (one list, and inspects only where the
list says too little) and the process's RSS growth over it, against the engine's own answer
to that list (``GET /containers/json`` filtered by the session label, raw); then, in the
same process, ``list_jobs()`` and ``job_state()`` of every job against the engine's list and
an inspect of every job; here, traced, the memory of the seeded cache. The event observer does
not record during this measurement (its records would only slow the snapshots).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import tracemalloc

import aiodocker

from aiotracker import DockerTracker

from .adapters import AiotrackerMethod, JobSpec
from .common import (
    SESSION_LABEL,
    Context,
    Section,
    Table,
    bounded,
    fmt,
    fmt_ratio,
    median,
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
        self.bytes = 0  # the seeded cache, traced here
        self.rss = 0.0  # the fresh process's RSS growth over open(), bytes
        self.list_jobs = 0.0  # s, tracker.list_jobs()
        self.states = 0.0  # s, tracker.job_state() for every job, one after another
        self.inspect_all = 0.0  # s, an inspect of every job, INSPECTS in flight


INSPECTS = 16  # in flight when the engine is asked for every job (measurement 3's best row)


def _rss() -> int:
    """This process's resident set (VmRSS), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def _time_open(session: str, url: str) -> dict[str, float]:
    """In a fresh process, untraced: open(), its RSS, the queries over every job, and what
    the engine takes for the same (its list of the session; an inspect of every job)."""
    filters = json.dumps({"label": [f"{SESSION_LABEL}={session}"]})
    async with aiodocker.Docker(url=url) as client:
        # warm the client (version, connection) on a list that matches nothing
        await client.containers.list(all=True, filters=json.dumps({"label": ["no-such=1"]}))
        gc.collect()
        rss = _rss()
        tracker = DockerTracker(session, docker_url=url)
        start = time.perf_counter()
        await tracker.open()
        seconds = time.perf_counter() - start
        try:
            gc.collect()
            rss = _rss() - rss
            stats = tracker.statistics()
            list_jobs = []
            for _ in range(5):
                start = time.perf_counter()
                ids = await tracker.list_jobs()
                list_jobs.append(time.perf_counter() - start)
            start = time.perf_counter()
            for job_id in ids:
                await tracker.job_state(job_id)
            states = time.perf_counter() - start
        finally:
            await tracker.aclose()
        start = time.perf_counter()  # the engine just answered the same list to open()
        listed = await client.containers.list(all=True, filters=filters)
        list_seconds = time.perf_counter() - start
        start = time.perf_counter()
        await bounded(INSPECTS, (client.containers.get(c.id) for c in listed))
        inspect_all = time.perf_counter() - start
    return {
        "list": list_seconds, "open": seconds, "inspects": stats.inspects, "jobs": stats.jobs,
        "rss": rss, "list_jobs": median(list_jobs), "states": states,
        "inspect_all": inspect_all,
    }  # fmt: skip


async def _open_on(ctx: Context, session: str, jobs: int) -> OpenResult:
    result = OpenResult(jobs)
    runs = []
    for _ in range(ctx.sizes.open_runs):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.scale", session, ctx.engine.url,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        runs.append(json.loads(out.decode().strip().splitlines()[-1]))
    result.seconds = median([r["open"] for r in runs])
    result.list_seconds = median([r["list"] for r in runs])
    result.inspects = int(max(r["inspects"] for r in runs))
    result.rss = median([r["rss"] for r in runs])
    result.list_jobs = median([r["list_jobs"] for r in runs])
    result.states = median([r["states"] for r in runs])
    result.inspect_all = median([r["inspect_all"] for r in runs])
    if any(r["jobs"] != jobs for r in runs):
        print(f"  (a tracker opened on the session saw {runs[0]['jobs']} jobs, not {jobs})")
    # The memory of a seeded cache, here, traced: the open's time above is untraced.
    before = _traced()
    tracker = DockerTracker(session, docker_url=ctx.engine.url, labels=ctx.labels(PART))
    await tracker.open()
    try:
        result.bytes = _traced() - before
    finally:
        await tracker.aclose()
    return result


async def run(ctx: Context) -> Section:
    sizes = ctx.sizes.scale_jobs
    method = AiotrackerMethod(ctx, PART)
    spec = JobSpec(("true",))
    memory: list[tuple[int, int]] = []  # (jobs, traced bytes)
    opened: list[OpenResult] = []
    ctx.observer.recording = False
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
        ctx.observer.recording = True
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
         "RSS per job (fresh process)", "traced bytes per job"],
    )  # fmt: skip
    for o in opened:
        b.add(
            o.jobs, fmt(o.seconds, 3), fmt(o.list_seconds, 3),
            fmt_ratio(ratio(o.seconds, o.list_seconds)), o.inspects, fmt(o.rss / o.jobs, 0),
            fmt(o.bytes / o.jobs, 0),
        )  # fmt: skip
    b.notes.append(
        f"open() = connect, start the event stream, list, seed the cache; timed in a fresh "
        f"process without tracemalloc (median of {ctx.sizes.open_runs}), as is the engine's list "
        "(GET /containers/json?all=1 filtered by the session label, right after open() sent "
        "the same); RSS per job = that process's VmRSS growth over open() (after gc) / jobs; "
        "traced bytes per job = the seeded cache, traced in this process"
    )
    c = Table(
        "Queries over every job of the session, against asking the engine",
        ["jobs", "list_jobs() (ms)", "engine's list (ms)", "list x list_jobs",
         "job_state, every job (ms)", "µs per job_state",
         f"inspect every job, {INSPECTS} in flight (s)", "inspect x job_state"],
    )  # fmt: skip
    for o in opened:
        c.add(
            o.jobs, fmt(o.list_jobs * 1e3, 2), fmt(o.list_seconds * 1e3, 1),
            fmt_ratio(ratio(o.list_seconds, o.list_jobs)), fmt(o.states * 1e3, 1),
            fmt(o.states / o.jobs * 1e6, 2), fmt(o.inspect_all, 2),
            fmt_ratio(ratio(o.inspect_all, o.states)),
        )  # fmt: skip
    c.notes.append(
        "in the fresh process of the open above: list_jobs() (median of 5) and job_state() "
        "of every job one after another (awaited; from the cache: no engine call), against "
        "the engine's list of the session (one call that gives every job's state) and an "
        f"inspect of every job ({INSPECTS} in flight: what a tracker without a cache does)"
    )
    section = Section(7, "Scale", [a, b, c])
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
        o = opened[-1]
        headline += (
            f"; at {o.jobs:,} jobs: open {o.seconds:.2f} s = "
            f"{fmt_ratio(ratio(o.seconds, o.list_seconds))} the engine's list, "
            f"{o.rss / o.jobs:,.0f} bytes RSS per job, list_jobs {o.list_jobs * 1e3:.1f} ms, "
            f"job_state of all {o.states * 1e3:.0f} ms (inspect of all: "
            f"{fmt_ratio(ratio(o.inspect_all, o.states))})"
        )
    section.headlines = [headline]
    return section


if __name__ == "__main__":  # the fresh process of _open_on
    print(json.dumps(asyncio.run(_time_open(sys.argv[1], sys.argv[2]))))
