"""Measurement 10's DAG and its three drivers; each driver run is a fresh process of its own.

``python -m benchmarks.workflow_dag`` (started by ``benchmarks.workflow``) reads one JSON
object on stdin (the method, the engine's URL, the DAG's shape, the labels, the raw create
body), drives the DAG once and prints one JSON line of figures: wall and CPU times, memory,
and what became of every job.

The DAG: ``layers`` x ``width`` jobs; job ``(l, i)`` of layer ``l > 0`` waits for its two
parents ``(l-1, i)`` and ``(l-1, (i+1) % width)`` (a diamond lattice, wrapped). The jobs of
``fails`` run ``sh -c 'exit 1'``, every other ``true``. A job is submitted as soon as both of
its parents are DONE; when one fails, all its descendants are skipped (never submitted).

The drivers (each submits a job in a task of its own as soon as it is ready):

- ``aiotracker watch``: ``DockerTracker.add_job``; every end is read from one
  ``tracker.watch(states=(DONE, FAILED))`` over the session, entered before the first
  submission: no task waits for a job. (``as_completed`` takes its jobs up front; a DAG makes
  them as it goes.)
- ``raw aiodocker wait()``: create + start, then ``container.wait()`` in the job's task (a
  long poll per running job): the natural raw way.
- ``raw aiodocker events``: create + start; ends from one subscriber to the engine's ``die``
  events of the run (``since`` the start, so none is missed before the stream connects), the
  exit code from the event: no inspect, no cache.

This module imports only the standard library and aiodocker at the top (aiotracker only in its
driver), so that a raw driver's process carries none of aiotracker's modules.

Times: ``open`` (a tracker's ``open()``; a raw client's first call, which negotiates the API
version), ``dag`` (from the first submission until every job is DONE, FAILED or skipped), and
``close``. CPU: ``time.process_time()`` (user + system, every thread) over the same windows.
Memory: RSS after the imports (``VmRSS``), the peak RSS over the driver run (``VmHWM``, reset
by writing 5 to ``/proc/self/clear_refs`` after the imports) and the process's lifetime peak
(the larger of ``VmHWM`` before the reset and after the run). Not ``ru_maxrss``: Linux carries
it across fork + exec, so a child's starts at its parent's RSS (the runner's, about 50 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiodocker

OURS = "aiotracker watch"
RAW_WAIT = "raw aiodocker wait()"
RAW_EVENTS = "raw aiodocker events"
METHODS = (OURS, RAW_WAIT, RAW_EVENTS)
DONE, FAILED, SKIPPED = "done", "failed", "skipped"
OK: tuple[str, ...] = ("true",)
FAIL: tuple[str, ...] = ("sh", "-c", "exit 1")


@dataclass(frozen=True, slots=True)
class Shape:
    """The DAG: ``layers`` x ``width`` jobs; the jobs ``fails`` (layer, index) exit 1."""

    layers: int
    width: int
    fails: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if self.width < 2 or self.layers < 1:
            raise ValueError("a DAG of at least 1 layer of 2 jobs")

    @property
    def jobs(self) -> int:
        return self.layers * self.width

    def node(self, layer: int, index: int) -> int:
        return layer * self.width + index % self.width

    def parents(self, node: int) -> tuple[int, ...]:
        layer, index = divmod(node, self.width)
        if layer == 0:
            return ()
        return (self.node(layer - 1, index), self.node(layer - 1, index + 1))

    def children(self, node: int) -> tuple[int, ...]:
        layer, index = divmod(node, self.width)
        if layer + 1 == self.layers:
            return ()
        return (self.node(layer + 1, index), self.node(layer + 1, index - 1))

    def roots(self) -> list[int]:
        return list(range(self.width))

    def command(self, node: int) -> tuple[str, ...]:
        return FAIL if divmod(node, self.width) in self.fails else OK

    def expected(self) -> dict[int, str]:
        """What becomes of every job, walked here without an engine."""
        walk = Walk(self)
        ready = self.roots()
        while ready:
            node = ready.pop()
            ready += walk.ended(node, self.command(node) == OK)
        return walk.outcome


class Walk:
    """The drivers' shared bookkeeping: parents still to finish, and what became of each job."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.pending = [len(shape.parents(n)) for n in range(shape.jobs)]
        self.outcome: dict[int, str] = {}
        # node -> [container id, submitted, started, end known] (time.time_ns())
        self.stamps: dict[int, list[Any]] = {}

    def submitting(self, node: int) -> None:
        self.stamps[node] = ["", time.time_ns(), 0, 0]

    def started(self, node: int, cid: str) -> None:
        self.stamps[node][:3] = [cid, self.stamps[node][1], time.time_ns()]

    @property
    def finished(self) -> bool:
        return len(self.outcome) == self.shape.jobs

    def ended(self, node: int, ok: bool, at: int = 0) -> list[int]:
        """Record the job's end (known at ``at``, or now); returns the jobs it made ready (both
        parents DONE)."""
        if node in self.outcome:
            raise RuntimeError(f"job {node} ended twice")
        if node in self.stamps:
            self.stamps[node][3] = at or time.time_ns()
        if ok:
            self.outcome[node] = DONE
            ready = []
            for child in self.shape.children(node):
                self.pending[child] -= 1
                if self.pending[child] == 0 and child not in self.outcome:
                    ready.append(child)
            return ready
        self.outcome[node] = FAILED
        below = list(self.shape.children(node))
        while below:  # every descendant is skipped
            child = below.pop()
            if child not in self.outcome:
                self.outcome[child] = SKIPPED
                below += self.shape.children(child)
        return []


