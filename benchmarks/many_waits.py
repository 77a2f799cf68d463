"""8. Many waits at once: N pending jobs, drained as they are terminated in random order.

Three ways to follow N jobs to their end, on the same kind of jobs, in the same random
termination order, in one run (interleaved rounds, the order rotating, medians reported):

- ``as_completed``: ``tracker.as_completed(ids)``, one registration for all jobs;
- ``tasks + asyncio.as_completed``: a task per job (``tracker.wait(id)``), drained with
  ``asyncio.as_completed``;
- ``tasks + asyncio.wait``: the same tasks drained by an ``asyncio.wait(...,
  return_when=FIRST_COMPLETED)`` loop (each call walks every pending task: quadratic; on at
  most ``Sizes.many_wait_cap`` jobs);
- ``one watch``: ``tracker.watch(ids, (DONE, FAILED))``, one registration for all jobs;
- ``a watch per job``: a task per job, each in a ``tracker.watch([id], ...)`` of its own until
  its job ends, drained with ``asyncio.as_completed`` (fake engine only: the tracker's cost
  per watcher is what it shows).

The tracker's cost is isolated on aiotracker's in-memory fake engine (``FakeEngine``: the real
``DockerTracker``, its event feed and cache; no daemon): ``Sizes.many_jobs`` running
jobs, each ended with ``engine.exit(id, 137)`` (a ``die`` event), one job per turn of the event
loop. Two baselines take turns with the patterns: *terminations alone* (the same loop on a
bare fake engine with no tracker: the cost of the termination calls, subtracted from every
row) and *no waits* (a tracker applying the same events with nobody waiting: what the tracker
spends on a job's end whatever waits; "over no waits" is what the waiting pattern adds).

The same rows run against the real engine (``--engine``), smaller (``Sizes.many_real_jobs``):
running ``sleep 3600`` jobs (``add_job``), killed one after another in random order by a
separate process (``python -m benchmarks.many_waits SOCKET``: ``POST /containers/{id}/kill`` on
a plain socket), so that the terminations cost this process nothing and its CPU is the
tracker's side (reading the events, applying them, the waits; a ``die`` of aiotracker's own
job needs no inspect) and the consumer's. The event observer is stopped meanwhile (it reads
every event in this process).

CPU is ``time.process_time()`` from just before the first termination to the consumer's last
yield (the last job handed over), per job; the registration of the waits (before the first
termination) is timed apart. Memory per pending job is measured on the fake engine in rounds
of their own (tracemalloc slows Python several times: the CPU rounds are not traced): the
blocks allocated from the moment before the waits are registered to the moment every wait is
registered and the consumer is blocked, still alive after ``gc.collect()``, divided by N (all
of them: the tasks too; "of which aiotracker" is the part whose stack holds an aiotracker
frame).
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiotracker import DockerTracker, JobState, JobTemplate
from aiotracker._engine.fake import FakeEngine

from .common import (
    IMAGE,
    NO_NETWORK,
    Context,
    Section,
    Table,
    bounded,
    fmt,
    fmt_ratio,
    goal,
    median,
    ratio,
    remove_containers,
)
from .common import _UnixHTTPConnection as UnixHTTPConnection

PART = "many"
FRAMES = 12  # as in measurement 7: deep enough to reach an aiotracker frame
_OURS = tracemalloc.Filter(True, "*/aiotracker/*", all_frames=True)
SEED = 8  # the termination orders are reproducible
EXIT_CODE = 137  # a killed job's: it ends FAILED
REAL_SETTLE = 0.5  # s for the engine's trailing events (creates, destroys) before a window
GOAL_US = 20.0
GOAL_BYTES = 500.0

ALONE = "terminations alone"
NO_WAITS = "no waits"
AS_COMPLETED = "as_completed"
TASKS_AS_COMPLETED = "tasks + asyncio.as_completed"
TASKS_WAIT = "tasks + asyncio.wait"
WATCH_ALL = "one watch"
WATCH_EACH = "a watch per job"
PATTERNS = (AS_COMPLETED, TASKS_AS_COMPLETED, TASKS_WAIT, WATCH_ALL, WATCH_EACH)
REAL_PATTERNS = (AS_COMPLETED, TASKS_AS_COMPLETED, TASKS_WAIT)  # the watches: fake engine only
ENDS = (JobState.DONE, JobState.FAILED)

FAKE_TEMPLATE = JobTemplate(job_category=IMAGE, remote_command="sleep", args=["3600"])
REAL_TEMPLATE = JobTemplate(
    job_category=IMAGE, remote_command="sleep", args=["3600"], extensions=NO_NETWORK
)


@dataclass
class Window:
    """One timed drain: CPU and wall seconds from the first termination to the last yield."""

    jobs: int
    cpu: float
    wall: float
    register: float = float("nan")  # CPU seconds registering the waits (before the window)
    inspects: int = 0  # the tracker's inspects during the window


@dataclass
class Row:
    """One row of a table: a pattern (or baseline) on one engine, over its rounds."""

    name: str
    jobs: int = 0
    windows: list[Window] = field(default_factory=list)
    total_bytes: float = float("nan")  # per pending job, everything allocated
    our_bytes: float = float("nan")  # per pending job, blocks with an aiotracker frame

    def cpu_us(self) -> float:
        """Median CPU µs per job over the rounds."""
        return median([w.cpu / w.jobs * 1e6 for w in self.windows])

    def wall(self) -> float:
        return median([w.wall for w in self.windows])

    def inspects(self) -> float:
        """Median inspects per job the tracker made in the window."""
        return median([w.inspects / w.jobs for w in self.windows])

    def register_us(self) -> float:
        """Median CPU µs per job spent registering the waits."""
        return median([w.register / w.jobs * 1e6 for w in self.windows])


# -- the consumers ---------------------------------------------------------------------------


class Consumer:
    """Drains one pattern's waits in a task; ``registered`` once every wait is in place."""

    def __init__(self, pattern: str, tracker: DockerTracker, ids: Sequence[str]) -> None:
        self.pattern = pattern
        self.tracker = tracker
        self.ids = list(ids)
        self.entered = False  # the consumer reached its first blocking wait's setup
        self.seen = 0
        self.last_cpu = 0.0
        self.last_wall = 0.0
        self.task = asyncio.create_task(self._run())

    def registered(self) -> bool:
        if not self.entered:
            return False
        if self.pattern in (AS_COMPLETED, WATCH_ALL):
            return self.tracker._rt.changes.watchers == 1  # diagnostics only
        if self.pattern == WATCH_EACH:
            return self.tracker._rt.changes.watchers == len(self.ids)
        return self.tracker.statistics().waiters == len(self.ids)

    async def _watch_one(self, job_id: str) -> JobState | None:
        async with self.tracker.watch([job_id], ENDS) as changes:
            async for change in changes:
                return change.new_state
        raise AssertionError(f"the watch of {job_id} ended with no change")

    async def _run(self) -> None:
        if self.pattern == AS_COMPLETED:
            self.entered = True  # the first __anext__ registers, then blocks: no await between
            async with self.tracker.as_completed(self.ids) as completed:
                async for _job_id, state in completed:
                    self._got(state)
            return
        if self.pattern == WATCH_ALL:
            async with self.tracker.watch(self.ids, ENDS) as changes:
                self.entered = True  # registered on entering the block
                async for change in changes:
                    self._got(change.new_state)
                    if self.seen == len(self.ids):
                        return
            return
        if self.pattern == WATCH_EACH:
            tasks = [asyncio.create_task(self._watch_one(job_id)) for job_id in self.ids]
        else:
            tasks = [asyncio.create_task(self.tracker.wait(job_id)) for job_id in self.ids]
        if self.pattern in (TASKS_AS_COMPLETED, WATCH_EACH):
            self.entered = True
            for next_done in asyncio.as_completed(tasks):
                self._got(await next_done)
            return
        pending: set[asyncio.Task[JobState | None]] = set(tasks)
        self.entered = True
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self._got(task.result())

    def _got(self, state: JobState | None) -> None:
        if state is not JobState.FAILED:
            raise AssertionError(f"a terminated job ended {state}")
        self.seen += 1
        if self.seen == len(self.ids):  # the last yield: the window ends here
            self.last_cpu = time.process_time()
            self.last_wall = time.perf_counter()


