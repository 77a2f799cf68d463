"""11. Engines: aiotracker's wait latency and submission rate on Docker, on Podman and on the
3-node Swarm, in one run, as ratios to Docker.

The engines: Docker at the run's engine (``--engine docker``, /var/run/docker.sock), Podman at
$AIOTRACKER_PODMAN_SOCKET (scripts/podman-engine.sh), the swarm of scripts/swarm-engine.sh
(manager and node engines from $AIOTRACKER_SWARM_MANAGER / $AIOTRACKER_SWARM_NODES, as
``python -m benchmarks.swarm`` reads them). An engine that does not answer gets a row saying
why it was not measured; the others are measured all the same.

a) Wait latency. On each engine, batches of jobs ``read x < /ctl/fN`` (a FIFO of their own,
bind-mounted: on Swarm a bind mount of the node, which shares this host's filesystem), made by
the engine's tracker: ``DockerTracker`` on Docker and on Podman, ``SwarmTracker`` with node
hints (``node_urls``: every node's engine) on the swarm. Once every job of the batch runs, its
waits are pending, and the jobs are released one by one in a shuffled order, 50 to 150 ms
apart. The engines take turns, in an order that rotates each round. Each wait's return is
stamped against the job's ``State.FinishedAt`` (the container's, on the engine or node that ran
it) and its die event's ``timeNano`` (an observer process on Docker and Podman, the node's
event stream on Swarm). On Swarm a raw ``GET /tasks`` every 20 ms on the batch's services says
when the manager itself first showed each task ended (what a tracker without node hints waits
for).

b) Submission. N jobs ``true``, all at once (asyncio.gather) and one after another, by the
engine's tracker (``add_job``) and by the same engine's raw Engine API: aiodocker create +
start on Docker and Podman; on Swarm, the calls ``add_job`` makes (a ReplicatedJob service
made with a constraint no node meets, its inspect, the update that lifts the constraint) and
the least Swarm needs (one ``services/create`` of a started ReplicatedJob). Also the time from
the first call until the last job's exit (``FinishedAt``): on Swarm a job runs only once the
manager has scheduled its task and the node has started it.

Every container and service carries the run's labels and is removed at the end of each round
and of the measurement (on errors too). Nothing is pulled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiodocker

from aiotracker import JobState, SwarmTracker
from aiotracker._engine.swarm_spec import service_spec, start_update

from . import swarm as sw
from .adapters import AiotrackerMethod, JobSpec, RawMethod
from .common import (
    DOCKER,
    PODMAN,
    RUN_LABEL,
    Context,
    Engine,
    Section,
    Table,
    exit_times,
    fmt,
    fmt_ratio,
    goal,
    median,
    ms,
    percentile,
    ratio,
    raw_config,
    remove_containers,
    write_fifo,
)
from .observer import Observer
from .wait_latency import Batch, _cells

PART = "engines"
BATCH = 10  # a) jobs per engine and round
TRUE = JobSpec(("true",))
MODES = ("concurrent", "sequential")
TRACKER = "aiotracker add_job"


# A job's container (the task container's on Swarm), the machine it ran on, its FinishedAt.
Exit = sw.Exit


@dataclass
class Latency(sw.Latency):
    """The Swarm benchmark's latencies, and two more: the die event's delivery to an observer
    (Docker, Podman) and when the manager first showed the task ended (Swarm)."""

    delivery: list[float] = field(default_factory=list)  # ms: observer's receipt - timeNano
    manager: list[float] = field(default_factory=list)  # ms: GET /tasks shows it ended - exit


Submitter = Callable[[], Awaitable[str]]


class Target:
    """One engine: its tracker, its raw submitters, its jobs' exits and die events."""

    name: str
    tracker_method: AiotrackerMethod
    why_not = ""  # set when the engine does not answer: not measured
    clean_each_round = True  # b): False: once the engine's methods of a mode are done

    async def check(self) -> None: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def raws(self) -> list[tuple[str, Submitter]]:
        raise NotImplementedError

    async def add_job(self) -> str:
        return await self.tracker_method.submit(TRUE)

    async def exits(self, ids: Sequence[str]) -> dict[str, Exit]:
        raise NotImplementedError

    async def dies(self, exits: Sequence[Exit]) -> dict[str, tuple[int, int | None]]:
        """container id -> (die timeNano, receipt ns or None)"""
        raise NotImplementedError

    async def ended(self, ids: Sequence[str], timeout: float) -> None:
        """Until every one of these jobs has exited."""
        raise NotImplementedError

    async def probe(self, ids: Sequence[str], seen: dict[str, int], stop: asyncio.Event) -> None:
        """Swarm: when the manager first shows each job ended; nothing elsewhere."""

    async def cleanup(self) -> None:
        raise NotImplementedError


