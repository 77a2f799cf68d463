"""1. Wait latency: from a job's exit to the waiting call's return, one exit at a time and in
a burst.

Two reference points, both read from the engine after the measurement:

- the job's **exit**: its container's ``State.FinishedAt`` (inspect, ns precision): when the
  engine saw its process end. What a user waits for.
- the **die event**'s ``timeNano``: when the engine published the exit, the earliest moment
  anything on the Engine API can know of it. Its distance from the exit (the engine's
  exit -> die lag) is reported as a row of its own.

a) One at a time. Every job runs ``read x < /ctl/fN`` on a FIFO of its own (bind-mounted),
so it exits, with status 0, when the benchmark writes to that FIFO, without any call to the
engine. The engine is shared and its load drifts, so the methods take turns: in each round
every method submits a batch of jobs; once all of them run, each method in turn (the order
rotates from round to round) gets its waits pending, and its jobs are released one by one in
a shuffled order, 50 to 150 ms apart. Only one method's jobs exit at a time. The engine's
delivery delay comes from the observer process, for the same jobs.

b) A burst. Each method's N jobs (``burst_jobs``: 500 in full mode) all open one shared FIFO
for reading while the benchmark holds its write end, mark themselves ready, and block in
``cat``; once every one is ready and every wait is pending, the benchmark closes the write
end and all of them read EOF and exit 0 at the same moment. The methods take turns (one
method's burst at a time); p99 is what matters there.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence

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
    exit_times,
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
from .observer import Seen

PART = "wait"


BATCH = 10
AIOTRACKER = AiotrackerMethod.name
REFERENCE = f"{EventsOnlyMethod.name} (reference, no inspect)"
OBSERVER = "engine's own delivery (observer)"
LAG = "engine: exit -> die event (die timeNano - FinishedAt)"


class Result:
    def __init__(self) -> None:
        self.from_exit: list[float] = []  # ms: wait returned - FinishedAt
        self.from_die: list[float] = []  # ms: wait returned - die timeNano
        self.delivery_exit: list[float] = []  # ms: observer's receipt - FinishedAt
        self.delivery: list[float] = []  # ms: observer's receipt - die timeNano
        self.lag: list[float] = []  # ms: die timeNano - FinishedAt
        self.exits: list[int] = []  # FinishedAt (ns) of each job timed
        self.released_ns = 0  # burst: when the jobs were released
        self.last_return_ns = 0  # burst: the last wait's return
        self.errors: list[str] = []  # submissions, waits and inspects that failed

    def record(self, returned: Sequence[int | BaseException], ids: Sequence[str],
               dies: Sequence[Seen], exits: dict[str, int]) -> None:  # fmt: skip
        """One wait's return per job, against its die event (observer) and its exit."""
        for cid, r, d in zip(ids, returned, dies, strict=True):
            if isinstance(r, BaseException):
                self.errors.append(f"wait: {type(r).__name__}: {r}")
                continue
            time_ns, recv_ns = d.time_ns, d.recv_ns
            self.from_die.append(ms(r - time_ns))
            self.delivery.append(ms(recv_ns - time_ns))
            self.last_return_ns = max(self.last_return_ns, r)
            exit_ns = exits.get(cid)
            if exit_ns is None:
                self.errors.append(f"inspect: no FinishedAt for {cid[:12]}")
                continue
            self.exits.append(exit_ns)
            self.from_exit.append(ms(r - exit_ns))
            self.delivery_exit.append(ms(recv_ns - exit_ns))
            self.lag.append(ms(time_ns - exit_ns))


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
        self.ids, made = await _submit(self.method, self.specs, result)
        self.fifos = made


