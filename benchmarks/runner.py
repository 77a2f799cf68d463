"""``python -m benchmarks [--quick | --full | --smoke] [--engine docker|podman]``: run the
measurements, print tables, clean up.

``--smoke`` runs every measurement at a tiny size (under a minute on a 2 vCPU host): a check
that the benchmarks still run, for CI, not a measurement. The exit status is 1 if any
measurement raised, 2 if the engine does not answer, 130 if interrupted; goals that are not
met do not fail it (timings at those sizes mean nothing).

``--engine`` picks the engine every client of the run talks to (the trackers, the raw aiodocker
and docker-py clients, the observer process, the docker CLI, the socket probes): Docker on
/var/run/docker.sock (the default) or the Podman service on $AIOTRACKER_PODMAN_SOCKET
(/run/podman-test/podman.sock, scripts/podman-engine.sh).

Every container carries ``aiotracker.bench-run=<token>`` and runs with no network; the
containers of a measurement are removed when it ends, and all of the run's containers once
more at the very end, on error and on Ctrl-C too (with docker-py, outside the event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable

import aiotracker

from . import (
    arrays,
    engine_cost,
    engines,
    idle,
    many_waits,
    output,
    scale,
    submission,
    wait_latency,
    workflow,
)
from .common import (
    ENGINES,
    FULL,
    IMAGE,
    QUICK,
    RUN_LABEL,
    SMOKE,
    Context,
    Engine,
    Section,
    remove_containers,
    remove_containers_sync,
)
from .observer import Observer

ALL = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, about 3 minutes (default)")
    mode.add_argument("--full", action="store_true", help="the sizes of issue 6 (RESULTS.md)")
    mode.add_argument(
        "--smoke", action="store_true",
        help="every measurement at a tiny size, under a minute: does it still run (CI); exit "
        "status 1 if any measurement raised",
    )  # fmt: skip
    parser.add_argument(
        "--only", default="", help="comma-separated measurement numbers, e.g. 1,4 (default: all)"
    )
    parser.add_argument("--markdown", default="", help="also write the tables to this file")
    parser.add_argument(
        "--engine", choices=sorted(ENGINES), default="docker",
        help="the engine to measure: docker (/var/run/docker.sock, default) or podman "
        "($AIOTRACKER_PODMAN_SOCKET, default /run/podman-test/podman.sock)",
    )  # fmt: skip
    return parser.parse_args(argv)


def _run(*cmd: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return ""
    return done.stdout.strip()


def _machine(engine: Engine) -> str:
    """vCPUs, the engine (GET /version and /info on its socket), Python, load."""
    return (
        f"{os.cpu_count()} vCPU, {engine.describe()}, Python {sys.version.split()[0]}; "
        f"load: {_run('uptime').split('load')[-1]}"
    )


def _version() -> str:
    """aiotracker's version and commit (the code measured), with a mark if it has edits."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(aiotracker.__file__)))
    commit = _run("git", "-C", root, "log", "-1", "--format=%h", "--", "aiotracker")
    dirty = _run("git", "-C", root, "status", "--porcelain", "--", "aiotracker")
    where = f" (last commit touching aiotracker/: {commit}" if commit else " ("
    return (
        f"aiotracker {aiotracker.__version__}{where}{', with uncommitted edits' if dirty else ''})"
    )


