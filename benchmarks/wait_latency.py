"""1. Wait latency: from a job's exit (its die event's ``timeNano``) to the waiting call's return.

Every job runs ``read x < /ctl/fN`` on a FIFO of its own (bind-mounted), so it exits, with
status 0, when the benchmark writes to that FIFO, without any call to the engine. The engine
is shared and its load drifts, so the methods take turns: in each round every method submits
a batch of jobs; once all of them run, each method in turn (the order rotates from round to
round) gets its waits pending, and its jobs are released one by one in a shuffled order,
50 to 150 ms apart. Only one method's jobs exit at a time. The engine's delivery delay comes
from the observer process, for the same jobs.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

from .adapters import (
    AiotrackerMethod,
    DockerPyMethod,
    EventsOnlyMethod,
    JobSpec,
    Method,
    PerJobWaitMethod,
    PollingMethod,
)
from .common import (
    Context,
    Section,
    Table,
    bounded,
    fmt,
    fmt_ratio,
    goal,
    median,
    ms,
    percentile,
    ratio,
    remove_containers,
    write_fifo,
)

PART = "wait"


BATCH = 10


class Result:
    def __init__(self) -> None:
        self.latencies: list[float] = []  # ms
        self.delivery: list[float] = []  # ms, observer, same jobs
        self.errors: list[str] = []  # submissions and waits that raised


class Batch:
    def __init__(self, ctx: Context, method: Method, n: int, tag: str) -> None:
        self.method = method
        self.ctl = ctx.scratch(f"wait-{tag}")
        for i in range(n):
            os.mkfifo(self.ctl / f"f{i}")
            (self.ctl / f"f{i}").chmod(0o666)
        self.specs = [
            JobSpec(("sh", "-c", f"read x < /ctl/f{i}"), binds={str(self.ctl): "/ctl"})
            for i in range(n)
        ]
        self.ids: list[str] = []
        self.fifos: list[int] = []  # the FIFO of each job in ids

    async def submit(self, result: Result) -> None:
        async def one(spec: JobSpec) -> str | BaseException:
            try:
                return await self.method.submit(spec)
            except Exception as exc:  # counted and shown (docker-py under threads)
                return exc

        made = await bounded(8, (one(s) for s in self.specs))
        for i, cid in enumerate(made):
            if isinstance(cid, str):
                self.ids.append(cid)
                self.fifos.append(i)
            else:
                result.errors.append(f"submit: {type(cid).__name__}: {cid}")


async def _release(ctx: Context, batch: Batch, result: Result, rng: random.Random) -> None:
    """Waits pending, then the jobs exit one by one; record each wait's latency."""
    tasks = [asyncio.create_task(batch.method.wait(cid)) for cid in batch.ids]
    try:
        await asyncio.sleep(0.3)  # every wait is pending (a poller is on its ticker)
        for i in rng.sample(batch.fifos, len(batch.fifos)):
            write_fifo(batch.ctl / f"f{i}")
            await asyncio.sleep(rng.uniform(0.05, 0.15))
        returned = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    dies = await ctx.observer.wait_all(batch.ids, "die")
    for r, d in zip(returned, dies, strict=True):
        if isinstance(r, BaseException):
            result.errors.append(f"wait: {type(r).__name__}: {r}")
            continue
        result.latencies.append(ms(r - d.time_ns))
        result.delivery.append(ms(d.delivery_ns))