async def _submit(
    method: Method, specs: Sequence[JobSpec], result: Result
) -> tuple[list[str], list[int]]:
    """Submit every spec, 8 at a time: the ids made, and the index of each one's spec."""

    async def one(spec: JobSpec) -> str | BaseException:
        try:
            return await method.submit(spec)
        except Exception as exc:  # counted and shown (docker-py under threads)
            return exc

    ids: list[str] = []
    index: list[int] = []
    for i, cid in enumerate(await bounded(8, (one(s) for s in specs))):
        if isinstance(cid, str):
            ids.append(cid)
            index.append(i)
        else:
            result.errors.append(f"submit: {type(cid).__name__}: {cid}")
    return ids, index


async def _gather(tasks: list[asyncio.Task[int]], timeout: float) -> list[int | BaseException]:
    try:
        return list(await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _release(ctx: Context, batch: Batch, result: Result, rng: random.Random) -> None:
    """Waits pending, then the jobs exit one by one; record each wait's latency."""
    tasks = [asyncio.create_task(batch.method.wait(cid)) for cid in batch.ids]
    try:
        await asyncio.sleep(0.3 * ctx.sizes.settle)  # every wait pending, a poller on its ticker
        for i in rng.sample(batch.fifos, len(batch.fifos)):
            write_fifo(batch.ctl / f"f{i}")
            await asyncio.sleep(rng.uniform(0.05, 0.15))
    finally:
        returned = await _gather(tasks, 120)
    dies = await ctx.observer.wait_all(batch.ids, "die")
    result.record(returned, batch.ids, dies, await exit_times(ctx, batch.ids))


async def _burst(ctx: Context, method: Method, n: int, result: Result) -> None:
    """n jobs of one method, released at the same moment by closing a FIFO they all read."""
    ctl = ctx.scratch(f"burst-{method.name.split()[0]}")
    go, ready = ctl / "go", ctl / "ready"
    os.mkfifo(go)
    go.chmod(0o666)
    ready.mkdir()
    ready.chmod(0o777)
    # The write end, held from the start: a job's open() returns at once, its cat blocks
    # until this end is closed, then reads EOF.
    held = os.open(go, os.O_RDWR | os.O_NONBLOCK)
    try:
        specs = [
            JobSpec(
                ("sh", "-c", f"exec 3</ctl/go && touch /ctl/ready/{i} && exec cat <&3"),
                binds={str(ctl): "/ctl"},
            )
            for i in range(n)
        ]
        start = time.perf_counter()
        ids, _ = await _submit(method, specs, result)
        deadline = time.monotonic() + 120 + n
        while len(os.listdir(ready)) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(os.listdir(ready))} of {len(ids)} burst jobs ready")
            await asyncio.sleep(0.05)
        made = time.perf_counter() - start
        tasks = [asyncio.create_task(method.wait(cid)) for cid in ids]
        try:
            # Every wait pending: a poller past its first inspect (n of them at once).
            await asyncio.sleep(0.5 * ctx.sizes.settle + 0.004 * n)
            result.released_ns = time.time_ns()
            os.close(held)
            held = -1
        finally:
            returned = await _gather(tasks, 120 + n)
    finally:
        if held >= 0:
            os.close(held)
    dies = await ctx.observer.wait_all(ids, "die", timeout=120 + n)
    result.record(returned, ids, dies, await exit_times(ctx, ids))
    print(
        f"  burst of {len(ids)} for {method.name}: ready after {made:.1f} s, exits within "
        f"{_spread(result):.1f} ms, last wait returned "
        f"{ms(result.last_return_ns - result.released_ns):.0f} ms after the release",
        flush=True,
    )


def _spread(result: Result) -> float:
    return ms(max(result.exits) - min(result.exits)) if result.exits else float("nan")


def _methods(ctx: Context) -> list[Method]:
    return [
        AiotrackerMethod(ctx, PART),
        PollingMethod(ctx, PART),
        PerJobWaitMethod(ctx, PART),
        DockerPyMethod(ctx, PART),
        EventsOnlyMethod(ctx, PART),
    ]