class EngineTarget(Target):
    """Docker or Podman: DockerTracker on the engine's socket, raw aiodocker create+start,
    die events from an observer process on that engine (the run's own for the run's engine)."""

    def __init__(self, ctx: Context, engine: Engine, label: str) -> None:
        self.name = label
        self.ctx = dataclasses.replace(ctx, engine=engine)
        self.own_engine = engine == ctx.engine
        self.tracker_method = AiotrackerMethod(self.ctx, PART)
        self.raw = RawMethod(self.ctx, PART)
        self._opened: list[Any] = []

    async def check(self) -> None:
        """Sets ``why_not`` if the engine does not answer (GET /info: what a tracker's open()
        asks first; an engine can answer /_ping and /version and hang on /info)."""
        engine = self.ctx.engine
        if await asyncio.to_thread(engine.get, "/info", 5.0) is None:
            self.why_not = f"{engine.name} does not answer GET /info within 5 s on {engine.socket}"

    async def open(self) -> None:
        if not self.own_engine:
            self.ctx.observer = Observer(self.ctx.engine.socket, f"{RUN_LABEL}={self.ctx.token}")
            await self.ctx.observer.start()
            self._opened.append(self.ctx.observer)
        for method in (self.tracker_method, self.raw):
            await method.open()
            self._opened.append(method)

    async def close(self) -> None:
        for thing in reversed(self._opened):
            with contextlib.suppress(Exception):
                await (thing.stop() if isinstance(thing, Observer) else thing.close())
        # The run's engine: its leases go with the runner's cleanup; another engine: all of
        # the run's containers there are this measurement's.
        await remove_containers(self.ctx, PART if self.own_engine else None)

    def raws(self) -> list[tuple[str, Submitter]]:
        return [("raw create + start (aiodocker)", lambda: self.raw.submit(TRUE))]

    async def exits(self, ids: Sequence[str]) -> dict[str, Exit]:
        found = await exit_times(self.ctx, ids)
        return {cid: Exit(cid, self.name, found.get(cid), None) for cid in ids}

    async def dies(self, exits: Sequence[Exit]) -> dict[str, tuple[int, int | None]]:
        ids = [e.container_id for e in exits]
        with contextlib.suppress(TimeoutError):
            await self.ctx.observer.wait_all(ids, "die", timeout=10)
        out: dict[str, tuple[int, int | None]] = {}
        for cid in ids:
            seen = self.ctx.observer.get(cid, "die")
            if seen is not None:
                out[cid] = (seen.time_ns, seen.recv_ns)
        return out

    async def ended(self, ids: Sequence[str], timeout: float) -> None:
        await self.ctx.observer.wait_all(list(ids), "die", timeout=timeout)

    async def cleanup(self) -> None:
        await remove_containers(self.ctx, PART)


class SwarmMethod(AiotrackerMethod):
    """SwarmTracker with node hints (``node_urls``: every node's engine), poll 0.1 s."""

    async def open(self) -> None:
        self._tracker = SwarmTracker(
            self.session, docker_url=sw.MANAGER, node_urls=sw.NODES,
            labels=self.ctx.labels(self.part),
        )  # fmt: skip
        await self._tracker.open()


