"""6. Output: a job writes N MB of text to stdout; how soon is it complete in a local file?

- aiotracker with ``output_path``: it attaches before the start and copies while the job runs;
  the file is complete when ``wait`` returns (the terminal state waits for the copy). Its
  peak memory is sampled (RSS, every 5 ms), and in a second run measured by tracemalloc.
- ``docker logs`` after the exit (the CLI, output redirected to the file), with the engine's
  default log driver (json-file) and with ``local`` (aiotracker's); and aiodocker's
  ``container.log()`` after the exit, written to the file.

Each file is checked byte for byte. The lines are 100 bytes of text (``yes LINE | head -c``).
Repetitions are interleaved (every variant once per round, the order rotating); medians.

On Podman (``--engine podman``), which refuses the ``local`` driver, aiotracker and the raw
bodies use ``k8s-file`` (Podman's default, as aiotracker does there), and ``docker logs`` with
``local`` is skipped: it would be the default-driver row again.
"""

from __future__ import annotations

import asyncio
import hashlib
import resource
import time
import tracemalloc
from pathlib import Path

from .adapters import AiotrackerMethod, JobSpec, PerJobWaitMethod
from .common import (
    Context,
    RssSampler,
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

PART = "output"
LINE = "aiotracker benchmark output line, 100 bytes with the newline: " + "0123456789" * 4
LINE = LINE[:99]


def _expected(size: int) -> str:
    unit = (LINE + "\n").encode()
    data = unit * (size // len(unit) + 1)
    return hashlib.md5(data[:size]).hexdigest()


def _check(path: Path, size: int, expected: str) -> str:
    if not path.exists():
        return "missing"
    data = path.read_bytes()
    if len(data) != size:
        return f"{len(data):,} bytes: WRONG"
    return "yes" if hashlib.md5(data).hexdigest() == expected else "md5 WRONG"


class Run:
    """One run of one variant."""

    def __init__(self) -> None:
        self.total = float("nan")  # submit -> file complete
        self.after_exit = float("nan")  # die event -> file complete
        self.ran = float("nan")  # start -> die events
        self.ok = ""
        self.memory = float("nan")  # bytes
        self.memory_kind = ""


async def _aiotracker(ctx: Context, size: int, expected: str, traced: bool) -> Run:
    row = Run()
    path = ctx.scratch("output-ours" + ("-traced" if traced else "")) / "out.txt"
    method = AiotrackerMethod(ctx, PART)
    await method.open()
    command = ("sh", "-c", f"yes '{LINE}' | head -c {size}")
    try:
        if traced:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
        t0 = time.time_ns()
        with RssSampler() as rss:
            cid = await method.submit(JobSpec(command, output_path=str(path)))
            await method.tracker.wait(cid)
            end = time.time_ns()
        if traced:
            row.memory = tracemalloc.get_traced_memory()[1] - base
            row.memory_kind = "traced peak"
            tracemalloc.stop()
        else:
            row.memory = rss.peak - rss.baseline
            row.memory_kind = "RSS peak Δ"
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        await method.close()
    await _times(ctx, row, cid, t0, end)
    row.ok = _check(path, size, expected)
    return row


async def _times(ctx: Context, row: Run, cid: str, t0: int, end: int) -> None:
    """Fill in the times; the observer's events may arrive after the wait returned."""
    row.total = (end - t0) / 1e9
    try:
        start = await ctx.observer.wait_for(cid, "start", 10)
        die = await ctx.observer.wait_for(cid, "die", 10)
    except TimeoutError:
        return
    row.after_exit = (end - die.time_ns) / 1e9
    row.ran = (die.time_ns - start.time_ns) / 1e9


async def _after_exit(ctx: Context, size: int, expected: str, driver: str | None, how: str) -> Run:
    row = Run()
    path = ctx.scratch(f"output-{how}-{driver}") / "out.txt"
    method = PerJobWaitMethod(ctx, PART)
    await method.open()
    command = ["sh", "-c", f"yes '{LINE}' | head -c {size}"]
    try:
        t0 = time.time_ns()
        config = raw_config(ctx, PART, command, log_driver=driver)
        container = await method.docker.containers.create(config)
        await container.start()
        await container.wait()
        cid = str(container.id)
        if how == "cli":
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            with open(path, "wb") as f:
                proc = await asyncio.create_subprocess_exec(
                    *ctx.engine.cli("logs", cid), stdout=f, stderr=asyncio.subprocess.DEVNULL
                )
                await proc.wait()
            end = time.time_ns()
            after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if after > before:  # else this CLI run was not the largest child so far
                row.memory = after * 1024
            row.memory_kind = "CLI process max RSS"
        else:
            with RssSampler() as rss:
                chunks = await container.log(stdout=True, stderr=True)
                path.write_bytes("".join(chunks).encode())
                del chunks
                end = time.time_ns()
            row.memory = rss.peak - rss.baseline
            row.memory_kind = "RSS peak Δ"
    finally:
        await method.close()
    await _times(ctx, row, cid, t0, end)
    row.ok = _check(path, size, expected)
    return row


VARIANTS = (
    ("aiotracker output_path", "local"),
    ("aiotracker output_path, tracemalloc on", "local"),
    ("docker logs (CLI) after exit", "json-file (default)"),
    ("docker logs (CLI) after exit", "local"),
    ("aiodocker log() after exit", "local"),
)


async def _variant(ctx: Context, index: int, size: int, expected: str) -> Run:
    if index < 2:
        return await _aiotracker(ctx, size, expected, traced=index == 1)
    driver = None if index == 2 else "local"
    return await _after_exit(ctx, size, expected, driver, "aiodocker" if index == 4 else "cli")


def _skipped(ctx: Context, index: int) -> str:
    """Why a variant does not run on this engine ("" if it does)."""
    if ctx.engine.podman and index == 3:
        return (
            "Podman refuses the local log driver (500 'invalid log driver'); its default, "
            "k8s-file, is the row above"
        )
    return ""


def _driver(ctx: Context, index: int) -> str:
    """The log driver a variant's container had, as the table names it."""
    driver = VARIANTS[index][1]
    if ctx.engine.podman:
        return "k8s-file (default)" if index == 2 else str(ctx.engine.log_driver(driver))
    return driver


def _memory(runs: list[Run]) -> str:
    known = [r.memory for r in runs if r.memory == r.memory]
    if not known:
        return f"n/a ({runs[0].memory_kind})"
    return f"{max(known) / 2**20:.1f} MB {runs[0].memory_kind}"


async def run(ctx: Context) -> Section:
    size, reps = ctx.sizes.output_bytes, ctx.sizes.output_reps
    expected = _expected(size)
    runs: list[list[Run]] = [[] for _ in VARIANTS]
    for index, (name, _) in enumerate(VARIANTS):
        if why := _skipped(ctx, index):
            print(f"  skipped on {ctx.engine.name}: {name}, {VARIANTS[index][1]}: {why}")
    try:
        for rep in range(reps):
            order = [i for i in range(len(VARIANTS)) if not _skipped(ctx, i)]
            order = order[rep % len(order) :] + order[: rep % len(order)]
            for index in order:
                runs[index].append(await _variant(ctx, index, size, expected))
                await remove_containers(ctx, PART)
            print(f"  round {rep + 1}/{reps} done", flush=True)
    finally:
        await remove_containers(ctx, PART)
    ours = median([r.total for r in runs[0]])
    table = Table(
        f"Output: a job writes {size / 2**20:g} MB to stdout (100-byte lines), median of {reps}",
        ["method", "log driver", "submit -> file complete (s)", "x aiotracker",
         "exit -> file complete (s)", "job ran (s)", "bytes exact", "peak memory (max)"],
    )  # fmt: skip
    totals = []
    for index, ((name, _), variant) in enumerate(zip(VARIANTS, runs, strict=True)):
        if why := _skipped(ctx, index):
            totals.append(float("nan"))
            table.add(name, VARIANTS[index][1], "skipped", "", "", "", "", "")
            table.notes.append(f"skipped on {ctx.engine.name}: {name}, {VARIANTS[index][1]}: {why}")
            continue
        total = median([r.total for r in variant])
        totals.append(total)
        oks = sorted({r.ok for r in variant})
        table.add(
            name, _driver(ctx, index), fmt(total, 2), fmt_ratio(ratio(total, ours)),
            fmt(median([r.after_exit for r in variant]), 3),
            fmt(median([r.ran for r in variant]), 2), ", ".join(oks), _memory(variant),
        )  # fmt: skip
    table.notes.append(
        "'job ran' = start to die event: a log driver that is slow to take the output slows "
        "the job itself; 'exit -> file complete' starts at the die event's timeNano; "
        "RSS peak Δ = highest RSS sampled every 5 ms minus RSS before"
    )
    section = Section(6, "Output", [table])
    all_ok = all(r.ok == "yes" for r in runs[0] + runs[1])
    section.goals = [
        goal(
            "the file is complete, byte for byte, when aiotracker's wait returns",
            all_ok, "yes" if all_ok else "no",
        ),
    ]  # fmt: skip
    local = (
        f", {fmt_ratio(ratio(totals[3], ours))} with the local driver"
        if not _skipped(ctx, 3)
        else ""
    )
    section.headlines = [
        f"output file complete {fmt_ratio(ratio(totals[2], ours))} sooner than docker logs "
        f"after exit ({_driver(ctx, 2).split()[0]}){local}; "
        f"tracker peak memory {_memory(runs[0])}, {_memory(runs[1])}"
    ]
    return section
