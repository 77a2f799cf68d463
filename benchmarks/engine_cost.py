"""9. Cost on the engine: Engine API calls and dockerd CPU per job, aiotracker against raw.

Every client of this measurement talks to the engine through ``proxy.CountingProxy``, a
Unix socket of the benchmark's own that forwards to the engine's and records each request as
the engine receives it; aiotracker runs unmodified, pointed at the proxy by ``docker_url``.

Four methods, N short jobs each per round (``cost_jobs``), 4 in flight, each job submitted
and waited for:

- raw create+start+wait: aiodocker ``create``, ``start``, ``POST /containers/{id}/wait``.
- aiotracker: ``add_job`` + ``wait`` (no output file).
- raw create+attach+start+wait: the same, with the output read from an ``attach`` made
  before the start (hijacked, as aiotracker attaches), until its end.
- aiotracker, output_path: ``add_job`` of a job whose stdout goes to a file, + ``wait``.

The window runs from the first submission to 1 s after the last wait returned (calls that
follow a job's end, such as an inspect to confirm it, are in it). The clients are opened, and
the tracker has made its lease (one job before the windows), outside the windows: those
calls are once per client and are shown apart. A call is a job's when its path names one of
the window's jobs, or, for a create, when it carries the run's labels and no lease label;
everything else in a window is "not on a job".

dockerd's CPU = utime + stime of the engine's process (/proc/<pid>/stat) over the window;
the engine is shared with other work on this host, so each round also measures dockerd's CPU
over 2 s with nothing of ours running, and the per-job figure net of that background is shown
beside the gross one. The methods take turns (the order rotates by round); medians.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import aiohttp
from aiodocker.stream import Stream
from yarl import URL

from aiotracker._labels import LEASE_LABEL

from .adapters import AiotrackerMethod, JobSpec
from .common import (
    Context,
    Section,
    Table,
    bounded,
    engine_cpu_seconds,
    fmt,
    fmt_ratio,
    goal,
    median,
    ratio,
    raw_config,
    remove_containers,
)
from .proxy import CountingProxy

PART = "cost"
IN_FLIGHT = 4
TRAIL = 1.0  # s after the last wait: calls that follow a job's end are counted
BACKGROUND = 2.0  # s of nothing of ours, per round: dockerd's background CPU
RAW = "raw create+start+wait"
RAW_OUT = "raw create+attach+start+wait"
OURS = "aiotracker"
OURS_OUT = "aiotracker, output_path"
METHODS = (RAW, OURS, RAW_OUT, OURS_OUT)
BASELINE = {OURS: RAW, OURS_OUT: RAW_OUT}  # what each aiotracker row is compared with
NEEDED = {OURS: {"create", "start"}, OURS_OUT: {"create", "attach", "start"}}
# Kinds in the order the tables show them; others follow, sorted.
ORDER = ("create", "attach", "start", "wait", "inspect", "logs", "list", "remove")


@dataclass
class Window:
    jobs: int
    seconds: float
    cpu: float | None  # dockerd CPU seconds
    per_job: Counter[str] = field(default_factory=Counter)
    other: Counter[str] = field(default_factory=Counter)


@dataclass
class Row:
    windows: list[Window] = field(default_factory=list)
    background: list[float] = field(default_factory=list)  # dockerd CPU s per s, same rounds

    def jobs(self) -> int:
        return sum(w.jobs for w in self.windows)

    def kinds(self) -> Counter[str]:
        return sum((w.per_job for w in self.windows), Counter())

    def other(self) -> Counter[str]:
        return sum((w.other for w in self.windows), Counter())

    def cpu_ms(self) -> list[float]:
        return [1000 * w.cpu / w.jobs for w in self.windows if w.cpu is not None and w.jobs]

    def net_ms(self) -> list[float]:
        return [
            1000 * (w.cpu - rate * w.seconds) / w.jobs
            for w, rate in zip(self.windows, self.background, strict=True)
            if w.cpu is not None and w.jobs
        ]


class _Raw:
    """aiodocker through the proxy: create, (attach,) start, wait; nothing else."""

    def __init__(self, ctx: Context, url: str, output: bool) -> None:
        self.ctx = ctx
        self.output = output
        self.docker = aiodocker.Docker(url=url)

    async def job(self, spec: JobSpec) -> str:
        config = raw_config(self.ctx, PART, spec.command)
        container = await self.docker.containers.create(config)
        cid = str(container.id)
        if not self.output:
            await container.start()
        else:
            # Attached before the start, as aiotracker does (aiodocker's own attach() inspects
            # first: a call the job does not need).
            url = URL(f"containers/{cid}/attach").with_query(
                {"stdout": 1, "stderr": 1, "stream": 1, "logs": 0, "detachKeys": ""}
            )

            async def setup() -> tuple[URL, bytes | None, bool]:
                return url, None, False

            async with Stream(self.docker, setup, aiohttp.ClientTimeout()) as stream:
                await container.start()
                while await stream.read_out() is not None:
                    pass
        await container.wait()
        return cid


async def _window(ctx: Context, proxy: CountingProxy, job: Any, specs: list[JobSpec]) -> Window:
    mark = len(proxy.calls)
    cpu = engine_cpu_seconds(ctx.engine)
    start = time.perf_counter()
    ids = list(await bounded(IN_FLIGHT, (job(s) for s in specs)))
    await asyncio.sleep(TRAIL * ctx.sizes.settle)
    seconds = time.perf_counter() - start
    after = engine_cpu_seconds(ctx.engine)
    calls = proxy.calls[mark:]
    window = Window(len(ids), seconds, None if cpu is None or after is None else after - cpu)
    # A call may name a container instead of giving its id: both count as the job's.
    refs = set(ids) | set(await _names(ctx, ids))
    part = ctx.labels(PART)
    for call in calls:
        if call.kind == "create":
            mine = LEASE_LABEL not in call.labels and all(
                call.labels.get(k) == v for k, v in part.items()
            )
        else:
            mine = call.container in refs or (
                len(call.container) >= 12 and any(c.startswith(call.container) for c in ids)
            )
        (window.per_job if mine else window.other)[call.kind] += 1
    return window


async def _names(ctx: Context, ids: list[str]) -> list[str]:
    """The jobs' container names (read on the engine's own socket, not counted)."""
    async with aiodocker.Docker(url=ctx.engine.url) as docker:

        async def one(cid: str) -> str:
            try:
                return str((await docker.containers.container(cid).show())["Name"]).lstrip("/")
            except aiodocker.DockerError:
                return ""

        return [name for name in await bounded(16, (one(c) for c in ids)) if name]


async def run(ctx: Context) -> Section:
    n, rounds = ctx.sizes.cost_jobs, ctx.sizes.cost_rounds
    proxy = CountingProxy(ctx.workdir / "engine.sock", ctx.engine.socket)
    await proxy.start()
    out = ctx.scratch("cost-out")
    plain = [JobSpec(("true",)) for _ in range(n)]
    printing = [JobSpec(("echo", "hello")) for _ in range(n)]
    rows = {name: Row() for name in METHODS}
    once: dict[str, Counter[str]] = {}
    raw, raw_out = _Raw(ctx, proxy.url, False), _Raw(ctx, proxy.url, True)
    ours = AiotrackerMethod(ctx, PART, docker_url=proxy.url)
    try:
        mark = len(proxy.calls)
        await ours.open()
        once["aiotracker: open()"] = Counter(c.kind for c in proxy.calls[mark:])
        mark = len(proxy.calls)
        await ours.wait(await ours.submit(JobSpec(("true",))))
        await asyncio.sleep(TRAIL * ctx.sizes.settle)
        once["aiotracker: first job (makes the lease)"] = Counter(
            c.kind for c in proxy.calls[mark:]
        )
        mark = len(proxy.calls)
        await raw.docker.version()
        await raw_out.docker.version()
        once["raw aiodocker: API version (per client)"] = Counter(
            c.kind for c in proxy.calls[mark:]
        )
        await remove_containers(ctx, PART)
        counter = iter(range(10**9))

        async def ours_job(spec: JobSpec) -> str:
            cid = await ours.submit(spec)
            await ours.tracker.wait(cid)
            return cid

        async def ours_out_job(spec: JobSpec) -> str:
            path = str(out / f"job-{next(counter)}.out")
            return await ours_job(JobSpec(spec.command, output_path=path))

        jobs: dict[str, tuple[Any, list[JobSpec]]] = {
            RAW: (raw.job, plain),
            OURS: (ours_job, plain),
            RAW_OUT: (raw_out.job, printing),
            OURS_OUT: (ours_out_job, printing),
        }
        for r in range(rounds):
            order = list(METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)])
            for name in order:
                job, specs = jobs[name]
                window = await _window(ctx, proxy, job, specs)
                rows[name].windows.append(window)
                await remove_containers(ctx, PART)
                cpu = None if window.cpu is None else 1000 * window.cpu / window.jobs
                print(
                    f"  round {r + 1}/{rounds} {name}: {_per_job(rows[name])} calls per job "
                    f"({_describe(window.per_job)}; not on a job: {_describe(window.other)}), "
                    f"dockerd {fmt(cpu)} ms per job, {window.seconds:.1f} s",
                    flush=True,
                )
            before = engine_cpu_seconds(ctx.engine)
            start = time.perf_counter()
            await asyncio.sleep(BACKGROUND * ctx.sizes.settle)
            after = engine_cpu_seconds(ctx.engine)
            rate = (
                0.0
                if before is None or after is None
                else (after - before) / (time.perf_counter() - start)
            )
            for row in rows.values():
                row.background.append(rate)
    finally:
        await ours.close()
        await raw.docker.close()
        await raw_out.docker.close()
        await proxy.stop()
        await remove_containers(ctx)
    return _section(ctx, rows, once, n, rounds)


def _kinds(rows: dict[str, Row]) -> list[str]:
    seen = {k for row in rows.values() for k in row.kinds()}
    return [k for k in ORDER if k in seen] + sorted(seen - set(ORDER))


def _describe(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def _section(
    ctx: Context, rows: dict[str, Row], once: dict[str, Counter[str]], n: int, rounds: int
) -> Section:
    kinds = _kinds(rows)
    a = Table(
        f"Engine API calls per job, by kind ({n} jobs per method and round, {rounds} round(s); "
        "requests as the engine received them)",
        ["method", "jobs", "calls per job", *kinds, "not on a job (in the windows)"],
    )
    for name, row in rows.items():
        jobs = row.jobs()
        counts = row.kinds()
        a.add(
            name, jobs, fmt(sum(counts.values()) / jobs if jobs else float("nan"), 2),
            *(fmt(counts[k] / jobs, 2) if jobs else "n/a" for k in kinds),
            _describe(row.other()),
        )  # fmt: skip
    a.notes.append(
        "counted by a proxy on the engine's socket (benchmarks/proxy.py): every request of the "
        "method's client; a call is a job's if its path names one of the window's jobs (a "
        "create: if it carries the run's labels and is not a lease)"
    )
    a.notes.append(
        "once per client, outside the windows: "
        + "; ".join(f"{what}: {_describe(counts)}" for what, counts in once.items())
    )
    b = Table(
        f"dockerd CPU per job (median of {rounds} round(s), ms)",
        ["method", "jobs", "dockerd CPU per job", "net of background", "x raw (net)",
         "background (dockerd CPU s per s)", "rounds (gross, ms per job)"],
    )  # fmt: skip
    for name, row in rows.items():
        base = rows[BASELINE[name]] if name in BASELINE else None
        b.add(
            name, row.jobs(), fmt(median(row.cpu_ms()), 1), fmt(median(row.net_ms()), 1),
            fmt_ratio(ratio(median(row.net_ms()), median(base.net_ms()))) if base else "1.00x",
            fmt(median(row.background), 3), ", ".join(f"{x:.1f}" for x in row.cpu_ms()),
        )  # fmt: skip
    server = "the podman service" if ctx.engine.podman else "dockerd"
    b.notes.append(
        f"dockerd = the engine's process ({server}), utime + stime from /proc/<pid>/stat, "
        "from the first submission to "
        f"{TRAIL * ctx.sizes.settle:g} s after the last wait; background = its CPU over "
        f"{BACKGROUND * ctx.sizes.settle:g} s with "
        "nothing of ours running, in the same round; the engine is shared: noisy"
    )
    b.notes.append(
        "containerd, the shims and runc do most of a container's start and are not dockerd: "
        "this is the API server's share"
    )
    section = Section(9, "Cost on the engine", [a, b])
    section.goals = [_goal(rows, name) for name in (OURS, OURS_OUT)]
    ours, ours_out = rows[OURS], rows[OURS_OUT]
    section.headlines = [
        f"engine calls per job: aiotracker {_per_job(ours)} ({_describe_per_job(ours)}) vs "
        f"raw create+start+wait {_per_job(rows[RAW])}; with output {_per_job(ours_out)} "
        f"vs {_per_job(rows[RAW_OUT])}; dockerd CPU per job (net): aiotracker "
        f"{fmt(median(ours.net_ms()), 1)} ms vs raw {fmt(median(rows[RAW].net_ms()), 1)} ms "
        f"({fmt_ratio(ratio(median(ours.net_ms()), median(rows[RAW].net_ms())))})"
    ]
    return section


def _per_job(row: Row) -> str:
    jobs = row.jobs()
    return fmt(sum(row.kinds().values()) / jobs if jobs else float("nan"), 2)


def _describe_per_job(row: Row) -> str:
    jobs = row.jobs()
    return ", ".join(f"{k} {v / jobs:.2f}" for k, v in sorted(row.kinds().items())) if jobs else ""


def _goal(rows: dict[str, Row], name: str) -> Any:
    row = rows[name]
    jobs = row.jobs()
    needed = NEEDED[name]
    counts = row.kinds()
    extra = {k: v for k, v in counts.items() if k not in needed or v > jobs}
    met = bool(jobs) and not extra and not row.other()
    what = " + ".join(k for k in ORDER if k in needed)
    value = f"{_describe_per_job(row)} per job"
    if extra:
        value += f"; beyond what the job needs: {_describe(Counter(extra))}"
    if row.other():
        value += f"; not on a job, in the windows: {_describe(row.other())}"
    return goal(f"{name}: no engine call per job beyond {what}", met if jobs else None, value)