class SwarmTarget(Target):
    """The swarm of scripts/swarm-engine.sh, through benchmarks.swarm's helpers."""

    name = "swarm (3 nodes)"
    clean_each_round = False  # a removal takes 1 s or more (the nodes remove the containers)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tracker_method = SwarmMethod(ctx, PART)
        self.swarm: sw.Swarm | None = None
        self.monitor: sw.Monitor | None = None
        self.api: aiodocker.Docker | None = None

    async def check(self) -> None:
        """Sets ``why_not`` if the swarm cannot be measured (never raises)."""
        swarm = self.swarm = sw.Swarm()
        if not await swarm.manager.ping():
            self.why_not = (
                f"the swarm manager does not answer on {sw.MANAGER} (no swarm: in CI, "
                "scripts/test.sh stops the swarm it started before the benchmarks run; "
                "`bash scripts/swarm-engine.sh start` starts one)"
            )
            return
        try:
            await swarm.ready(patience=10.0 if self.ctx.sizes.mode == "smoke" else 60.0)
        except (RuntimeError, OSError) as exc:
            self.why_not = str(exc)

    async def open(self) -> None:
        assert self.swarm is not None
        nodes = {f"n{i + 1}": self.swarm.nodes[u] for i, u in enumerate(sw.NODES)}
        self.monitor = sw.Monitor(self.ctx.token, nodes, self.swarm.manager)
        await self.monitor.start()
        self.api = aiodocker.Docker(url=sw.MANAGER)  # the raw calls: the tracker's client
        await self.api.version()
        await self.tracker_method.open()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.tracker_method.close()
        try:
            await asyncio.to_thread(sw.cleanup_sync, self.ctx.token, PART)
        finally:
            if self.api is not None:
                await self.api.close()
            if self.monitor is not None:
                await self.monitor.stop()
            if self.swarm is not None:
                await self.swarm.close()

    def disturbances(self, since: float) -> list[str]:
        return self.monitor.since(since) if self.monitor is not None else []

    # -- raw submission: what add_job does, and the least Swarm needs --------------------------

    def _spec(self, started: bool) -> dict[str, Any]:
        config = raw_config(self.ctx, PART, TRUE.command)
        name = f"bench-{self.ctx.token}-raw-{uuid.uuid4().hex[:10]}"
        return service_spec(config, name, started=started)

    async def _create_start(self) -> str:
        assert self.api is not None
        made = await self.api._query_json(
            "services/create", "POST", data=json.dumps(self._spec(False))
        )
        sid = str(made["ID"])
        service = await self.api._query_json(f"services/{sid}")
        await self.api._query_json(
            f"services/{sid}/update", "POST",
            params={"version": str(service["Version"]["Index"])},
            data=json.dumps(start_update(service["Spec"])),
        )  # fmt: skip
        return sid

    async def _create_started(self) -> str:
        assert self.api is not None
        made = await self.api._query_json(
            "services/create", "POST", data=json.dumps(self._spec(True))
        )
        return str(made["ID"])

    def raws(self) -> list[tuple[str, Submitter]]:
        return [
            ("raw create + inspect + update (add_job's calls)", self._create_start),
            ("raw create started (one call)", self._create_started),
        ]

    # -- exits ---------------------------------------------------------------------------------

    async def exits(self, ids: Sequence[str]) -> dict[str, Exit]:
        assert self.swarm is not None
        return await sw.swarm_exits(self.swarm, ids)

    async def dies(self, exits: Sequence[Exit]) -> dict[str, tuple[int, int | None]]:
        assert self.monitor is not None
        dies = self.monitor.dies
        for _ in range(100):  # the node's stream has them already, as a rule
            if all(e.container_id in dies for e in exits):
                break
            await asyncio.sleep(0.05)
        return {e.container_id: (dies[e.container_id], None) for e in exits
                if e.container_id in dies}  # fmt: skip

    async def _ended_tasks(self, ids: Sequence[str]) -> set[str]:
        assert self.swarm is not None
        last = sw.Swarm.run_tasks(await self.swarm.tasks(list(ids)))
        return {sid for sid, t in last.items() if (t.get("Status") or {}).get("State") in sw.ENDED}

    async def ended(self, ids: Sequence[str], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while True:
                if len(await self._ended_tasks(ids)) >= len(ids):
                    return
                await asyncio.sleep(0.2)

    async def probe(self, ids: Sequence[str], seen: dict[str, int], stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a reference: a failed probe is a gap
                for sid in await self._ended_tasks(ids):
                    seen.setdefault(sid, time.time_ns())
            if len(seen) >= len(ids):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), sw.PROBE_EVERY)

    async def cleanup(self) -> None:
        await asyncio.to_thread(sw.cleanup_sync, self.ctx.token, PART, leases=False)


# -- a) wait latency -----------------------------------------------------------------------