async def _until(predicate: Callable[[], bool], what: str, patience: float = 60.0) -> None:
    deadline = time.monotonic() + patience
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {patience} s")
        await asyncio.sleep(0)


def _traced() -> tuple[int, int]:
    """(everything traced, the part with an aiotracker frame) still alive after gc."""
    gc.collect()
    total = tracemalloc.get_traced_memory()[0]
    snapshot = tracemalloc.take_snapshot().filter_traces([_OURS])
    return total, sum(stat.size for stat in snapshot.statistics("filename"))


@dataclass
class Registered:
    consumer: Consumer
    cpu: float  # CPU seconds from the consumer's creation to every wait registered
    total_bytes: int = 0  # traced: everything the registration allocated (all jobs)
    our_bytes: int = 0  # traced: the part with an aiotracker frame


async def _register(
    pattern: str, tracker: DockerTracker, ids: Sequence[str], traced: bool = False
) -> Registered:
    """Start the consumer and return once every wait is registered (and, traced, what the
    registration allocated)."""
    gc.collect()
    if traced:
        tracemalloc.start(FRAMES)
    try:
        before = _traced() if traced else (0, 0)
        cpu = time.process_time()
        consumer = Consumer(pattern, tracker, ids)
        await _until(consumer.registered, f"{pattern}: registration")
        cpu = time.process_time() - cpu
        after = _traced() if traced else (0, 0)
    finally:
        if traced:
            tracemalloc.stop()
    return Registered(consumer, cpu, after[0] - before[0], after[1] - before[1])


