"""5. Array launch.

a) An N-task array (``true``, max_parallel 0) against a raw loop of create+start, one job
   after another (strict sequence is the array's contract, so that loop is its limit). Both are
   timed from the first call to the last task's ``start`` event (engine time, observer).
b) max_parallel 5 with 0.5 s tasks (``sleep 0.5``): total time from ``add_array_job`` to
   ``wait_array``'s return, against the ideal schedule (waves of 5, starts free), a bound
   that charges each start its measured engine cost (starts are sequential), and a raw
   launcher (all created first, then started one by one as die events free a slot). The
   largest number of tasks running at once is counted from the tasks' start and die events.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time

from .adapters import AiotrackerMethod, RawMethod
from .common import (
    Context,
    Section,
    Table,
    fmt,
    fmt_ratio,
    goal,
    median,
    ratio,
    raw_config,
    remove_containers,
)
from .observer import Observer

PART = "array"
BOUND = 5
TASK_SECONDS = 0.5


def _max_running(observer: Observer, ids: list[str]) -> int:
    moves: list[tuple[int, int]] = []
    for cid in ids:
        start, die = observer.get(cid, "start"), observer.get(cid, "die")
        if start is not None:
            moves.append((start.time_ns, 1))
        if die is not None:
            moves.append((die.time_ns, -1))
    running = peak = 0
    for _, step in sorted(moves):  # at equal times a die (-1) sorts before a start
        running += step
        peak = max(peak, running)
    return peak


def _bound(n: int, start_cost: float) -> float:
    """Makespan when starts are sequential, each costs ``start_cost``, BOUND slots."""
    slots = [0.0] * BOUND
    clock = 0.0
    end = 0.0
    for _ in range(n):
        free = heapq.heappop(slots)
        clock = max(clock, free) + start_cost
        heapq.heappush(slots, clock + TASK_SECONDS)
        end = max(end, clock + TASK_SECONDS)
    return end


async def _raw_loop(ctx: Context, raw: RawMethod, n: int) -> tuple[float, float]:
    """Sequential create+start; returns (s to the last start event, s per start call)."""
    t0 = time.time_ns()
    ids, starts = [], []
    config = raw_config(ctx, PART, ["true"])
    for _ in range(n):
        container = await raw.docker.containers.create(config)
        begin = time.perf_counter()
        await container.start()
        starts.append(time.perf_counter() - begin)
        ids.append(str(container.id))
    seen = await ctx.observer.wait_all(ids, "start")
    await ctx.observer.wait_all(ids, "die")
    return (max(s.time_ns for s in seen) - t0) / 1e9, median(starts)


async def _array(ctx: Context, ours: AiotrackerMethod, n: int) -> tuple[float, float, float]:
    """(s to the last start event, s until add_array_job returned, s until wait_array)."""
    tracker = ours.tracker
    t0 = time.time_ns()
    array_id = await tracker.add_array_job(ours.template_of(("true",)), 1, n)
    created = (time.time_ns() - t0) / 1e9
    ids = await tracker.list_array_jobs(array_id)
    seen = await ctx.observer.wait_all(ids, "start")
    await tracker.wait_array(array_id)
    done = (time.time_ns() - t0) / 1e9
    return (max(s.time_ns for s in seen) - t0) / 1e9, created, done


async def _raw_bounded(ctx: Context, raw: RawMethod, n: int) -> tuple[float, list[str]]:
    config = raw_config(ctx, PART, ["sleep", str(TASK_SECONDS)])
    start = time.perf_counter()
    containers = [await raw.docker.containers.create(config) for _ in range(n)]
    slots = asyncio.Semaphore(BOUND)
    ends: list[asyncio.Task[object]] = []
    for container in containers:
        await slots.acquire()
        await container.start()

        async def release(cid: str) -> None:
            await ctx.observer.wait_for(cid, "die")
            slots.release()

        ends.append(asyncio.create_task(release(str(container.id))))
    await asyncio.gather(*ends)
    return time.perf_counter() - start, [str(c.id) for c in containers]


async def run(ctx: Context) -> Section:
    n, m, reps = ctx.sizes.array_tasks, ctx.sizes.bounded_tasks, ctx.sizes.array_reps
    raw, ours = RawMethod(ctx, PART), AiotrackerMethod(ctx, PART)
    await raw.open()
    await ours.open()
    raw_times: list[float] = []
    raw_starts: list[float] = []
    array_times: list[tuple[float, float, float]] = []
    try:
        for rep in range(reps):
            for which in ("raw", "array") if rep % 2 == 0 else ("array", "raw"):
                if which == "raw":
                    t, s = await _raw_loop(ctx, raw, n)
                    raw_times.append(t)
                    raw_starts.append(s)
                else:
                    array_times.append(await _array(ctx, ours, n))
                last = raw_times[-1] if which == "raw" else array_times[-1][0]
                print(f"  {which} of {n}: {last:.2f} s to the last start", flush=True)
                await remove_containers(ctx, PART)
                await asyncio.sleep(0.5)
        # b) max_parallel 5, 0.5 s tasks
        t0 = time.perf_counter()
        array_id = await ours.tracker.add_array_job(
            ours.template_of(("sleep", str(TASK_SECONDS))), 1, m, 1, BOUND
        )
        bounded_ids = await ours.tracker.list_array_jobs(array_id)
        await ours.tracker.wait_array(array_id)
        bounded_time = time.perf_counter() - t0
        await ctx.observer.wait_all(bounded_ids, "die")
        peak = _max_running(ctx.observer, bounded_ids)
        await remove_containers(ctx, PART)
        raw_bounded_time, raw_ids = await _raw_bounded(ctx, raw, m)
        raw_peak = _max_running(ctx.observer, raw_ids)
    finally:
        await ours.close()
        await raw.close()

    raw_t = median(raw_times)
    arr_t = median([a[0] for a in array_times])
    a = Table(
        f"Array of {n} tasks (max_parallel 0) vs a raw sequential create+start loop "
        f"(median of {reps})",
        ["method", "s to last start", "tasks/s", "rate x raw loop", "created all (s)",
         "all finished (s)", "rounds (s)"],
    )  # fmt: skip
    a.add(
        "raw create+start loop", fmt(raw_t, 2), fmt(n / raw_t, 2), "1.00x", "", "",
        ", ".join(f"{x:.2f}" for x in raw_times),
    )  # fmt: skip
    a.add(
        "aiotracker add_array_job", fmt(arr_t, 2), fmt(n / arr_t, 2),
        fmt_ratio(ratio(raw_t, arr_t)), fmt(median([x[1] for x in array_times]), 2),
        fmt(median([x[2] for x in array_times]), 2),
        ", ".join(f"{x[0]:.2f}" for x in array_times),
    )  # fmt: skip
    a.notes.append(
        "times from the first call to the last task's start event (timeNano); the array "
        "creates every task before it starts any; 'all finished' = wait_array returned"
    )
    start_cost = median(raw_starts)
    ideal = math.ceil(m / BOUND) * TASK_SECONDS
    bound = _bound(m, start_cost)
    b = Table(
        f"Array of {m} tasks of {TASK_SECONDS} s, max_parallel {BOUND}",
        ["schedule", "total (s)", "x ideal", "max running at once"],
    )
    b.add("ideal (waves of 5, free starts)", fmt(ideal, 2), "1.00x", BOUND)
    b.add(
        f"bound: sequential starts of {start_cost * 1000:.0f} ms (engine)", fmt(bound, 2),
        fmt_ratio(ratio(bound, ideal)), BOUND,
    )  # fmt: skip
    b.add("raw launcher (die events free slots)", fmt(raw_bounded_time, 2),
          fmt_ratio(ratio(raw_bounded_time, ideal)), raw_peak)  # fmt: skip
    b.add("aiotracker add_array_job + wait_array", fmt(bounded_time, 2),
          fmt_ratio(ratio(bounded_time, ideal)), peak)  # fmt: skip
    b.notes.append(
        "the start cost is the median start() call of the raw loop above; 'max running' "
        "sweeps the tasks' start and die events"
    )
    section = Section(5, "Array launch", [a, b])
    r = ratio(raw_t, arr_t)
    section.goals = [
        goal("array launch ≥ 0.9x the raw sequential loop", r >= 0.9, fmt_ratio(r)),
        goal(
            f"max_parallel {BOUND}: never more than {BOUND} running",
            peak <= BOUND,
            f"{peak} at most",
        ),
    ]
    section.headlines = [
        f"array launch {fmt_ratio(r)} the raw loop's rate; max_parallel 5: "
        f"{fmt_ratio(ratio(bounded_time, ideal))} the ideal schedule, "
        f"{fmt_ratio(ratio(bounded_time, raw_bounded_time))} the raw launcher, peak {peak}"
    ]
    return section
