"""4. Submission: N ``add_job`` calls, one after another and all at once, against raw
aiodocker create+start done the same way (and docker-py's ``containers.run``, for context).

Jobs run ``true``. Rounds are interleaved (each round runs every method, in a rotated order)
to spread the drift of a shared engine over all methods; the median round is reported. The
containers of a round are removed before the next one.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from .adapters import AiotrackerMethod, DockerPyMethod, JobSpec, Method, RawMethod
from .common import (
    Context,
    Section,
    Table,
    fmt,
    fmt_ratio,
    goal,
    median,
    ratio,
    remove_containers,
)

PART = "submit"
SPEC = JobSpec(("true",))
MODES = ("sequential", "concurrent")


async def _submit(method: Method) -> str | BaseException:
    try:
        return await method.submit(SPEC)
    except Exception as exc:  # counted and shown: docker-py fails under many threads
        return exc


async def _round(ctx: Context, method: Method, n: int, mode: str) -> tuple[float, list[str]]:
    """Seconds for the n submissions, and the errors some raised."""
    start = time.perf_counter()
    if mode == "sequential":
        results = [await _submit(method) for _ in range(n)]
    else:
        results = list(await asyncio.gather(*(_submit(method) for _ in range(n))))
    elapsed = time.perf_counter() - start
    ids = [r for r in results if isinstance(r, str)]
    errors = [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, str)]
    await ctx.observer.wait_all(ids, "die")  # the jobs' own ends do not spill into the next
    await remove_containers(ctx, PART)
    await asyncio.sleep(0.5)
    return elapsed, errors


async def run(ctx: Context) -> Section:
    n, reps = ctx.sizes.submit_jobs, ctx.sizes.submit_reps
    methods: list[Method] = [
        RawMethod(ctx, PART),
        AiotrackerMethod(ctx, PART),
        DockerPyMethod(ctx, PART),
    ]
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    errors: dict[tuple[str, str], list[str]] = defaultdict(list)
    for method in methods:
        await method.open()
    try:
        for rep in range(reps):
            order = methods[rep % len(methods) :] + methods[: rep % len(methods)]
            for mode in MODES:
                for method in order:
                    elapsed, failed = await _round(ctx, method, n, mode)
                    times[(method.name, mode)].append(elapsed)
                    errors[(method.name, mode)] += failed
                    note = f" ({len(failed)} failed: {failed[0]})" if failed else ""
                    print(f"  {method.name} {mode}: {elapsed:.2f} s{note}", flush=True)
    finally:
        for method in methods:
            await method.close()

    table = Table(
        f"Submission of {n} jobs (median of {reps} round(s))",
        ["method", "mode", "seconds", "jobs/s", "rate x raw", "rounds (s)", "failed calls"],
    )
    rates: dict[tuple[str, str], float] = {}
    for mode in MODES:
        for method in methods:
            t = median(times[(method.name, mode)])
            rates[(method.name, mode)] = n / t
            table.add(
                method.name, mode, fmt(t, 2), fmt(n / t, 2),
                fmt_ratio(ratio(n / t, rates[(RawMethod.name, mode)])),
                ", ".join(f"{x:.2f}" for x in times[(method.name, mode)]),
                len(errors[(method.name, mode)]),
            )  # fmt: skip
    table.notes += [
        "raw = aiodocker create + start, nothing else (the same create body as aiotracker's, "
        "minus its labels); docker-py's run() is create + inspect + start, concurrent = one "
        "thread per job",
        "concurrent = all calls at once (asyncio.gather); sequential = one after another",
    ]
    failures = sorted({e for errs in errors.values() for e in errs})
    if failures:
        table.notes.append(
            "failed calls (the rate still divides all n by the time): " + "; ".join(failures[:3])
        )
    section = Section(4, "Submission", [table])
    for mode in MODES:
        r = ratio(rates[("aiotracker", mode)], rates[(RawMethod.name, mode)])
        section.goals.append(goal(f"add_job {mode} ≥ 0.9x the raw rate", r >= 0.9, fmt_ratio(r)))
    section.headlines = [
        "add_job rate vs raw create+start: "
        + ", ".join(
            f"{mode} {fmt_ratio(ratio(rates[('aiotracker', mode)], rates[(RawMethod.name, mode)]))}"
            for mode in MODES
        )
    ]
    return section