async def _main(
    args: argparse.Namespace, ctx: Context, machine: str
) -> tuple[list[Section], list[int]]:
    only = {int(x) for x in args.only.split(",") if x.strip()} or set(ALL)
    # SIGTERM cleans up as Ctrl-C does (asyncio.run cancels the main task on SIGINT).
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    print(f"aiotracker benchmarks, {ctx.sizes.mode} mode, run {RUN_LABEL}={ctx.token}")
    print(f"engine: {ctx.engine.name} at {ctx.engine.url}", flush=True)
    print(f"machine: {machine}\nimage: {IMAGE}\n", flush=True)
    ctx.observer = Observer(ctx.engine.socket, f"{RUN_LABEL}={ctx.token}")
    await ctx.observer.start()
    sections: list[Section] = []
    failed: list[int] = []

    async def measure(number: int, fn: Callable[[], Awaitable[list[Section]]]) -> None:
        if number not in only:
            return
        start = time.perf_counter()
        print(f"--- measurement {number} ...", flush=True)
        try:
            done = await fn()
        except Exception:  # one failed measurement must not lose the others
            traceback.print_exc()
            print(f"--- measurement {number} FAILED", flush=True)
            failed.append(number)
            return
        finally:
            await remove_containers(ctx)
            ctx.observer.clear()
        for section in done:
            section.seconds = time.perf_counter() - start
            print(section.text(), flush=True)
        sections.extend(done)

    async def one(run: Callable[[Context], Awaitable[Section]]) -> list[Section]:
        return [await run(ctx)]

    async def population() -> list[Section]:
        return await idle.run_with_queries(ctx, 2 in only, 3 in only)

    try:
        await measure(1, lambda: one(wait_latency.run))
        if only & {2, 3}:
            await measure(min(only & {2, 3}), population)
        await measure(4, lambda: one(submission.run))
        await measure(5, lambda: one(arrays.run))
        await measure(6, lambda: one(output.run))
        await measure(7, lambda: one(scale.run))
        await measure(8, lambda: one(many_waits.run))
        await measure(9, lambda: one(engine_cost.run))
        await measure(10, lambda: one(workflow.run))
        await measure(11, lambda: one(engines.run))
    finally:
        await ctx.observer.stop()
        await remove_containers(ctx)
    if failed:
        print(f"FAILED measurements: {', '.join(map(str, failed))}", file=sys.stderr)
    return sorted(sections, key=lambda s: s.number), failed


def _summary(sections: list[Section]) -> str:
    out = ["=== summary ==="]
    for s in sections:
        out += [f"{s.number}. {h}" for h in s.headlines]
    out.append("")
    for s in sections:
        out += [f"{s.number}. {g.line()}" for g in s.goals]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    ctx = Context(
        FULL if args.full else SMOKE if args.smoke else QUICK, engine=ENGINES[args.engine]
    )
    if ctx.engine.get("/version") is None:
        print(
            f"the {ctx.engine.name} engine does not answer on {ctx.engine.socket}", file=sys.stderr
        )
        return 2

    start = time.perf_counter()
    machine = f"{_machine(ctx.engine)}; {_version()}"
    stuck = 0
    try:
        sections, failed = asyncio.run(_main(args, ctx, machine))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        left = remove_containers_sync(ctx.token, ctx.engine)
        if left:
            print(f"removed {left} leftover containers of run {ctx.token}", file=sys.stderr)
            stuck = remove_containers_sync(ctx.token, ctx.engine)  # a second look: none left
            if stuck:
                print(f"{stuck} containers of run {ctx.token} remain", file=sys.stderr)
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    total = time.perf_counter() - start
    at_end = _machine(ctx.engine)
    print(_summary(sections))
    print(f"\ntotal {total:.0f} s ({ctx.sizes.mode} mode); at the end: {at_end}")
    if args.smoke:
        print(
            f"smoke run {ctx.token}: {total:.1f} s, "
            + (f"FAILED: measurement(s) {', '.join(map(str, failed))}" if failed else "all ran")
            + (f"; {stuck} containers left behind" if stuck else "")
        )
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(
                f"<!-- {ctx.sizes.mode} run {ctx.token} on {ctx.engine.name}, {total:.0f} s -->\n"
            )
            f.write(f"<!-- at the start: {machine} -->\n<!-- at the end: {at_end} -->\n\n")
            f.write("\n".join(s.markdown() for s in sections))
            f.write(f"\n**Summary**\n\n```\n{_summary(sections)}\n```\n")
    return 1 if failed or stuck else 0