@dataclass
class Clock:
    """perf_counter and process_time marks: start, opened, dag done, closed."""

    marks: list[tuple[float, float]]

    @classmethod
    def start(cls) -> Clock:
        return cls([(time.perf_counter(), time.process_time())])

    def mark(self) -> None:
        self.marks.append((time.perf_counter(), time.process_time()))

    def figures(self) -> dict[str, float]:
        (w0, c0), (w1, c1), (w2, c2), (w3, c3) = self.marks
        return {
            "open_s": w1 - w0, "dag_s": w2 - w1, "close_s": w3 - w2,
            "cpu_open_s": c1 - c0, "cpu_dag_s": c2 - c1, "cpu_close_s": c3 - c2,
        }  # fmt: skip


def _configs(spec: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    """The two create bodies, made once (aiodocker only serialises them), as the aiotracker
    driver makes its two templates once."""
    return {command: {**spec["config"], "Cmd": list(command)} for command in (OK, FAIL)}


async def _aiotracker(spec: dict[str, Any], shape: Shape) -> tuple[Walk, Clock]:
    from aiotracker import DockerTracker, JobState, JobTemplate

    templates = {
        command: JobTemplate(
            job_category=spec["image"], remote_command=command[0], args=list(command[1:]),
            extensions={"network-disabled": "true"},
        )
        for command in (OK, FAIL)
    }  # fmt: skip
    clock = Clock.start()
    tracker = DockerTracker(spec["session"], docker_url=spec["url"], labels=spec["labels"])
    await tracker.open()
    walk = Walk(shape)
    node_of: dict[str, int] = {}
    early: dict[str, tuple[bool, int]] = {}  # ends seen before add_job returned the id
    try:
        async with asyncio.TaskGroup() as tasks:

            def ended(job_id: str, ok: bool, at: int = 0) -> None:
                for child in walk.ended(node_of.pop(job_id), ok, at):
                    tasks.create_task(submit(child))

            async def submit(node: int) -> None:
                walk.submitting(node)
                job_id = await tracker.add_job(templates[shape.command(node)])
                walk.started(node, job_id)
                node_of[job_id] = node
                if job_id in early:
                    ended(job_id, *early.pop(job_id))

            async with tracker.watch(states=(JobState.DONE, JobState.FAILED)) as changes:
                clock.mark()
                for root in shape.roots():
                    tasks.create_task(submit(root))
                async for change in changes:
                    if change.lost:
                        raise RuntimeError(f"the watch lost {change.lost} changes")
                    ok = change.new_state is JobState.DONE
                    if change.job_id in node_of:
                        ended(change.job_id, ok)
                    else:
                        early[change.job_id] = (ok, time.time_ns())
                    if walk.finished:
                        break
        clock.mark()
    finally:
        await tracker.aclose()
    clock.mark()
    return walk, clock


async def _raw_client(spec: dict[str, Any]) -> aiodocker.Docker:
    docker = aiodocker.Docker(url=spec["url"])
    await docker.version()  # the API version is negotiated on the first call
    return docker


async def _raw_wait(spec: dict[str, Any], shape: Shape) -> tuple[Walk, Clock]:
    configs = _configs(spec)
    clock = Clock.start()
    docker = await _raw_client(spec)
    walk = Walk(shape)
    try:
        async with asyncio.TaskGroup() as tasks:

            async def job(node: int) -> None:
                walk.submitting(node)
                container = await docker.containers.create(configs[shape.command(node)])
                await container.start()
                walk.started(node, container.id)
                status = (await container.wait())["StatusCode"]
                for child in walk.ended(node, status == 0):
                    tasks.create_task(job(child))

            clock.mark()
            for root in shape.roots():
                tasks.create_task(job(root))
        clock.mark()
    finally:
        await docker.close()
    clock.mark()
    return walk, clock


async def _raw_events(spec: dict[str, Any], shape: Shape) -> tuple[Walk, Clock]:
    configs = _configs(spec)
    clock = Clock.start()
    docker = await _raw_client(spec)
    walk = Walk(shape)
    labels = [f"{k}={v}" for k, v in spec["labels"].items()]
    filters: dict[str, list[str]] = {"type": ["container"], "event": ["die"], "label": labels}
    if spec["podman"]:  # Podman 4.3 matches a "die" filter with nothing (adapters.py)
        del filters["event"]
    node_of: dict[str, int] = {}
    early: dict[str, tuple[bool, int]] = {}
    try:
        async with asyncio.TaskGroup() as tasks:

            def ended(cid: str, ok: bool, at: int = 0) -> None:
                for child in walk.ended(node_of.pop(cid), ok, at):
                    tasks.create_task(job(child))

            async def job(node: int) -> None:
                walk.submitting(node)
                container = await docker.containers.create(configs[shape.command(node)])
                await container.start()
                walk.started(node, container.id)
                node_of[container.id] = node
                if container.id in early:
                    ended(container.id, *early.pop(container.id))

            since = f"{time.time() - 1:.9f}"  # the stream replays what came before it connected
            subscriber = docker.events.subscribe(filters=json.dumps(filters), since=since)
            clock.mark()
            for root in shape.roots():
                tasks.create_task(job(root))
            while not walk.finished:
                event = await subscriber.get()
                if event is None:
                    raise RuntimeError("the event stream ended")
                if event.get("Action") != "die":
                    continue
                cid = event["Actor"]["ID"]
                ok = str(event["Actor"].get("Attributes", {}).get("exitCode")) == "0"
                if cid in node_of:
                    ended(cid, ok)
                else:
                    early[cid] = (ok, time.time_ns())
            await docker.events.stop()
        clock.mark()
    finally:
        await docker.events.stop()
        await docker.close()
    clock.mark()
    return walk, clock


Driver = Callable[[dict[str, Any], Shape], Coroutine[Any, Any, tuple[Walk, Clock]]]
DRIVERS: dict[str, Driver] = {
    OURS: _aiotracker,
    RAW_WAIT: _raw_wait,
    RAW_EVENTS: _raw_events,
}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    return int(match.group(1)) if match else -1


def main() -> None:
    spec = json.loads(sys.stdin.read())
    fails = tuple((int(layer), int(index)) for layer, index in spec["fails"])
    shape = Shape(spec["layers"], spec["width"], fails)
    if spec["method"] == OURS:
        import aiotracker  # noqa: F401  (its imports before the memory's starting point)
    rss_imports, hwm_imports = _status_kib("VmRSS"), _status_kib("VmHWM")
    reset = False
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS: the peak from here on
        reset = True
    walk, clock = asyncio.run(DRIVERS[spec["method"]](spec, shape))
    result: dict[str, Any] = clock.figures()
    peak = _status_kib("VmHWM")
    result |= {
        "rss_imports_kib": rss_imports,
        "peak_driver_kib": peak if reset else -1,
        "peak_lifetime_kib": max(peak, hwm_imports),
        "outcome": {str(n): o for n, o in sorted(walk.outcome.items())},
        "stamps": {str(n): s for n, s in sorted(walk.stamps.items())},
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