# -- the fake engine -------------------------------------------------------------------------


async def _fake_jobs(tracker: DockerTracker, n: int) -> list[str]:
    ids = [await tracker.add_job(FAKE_TEMPLATE) for _ in range(n)]
    await _until(
        lambda: all(tracker._cache.require(j).state is JobState.RUNNING for j in ids),
        "fake jobs running",
    )
    return ids


async def _fake_alone(n: int, order: Sequence[int]) -> Window:
    """The termination loop on a bare fake engine, nobody subscribed."""
    engine = FakeEngine()
    await engine.open()
    try:
        ids = []
        for _ in range(n):
            ids.append(await engine.create({"Image": IMAGE, "Labels": {}}, None))
            await engine.start(ids[-1])
        victims = [ids[i] for i in order]
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        for job_id in victims:
            engine.exit(job_id, EXIT_CODE)
            await asyncio.sleep(0)
        return Window(n, time.process_time() - cpu, time.perf_counter() - wall)
    finally:
        await engine.aclose()


async def _fake_round(
    name: str, n: int, order: Sequence[int], *, traced: bool = False
) -> tuple[Window, Registered | None]:
    """One pattern (or ``no waits``) on a fresh fake engine and tracker with ``n`` jobs."""
    if name == ALONE:
        return await _fake_alone(n, order), None
    engine = FakeEngine()
    async with DockerTracker(f"bench-{PART}", engine=engine) as tracker:
        ids = await _fake_jobs(tracker, n)
        victims = [ids[i] for i in order]
        last, registered = await _waits(name, tracker, ids, victims[-1], traced)
        inspects = tracker.statistics().inspects
        cpu, wall = time.process_time(), time.perf_counter()
        for job_id in victims:
            engine.exit(job_id, EXIT_CODE)
            await asyncio.sleep(0)
        window = await _end(n, cpu, wall, last, registered)
        window.inspects = tracker.statistics().inspects - inspects
        _check_clean(name, tracker)
    return window, registered


async def _waits(
    name: str, tracker: DockerTracker, ids: Sequence[str], last_id: str, traced: bool = False
) -> tuple[asyncio.Task[JobState] | None, Registered | None]:
    """The waits of ``name``; for ``no waits``, one wait on the last job to end (events are
    applied in order: when it returns, every end before it has been applied)."""
    if name != NO_WAITS:
        return None, await _register(name, tracker, ids, traced)
    last = asyncio.create_task(tracker.wait(last_id))
    await _until(lambda: tracker.statistics().waiters == 1, "no waits: the last job's")
    return last, None


async def _end(
    n: int, cpu: float, wall: float, last: asyncio.Task[JobState] | None,
    registered: Registered | None,
) -> Window:  # fmt: skip
    """The window, once the consumer handed over its last job (or the last job's wait)."""
    if registered is None:
        assert last is not None
        await last
        return Window(n, time.process_time() - cpu, time.perf_counter() - wall)
    consumer = registered.consumer
    await consumer.task
    return Window(n, consumer.last_cpu - cpu, consumer.last_wall - wall, registered.cpu)


def _check_clean(name: str, tracker: DockerTracker) -> None:
    if tracker.statistics().waiters or tracker._rt.changes.watchers:
        raise AssertionError(f"{name}: waits left registered")


# -- the real engine -------------------------------------------------------------------------


