"""3. State queries: ``job_state`` calls per second on known jobs, against an inspect per call.

Runs on the running jobs that measurement 2 starts (a tracker opened on their session). Each
loop cycles through the jobs for a fixed time; the inspect loops use aiodocker (one call at a
time, and 16 at a time: the best an inspect-per-query tracker can do) and docker-py.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import aiodocker
import docker

from aiotracker import DockerTracker

from .common import Context, Section, Table, fmt, fmt_ratio, goal, ratio


async def _loop(seconds: float, ids: list[str], call) -> int:
    calls = 0
    end = time.perf_counter() + seconds
    for cid in itertools.cycle(ids):
        await call(cid)
        calls += 1
        if time.perf_counter() >= end:
            return calls
    return calls


def _docker_py_loop(url: str, seconds: float, ids: list[str]) -> int:
    client = docker.DockerClient(base_url=url)
    try:
        calls = 0
        end = time.perf_counter() + seconds
        for cid in itertools.cycle(ids):
            client.api.inspect_container(cid)
            calls += 1
            if time.perf_counter() >= end:
                return calls
        return calls
    finally:
        client.close()


async def run(ctx: Context, tracker: DockerTracker, ids: list[str]) -> Section:
    seconds = ctx.sizes.query_seconds
    rates: dict[str, float] = {}

    async def job_state(cid: str) -> None:
        await tracker.job_state(cid)

    start = time.perf_counter()
    calls = await _loop(seconds, ids, job_state)
    rates["aiotracker job_state"] = calls / (time.perf_counter() - start)

    async with aiodocker.Docker(url=ctx.engine.url) as client:

        async def inspect(cid: str) -> None:
            await client.containers.container(cid).show()

        await inspect(ids[0])  # API version negotiation, connection
        start = time.perf_counter()
        calls = await _loop(seconds, ids, inspect)
        rates["aiodocker inspect, 1 at a time"] = calls / (time.perf_counter() - start)

        start = time.perf_counter()
        counts = await asyncio.gather(
            *(_loop(seconds, ids[i::16] or ids, inspect) for i in range(16))
        )
        rates["aiodocker inspect, 16 at a time"] = sum(counts) / (time.perf_counter() - start)

    start = time.perf_counter()
    calls = await asyncio.to_thread(_docker_py_loop, ctx.engine.url, seconds, ids)
    rates["docker-py inspect, 1 thread"] = calls / (time.perf_counter() - start)

    ours = rates["aiotracker job_state"]
    table = Table(
        f"State queries on {len(ids)} known running jobs ({seconds:g} s per loop)",
        ["method", "calls/s", "µs per call", "aiotracker x this"],
    )
    for name, rate in rates.items():
        table.add(name, fmt(rate, 0), fmt(1e6 / rate, 1), fmt_ratio(ratio(ours, rate)))
    table.notes.append("an inspect is what drmaa2os's JobState does (and a polling wait, per tick)")
    best_inspect = max(v for k, v in rates.items() if "inspect" in k)
    ahead = ratio(ours, best_inspect)
    section = Section(3, "State queries", [table])
    section.goals = [
        goal("job_state ≥ 100x the calls/s of an inspect per call (best inspect row)",
             ahead >= 100, fmt_ratio(ahead)),
    ]  # fmt: skip
    section.headlines = [
        f"job_state: {fmt(ours, 0)} calls/s, {fmt_ratio(ahead)} the best inspect rate "
        f"({fmt_ratio(ratio(ours, rates['aiodocker inspect, 1 at a time']))} one at a time)"
    ]
    return section
