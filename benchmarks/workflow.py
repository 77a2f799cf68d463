"""10. A workflow: a diamond DAG of short jobs, aiotracker against raw aiodocker (issue 17).

The DAG (``workflow_dag.Shape``): ``layers`` x ``width`` jobs (30 x 10 in full mode, 10 x 10
quick, 2 x 3 smoke); a job of layer ``l > 0`` waits for its two parents ``(l-1, i)`` and
``(l-1, i+1 mod width)``. A fixed few jobs run ``sh -c 'exit 1'`` (FAILED); their descendants
are never submitted and count as skipped; every other job runs ``true``. A job is submitted
as soon as both its parents are DONE.

Three drivers (``workflow_dag``), the same jobs and failures for each:

- ``aiotracker watch``: ``add_job`` for each ready job; the ends come from one
  ``tracker.watch(states=(DONE, FAILED))`` over the session: no task waits for a job.
- ``raw aiodocker wait()``: create + start + ``container.wait()`` in a task per job: the
  natural raw way, and the baseline of the goals.
- ``raw aiodocker events``: create + start; the ends from one subscriber to the engine's
  ``die`` events (exit code from the event; no inspect, no cache).

Every driver run is a **fresh Python process** (``python -m benchmarks.workflow_dag``), so
that its CPU and memory are its own: CPU is ``time.process_time()`` inside it, from before
the client is opened to after it is closed ("whole driver"; the DAG's window alone is shown
too); memory is its RSS after the imports, the peak RSS over the driver run (``VmHWM`` reset
after the imports) and the process's lifetime peak (``VmHWM``). Wall time is the DAG's:
from the first submission until every job is DONE, FAILED or skipped (a tracker's first
submission also makes its lease, once). The methods take turns, the order rotating by round;
medians. Each run's containers are removed before the next; the event observer is stopped
meanwhile (it would read every event of the DAG on the same 2 CPUs).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiodocker

from .common import (
    IMAGE,
    Context,
    Section,
    Table,
    bounded,
    fmt,
    fmt_ratio,
    go_time_ns,
    goal,
    median,
    percentile,
    ratio,
    raw_config,
    remove_containers,
)
from .workflow_dag import METHODS, OURS, RAW_EVENTS, RAW_WAIT, Shape

PART = "dag"
GOAL_WALL = 1.05  # x raw aiodocker wait()
GOAL_CPU = 1.5
CHILD_TIMEOUT = 120.0  # s, plus 1 s per job: a driver that hangs is killed
SLUG = {OURS: "ours", RAW_WAIT: "wait", RAW_EVENTS: "events"}


@dataclass(frozen=True)
class Size:
    shape: Shape
    rounds: int


SIZES = {
    "smoke": Size(Shape(2, 3, ((0, 0),)), 1),
    "quick": Size(Shape(10, 10, ((4, 2), (7, 7), (9, 4))), 3),
    "full": Size(Shape(30, 10, ((24, 2), (27, 7), (29, 4))), 3),
}


@dataclass
class Row:
    runs: list[dict[str, Any]] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)  # submission -> started, every job
    notice_ms: list[float] = field(default_factory=list)  # exit (FinishedAt) -> end known
    first_ms: list[float] = field(default_factory=list)  # submission -> started, layer 0
    run_ms: list[float] = field(default_factory=list)  # started -> exit (FinishedAt)

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.runs]

    def med(self, key: str) -> float:
        return median(self.values(key))

    def cpu_totals(self) -> list[float]:
        return [r["cpu_open_s"] + r["cpu_dag_s"] + r["cpu_close_s"] for r in self.runs]

    def cpu_total(self) -> float:
        return median(self.cpu_totals())

    def mib(self, key: str) -> float:
        known = [v for v in self.values(key) if v >= 0]
        return median(known) / 1024 if known else math.nan


async def _drive(ctx: Context, method: str, shape: Shape, part: str) -> dict[str, Any]:
    """One driver run in a fresh process; its figures."""
    spec = {
        "method": method, "url": ctx.engine.url, "podman": ctx.engine.podman, "image": IMAGE,
        "session": ctx.session(part), "labels": ctx.labels(part),
        "config": raw_config(ctx, part, ()),
        "layers": shape.layers, "width": shape.width, "fails": shape.fails,
    }  # fmt: skip
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.workflow_dag", cwd=root,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(
            proc.communicate(json.dumps(spec).encode()), CHILD_TIMEOUT + shape.jobs
        )
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave it running
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the {method} driver exited {proc.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    expected = {str(n): o for n, o in sorted(shape.expected().items())}
    if result["outcome"] != expected:
        wrong = [n for n in expected if result["outcome"].get(n) != expected[n]]
        raise RuntimeError(f"the {method} driver's outcome differs for jobs {wrong[:10]}")
    return result


async def _per_job(ctx: Context, row: Row, result: dict[str, Any], width: int) -> None:
    """Each job's submission time, and how long after its exit (the container's
    ``State.FinishedAt``, inspected now) the driver knew of its end."""
    nodes = [int(n) for n in result["stamps"]]
    stamps = list(result["stamps"].values())
    async with aiodocker.Docker(url=ctx.engine.url) as docker:

        async def finished(cid: str) -> int | None:
            try:
                state = (await docker.containers.container(cid).show())["State"]
            except aiodocker.DockerError:
                return None
            return go_time_ns(str(state.get("FinishedAt") or ""))

        exits = await bounded(16, (finished(cid) for cid, *_ in stamps))
    for node, (_, submitted, started, known), exit_ns in zip(nodes, stamps, exits, strict=True):
        row.submit_ms.append((started - submitted) / 1e6)
        if node < width:
            row.first_ms.append((started - submitted) / 1e6)
        if exit_ns is not None and known:
            row.notice_ms.append((known - exit_ns) / 1e6)
            row.run_ms.append((exit_ns - started) / 1e6)


async def run(ctx: Context) -> Section:
    size = SIZES[ctx.sizes.mode]
    shape = size.shape
    rows = {m: Row() for m in METHODS}
    await ctx.observer.stop()  # it reads every event of the run: not on the CPUs meanwhile
    try:
        for rnd in range(size.rounds):
            order = METHODS[rnd % len(METHODS) :] + METHODS[: rnd % len(METHODS)]
            for method in order:
                part = f"{PART}-{rnd}-{SLUG[method]}"
                try:
                    result = await _drive(ctx, method, shape, part)
                    await _per_job(ctx, rows[method], result, shape.width)
                finally:
                    await remove_containers(ctx, part)
                rows[method].runs.append(result)
                print(
                    f"  round {rnd + 1}/{size.rounds} {method}: DAG {result['dag_s']:.2f} s, "
                    f"CPU {result['cpu_dag_s']:.2f} s",
                    flush=True,
                )
                await asyncio.sleep(0.5 * ctx.sizes.settle)
    finally:
        await ctx.observer.start()
    return _section(size, rows)


def _section(size: Size, rows: dict[str, Row]) -> Section:
    shape = size.shape
    counts = Counter(shape.expected().values())
    base = rows[RAW_WAIT]
    a = Table(
        f"A {shape.layers}-layer diamond DAG of {shape.jobs} jobs ({counts['done']} done, "
        f"{counts['failed']} failed, {counts['skipped']} skipped), each driver run in a fresh "
        f"process (median of {size.rounds} round(s))",
        ["method", "DAG wall (s)", "x raw wait()", "open (s)", "close (s)", "CPU, DAG (s)",
         "CPU, whole driver (s)", "x raw wait()", "CPU per job run (ms)", "RSS after imports (MiB)",
         "peak RSS over the run (MiB)", "lifetime peak RSS (MiB)"],
    )  # fmt: skip
    ran = counts["done"] + counts["failed"]
    for method in METHODS:
        row = rows[method]
        a.add(
            method, fmt(row.med("dag_s"), 2), fmt_ratio(ratio(row.med("dag_s"), base.med("dag_s"))),
            fmt(row.med("open_s"), 3), fmt(row.med("close_s"), 3), fmt(row.med("cpu_dag_s"), 2),
            fmt(row.cpu_total(), 2), fmt_ratio(ratio(row.cpu_total(), base.cpu_total())),
            fmt(1000 * row.cpu_total() / ran, 2), fmt(row.mib("rss_imports_kib"), 1),
            fmt(row.mib("peak_driver_kib"), 1), fmt(row.mib("peak_lifetime_kib"), 1),
        )  # fmt: skip
    a.notes += [
        f"a job of layer l > 0 waits for (l-1, i) and (l-1, i+1 mod {shape.width}); failing "
        f"jobs (layer, index): {', '.join(map(str, shape.fails))} run sh -c 'exit 1', the "
        "others true; every driver's outcome (done / failed / skipped per job) is checked "
        "against the expected one",
        "DAG wall: first submission -> every job DONE, FAILED or skipped (aiotracker's first "
        "submission also makes the tracker's lease); open: a tracker's open(), a raw client's "
        "first call (GET /version); CPU: time.process_time() in the driver's own process, "
        "whole driver = open + DAG + close",
        "RSS after imports: VmRSS before the driver (aiotracker imports aiotracker, the raw "
        "drivers aiodocker only); peak over the run: VmHWM after a reset at that point; "
        "lifetime: VmHWM over the whole process (not ru_maxrss, which Linux carries over from "
        "the parent across fork + exec)",
        "per round, DAG wall (s): "
        + "; ".join(
            f"{m}: {', '.join(fmt(v, 2) for v in rows[m].values('dag_s'))}" for m in METHODS
        ),
    ]
    b = Table(
        "Where the DAG's time goes, per job: submission (the driver's add_job, or create + "
        "start) and the exit (State.FinishedAt) -> the driver knows the end (ms; every job of "
        "every round)",
        ["method", "jobs", "submission: median", "p90", "max", "layer 0's submissions: median",
         "start returned -> exit: median", "exit -> end known: median", "p90", "max",
         "DAG wall per layer (ms)"],
    )  # fmt: skip
    for method in METHODS:
        row = rows[method]
        b.add(
            method, len(row.submit_ms), fmt(median(row.submit_ms)),
            fmt(percentile(row.submit_ms, 90)), fmt(max(row.submit_ms, default=math.nan)),
            fmt(median(row.first_ms)), fmt(median(row.run_ms)),
            fmt(median(row.notice_ms)), fmt(percentile(row.notice_ms, 90)),
            fmt(max(row.notice_ms, default=math.nan)),
            fmt(1000 * row.med("dag_s") / shape.layers, 0),
        )  # fmt: skip
    b.notes += [
        "submission: from the job's task starting to add_job (or create + start) returning; "
        "layer 0's: the first submissions, the tracker's lease among them; start returned -> "
        "exit: from add_job (or start) returning to the container's State.FinishedAt (below 0: "
        "true had exited before the engine's answer to the start reached the driver)",
        "exit -> end known: aiotracker, the change reaching the watch's consumer; raw wait(), "
        "container.wait() returning; raw events, the die event read from the stream",
    ]
    section = Section(10, "Workflow: a diamond DAG", [a, b])
    wall = ratio(rows[OURS].med("dag_s"), base.med("dag_s"))
    cpu = ratio(rows[OURS].cpu_total(), base.cpu_total())
    # The same round's runs are closest in time: their ratio, per round, drifts least.
    paired_wall = median(
        [ratio(o, r) for o, r in zip(rows[OURS].values("dag_s"), base.values("dag_s"), strict=True)]
    )
    paired_cpu = median(
        [ratio(o, r) for o, r in zip(rows[OURS].cpu_totals(), base.cpu_totals(), strict=True)]
    )
    known = not (math.isnan(wall) or math.isnan(cpu))
    section.goals = [
        goal(
            f"DAG wall time <= {GOAL_WALL}x raw aiodocker wait()",
            None if math.isnan(wall) else wall <= GOAL_WALL,
            f"{fmt_ratio(wall)} ({fmt(rows[OURS].med('dag_s'), 2)} s vs "
            f"{fmt(base.med('dag_s'), 2)} s; median of the rounds' own ratios "
            f"{fmt_ratio(paired_wall)})",
        ),
        goal(
            f"Python CPU (whole driver) <= {GOAL_CPU}x raw aiodocker wait()",
            None if math.isnan(cpu) else cpu <= GOAL_CPU,
            f"{fmt_ratio(cpu)} ({fmt(rows[OURS].cpu_total(), 2)} s vs "
            f"{fmt(base.cpu_total(), 2)} s; rounds' own ratios {fmt_ratio(paired_cpu)}; DAG "
            f"window alone {fmt_ratio(ratio(rows[OURS].med('cpu_dag_s'), base.med('cpu_dag_s')))})",
        ),
    ]
    if known:
        events = rows[RAW_EVENTS]
        section.headlines = [
            f"{shape.jobs}-job DAG: aiotracker watch {fmt(rows[OURS].med('dag_s'), 2)} s wall "
            f"({fmt_ratio(wall)} raw wait(), "
            f"{fmt_ratio(ratio(rows[OURS].med('dag_s'), events.med('dag_s')))} raw events), "
            f"CPU {fmt_ratio(cpu)} raw wait() "
            f"({fmt_ratio(ratio(rows[OURS].cpu_total(), events.cpu_total()))} raw events), "
            f"peak RSS {fmt(rows[OURS].mib('peak_lifetime_kib'), 1)} vs "
            f"{fmt(base.mib('peak_lifetime_kib'), 1)} MiB"
        ]
    return section