async def _latency_batch(ctx: Context, target: Target, n: int, tag: str, res: Latency,
                         rng: random.Random) -> None:  # fmt: skip
    tracker = target.tracker_method.tracker
    batch = Batch(ctx, target.tracker_method, n, f"engines-{tag}")  # FIFOs and their jobs
    ids = [await target.tracker_method.submit(spec) for spec in batch.specs]
    async with asyncio.timeout(120):
        await asyncio.gather(*(tracker.wait(j, JobState.RUNNING) for j in ids))

    async def wait(jid: str) -> int | str:
        state = await tracker.wait(jid, timeout=120)
        return time.time_ns() if state == JobState.DONE else f"wait returned {state}"

    tasks = [asyncio.create_task(wait(j)) for j in ids]
    seen: dict[str, int] = {}
    stop = asyncio.Event()
    prober = asyncio.create_task(target.probe(ids, seen, stop))
    try:
        await asyncio.sleep(0.3 * ctx.sizes.settle)  # every wait pending
        for i in rng.sample(range(n), n):
            write_fifo(batch.ctl / f"f{i}")
            await asyncio.sleep(rng.uniform(0.05, 0.15))
        returned = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(prober, 5)  # the manager may show the last one later
    finally:
        stop.set()
        for task in (*tasks, prober):
            task.cancel()
        await asyncio.gather(*tasks, prober, return_exceptions=True)
    exits = await target.exits(ids)
    dies = await target.dies([e for e in exits.values() if e.container_id])
    for jid, r in zip(ids, returned, strict=True):
        ex = exits.get(jid)
        if not isinstance(r, int):
            res.errors.append(f"{jid[:12]}: {r!r}")
            continue
        if ex is None or ex.finished_ns is None:
            res.errors.append(f"{jid[:12]}: no FinishedAt")
            continue
        res.machines[ex.machine] += 1
        res.from_exit.append(ms(r - ex.finished_ns))
        if jid in seen:
            res.manager.append(ms(seen[jid] - ex.finished_ns))
        die = dies.get(ex.container_id)
        if die is not None:
            time_ns, recv_ns = die
            res.from_die.append(ms(r - time_ns))
            res.lag.append(ms(time_ns - ex.finished_ns))
            if recv_ns is not None:
                res.delivery.append(ms(recv_ns - time_ns))