async def run(ctx: Context) -> Section:
    n = ctx.sizes.wait_jobs
    rounds = max(1, n // BATCH)
    rng = random.Random(6)
    methods: list[Method] = [
        AiotrackerMethod(ctx, PART),
        PollingMethod(ctx, PART),
        PerJobWaitMethod(ctx, PART),
        DockerPyMethod(ctx, PART),
        EventsOnlyMethod(ctx, PART),
    ]
    results = {m.name: Result() for m in methods}
    opened: list[Method] = []
    try:
        for method in methods:
            await method.open()
            opened.append(method)
        for r in range(rounds):
            start = time.perf_counter()
            batches = [Batch(ctx, m, n // rounds, f"{r}-{i}") for i, m in enumerate(methods)]
            await asyncio.gather(*(b.submit(results[b.method.name]) for b in batches))
            await ctx.observer.wait_all([c for b in batches for c in b.ids], "start")
            turn = r % len(batches)
            for batch in batches[turn:] + batches[:turn]:
                await _release(ctx, batch, results[batch.method.name], rng)
            await remove_containers(ctx, PART)
            print(f"  round {r + 1}/{rounds}: {time.perf_counter() - start:.1f} s", flush=True)
    finally:
        for method in opened:
            await method.close()
        await remove_containers(ctx, PART)

    ours = results["aiotracker"]
    ours_median = median(ours.latencies)
    table = Table(
        f"Wait latency, die event timeNano -> wait returns ({rounds * (n // rounds)} jobs per "
        f"method, {rounds} round(s), ms)",
        ["method", "jobs", "median", "p90", "p99", "max", "median x aiotracker",
         "engine delivery median (same jobs)", "failed calls"],
    )  # fmt: skip
    all_delivery: list[float] = []
    for name, res in results.items():
        all_delivery += res.delivery
        table.add(
            name if name != EventsOnlyMethod.name else f"{name} (reference, no inspect)",
            len(res.latencies), fmt(median(res.latencies), 2),
            fmt(percentile(res.latencies, 90), 2), fmt(percentile(res.latencies, 99), 2),
            fmt(percentile(res.latencies, 100), 2),
            fmt_ratio(ratio(median(res.latencies), ours_median)), fmt(median(res.delivery), 2),
            len(res.errors),
        )  # fmt: skip
    table.add(
        "engine's own delivery (observer)", len(all_delivery), fmt(median(all_delivery), 2),
        fmt(percentile(all_delivery, 90), 2), fmt(percentile(all_delivery, 99), 2),
        fmt(percentile(all_delivery, 100), 2),
        fmt_ratio(ratio(median(all_delivery), ours_median)), "", "",
    )  # fmt: skip
    table.notes.append(
        "engine delivery = receipt in a separate process reading /events with a blocking "
        "socket - timeNano"
    )
    table.notes.append(
        "die event only = raw jobs whose waits are resolved by aiodocker's event subscriber "
        "on the die event alone, no inspect, no cache: the floor of an in-process event wait"
    )
    if ctx.engine.podman:
        table.notes.append(
            "Podman (events_logger file): its service reads the events file every 250 ms, so "
            "events reach every client late; a wait fed by events cannot beat that delivery, "
            "an inspect (polling) sees the exit sooner; Podman 4.3's compat wait endpoint "
            "polls every 1 µs (containers/podman#18150), so pending aiodocker/docker-py waits "
            "also load its service"
        )
    errors = sorted({e for res in results.values() for e in res.errors})
    if errors:
        table.notes.append("failed calls: " + "; ".join(errors[:3]))
    gap = ours_median - median(ours.delivery)
    polling = ratio(median(results["polling 100 ms"].latencies), ours_median)
    section = Section(1, "Wait latency", [table])
    section.goals = [
        goal("aiotracker median ≤ 5 ms", ours_median <= 5, f"{ours_median:.2f} ms"),
        goal(
            "aiotracker median within 2 ms of the engine's delivery (same jobs)",
            gap <= 2,
            f"{gap:+.2f} ms ({ours_median:.2f} vs {median(ours.delivery):.2f})",
        ),
        goal("≥ 10x lower than 100 ms polling (median)", polling >= 10, fmt_ratio(polling)),
    ]
    section.headlines = [
        f"wait latency (median): polling {fmt_ratio(polling)}, aiodocker wait() "
        f"{fmt_ratio(ratio(median(results['aiodocker wait()'].latencies), ours_median))}, "
        f"docker-py threads "
        f"{fmt_ratio(ratio(median(results['docker-py threads'].latencies), ours_median))} "
        f"aiotracker's ({ours_median:.2f} ms; engine delivery {median(all_delivery):.2f} ms)"
    ]
    return section