async def _real_round(
    ctx: Context, tracker: DockerTracker, name: str, n: int, order: Sequence[int]
) -> Window:
    """``n`` running jobs on the engine, killed in ``order`` by another process while
    ``name`` drains them."""
    ids = await bounded(8, (tracker.add_job(REAL_TEMPLATE) for _ in range(n)))
    await asyncio.sleep(REAL_SETTLE * ctx.sizes.settle)  # their start events
    victims = [ids[i] for i in order]
    killer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.many_waits", ctx.engine.socket,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert killer.stdin is not None
    assert killer.stdout is not None
    try:
        if (await killer.stdout.readline()).strip() != b"READY":
            raise RuntimeError("the killer process did not start")
        last, registered = await _waits(name, tracker, ids, victims[-1])
        inspects = tracker.statistics().inspects
        cpu, wall = time.process_time(), time.perf_counter()
        killer.stdin.write((" ".join(victims) + "\n").encode())
        await killer.stdin.drain()
        window = await _end(n, cpu, wall, last, registered)
        window.inspects = tracker.statistics().inspects - inspects
        out, _ = await killer.communicate()
        if out.strip() != b"DONE":
            raise RuntimeError(f"the killer process failed: {out!r}")
    finally:
        if killer.returncode is None:
            killer.kill()
            await killer.wait()
    _check_clean(name, tracker)
    await remove_containers(ctx, PART)
    await asyncio.sleep(REAL_SETTLE * ctx.sizes.settle)  # their destroy events, next window
    return window


def _kill_in_order(socket_path: str) -> None:
    """The killer process: READY, then one line of container ids, killed in that order
    (``POST /containers/{id}/kill``, one connection); DONE."""
    print("READY", flush=True)
    ids = sys.stdin.readline().split()
    conn = UnixHTTPConnection(socket_path, 60.0)
    try:
        for cid in ids:
            conn.request("POST", f"/containers/{cid}/kill")
            response = conn.getresponse()
            body = response.read()
            if response.status != 204:
                print(f"kill {cid[:12]}: {response.status} {body!r}", file=sys.stderr)
    finally:
        conn.close()
    print("DONE", flush=True)


# -- the measurement -------------------------------------------------------------------------


def _orders(n: int, rounds: int) -> list[list[int]]:
    rng = random.Random(SEED)
    return [rng.sample(range(n), n) for _ in range(rounds)]


def _rotated(names: Sequence[str], r: int) -> list[str]:
    k = r % len(names)
    return [*names[k:], *names[:k]]


async def _interleaved(
    names: Sequence[str], sizes: dict[str, int], rounds: int,
    one: Callable[[str, int, Sequence[int]], Awaitable[Window]], label: str,
) -> dict[str, Row]:  # fmt: skip
    """``rounds`` rounds; in each, every row once, the order rotating; the same termination
    order (a permutation of the jobs' creation order) for every row of a round."""
    rows = {name: Row(name, sizes[name]) for name in names}
    orders = {n: _orders(n, rounds) for n in set(sizes.values())}
    start = time.perf_counter()
    for r in range(rounds):
        for name in _rotated(names, r):
            n = sizes[name]
            window = await one(name, n, orders[n][r])
            rows[name].windows.append(window)
            print(
                f"  {label} round {r + 1}/{rounds} {name}: {window.cpu / n * 1e6:,.1f} µs/job "
                f"({window.wall:.2f} s) [{time.perf_counter() - start:.0f} s]",
                flush=True,
            )
    return rows


async def run(ctx: Context) -> Section:
    s = ctx.sizes
    n, cap, real_n = s.many_jobs, min(s.many_wait_cap, s.many_jobs), s.many_real_jobs
    names = (ALONE, NO_WAITS, *PATTERNS)
    fake_sizes = dict.fromkeys(names, n)
    fake_sizes[TASKS_WAIT] = cap

    async def fake_one(name: str, jobs: int, order: Sequence[int]) -> Window:
        return (await _fake_round(name, jobs, order))[0]

    fake = await _interleaved(names, fake_sizes, s.many_rounds, fake_one, "fake")
    # Memory: a traced round of each pattern (its CPU is not used).
    for name in PATTERNS:
        jobs = fake_sizes[name]
        _, registered = await _fake_round(name, jobs, _orders(jobs, 1)[0], traced=True)
        assert registered is not None
        fake[name].total_bytes = registered.total_bytes / jobs
        fake[name].our_bytes = registered.our_bytes / jobs
        print(f"  traced {name}: {fake[name].total_bytes:,.0f} bytes per pending job")

    real: dict[str, Row] = {}
    if real_n:
        real = await _real_rows(ctx, real_n)
    return _section(ctx, fake, real, n, cap, real_n)