async def _latency(ctx: Context, targets: list[Target], notes: list[str]) -> dict[str, Latency]:
    n = ctx.sizes.engines_wait_jobs
    rounds = max(1, -(-n // BATCH))
    rng = random.Random(11)
    results = {t.name: Latency() for t in targets}
    for r in range(rounds):
        size = min(BATCH, n - r * BATCH)
        for target in targets[r % len(targets) :] + targets[: r % len(targets)]:
            began, mono = time.perf_counter(), time.monotonic()
            try:
                await _latency_batch(ctx, target, size, f"{r}-{target.name.split()[0]}",
                                     results[target.name], rng)  # fmt: skip
            except Exception as exc:  # one engine's failure must not lose the others
                results[target.name].errors.append(f"round {r + 1}: {type(exc).__name__}: {exc}")
            finally:
                await target.cleanup()
            if isinstance(target, SwarmTarget) and (seen := target.disturbances(mono)):
                notes.append(f"swarm, wait round {r + 1}: disturbed: {'; '.join(seen[:3])}")
            print(f"  wait latency, round {r + 1}/{rounds}, {target.name}: "
                  f"{time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip
    return results


# -- b) submission -------------------------------------------------------------------------


@dataclass
class Rate:
    seconds: list[float] = field(default_factory=list)
    until_exit: list[float] = field(default_factory=list)  # s: first call -> last FinishedAt
    errors: list[str] = field(default_factory=list)


async def _submit_round(target: Target, submit: Submitter, n: int, mode: str, rate: Rate) -> None:
    async def one() -> str | BaseException:
        try:
            return await submit()
        except Exception as exc:  # counted and shown
            return exc

    began_ns, start = time.time_ns(), time.perf_counter()
    if mode == "sequential":
        results = [await one() for _ in range(n)]
    else:
        results = list(await asyncio.gather(*(one() for _ in range(n))))
    rate.seconds.append(time.perf_counter() - start)
    ids = [r for r in results if isinstance(r, str)]
    rate.errors += [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, str)]
    await target.ended(ids, 60 + n)
    finished = [e.finished_ns for e in (await target.exits(ids)).values() if e.finished_ns]
    if len(finished) == len(ids) and finished:
        rate.until_exit.append((max(finished) - began_ns) / 1e9)


async def _submission(ctx: Context, targets: list[Target]) -> dict[tuple[str, str, str], Rate]:
    n, reps = ctx.sizes.engines_submit_jobs, ctx.sizes.engines_reps
    rates: dict[tuple[str, str, str], Rate] = defaultdict(Rate)
    for rep in range(reps):
        for mode in MODES:
            for target in targets[rep % len(targets) :] + targets[: rep % len(targets)]:
                methods = [(TRACKER, target.add_job), *target.raws()]
                if rep % 2:
                    methods.reverse()
                for i, (name, submit) in enumerate(methods):
                    rate = rates[(target.name, name, mode)]
                    done = len(rate.seconds)
                    try:
                        await _submit_round(target, submit, n, mode, rate)
                    except Exception as exc:
                        rate.errors.append(f"{type(exc).__name__}: {exc}")
                    finally:
                        if target.clean_each_round or i == len(methods) - 1:
                            await target.cleanup()
                    last = f"{rate.seconds[-1]:.2f} s" if len(rate.seconds) > done else "failed"
                    print(f"  submission {mode}, {target.name}, {name}: {last}", flush=True)
    return rates


# -- the tables ----------------------------------------------------------------------------


def _latency_table(ctx: Context, targets: list[Target], skipped: dict[str, str],
                   results: dict[str, Latency], docker: str) -> Table:  # fmt: skip
    columns = ["engine", "jobs", "from exit: median", "p99", "max", "from die: median",
               "exit -> die median", "x Docker (from exit)", "x Docker (from die)",
               "failed (or why not measured)"]  # fmt: skip
    n = ctx.sizes.engines_wait_jobs
    table = Table(
        f"Wait latency per engine, one exit at a time: from the job's exit (FinishedAt) and "
        f"from its die event (timeNano) to the wait's return ({n} jobs per engine, rounds of "
        f"{BATCH}, engines in turn, ms)",
        columns,
    )
    base = results.get(docker, Latency())
    for target in targets:
        res = results[target.name]
        table.add(
            target.name, len(res.from_exit), *_cells(res.from_exit), fmt(median(res.from_die), 2),
            fmt(median(res.lag), 2),
            fmt_ratio(ratio(median(res.from_exit), median(base.from_exit))),
            fmt_ratio(ratio(median(res.from_die), median(base.from_die))), len(res.errors),
        )  # fmt: skip
    for name, why in skipped.items():
        table.add(name, *[""] * (len(columns) - 2), f"not measured: {why}")
    table.notes.append(
        "from exit = the wait's return - State.FinishedAt of the job's container (on Swarm: "
        "its task's container, on the node that ran it); from die = - its die event's "
        "timeNano; exit -> die = the engine's own lag between the two, which no client of "
        "its API can see through; same host, same clock"
    )
    return table


def _reasons(results: dict[str, Latency], names: dict[str, str]) -> list[str]:
    """The measured reasons for each engine's figures."""
    out: list[str] = []
    docker, podman, swarm = (results.get(names[k]) for k in ("docker", "podman", "swarm"))
    if docker is not None and docker.from_exit:
        out.append(
            f"Docker: the die event comes {fmt(median(docker.lag), 2)} ms (median) after the "
            f"exit (containerd to dockerd) and reaches a client {fmt(median(docker.delivery), 2)}"
            f" ms after its timeNano (observer process); aiotracker's wait returns "
            f"{fmt(median(docker.from_die), 2)} ms after the die event: events and its cache"
        )
    if podman is not None and podman.from_exit:
        out.append(
            f"Podman: the die event's timeNano is {fmt(median(podman.lag), 1)} ms (median; "
            f"max {fmt(percentile(podman.lag, 100), 1)}) after the exit, and the event reaches "
            f"a client {fmt(median(podman.delivery), 1)} ms (median; max "
            f"{fmt(percentile(podman.delivery, 100), 1)}) after its timeNano (observer "
            f"process); aiotracker's wait returns {fmt(median(podman.from_die), 1)} ms (median; "
            f"max {fmt(percentile(podman.from_die, 100), 1)}) after the timeNano: with the file "
            "events backend the service reads its events file every 250 ms, for each event "
            "stream on a timer of its own (the tracker's and the observer's differ job by job), "
            "so both figures are Podman's delivery, not the tracker's cost"
        )
    if swarm is not None and swarm.from_exit:
        placed = ", ".join(f"{k} {v}" for k, v in sorted(swarm.machines.items()))
        out.append(
            f"Swarm: the wait ends on the die event of the node that ran the task (SwarmTracker's "
            f"node hints, node_urls): that node's exit -> die {fmt(median(swarm.lag), 2)} ms, "
            f"the wait's return {fmt(median(swarm.from_die), 2)} ms after it; the manager "
            f"itself shows the task ended {fmt(median(swarm.manager), 1)} ms (median; max "
            f"{fmt(percentile(swarm.manager, 100), 1)}) after the exit (raw GET /tasks every "
            f"{sw.PROBE_EVERY * 1000:.0f} ms meanwhile): what a tracker with no node hints "
            f"waits for, plus its poll_interval; jobs ran on {placed or 'n/a'}"
        )
    return out


def _submission_table(ctx: Context, targets: list[Target], skipped: dict[str, str],
                      rates: dict[tuple[str, str, str], Rate], docker: str) -> Table:  # fmt: skip
    n, reps = ctx.sizes.engines_submit_jobs, ctx.sizes.engines_reps
    columns = ["engine", "method", "mode", "calls returned (s)", "calls: jobs/s",
               "calls x raw (same engine)", "first call -> last exit (s)", "ran: jobs/s",
               "ran x Docker", "ran x raw (same engine)",
               "failed calls (or why not measured)"]  # fmt: skip
    table = Table(
        f"Submission per engine: {n} jobs 'true', all at once and one after another (median "
        f"of {reps} round(s))",
        columns,
    )

    def per_s(key: tuple[str, str, str]) -> float:
        got = rates.get(key)
        return n / median(got.seconds) if got and got.seconds else float("nan")

    def ran_per_s(key: tuple[str, str, str]) -> float:
        got = rates.get(key)
        return n / median(got.until_exit) if got and got.until_exit else float("nan")

    docker_raw = next((t.raws()[0][0] for t in targets if t.name == docker), "")
    for mode in MODES:
        for target in targets:
            raw = (target.name, target.raws()[0][0], mode)
            for method in [TRACKER] + [r for r, _ in target.raws()]:
                key = (target.name, method, mode)
                rate = rates.get(key, Rate())
                same = (docker, TRACKER if method == TRACKER else docker_raw, mode)
                table.add(
                    target.name, method, mode, fmt(median(rate.seconds), 2), fmt(per_s(key), 1),
                    fmt_ratio(ratio(per_s(key), per_s(raw))), fmt(median(rate.until_exit), 2),
                    fmt(ran_per_s(key), 1), fmt_ratio(ratio(ran_per_s(key), ran_per_s(same))),
                    fmt_ratio(ratio(ran_per_s(key), ran_per_s(raw))), len(rate.errors),
                )  # fmt: skip
    for name, why in skipped.items():
        table.add(name, *[""] * (len(columns) - 2), f"not measured: {why}")
    table.notes += [
        "calls returned: from the first call to the last call's return (add_job, or the raw "
        "calls); ran: from the first call to the latest State.FinishedAt of the round's jobs "
        "(every job has run: the figure that compares engines, since Swarm's add_job returns "
        "before its job runs); x Docker = over Docker's row of the same kind and mode "
        "(add_job over add_job, raw over raw create + start); x raw = over the first raw row "
        "of the same engine and mode: what the tracker adds on that engine",
        "raw on Docker and Podman = aiodocker create + start with aiotracker's create body "
        "minus its labels (k8s-file log driver on Podman, as aiotracker asks there); on Swarm "
        "= the calls add_job makes, with no tracker (POST services/create of a ReplicatedJob "
        "held by a constraint no node meets, GET services/{id}, POST services/{id}/update "
        "lifting it: DRMAA2's made-then-started job), and the least Swarm needs, one "
        "services/create of a started ReplicatedJob",
        "on Swarm add_job returns once the manager has the service; the task is then "
        "scheduled, and started by the node: its calls/s says how fast jobs are accepted, its "
        "ran jobs/s how fast they run",
        "the containers of each round are removed before the next one; on Swarm the services "
        "of an engine's turn (its methods in one mode) after the last of them: each removal "
        "takes a second or more there (the nodes remove the task containers after the services)",
    ]
    failures = sorted({e for r in rates.values() for e in r.errors})
    if failures:
        table.notes.append("failed calls: " + "; ".join(failures[:3]))
    return table


# -- the measurement -----------------------------------------------------------------------


def _docker(ctx: Context) -> Engine:
    return ctx.engine if ctx.engine.name == "docker" else DOCKER


def _podman(ctx: Context) -> Engine:
    return ctx.engine if ctx.engine.podman else PODMAN


async def run(ctx: Context) -> Section:
    swarm = SwarmTarget(ctx)
    names = {"docker": "docker", "podman": "podman", "swarm": swarm.name}
    candidates: list[Target] = [
        EngineTarget(ctx, _docker(ctx), names["docker"]),
        EngineTarget(ctx, _podman(ctx), names["podman"]),
        swarm,
    ]
    await asyncio.gather(*(t.check() for t in candidates))
    skipped: dict[str, str] = {}
    targets: list[Target] = []
    notes: list[str] = []
    try:
        for target in candidates:
            if not target.why_not:
                try:
                    targets.append(target)  # closed at the end even if open() fails
                    await target.open()
                    continue
                except Exception as exc:
                    targets.remove(target)
                    target.why_not = f"could not open: {type(exc).__name__}: {exc}"
                    with contextlib.suppress(Exception):
                        await target.close()
            skipped[target.name] = target.why_not
            print(f"  {target.name}: not measured: {target.why_not}", flush=True)
        latency = await _latency(ctx, targets, notes)
        rates = await _submission(ctx, targets)
    finally:
        for target in targets:
            try:
                await target.close()
            except Exception as exc:
                notes.append(f"{target.name}: cleanup: {type(exc).__name__}: {exc}")
        if swarm not in targets and swarm.swarm is not None:
            await swarm.swarm.close()
    one = _latency_table(ctx, targets, skipped, latency, names["docker"])
    one.notes += _reasons(latency, names)
    for name, res in latency.items():
        if res.errors:
            one.notes.append(f"{name}: {len(res.errors)} failed: {'; '.join(res.errors[:2])}")
    one.notes += notes
    two = _submission_table(ctx, targets, skipped, rates, names["docker"])
    section = Section(11, "Engines: Docker, Podman and Swarm side by side", [one, two])
    _summarize(section, targets, skipped, latency, rates, names["docker"], ctx)
    return section


def _summarize(section: Section, targets: list[Target], skipped: dict[str, str],
               latency: dict[str, Latency], rates: dict[tuple[str, str, str], Rate],
               docker: str, ctx: Context) -> None:  # fmt: skip
    n = ctx.sizes.engines_submit_jobs

    def per_s(target: str, method: str) -> float:  # every job ran: first call -> last exit
        got = rates.get((target, method, "concurrent"))
        return n / median(got.until_exit) if got and got.until_exit else float("nan")

    base = median(latency[docker].from_exit) if docker in latency else float("nan")
    waits, subs = [], []
    for target in targets:
        res = latency[target.name]
        waits.append(f"{target.name} {fmt(median(res.from_exit), 1)} ms "
                     f"({fmt_ratio(ratio(median(res.from_exit), base))})")  # fmt: skip
        over_raw = ratio(per_s(target.name, TRACKER), per_s(target.name, target.raws()[0][0]))
        got = rates.get((target.name, TRACKER, "concurrent"), Rate())
        subs.append(f"{target.name} {fmt(per_s(target.name, TRACKER), 1)} jobs run/s "
                    f"({fmt_ratio(ratio(per_s(target.name, TRACKER), per_s(docker, TRACKER)))}"
                    f", {fmt_ratio(over_raw)} its raw; all exited after "
                    f"{fmt(median(got.until_exit), 2)} s)")  # fmt: skip
        section.goals.append(goal(
            f"add_job concurrent on {target.name}: jobs run ≥ 0.9x as fast as by the same "
            "engine's raw calls",
            None if math.isnan(over_raw) else over_raw >= 0.9, fmt_ratio(over_raw),
        ))  # fmt: skip
    section.headlines = [
        "wait latency from the exit (median, x Docker): " + ", ".join(waits),
        "add_job concurrent, first call -> every job ran (x Docker, x the same engine's raw): "
        + ", ".join(subs),
    ]
    if skipped:
        section.headlines.append(
            "not measured: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
