"""2. Idle cost of many waits: N running jobs, N pending waits, a window of nothing happening.

The jobs (``sleep 3600``) are made once, raw, with the session label of a tracker, so that
every method waits on the same containers: aiotracker (a tracker opened on the session:
it seeds its cache from one list), polling, aiodocker ``wait()`` with its default pool of 100
connections and with an unbounded pool, and docker-py threads. For each: the CPU seconds this
process used in the window (all threads), dockerd's CPU seconds (the engine is shared with
other work on this host, so that column is noisy), the sockets connected to docker.sock, and
how much RSS the pending waits cost. Measurement 3 runs first, on the same jobs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiodocker

from . import queries
from .adapters import AiotrackerMethod, DockerPyMethod, PerJobWaitMethod, PollingMethod
from .common import (
    Context,
    Section,
    Table,
    bounded,
    engine_connections,
    engine_cpu_seconds,
    fmt,
    fmt_ratio,
    goal,
    ratio,
    raw_config,
    raw_run,
    remove_containers,
    rss_bytes,
)

PART = "idle"
SETTLE = 1.0  # s after the waits start: connections opened, first polls done
# Why the per-job waits are not run on Podman (seen on this machine's Podman 4.3.1).
PODMAN_WAITS = (
    "Podman 4.3's compat POST /containers/{id}/wait polls the container with a 1 µs interval "
    "(containers/podman#18150, fixed upstream in April 2023): 10 pending waits kept its service "
    "at ~120 % CPU here; with two rows of 104 (and a test run on the same service) its API "
    "stopped answering for over 60 s (docker-py's GET /version timed out), failing the measurement"
)


class Row:
    def __init__(self, name: str) -> None:
        self.name = name
        self.waits = 0
        self.cpu = float("nan")
        self.engine_cpu: float | None = None
        self.connections = (0, 0)  # at the window's start and end
        self.in_use: int | None = None  # connections not idle in a keep-alive pool
        self.rss = 0
        self.note = ""
        self.window = 0.0
        self.skipped = ""  # why it did not run on this engine


def _pool(connector: Any) -> tuple[int, int] | None:
    """(in use, idle keep-alive) of an aiohttp connector; None if its internals changed."""
    try:
        return len(connector._acquired), sum(len(v) for v in connector._conns.values())
    except AttributeError:
        return None


async def _window(ctx: Context, row: Row) -> None:
    row.connections = (engine_connections(ctx.engine), 0)
    cpu, engine = time.process_time(), engine_cpu_seconds(ctx.engine)
    start = time.perf_counter()
    await asyncio.sleep(ctx.sizes.idle_seconds)
    row.window = time.perf_counter() - start
    row.cpu = time.process_time() - cpu
    after = engine_cpu_seconds(ctx.engine)
    row.engine_cpu = None if engine is None or after is None else after - engine
    row.connections = (row.connections[0], engine_connections(ctx.engine))


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _aiotracker(ctx: Context, ids: list[str], session: str, do_queries: bool) -> tuple[
    Row, Section | None
]:  # fmt: skip
    row = Row("aiotracker")
    method = AiotrackerMethod(ctx, PART, session=session)
    rss = rss_bytes()
    await method.open()
    section = None
    try:
        if do_queries:
            section = await queries.run(ctx, method.tracker, ids)
        rss = rss_bytes()
        tasks = [asyncio.create_task(method.wait(cid)) for cid in ids]
        await asyncio.sleep(SETTLE * ctx.sizes.settle)
        row.waits = method.tracker.statistics().waiters
        row.rss = rss_bytes() - rss
        await _window(ctx, row)
        engine: Any = method.tracker._rt.engine  # diagnostics only: which sockets are in use
        api = _pool(engine._api.session.connector)
        streams = _pool(engine._streams.session.connector)
        if api is not None and streams is not None:
            row.in_use = api[0] + streams[0]
            row.note = f"{streams[0]} event stream + {api[1]} idle keep-alive API connection(s)"
        await _cancel(tasks)
    finally:
        await method.close()
    return row, section


async def _polling(ctx: Context, ids: list[str]) -> Row:
    row = Row("polling 100 ms (aiodocker, pool 100)")
    method = PollingMethod(ctx, PART)
    await method.open()
    rss = rss_bytes()
    tasks = [asyncio.create_task(method.wait(cid)) for cid in ids]
    try:
        await asyncio.sleep(SETTLE * ctx.sizes.settle)
        row.waits = len(ids)
        row.rss = rss_bytes() - rss
        before = method.inspects
        await _window(ctx, row)
        done = (method.inspects - before) / row.window
        row.note = f"{done:,.0f} inspects/s (nominal {10 * len(ids):,}/s)"
    finally:
        await _cancel(tasks)
        await method.close()
    return row


async def _per_job_wait(ctx: Context, ids: list[str], limit: int | None) -> Row:
    pool = "pool 100 (default)" if limit is None else "pool unbounded (limit=0)"
    row = Row(f"aiodocker wait(), {pool}")
    method = PerJobWaitMethod(ctx, PART, limit=limit)
    await method.open()
    rss = rss_bytes()
    tasks = [asyncio.create_task(method.wait(cid)) for cid in ids]
    try:
        await asyncio.sleep(SETTLE * ctx.sizes.settle)
        row.waits = len(ids)
        row.rss = rss_bytes() - rss
        await _window(ctx, row)
        pool_stats = _pool(method.docker.session.connector)
        queued = ""
        if pool_stats is not None and pool_stats[0] < len(ids):
            queued = f"{len(ids) - pool_stats[0]} waits queued for a connection; "
        start = time.perf_counter()
        try:
            await asyncio.wait_for(method.docker.containers.container(ids[0]).show(), 3)
            probe = f"an inspect on the same client answered in {time.perf_counter() - start:.3f} s"
        except TimeoutError:
            probe = "an inspect on the same client is blocked (no answer in 3 s)"
        row.note = queued + probe
    finally:
        await _cancel(tasks)
        await method.close()
    return row


async def _docker_py(ctx: Context, ids: list[str]) -> tuple[Row, DockerPyMethod]:
    """Leaves the threads waiting: they end when the jobs are removed."""
    row = Row("docker-py threads (pool 10)")
    method = DockerPyMethod(ctx, PART)
    await method.open()
    rss = rss_bytes()
    for cid in ids:
        method.in_thread(method._wait, cid)
    await asyncio.sleep(SETTLE * ctx.sizes.settle)
    row.waits = len(ids)
    row.rss = rss_bytes() - rss
    await _window(ctx, row)
    row.note = f"{sum(t.is_alive() for t in method.threads)} threads"
    return row, method


async def run_with_queries(ctx: Context, do_idle: bool, do_queries: bool) -> list[Section]:
    n = ctx.sizes.idle_jobs
    session = ctx.session(PART)
    print(f"  starting {n} running jobs ...", flush=True)
    started = time.perf_counter()
    sections: list[Section] = []
    docker_py: DockerPyMethod | None = None
    try:
        async with aiodocker.Docker(url=ctx.engine.url) as client:
            config = raw_config(ctx, PART, ["sleep", "3600"], session=session)
            ids = await bounded(8, (raw_run(client, config) for _ in range(n)))
        await ctx.observer.wait_all(ids, "start")
        print(f"  {n} jobs running after {time.perf_counter() - started:.1f} s", flush=True)
        rows: list[Row] = []
        row, query_section = await _aiotracker(ctx, ids, session, do_queries)
        if query_section is not None:
            sections.append(query_section)
        if not do_idle:
            return sections
        rows.append(row)
        rows.append(await _polling(ctx, ids))
        if ctx.engine.podman:
            print(f"  skipped on podman: aiodocker wait() and docker-py threads: {PODMAN_WAITS}")
            for name in ("aiodocker wait(), pool 100 (default)",
                         "aiodocker wait(), pool unbounded (limit=0)",
                         "docker-py threads (pool 10)"):  # fmt: skip
                rows.append(Row(name))
                rows[-1].skipped = PODMAN_WAITS
        else:
            rows.append(await _per_job_wait(ctx, ids, None))
            rows.append(await _per_job_wait(ctx, ids, 0))
            row, docker_py = await _docker_py(ctx, ids)
            rows.append(row)
    finally:
        await remove_containers(ctx, PART)
        if docker_py is not None:
            await docker_py.close()  # its waits returned when the jobs were removed
    sections.append(_section(ctx, rows))
    return sections


def _section(ctx: Context, rows: list[Row]) -> Section:
    seconds = ctx.sizes.idle_seconds
    table = Table(
        f"Idle cost: {ctx.sizes.idle_jobs} running jobs, one pending wait each, "
        f"{seconds:g} s of nothing",
        ["method", "waits", "CPU s", "% of a core", "CPU x aiotracker", "engine CPU s",
         "connections", "RSS for the waits", "notes"],
    )  # fmt: skip
    ours = rows[0]
    for r in rows:
        if r.skipped:
            table.add(r.name, "skipped", "", "", "", "", "", "", "see below")
            continue
        pct = 100 * r.cpu / r.window if r.window else float("nan")
        conns = f"{r.connections[0]}" if r.connections[0] == r.connections[1] else (
            f"{r.connections[0]} -> {r.connections[1]}"
        )  # fmt: skip
        table.add(
            r.name, r.waits, fmt(r.cpu, 3), fmt(pct, 2, " %"),
            fmt_ratio(ratio(r.cpu, ours.cpu)), fmt(r.engine_cpu, 2), conns,
            fmt(r.rss / 2**20, 1, " MB"), r.note,
        )  # fmt: skip
    table.notes.append(
        "connections = sockets of this process connected to docker.sock at the window's start "
        "(-> at its end); engine CPU = dockerd's CPU seconds in the window (the engine is "
        "shared: noisy)"
        if not ctx.engine.podman
        else "connections = sockets of this process connected to Podman's socket at the "
        "window's start (-> at its end); engine CPU = the `podman system service` process's "
        "CPU seconds in the window (conmon and clean-up processes not counted; shared: noisy)"
    )
    if skipped := sorted({(r.skipped) for r in rows if r.skipped}):
        table.notes.append(f"skipped on {ctx.engine.name}: " + "; ".join(skipped))
    pct = 100 * ours.cpu / ours.window
    section = Section(2, "Idle cost of many waits", [table])
    in_use = ours.in_use if ours.in_use is not None else ours.connections[1]
    section.goals = [
        goal("aiotracker ≤ 1% of one core", pct <= 1, f"{pct:.2f} %"),
        goal(
            "aiotracker holds 1 connection for the events (no connection per wait)",
            in_use == 1,
            f"{in_use} in use, {ours.connections[1]} open ({ours.note})",
        ),
    ]
    polling = rows[1]
    waits = (
        "aiodocker wait() and docker-py skipped"
        if rows[2].skipped
        else f"aiodocker wait() {rows[2].connections[1]} (pool 100) / "
        f"{rows[3].connections[1]} (unbounded), docker-py {rows[4].connections[1]}"
    )
    section.headlines = [
        f"idle CPU: polling {fmt_ratio(ratio(polling.cpu, ours.cpu))} aiotracker's "
        f"({pct:.2f} % of a core); connections: aiotracker {in_use} in use, polling "
        f"{polling.connections[1]}, {waits}"
    ]
    return section