async def _real_rows(ctx: Context, n: int) -> dict[str, Row]:
    names = (NO_WAITS, *REAL_PATTERNS)
    tracker = DockerTracker(ctx.session(PART), docker_url=ctx.engine.url, labels=ctx.labels(PART))
    await ctx.observer.stop()  # it reads every event in this process: not in the windows
    try:
        await tracker.open()
        try:

            async def one(name: str, jobs: int, order: Sequence[int]) -> Window:
                return await _real_round(ctx, tracker, name, jobs, order)

            sizes = dict.fromkeys(names, n)
            return await _interleaved(names, sizes, ctx.sizes.many_rounds, one, ctx.engine.name)
        finally:
            await tracker.aclose()
            await remove_containers(ctx, PART)
    finally:
        await ctx.observer.start()


def _section(
    ctx: Context, fake: dict[str, Row], real: dict[str, Row], n: int, cap: int, real_n: int
) -> Section:
    rounds, engine = ctx.sizes.many_rounds, ctx.engine.name
    alone = fake[ALONE].cpu_us()
    # The tracker's side of each row: the fake's minus the terminations; the real engine's
    # whole (its terminations ran in another process).
    side = {("fake", name): fake[name].cpu_us() - alone for name in (NO_WAITS, *PATTERNS)}
    side |= {(engine, name): row.cpu_us() for name, row in real.items()}
    a = Table(
        f"CPU per job: pending jobs terminated in random order, one at a time (median of "
        f"{rounds} round(s), µs per job)",
        ["engine", "pattern", "jobs", "process CPU", "tracker side", "over no waits",
         "x as_completed", "x as_completed (over no waits)", "registering",
         "inspects per job", "window (s)"],
    )  # fmt: skip
    a.add(
        "fake", ALONE, fake[ALONE].jobs, fmt(alone, 1), "-", "-", "-", "-", "-", "-",
        fmt(fake[ALONE].wall(), 2),
    )  # fmt: skip
    for where, rows in (("fake", fake), (engine, real)):
        if not rows:
            continue
        base, mine = side[(where, NO_WAITS)], side[(where, AS_COMPLETED)]
        for name in (NO_WAITS, *PATTERNS):
            if name not in rows:
                continue
            row, cost = rows[name], side[(where, name)]
            over = "-" if name == NO_WAITS else fmt(cost - base, 1)
            a.add(
                where, name, row.jobs, fmt(row.cpu_us(), 1), fmt(cost, 1), over,
                "-" if name == NO_WAITS else fmt_ratio(ratio(cost, mine)),
                "-" if name == NO_WAITS else fmt_ratio(ratio(cost - base, mine - base)),
                "-" if name == NO_WAITS else fmt(row.register_us(), 1),
                fmt(row.inspects(), 2), fmt(row.wall(), 2),
            )  # fmt: skip
    a.notes += [
        "fake = aiotracker's in-memory FakeEngine under the real DockerTracker (event feed, "
        "cache; no daemon); each job ended by "
        "engine.exit(id, 137) (a die event), one per turn of the event loop",
        "process CPU = time.process_time() from the first termination to the last job handed "
        f"over, per job. Fake: tracker side = process CPU - '{ALONE}' (the same loop on a "
        "bare fake engine with no tracker); it includes the fake's delivery of each event into "
        "the tracker's stream (standing in for reading the socket); the die of a job of "
        "aiotracker's (no restart policy) is final and carries its exit code: no inspect "
        "follows it (inspects per job: 0)",
        f"{NO_WAITS}: the tracker applying the same ends with nobody waiting (one wait on the "
        "last job to end); over no waits = what the waiting pattern itself adds",
        "registering: CPU per job to register the waits (before the window: tasks created "
        "and started, or the one as_completed registration)",
        f"{WATCH_ALL}: tracker.watch(ids, (DONE, FAILED)), one registration over every job; "
        f"{WATCH_EACH}: a task per job, each in its own tracker.watch([id], (DONE, FAILED)) "
        "until its job's end, drained with asyncio.as_completed (each change is routed to "
        "its job's watchers by one index lookup); fake engine only",
    ]
    if cap < n:
        a.notes.append(
            f"{TASKS_WAIT} runs on {cap:,} jobs, not {n:,} (capped: each asyncio.wait call "
            "walks every pending task, quadratic); its per-job figure grows with the number "
            "of jobs and is higher still at full size"
        )
    else:
        a.notes.append(
            f"{TASKS_WAIT}: each asyncio.wait call walks every pending task (quadratic): its "
            "per-job figure grows with the number of jobs"
        )
    if real:
        a.notes.append(
            f"{engine}: {real_n} running jobs (sleep 3600) per row, killed one after another "
            "in random order by a separate process (POST /containers/{id}/kill): process CPU "
            "is the tracker's side (the event stream, applying the events, the waits) "
            "and the consumer's; the event observer was stopped meanwhile"
        )
    else:
        a.notes.append(f"no {engine} rows: Sizes.many_real_jobs is 0")
    b = Table(
        "Memory per pending job (fake engine, tracemalloc, bytes)",
        ["pattern", "jobs", "bytes per pending job", "of which aiotracker", "x as_completed"],
    )
    for name in PATTERNS:
        row = fake[name]
        b.add(
            name, row.jobs, fmt(row.total_bytes, 0), fmt(row.our_bytes, 0),
            fmt_ratio(ratio(row.total_bytes, fake[AS_COMPLETED].total_bytes)),
        )  # fmt: skip
    b.notes += [
        "blocks allocated from just before the waits are registered to the moment they all "
        "are (the consumer blocked in its first wait), alive after gc.collect(), / jobs; for "
        "the task patterns that includes the tasks, their coroutines and asyncio's "
        "bookkeeping; in rounds of their own (tracemalloc is off while CPU is measured); the "
        "real engine runs the same code",
        "of which aiotracker: the blocks whose stack holds an aiotracker frame",
    ]
    section = Section(8, "Many waits at once", [a, b])
    mine, base = side[("fake", AS_COMPLETED)], side[("fake", NO_WAITS)]
    mem = fake[AS_COMPLETED].total_bytes
    real_text = ""
    if real:
        real_mine, real_base = side[(engine, AS_COMPLETED)], side[(engine, NO_WAITS)]
        real_text = (
            f"; on {engine} ({real_n} jobs): {real_mine:,.1f} µs, "
            f"{real_mine - real_base:,.1f} over no waits"
        )
    section.goals = [
        goal(
            f"as_completed: <= {GOAL_US:.0f} µs CPU per job on the tracker's side "
            f"(fake engine, {n:,} jobs, terminations subtracted)",
            None if math.isnan(mine) else mine <= GOAL_US,
            f"{mine:,.1f} µs: {base:,.1f} applying the end with nobody waiting + "
            f"{mine - base:,.1f} for as_completed{real_text}",
        ),
        goal(
            f"as_completed: <= {GOAL_BYTES:.0f} bytes per pending job",
            None if math.isnan(mem) else mem <= GOAL_BYTES,
            f"{mem:,.0f} bytes ({fake[AS_COMPLETED].our_bytes:,.0f} in aiotracker frames)",
        ),
    ]
    tasks_cpu, wait_cpu = side[("fake", TASKS_AS_COMPLETED)], side[("fake", TASKS_WAIT)]
    section.headlines = [
        f"{n:,} jobs, fake engine: as_completed {mine:,.1f} µs/job on the tracker's side "
        f"({mine - base:,.1f} over no waits); tasks + asyncio.as_completed "
        f"{fmt_ratio(ratio(tasks_cpu, mine))} ({fmt_ratio(ratio(tasks_cpu - base, mine - base))}"
        f" over no waits), tasks + asyncio.wait {fmt_ratio(ratio(wait_cpu, mine))}"
        f" at {cap:,}; {mem:,.0f} bytes per pending job, tasks "
        f"{fmt_ratio(ratio(fake[TASKS_AS_COMPLETED].total_bytes, mem))}",
        f"{n:,} pending waiters, fake engine, per waiter: a wait per job (task) "
        f"{tasks_cpu:,.1f} µs and {fake[TASKS_AS_COMPLETED].total_bytes:,.0f} bytes; a watch "
        f"per job (task) {side[('fake', WATCH_EACH)]:,.1f} µs and "
        f"{fake[WATCH_EACH].total_bytes:,.0f} bytes; one watch over all "
        f"{side[('fake', WATCH_ALL)]:,.1f} µs and {fake[WATCH_ALL].total_bytes:,.0f} bytes",
    ]
    return section


if __name__ == "__main__":  # the killer process of _real_round
    _kill_in_order(sys.argv[1])