async def _one_by_one(ctx: Context, methods: list[Method]) -> dict[str, Result]:
    n = ctx.sizes.wait_jobs
    rounds = max(1, n // BATCH)
    rng = random.Random(6)
    results = {m.name: Result() for m in methods}
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
    return results


async def _bursts(ctx: Context, methods: list[Method]) -> dict[str, Result]:
    results = {m.name: Result() for m in methods}
    for method in methods:
        try:
            await _burst(ctx, method, ctx.sizes.burst_jobs, results[method.name])
        finally:
            await remove_containers(ctx, PART)
    return results


async def run(ctx: Context) -> Section:
    methods = _methods(ctx)
    opened: list[Method] = []
    try:
        for method in methods:
            await method.open()
            opened.append(method)
        results = await _one_by_one(ctx, methods)
        bursts = await _bursts(ctx, methods)
    finally:
        for method in opened:
            await method.close()
        await remove_containers(ctx, PART)
    rounds = max(1, ctx.sizes.wait_jobs // BATCH)
    jobs = rounds * (ctx.sizes.wait_jobs // rounds)
    one = _table(
        ctx,
        f"Wait latency, one exit at a time: from the job's exit (FinishedAt) and from the "
        f"die event (timeNano) to the wait's return ({jobs} jobs per method, {rounds} "
        "round(s), ms)",
        results,
        burst=False,
    )
    burst = _table(
        ctx,
        f"Wait latency, a burst of {ctx.sizes.burst_jobs} jobs per method exiting at the "
        "same moment: from the exit and from the die event (ms)",
        bursts,
        burst=True,
    )
    return _section(results, bursts, one, burst, ctx.sizes.burst_jobs)


def _cells(values: list[float]) -> list[str]:
    return [fmt(median(values), 2), fmt(percentile(values, 99), 2), fmt(percentile(values, 100), 2)]


def _table(ctx: Context, title: str, results: dict[str, Result], *, burst: bool) -> Table:
    columns = ["method", "jobs", "from exit: median", "p99", "max", "from die: median",
               "p99", "max", "x aiotracker (exit)", "x aiotracker (die)",
               "exit -> die median (same jobs)"]  # fmt: skip
    if burst:
        columns += ["exits within (ms)", "release -> last return (ms)"]
    columns.append("failed calls")
    table = Table(title, columns)
    ours = results[AIOTRACKER]
    ours_exit, ours_die = median(ours.from_exit), median(ours.from_die)
    for name, res in results.items():
        extra = []
        if burst:
            extra = [
                fmt(_spread(res), 1),
                fmt(ms(res.last_return_ns - res.released_ns), 0) if res.released_ns else "n/a",
            ]
        table.add(
            REFERENCE if name == EventsOnlyMethod.name else name,
            len(res.from_die), *_cells(res.from_exit), *_cells(res.from_die),
            fmt_ratio(ratio(median(res.from_exit), ours_exit)),
            fmt_ratio(ratio(median(res.from_die), ours_die)), fmt(median(res.lag), 2), *extra,
            len(res.errors),
        )  # fmt: skip
    blank = ["", ""] if burst else []
    every = list(results.values())
    delivery_exit = [x for r in every for x in r.delivery_exit]
    delivery = [x for r in every for x in r.delivery]
    lag = [x for r in every for x in r.lag]
    table.add(
        OBSERVER, len(delivery), *_cells(delivery_exit), *_cells(delivery),
        fmt_ratio(ratio(median(delivery_exit), ours_exit)),
        fmt_ratio(ratio(median(delivery), ours_die)), fmt(median(lag), 2), *blank, "",
    )  # fmt: skip
    table.add(
        LAG, len(lag), *_cells(lag), "", "", "", fmt_ratio(ratio(median(lag), ours_exit)), "",
        fmt(median(lag), 2), *blank, "",
    )  # fmt: skip
    table.notes.append(
        "from exit = wait returned - the container's State.FinishedAt (inspected after the "
        "measurement); from die = wait returned - the die event's timeNano (the observer's "
        "record); same host, same clock"
    )
    table.notes.append(
        "engine delivery = receipt in a separate process reading /events with a blocking "
        "socket; exit -> die = the engine's own lag between a job's exit and its die event, "
        "which no client of the Engine API can see through"
    )
    if burst:
        table.notes.append(
            "one method's burst at a time, so each burst meets the engine as it is at that "
            "moment: the engine's exit -> die lag of each method's own jobs is in its row, and "
            "'from die' is the column that compares the methods; 'exits within' = the spread "
            "of the jobs' FinishedAt; release = the benchmark closed the FIFO's write end"
        )
        if "aiodocker wait()" in results:
            table.notes.append(
                "aiodocker wait() uses aiodocker's default pool (100 connections): past 100 "
                "pending waits, the others queue in the client and are sent only as "
                "connections free up"
            )
    else:
        table.notes.append(
            "die event only = raw jobs whose waits are resolved by aiodocker's event "
            "subscriber on the die event alone, no inspect, no cache: the floor of an "
            "in-process event wait"
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
    return table


def _x(results: dict[str, Result], name: str, of: str) -> str:
    """The median of ``name``'s latencies (``from_exit`` or ``from_die``) over aiotracker's."""
    ours = median(getattr(results[AIOTRACKER], of))
    return fmt_ratio(ratio(median(getattr(results[name], of)), ours))


def _section(
    results: dict[str, Result], bursts: dict[str, Result], one: Table, burst: Table, n: int
) -> Section:
    ours = results[AIOTRACKER]
    ours_exit, ours_die = median(ours.from_exit), median(ours.from_die)
    delivery = median([x for r in results.values() for x in r.delivery])
    gap = ours_die - median(ours.delivery)
    polling = ratio(median(results[PollingMethod.name].from_die), ours_die)
    lag = [x for r in results.values() for x in r.lag]
    burst_lag = [x for r in bursts.values() for x in r.lag]
    section = Section(1, "Wait latency", [one, burst])
    section.goals = [
        goal("aiotracker median ≤ 5 ms after the die event", ours_die <= 5, f"{ours_die:.2f} ms"),
        goal(
            "aiotracker median within 2 ms of the engine's delivery (same jobs)",
            gap <= 2,
            f"{gap:+.2f} ms ({ours_die:.2f} vs {median(ours.delivery):.2f})",
        ),
        goal(
            "≥ 10x lower than 100 ms polling (median, after the die)",
            polling >= 10,
            fmt_ratio(polling),
        ),
    ]
    others = (PollingMethod.name, PerJobWaitMethod.name, DockerPyMethod.name)

    def p99(name: str) -> str:
        return fmt(percentile(bursts[name].from_exit, 99), 1)

    from_exit = ", ".join(
        f"{m} {median(results[m].from_exit):.2f} ms ({_x(results, m, 'from_exit')})" for m in others
    )
    section.headlines = [
        f"wait latency from the job's exit (median): aiotracker {ours_exit:.2f} ms; "
        f"{from_exit}; the engine's exit -> die lag {median(lag):.2f} ms",
        f"wait latency from the die event (median): polling {fmt_ratio(polling)}, aiodocker "
        f"wait() {_x(results, PerJobWaitMethod.name, 'from_die')}, docker-py threads "
        f"{_x(results, DockerPyMethod.name, 'from_die')} aiotracker's ({ours_die:.2f} ms; "
        f"engine delivery {delivery:.2f} ms)",
        f"burst of {n} exits, p99 from the exit: aiotracker {p99(AIOTRACKER)} ms, polling "
        f"{p99(PollingMethod.name)}, aiodocker wait() {p99(PerJobWaitMethod.name)}, docker-py "
        f"threads {p99(DockerPyMethod.name)}, die event only {p99(EventsOnlyMethod.name)}; "
        f"exit -> die lag p99 {fmt(percentile(burst_lag, 99), 1)} ms",
    ]
    return section
