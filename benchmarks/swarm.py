"""``python -m benchmarks.swarm [--quick | --full | --smoke]``: SwarmTracker on a Docker Swarm
(issue 16), side by side with DockerTracker on the single engine, as ratios.

The swarm is scripts/swarm-engine.sh's (3 nodes on this host, one network namespace): the
manager's socket and the nodes' own engines come from ``$AIOTRACKER_SWARM_MANAGER`` and
``$AIOTRACKER_SWARM_NODES`` (``bash scripts/swarm-engine.sh env``), the single engine is
/var/run/docker.sock. Nothing here starts, stops or reconfigures an engine or a node; nothing
is pulled. Every service and container of a run carries ``aiotracker.bench-run=<token>``, and
only those are removed: after each measurement, and all of them once more at the very end, on
error and on Ctrl-C too (outside the event loop). Others may use the same swarm meanwhile (the
integration tests stop and start node 3): a measurement that overlaps a node outage (a node
event on the manager, a node engine that stops answering) is run again, once.

1. **Wait latency**, from the job's exit: each job runs ``sh -c 'sleep 0.5'``, its
   ``tracker.wait(job_id)`` is pending from ``add_job``'s return, and its return is stamped
   against the task container's ``State.FinishedAt`` (read afterwards from the engine of the
   node that ran it) and its ``die`` event's ``timeNano`` (that node's event stream, followed
   all along). Methods take turns, one batch at a time, in an order that rotates each round:
   SwarmTracker poller only (``node_urls=()``) with ``poll_interval`` 0.1 and 0.25, with node
   hints (``node_urls`` given), all on the worker nodes (``node.role==worker``); the poller
   only with the job on the manager's own node (whose engine the tracker follows anyway: a
   hint there too); DockerTracker on the single engine. The reference row is no tracker: a
   raw ``GET /tasks`` every 20 ms says when the manager first shows the task ended.
2. **Calls on the manager** with 0, 10 and 1000 pending waits on the same running jobs (and
   with no unfinished job): every Engine API call of the tracker's manager client is counted
   (its aiodocker client's ``_do_query`` wrapped: method, path, body bytes), beside the
   engine's own ``polls`` counter; then the cost of one ``GET /tasks`` against the number of
   services in its filter (time, bytes, bytes per task entry), on finished jobs' services.
3. **Many jobs**: N jobs ``true`` (300; 60 with ``--quick``) on the 3 nodes, against the same
   constrained to one node (``candidate_machines=["aiotracker-n1"]``), both with node hints, the
   3 nodes with the poller only, and DockerTracker on the single engine: submission rate, wall
   time until every wait returned, the manager calls per job.
4. **Another session's burst**: one job's wait (poller only, and with node hints) while another
   session's tracker, in a process of its own, submits N jobs (300; 40 with ``--quick``),
   against the same wait with no burst: the poller's task learns of every service event of
   the swarm before its next poll. A raw ``GET /tasks`` every 20 ms on the waited job says when
   the manager itself showed it ended.

Then a projection of the manager's cost for 10 and 100 nodes from the measured per-task costs
(docs/swarm-performance.md has the figures and their reading). Waits that go wrong are listed
at the end as possible library bugs, with what the tracker and the manager said of the job; a
job whose task Swarm itself had not started is a remark, not a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, urlsplit

import aiohttp

from aiotracker import DockerTracker, JobState, JobTemplate, SwarmTracker
from aiotracker._engine.docker import DockerEngine
from aiotracker._engine.swarm import SwarmEngine
from aiotracker._engine.swarm_spec import service_spec
from aiotracker._labels import LEASE_LABEL

from .common import (
    IMAGE,
    PART_LABEL,
    RUN_LABEL,
    Table,
    _UnixHTTPConnection,
    fmt,
    fmt_ratio,
    go_time_ns,
    median,
    percentile,
    ratio,
)

MANAGER = os.environ.get("AIOTRACKER_SWARM_MANAGER", "unix:///run/aiotracker-swarm/n1/docker.sock")
NODES = tuple(
    os.environ.get(
        "AIOTRACKER_SWARM_NODES",
        ",".join(f"unix:///run/aiotracker-swarm/n{k}/docker.sock" for k in (1, 2, 3)),
    ).split(",")
)
DOCKER = "unix:///var/run/docker.sock"
API = "v1.41"  # Docker 20.10's; every engine here speaks it
ONE_NODE = "aiotracker-n1"  # item 3's single node (the manager's, as any one would do)
WORKERS = "node.role==worker"
SLEEP = 0.5  # item 1's job: sh -c 'sleep 0.5'
PROBE_EVERY = 0.02  # the reference's GET /tasks period
ENDED = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")
SETTLE = 0.3  # s after the waits are made, before a calls window opens


@dataclass(frozen=True, slots=True)
class Sizes:
    mode: str
    wait_jobs: int  # 1: jobs per method, in batches of wait_batch
    wait_batch: int
    running_jobs: int  # 2: long-running jobs the waits are on
    calls_window: float  # 2: seconds per window
    calls_reps: int  # 2: interleaved repetitions of each wait count
    many_jobs: int  # 3
    many_reps: int  # 3: interleaved repetitions, median reported
    cost_services: tuple[int, ...]  # 2b: services in the filter of one GET /tasks
    cost_reps: int  # 2b: calls per size, interleaved
    burst_jobs: int  # 4: jobs another session submits while the waited job exits
    burst_reps: int  # 4: interleaved repetitions, median reported
    wait_timeout: float  # a wait longer than this is reported
    waits: tuple[int, ...] = (0, 10, 1000)


QUICK = Sizes(
    "quick", wait_jobs=16, wait_batch=8, running_jobs=10, calls_window=3.0, calls_reps=2,
    many_jobs=60, many_reps=1, cost_services=(1, 10, 30, 60), cost_reps=9, burst_jobs=40,
    burst_reps=1, wait_timeout=60.0,
)  # fmt: skip
FULL = Sizes(
    "full", wait_jobs=60, wait_batch=10, running_jobs=10, calls_window=10.0, calls_reps=3,
    many_jobs=300, many_reps=1, cost_services=(1, 10, 30, 100, 300), cost_reps=11,
    burst_jobs=300, burst_reps=3, wait_timeout=120.0,
)  # fmt: skip
# Every measurement at a tiny size: does it still run (measures nothing).
SMOKE = Sizes(
    "smoke", wait_jobs=1, wait_batch=1, running_jobs=2, calls_window=0.5, calls_reps=1,
    many_jobs=4, many_reps=1, cost_services=(1, 4), cost_reps=2, burst_jobs=4, burst_reps=1,
    wait_timeout=30.0,
)  # fmt: skip


def _sock(url: str) -> str:
    return urlsplit(url).path


# -- statistics and times ------------------------------------------------------------------------


def stats(values: Sequence[float]) -> tuple[str, str, str]:
    """Median, p90 and max, in ms (1 decimal)."""
    if not values:
        return "n/a", "n/a", "n/a"
    return fmt(median(values)), fmt(percentile(values, 90)), fmt(max(values))


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``y = a + b x``."""
    n = len(points)
    if n < 2:
        return (points[0][1] if points else math.nan), 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    b = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else 0.0
    return my - b * mx, b


# -- raw Engine API clients ----------------------------------------------------------------------


class Raw:
    """Plain aiohttp on one engine's unix socket (none of aiotracker's code)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(_sock(url), limit=16),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        async with self.session.request(
            method, f"http://engine/{API}/{path}", params=params, json=body
        ) as resp:
            return resp.status, await resp.read()

    async def json(self, path: str, params: dict[str, str] | None = None) -> Any:
        status, body = await self.call("GET", path, params=params)
        if status != 200:
            raise RuntimeError(f"{self.url}: GET {path} answered {status}: {body[:200]!r}")
        return json.loads(body)

    async def ping(self) -> bool:
        try:
            async with self.session.get(
                "http://engine/_ping", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self.session.close()


def _filters(**kw: Sequence[str]) -> dict[str, str]:
    return {"filters": json.dumps({k: list(v) for k, v in kw.items()})}


# -- what happens on the swarm meanwhile ---------------------------------------------------------


class Monitor:
    """The nodes' die events (stamped by their engines) and anything that disturbs a
    measurement: a node event on the manager, a node engine's stream breaking."""

    def __init__(self, token: str, engines: dict[str, Raw], manager: Raw) -> None:
        self.token = token
        self.engines = engines  # name -> engine (the 3 nodes and the single engine)
        self.manager = manager
        self.dies: dict[str, int] = {}  # container id -> die timeNano
        self.service_events = 0  # service create/update/remove events of the whole swarm
        self.disturbances: list[tuple[float, str]] = []  # (monotonic, what)
        self._connected: dict[str, asyncio.Event] = {n: asyncio.Event() for n in engines}
        self._tasks: list[asyncio.Task[None]] = []

    def disturb(self, what: str) -> None:
        self.disturbances.append((time.monotonic(), what))

    def since(self, moment: float) -> list[str]:
        return [w for t, w in self.disturbances if t >= moment]

    async def start(self) -> None:
        for name, raw in self.engines.items():
            self._tasks.append(asyncio.create_task(self._follow_dies(name, raw)))
        self._tasks.append(asyncio.create_task(self._follow_nodes()))
        async with asyncio.timeout(30):
            for event in self._connected.values():
                await event.wait()

    async def _stream(self, raw: Raw, params: dict[str, str], on_line: Callable[[Any], None],
                      connected: Callable[[], None]) -> None:  # fmt: skip
        async with raw.session.get(
            f"http://engine/{API}/events", params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        ) as resp:  # fmt: skip
            connected()
            async for line in resp.content:
                if line.strip():
                    on_line(json.loads(line))

    async def _follow_dies(self, name: str, raw: Raw) -> None:
        params = _filters(type=["container"], event=["die"], label=[f"{RUN_LABEL}={self.token}"])
        first = True
        while True:
            since = str(time.time() - 5)  # replay what a break missed
            try:
                await self._stream(
                    raw, {**params, **({} if first else {"since": since})}, self._die,
                    self._connected[name].set,
                )  # fmt: skip
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                self.disturb(f"{name}: event stream broke ({type(exc).__name__})")
            else:
                self.disturb(f"{name}: event stream ended")
            first = False
            await asyncio.sleep(0.5)

    def _die(self, raw: Any) -> None:
        cid = str(raw.get("id") or "")
        self.dies.setdefault(cid, int(raw.get("timeNano") or 0))

    async def _follow_nodes(self) -> None:
        def node_event(raw: Any) -> None:
            if raw.get("Type") == "service":
                self.service_events += 1
                return
            attrs = (raw.get("Actor") or {}).get("Attributes") or {}
            self.disturb(f"node {attrs.get('name', '?')}: {raw.get('Action')} "
                         f"{attrs.get('state.old', '')}->{attrs.get('state.new', '')}")  # fmt: skip

        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                await self._stream(
                    self.manager, _filters(type=["node", "service"]), node_event, lambda: None
                )
            self.disturb("manager: node event stream broke")
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Swarm:
    """The manager, the nodes' engines by node id, their hostnames; waits until all answer."""

    def __init__(self) -> None:
        self.manager = Raw(MANAGER)
        self.nodes = {url: Raw(url) for url in NODES}
        self.docker = Raw(DOCKER)
        self.by_node_id: dict[str, Raw] = {}
        self.hostnames: dict[str, str] = {}

    async def ready(self, patience: float = 180.0) -> None:
        """Until every node engine answers and the manager lists every node Ready (another
        user's test may have stopped one)."""
        deadline = time.monotonic() + patience
        said = False
        while True:
            state = await self._state()
            if state is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the swarm is not ready after {patience:.0f} s: {state}")
            if not said:
                print(f"  (waiting for the swarm: {state})", flush=True)
                said = True
            await asyncio.sleep(1.0)

    async def _state(self) -> str | None:
        for url, raw in self.nodes.items():
            if not await raw.ping():
                return f"{url} does not answer"
        try:
            nodes = await self.manager.json("nodes")
        except (RuntimeError, aiohttp.ClientError, OSError) as exc:
            return f"the manager: {exc}"

        def hostname(node: Any) -> str:
            return str(((node.get("Description") or {}).get("Hostname")) or node.get("ID"))

        ready = [n for n in nodes if (n.get("Status") or {}).get("State") == "ready"]
        if len(ready) < len(self.nodes) or len(nodes) != len(ready):
            return f"nodes not ready: {[hostname(n) for n in nodes if n not in ready] or nodes}"
        self.hostnames = {str(n["ID"]): hostname(n) for n in nodes}
        self.by_node_id = {}  # a swarm made again has new node ids
        try:
            for raw in self.nodes.values():
                info = await raw.json("info")
                self.by_node_id[str((info.get("Swarm") or {}).get("NodeID"))] = raw
        except (RuntimeError, aiohttp.ClientError, OSError) as exc:
            return f"a node: {exc}"
        if set(self.by_node_id) != set(self.hostnames):
            return "the nodes' engines and the manager's nodes differ"
        return None

    async def tasks(self, sids: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(sids), 50):
            out += await self.manager.json("tasks", _filters(service=sids[i : i + 50]))
        return out

    @staticmethod
    def run_tasks(tasks: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each service's last task (highest job iteration, then newest)."""
        out: dict[str, dict[str, Any]] = {}
        for t in tasks:
            key = ((t.get("JobIteration") or {}).get("Index", 0), t.get("CreatedAt", ""))
            old = out.get(t["ServiceID"])
            if old is None or key > (
                (old.get("JobIteration") or {}).get("Index", 0),
                old.get("CreatedAt", ""),
            ):
                out[t["ServiceID"]] = t
        return out

    async def close(self) -> None:
        for raw in (self.manager, *self.nodes.values(), self.docker):
            await raw.close()


@dataclass(slots=True)
class Exit:
    container_id: str
    machine: str
    finished_ns: int | None
    exit_code: int | None


async def swarm_exits(swarm: Swarm, sids: Sequence[str]) -> dict[str, Exit]:
    """Each job's task container, its node and ``State.FinishedAt`` on that node's engine."""
    out: dict[str, Exit] = {}
    for sid, task in Swarm.run_tasks(await swarm.tasks(sids)).items():
        cid = str(
            ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID") or ""
        )
        node_id = str(task.get("NodeID") or "")
        machine = swarm.hostnames.get(node_id, node_id)
        raw = swarm.by_node_id.get(node_id)
        finished = code = None
        if cid and raw is not None:
            with contextlib.suppress(RuntimeError, aiohttp.ClientError, OSError):
                state = (await raw.json(f"containers/{cid}/json"))["State"]
                finished, code = go_time_ns(state.get("FinishedAt") or ""), state.get("ExitCode")
        out[sid] = Exit(cid, machine, finished, code)
    return out


async def docker_exits(raw: Raw, ids: Sequence[str]) -> dict[str, Exit]:
    out: dict[str, Exit] = {}
    for cid in ids:
        with contextlib.suppress(RuntimeError, aiohttp.ClientError, OSError):
            state = (await raw.json(f"containers/{cid}/json"))["State"]
            out[cid] = Exit(cid, "single engine", go_time_ns(state.get("FinishedAt") or ""),
                            state.get("ExitCode"))  # fmt: skip
    return out


# -- counting the manager's calls ---------------------------------------------------------------

_ID_SEGMENT = re.compile(r"^[0-9a-z]{20,64}$")


def _kind(method: str, path: object) -> str:
    text = str(path).split("?")[0].lstrip("/")
    text = re.sub(r"^v\d+\.\d+/", "", text)
    parts = ["{id}" if _ID_SEGMENT.match(p) or len(p) > 40 else p for p in text.split("/")]
    return f"{method} /{'/'.join(parts)}"


class CallCounter:
    """Every call of one ``DockerEngine``'s aiodocker clients (the tracker's calls on the
    manager): how many of each kind, and the bytes of their answers' bodies."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.micros: Counter[str] = Counter()  # from the call to its answer's body read

    def attach(self, engine: DockerEngine) -> None:
        for client in (engine._api, engine._streams):
            assert client is not None, "attach after open()"
            original = client._do_query

            async def counted(path: Any, method: str, *, _orig: Any = original,
                              **kw: Any) -> aiohttp.ClientResponse:  # fmt: skip
                kind = _kind(method, path)
                self.calls[kind] += 1
                began = time.perf_counter()
                resp: aiohttp.ClientResponse = await _orig(path, method, **kw)
                read = resp.read

                async def read_counted() -> bytes:
                    body = await read()
                    self.bytes[kind] += len(body)
                    self.micros[kind] += int((time.perf_counter() - began) * 1e6)
                    return body

                resp.read = read_counted  # type: ignore[method-assign]
                return resp

            client._do_query = counted  # type: ignore[method-assign]

    def snapshot(self) -> tuple[Counter[str], Counter[str], Counter[str]]:
        return Counter(self.calls), Counter(self.bytes), Counter(self.micros)


def swarm_engine(tracker: DockerTracker) -> SwarmEngine:
    return cast(SwarmEngine, tracker._rt.engine)


# -- cleanup -------------------------------------------------------------------------------------


def _http(url: str, method: str, path: str) -> tuple[int, bytes]:
    conn = _UnixHTTPConnection(_sock(url), 30)
    try:
        conn.request(method, f"/{API}/{path}")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def cleanup_sync(token: str, part: str | None = None, *, leases: bool = True) -> tuple[int, int]:
    """Remove the run's services (then their containers, which a service's removal leaves on
    the nodes, running or not) and its containers on the single engine; blocking (no event
    loop needed: on error and Ctrl-C too). ``leases`` False keeps the open trackers' lease
    containers. Returns (services, containers) removed; an engine that does not answer is
    skipped (its node is down: Docker removes its containers)."""
    labels = [f"{RUN_LABEL}={token}", *([f"{PART_LABEL}={part}"] if part else [])]
    query = "filters=" + quote(json.dumps({"label": labels}))
    services = containers = 0
    with ThreadPoolExecutor(8) as pool:
        try:
            status, body = _http(MANAGER, "GET", f"services?{query}")
            ids = [s["ID"] for s in json.loads(body)] if status == 200 else []
            done = pool.map(lambda sid: _http(MANAGER, "DELETE", f"services/{sid}"), ids)
            services = sum(1 for s, _ in done if s in (200, 404))
        except OSError as exc:
            print(f"  cleanup: the manager does not answer ({exc})", file=sys.stderr)
        for attempt in range(3):  # a removed service's task may still make its container
            if attempt:
                time.sleep(1.0)
            found = 0
            for url in (*NODES, DOCKER):
                try:
                    status, body = _http(url, "GET", f"containers/json?all=1&{query}")
                except OSError:
                    continue
                listed = json.loads(body) if status == 200 else []
                ids = [c["Id"] for c in listed
                       if leases or LEASE_LABEL not in (c.get("Labels") or {})]  # fmt: skip

                def rm(cid: str, url: str = url) -> int:
                    try:
                        return _http(url, "DELETE", f"containers/{cid}?force=1&v=1")[0]
                    except OSError:
                        return 0

                removed = sum(1 for s in pool.map(rm, ids) if s in (204, 404))
                containers += removed
                found += len(ids)
            if not services or (attempt and not found):
                break  # no service removed now: no container can come after this pass
    return services, containers


async def diagnose(run: Run, tracker: DockerTracker, jid: str) -> str:
    """What the tracker and the manager say of a job whose wait went wrong (``swarm says:
    <state>`` last, the state of its last task)."""
    try:
        cached = str(tracker.cached_state(jid))
    except Exception as exc:
        cached = f"? ({type(exc).__name__})"
    parts = [f"tracker: {cached}"]
    if isinstance(tracker, SwarmTracker):
        engine = swarm_engine(tracker)
        parts.append(f"polled: {jid in engine._tracker.polled}, polls {engine.polls}, "
                     f"to learn {len(engine._tracker.to_learn)}")  # fmt: skip
        try:
            tasks = await run.swarm.tasks([jid])
        except (RuntimeError, aiohttp.ClientError, OSError) as exc:
            tasks, parts = [], [*parts, f"GET /tasks: {exc}"]
        for t in tasks:
            st = t.get("Status") or {}
            parts.append(
                f"task {t.get('ID')} iteration {(t.get('JobIteration') or {}).get('Index')}: "
                f"{st.get('State')} (desired {t.get('DesiredState')}) at {st.get('Timestamp')} "
                f"on {run.swarm.hostnames.get(t.get('NodeID', ''), t.get('NodeID'))}, "
                f"{st.get('Message')!r} {st.get('Err', '')!r}"
            )
        last = Swarm.run_tasks(tasks).get(jid)
        parts.append(f"swarm says: {((last or {}).get('Status') or {}).get('State', 'no task')}")
    return "; ".join(str(p) for p in parts)


# -- trackers ------------------------------------------------------------------------------------


def template(command: Sequence[str], candidate: str = "") -> JobTemplate:
    return JobTemplate(
        job_category=IMAGE, remote_command=command[0], args=list(command[1:]),
        candidate_machines=[candidate] if candidate else [], extensions={"net": "none"},
    )  # fmt: skip


@dataclass
class Run:
    sizes: Sizes
    token: str
    swarm: Swarm
    monitor: Monitor
    trackers: list[DockerTracker] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)  # what looks like a library bug
    notes: list[str] = field(default_factory=list)  # reruns and other remarks

    def labels(self, part: str) -> dict[str, str]:
        return {RUN_LABEL: self.token, PART_LABEL: part}

    def session(self, part: str) -> str:
        return f"bench-{self.token}-{part}"

    async def tracker(self, part: str, kind: str, *, poll: float = 0.1,
                      hints: bool = False) -> DockerTracker:  # fmt: skip
        t: DockerTracker
        if kind == "docker":
            t = DockerTracker(self.session(part), docker_url=DOCKER, labels=self.labels(part))
        else:
            t = SwarmTracker(
                self.session(part), docker_url=MANAGER, node_urls=NODES if hints else (),
                poll_interval=poll, labels=self.labels(part),
            )  # fmt: skip
        await t.open()
        self.trackers.append(t)
        return t

    def report(self, text: str, *, harmless: bool = False) -> None:
        """A possible library bug, or a remark: not timed, or a job Swarm itself had not
        started (the manager's lag: its task still new or pending, as the tracker said)."""
        lag = text.endswith(("new", "pending", "assigned", "accepted", "preparing"))
        if harmless or lag:
            self.notes.append(
                text + (" (Swarm had not started it: not the tracker)" if lag else "")
            )
        else:
            self.issues.append(text)

    async def close_trackers(self) -> None:
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            with contextlib.suppress(Exception):
                await tracker.aclose()

    async def cleanup(self, part: str | None) -> None:
        """The services and containers of one part (None: of the run: close the trackers
        first, their leases go too)."""
        t0 = time.perf_counter()
        services, containers = await asyncio.to_thread(cleanup_sync, self.token, part,
                                                       leases=part is None)  # fmt: skip
        took = time.perf_counter() - t0
        print(f"    cleanup {part}: {services} services, {containers} containers, {took:.1f} s",
              flush=True)  # fmt: skip

    async def steady(self, what: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """Run a measurement step with the swarm ready; once more if a node was disturbed."""
        for tries in range(3):
            await self.swarm.ready()
            began = time.monotonic()
            result = await attempt()
            disturbed = self.monitor.since(began)
            if not disturbed:
                return result
            note = f"{what}: disturbed ({'; '.join(disturbed[:3])})"
            if tries == 2:
                self.notes.append(note + ", kept")
                return result
            self.notes.append(note + ", run again")
        return None  # not reached


# -- 1. wait latency -----------------------------------------------------------------------------


@dataclass
class Latency:
    from_exit: list[float] = field(default_factory=list)  # ms: returned - FinishedAt
    from_die: list[float] = field(default_factory=list)  # ms: returned - die timeNano
    lag: list[float] = field(default_factory=list)  # ms: die - FinishedAt
    machines: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


@dataclass
class WaitMethod:
    name: str
    kind: str  # "swarm", "docker" or "probe"
    candidate: str = ""
    poll: float = 0.1
    hints: bool = False
    tracker: DockerTracker | None = None
    result: Latency = field(default_factory=Latency)


async def _tracker_batch(run: Run, m: WaitMethod, n: int) -> dict[str, tuple[int, int] | str]:
    """n jobs, each waited from add_job's return: job id -> (wait began, returned) ns or error."""
    assert m.tracker is not None
    tracker = m.tracker
    tmpl = template(("sh", "-c", f"sleep {SLEEP}"), m.candidate)

    async def wait(jid: str) -> tuple[int, int] | str:
        began = time.time_ns()
        try:
            state = await tracker.wait(jid, timeout=run.sizes.wait_timeout)
        except Exception as exc:  # a bug to report, not a crash
            return f"wait: {type(exc).__name__}: {exc}; {await diagnose(run, tracker, jid)}"
        returned = time.time_ns()
        if state != JobState.DONE:
            return f"wait returned {state}"
        return began, returned

    waits: dict[str, asyncio.Task[tuple[int, int] | str]] = {}
    for _ in range(n):
        jid = await tracker.add_job(tmpl)
        waits[jid] = asyncio.create_task(wait(jid))
    return {jid: await task for jid, task in waits.items()}


async def _probe_batch(run: Run, n: int) -> dict[str, tuple[int, int] | str]:
    """No tracker: services made raw (the spec SwarmTracker makes, started), and a GET /tasks
    on them every 20 ms until the manager shows each task ended: when it first did."""
    labels = run.labels("wait-probe")
    sids: list[str] = []
    began: dict[str, int] = {}
    seen: dict[str, int] = {}
    all_made = asyncio.Event()

    async def probe() -> None:
        deadline = time.monotonic() + run.sizes.wait_timeout
        while time.monotonic() < deadline:
            if sids:
                tasks = await run.swarm.manager.json("tasks", _filters(service=list(sids)))
                now = time.time_ns()
                for t in tasks:
                    sid = t["ServiceID"]
                    if (t.get("Status") or {}).get("State") in ENDED and sid not in seen:
                        seen[sid] = now
                if all_made.is_set() and len(seen) >= len(sids):
                    return
            await asyncio.sleep(PROBE_EVERY)

    prober = asyncio.create_task(probe())
    try:
        for _ in range(n):
            name = f"bench-{run.token}-probe-{uuid.uuid4().hex[:8]}"
            config = {"Image": IMAGE, "Cmd": ["sh", "-c", f"sleep {SLEEP}"], "Labels": labels,
                      "Hostname": WORKERS, "HostConfig": {"NetworkMode": "none"}}  # fmt: skip
            status, body = await run.swarm.manager.call(
                "POST", "services/create", body=service_spec(config, name, started=True)
            )
            if status != 201:
                raise RuntimeError(f"services/create: {status} {body[:200]!r}")
            sid = str(json.loads(body)["ID"])
            began[sid] = time.time_ns()
            sids.append(sid)
            await asyncio.sleep(0.15)  # about an add_job's time on Swarm: exits spread alike
        all_made.set()
        await prober
    finally:
        prober.cancel()
    return {sid: (began[sid], seen[sid]) if sid in seen else "never seen ended" for sid in sids}


async def _wait_batch(run: Run, m: WaitMethod, n: int, res: Latency) -> None:
    if m.kind == "probe":
        got = await _probe_batch(run, n)
    else:
        got = await _tracker_batch(run, m, n)
    ids = list(got)
    if m.kind == "docker":
        exits = await docker_exits(run.swarm.docker, ids)
    else:
        exits = await swarm_exits(run.swarm, ids)
    for _ in range(40):  # the die events of the slowest engine (there already, as a rule)
        if all(e.container_id in run.monitor.dies for e in exits.values()):
            break
        await asyncio.sleep(0.05)
    for jid, r in got.items():
        ex = exits.get(jid)
        if isinstance(r, str):
            res.errors.append(f"{jid}: {r}")
            continue
        if ex is None or ex.finished_ns is None:
            res.errors.append(f"{jid}: no FinishedAt on its node")
            continue
        res.machines[ex.machine] += 1
        if ex.exit_code != 0:
            res.errors.append(f"{jid}: exit code {ex.exit_code}")
        began, returned = r
        if began >= ex.finished_ns:
            res.errors.append(f"{jid}: the wait began after the exit (not timed)")
            continue
        res.from_exit.append((returned - ex.finished_ns) / 1e6)
        die = run.monitor.dies.get(ex.container_id)
        if die:
            res.from_die.append((returned - die) / 1e6)
            res.lag.append((die - ex.finished_ns) / 1e6)


async def wait_latency(run: Run) -> tuple[list[Table], list[float]]:
    """The table, and the reference row's samples (the manager's lag, for the projection)."""
    sizes = run.sizes
    methods = [
        WaitMethod("swarm, poller only, poll 0.1 s", "swarm", WORKERS, 0.1),
        WaitMethod("swarm, poller only, poll 0.25 s", "swarm", WORKERS, 0.25),
        WaitMethod("swarm, node hints (node_urls), poll 0.1 s", "swarm", WORKERS, 0.1, True),
        WaitMethod(
            "swarm, poller only, poll 0.1 s, job on the manager's node", "swarm", ONE_NODE, 0.1
        ),
        WaitMethod("docker, DockerTracker on the single engine", "docker"),
        WaitMethod("reference: manager shows it ended (raw GET /tasks every 20 ms)", "probe"),
    ]
    for i, m in enumerate(methods):
        if m.kind != "probe":
            m.tracker = await run.tracker(f"wait{i}", m.kind, poll=m.poll, hints=m.hints)
    rounds = math.ceil(sizes.wait_jobs / sizes.wait_batch)
    for r in range(rounds):
        order = methods[r % len(methods) :] + methods[: r % len(methods)]
        n = min(sizes.wait_batch, sizes.wait_jobs - r * sizes.wait_batch)
        for m in order:
            box: list[Latency] = []

            async def batch(m: WaitMethod = m, box: list[Latency] = box, n: int = n) -> None:
                box.append(Latency())  # a disturbed batch is measured again, whole
                await _wait_batch(run, m, n, box[-1])

            t0 = time.perf_counter()
            await run.steady(f"1. {m.name}, round {r + 1}", batch)
            print(f"    {m.name}: {time.perf_counter() - t0:.1f} s", flush=True)
            got = box[-1]
            m.result.from_exit += got.from_exit
            m.result.from_die += got.from_die
            m.result.lag += got.lag
            m.result.errors += got.errors
            m.result.machines.update(got.machines)
        print(f"  1. round {r + 1}/{rounds} done", flush=True)
    await run.close_trackers()
    await run.cleanup(None)

    docker = next(m for m in methods if m.kind == "docker").result
    base = median(docker.from_exit)
    table = Table(
        f"1. Wait latency, sh -c 'sleep {SLEEP}' ({sizes.wait_jobs} jobs per method, batches of "
        f"{sizes.wait_batch}, methods in turn), ms",
        ["method", "n", "from exit: median", "p90", "max", "from die: median", "p90", "max",
         "median vs docker", "exit -> die median", "ran on"],
    )  # fmt: skip
    for m in methods:
        res = m.result
        ran = ", ".join(f"{k} {v}" for k, v in sorted(res.machines.items()))
        table.add(m.name, len(res.from_exit), *stats(res.from_exit), *stats(res.from_die),
                  fmt_ratio(ratio(median(res.from_exit), base)), fmt(median(res.lag)),
                  ran)  # fmt: skip
        for e in res.errors:
            run.report(f"1. {m.name}: {e}", harmless="(not timed)" in e)
    table.notes += [
        "from exit: the wait's return - the task container's State.FinishedAt on the node that "
        "ran it (the single engine's container for docker); from die: - that node's die "
        "event's timeNano; exit -> die: the engine's own lag between the two (containerd to "
        "dockerd), which no client can beat",
        "the poller-only rows other than 'on the manager's node' are on the worker nodes "
        f"({WORKERS}): the tracker follows the manager's own engine's container events, which "
        "are hints for the tasks the manager's node runs",
    ]
    reference = next(m for m in methods if m.kind == "probe").result.from_exit
    return [table], reference


# -- 2. calls on the manager ---------------------------------------------------------------------


@dataclass
class Window:
    seconds: float
    calls: Counter[str]
    bytes: Counter[str]
    micros: Counter[str]
    polls: int
    cpu: float  # process CPU seconds
    service_events: int  # in the whole swarm (anyone's)


async def _window(run: Run, tracker: DockerTracker, counter: CallCounter, seconds: float) -> Window:
    engine = swarm_engine(tracker)
    calls0, bytes0, micros0 = counter.snapshot()
    polls0, cpu0, t0 = engine.polls, time.process_time(), time.perf_counter()
    events0 = run.monitor.service_events
    await asyncio.sleep(seconds)
    calls1, bytes1, micros1 = counter.snapshot()
    return Window(time.perf_counter() - t0, calls1 - calls0, bytes1 - bytes0, micros1 - micros0,
                  engine.polls - polls0, time.process_time() - cpu0,
                  run.monitor.service_events - events0)  # fmt: skip


TASKS = "GET /tasks"


async def manager_calls(run: Run) -> tuple[list[Table], dict[str, float]]:
    sizes = run.sizes
    part = "calls"
    tracker = await run.tracker(part, "swarm", poll=0.1)
    counter = CallCounter()
    counter.attach(swarm_engine(tracker)._manager)
    rows: dict[str, list[Window]] = {}

    async def idle() -> None:
        rows.setdefault("no unfinished job", []).append(
            await _window(run, tracker, counter, sizes.calls_window)
        )

    await run.steady("2. no unfinished job", idle)
    # Long enough for every window (and a rerun of each), short if cleanup ever failed.
    budget = 60 + 2 * sizes.calls_reps * len(sizes.waits) * (sizes.calls_window + SETTLE + 1)
    jids: list[str] = []

    async def start_jobs() -> None:
        for jid in jids:
            with contextlib.suppress(Exception):
                await tracker.job_control(jid, "terminate")
        jids.clear()
        long_job = template(("sleep", str(int(budget))))
        jids.extend([await tracker.add_job(long_job) for _ in range(sizes.running_jobs)])
        for jid in jids:
            await tracker.wait(jid, JobState.RUNNING, timeout=60)

    await run.steady("2. start the running jobs", start_jobs)
    for rep in range(sizes.calls_reps):
        order = list(sizes.waits)
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for w in order:

            async def window(w: int = w) -> None:
                waits = [asyncio.create_task(tracker.wait(jids[i % len(jids)]))
                         for i in range(w)]  # fmt: skip
                try:
                    await asyncio.sleep(SETTLE)  # every wait registered
                    got = await _window(run, tracker, counter, sizes.calls_window)
                    early = [t for t in waits if t.done()]
                    if early:
                        run.issues.append(f"2. {len(early)} of {w} waits on running jobs "
                                          f"returned: {early[0].result()!r}")  # fmt: skip
                finally:
                    for t in waits:
                        t.cancel()
                    await asyncio.gather(*waits, return_exceptions=True)
                rows.setdefault(f"{w} pending waits on {len(jids)} running jobs", []).append(got)

            await run.steady(f"2. {w} waits", window)
    # Sample one poll's answer as the poller asks for it (its services, sorted).
    engine = swarm_engine(tracker)
    polled = sorted(engine._tracker.polled)
    status, body = await run.swarm.manager.call("GET", "tasks", params=_filters(service=polled))
    entries = len(json.loads(body)) if status == 200 else 0
    for jid in jids:  # terminate: the waits must end FAILED
        try:
            await tracker.job_control(jid, "terminate")
        except Exception as exc:
            run.issues.append(f"2. terminate {jid}: {type(exc).__name__}: {exc}")
    for jid in jids:
        try:
            state = await tracker.wait(jid, timeout=60)
            if state != JobState.FAILED:
                run.issues.append(f"2. terminated {jid}: wait returned {state} (not FAILED)")
        except Exception as exc:
            run.issues.append(f"2. terminated {jid}: wait: {type(exc).__name__}: {exc}")
    await run.cleanup(part)

    table = Table(
        f"2. Calls on the manager, SwarmTracker poller only (poll 0.1 s), windows of "
        f"{sizes.calls_window:g} s, median of {sizes.calls_reps}",
        ["situation", "calls/s", "GET /tasks/s", "engine polls/s", "ms per GET /tasks",
         "other calls/s", "swarm service events/s", "answer bytes/s", "bytes per GET /tasks",
         "client CPU %"],
    )  # fmt: skip
    per_poll: list[float] = []
    for name, windows in rows.items():

        def rate(pick: Callable[[Window], float], ws: list[Window] = windows) -> float:
            return median([pick(w) / w.seconds for w in ws])

        tasks_bytes = [w.bytes[TASKS] / w.calls[TASKS] for w in windows if w.calls[TASKS]]
        tasks_ms = [w.micros[TASKS] / w.calls[TASKS] / 1000 for w in windows if w.calls[TASKS]]
        per_poll += tasks_bytes
        table.add(
            name, fmt(rate(lambda w: sum(w.calls.values()))), fmt(rate(lambda w: w.calls[TASKS])),
            fmt(rate(lambda w: w.polls)), fmt(median(tasks_ms)) if tasks_ms else "-",
            fmt(rate(lambda w: sum(w.calls.values()) - w.calls[TASKS])),
            fmt(rate(lambda w: w.service_events)),
            fmt(rate(lambda w: sum(w.bytes.values())), 0),
            fmt(median(tasks_bytes), 0) if tasks_bytes else "-",
            fmt(100 * rate(lambda w: w.cpu)),
        )  # fmt: skip
    kinds, sizes_of, micros = Counter[str](), Counter[str](), Counter[str]()
    for windows in rows.values():
        for one in windows:
            kinds.update(one.calls)
            sizes_of.update(one.bytes)
            micros.update(one.micros)
    table.notes.append(
        "calls by kind over all windows (count, mean answer bytes, mean ms): "
        + (", ".join(f"{k} {v} ({sizes_of[k] / v:,.0f} B, {micros[k] / v / 1000:.1f} ms)"
                     for k, v in kinds.most_common()) or "none")
    )  # fmt: skip
    table.notes.append(
        "other calls are the tracker's reading of services it learns of from the manager's "
        "service events (create, update: they carry only a name), anyone's in the swarm"
    )
    table.notes.append(
        f"one poll's answer sampled raw: {len(body)} bytes, {entries} task entries for "
        f"{len(polled)} services ({fmt(len(body) / entries if entries else math.nan, 0)} "
        "bytes per entry)"
    )
    facts = {
        "bytes_per_poll": median(per_poll) if per_poll else float(len(body)),
        "entries_per_job": entries / len(polled) if polled else math.nan,
        "running_jobs": float(len(jids)),
    }
    return [table], facts


async def poll_cost(run: Run, sids: Sequence[str]) -> tuple[Table, dict[str, float]]:
    """One GET /tasks on the first N of these (finished) services, N from the sizes."""
    sizes = [n for n in run.sizes.cost_services if n <= len(sids)]
    times: dict[int, list[float]] = {n: [] for n in sizes}
    answer: dict[int, tuple[int, int]] = {}
    for rep in range(run.sizes.cost_reps):
        for n in sizes if rep % 2 == 0 else sizes[::-1]:
            params = _filters(service=list(sids[:n]))
            t0 = time.perf_counter()
            status, body = await run.swarm.manager.call("GET", "tasks", params=params)
            times[n].append((time.perf_counter() - t0) * 1000)
            if status == 200:
                answer[n] = (len(body), len(json.loads(body)))
    table = Table(
        f"2b. One GET /tasks against the services in its filter (finished jobs' services, "
        f"median of {run.sizes.cost_reps} calls, interleaved)",
        ["services in filter", "task entries", "answer bytes", "bytes per entry", "ms median",
         "ms p90"],
    )  # fmt: skip
    for n in sizes:
        size, entries = answer.get(n, (0, 0))
        table.add(n, entries, f"{size:,}", fmt(size / entries if entries else math.nan, 0),
                  fmt(median(times[n]), 2), fmt(percentile(times[n], 90), 2))  # fmt: skip
    a, b = fit_line([(float(n), median(times[n])) for n in sizes])
    a, b = max(a, 0.0), max(b, 0.0)  # noise on a loaded host can tilt it below zero
    _, eb = fit_line([(float(answer[n][1]), float(answer[n][0])) for n in sizes if n in answer])
    table.notes.append(f"fit: {a:.2f} ms + {b:.3f} ms per service; {eb:.0f} bytes per task entry")
    return table, {"call_ms_a": a, "call_ms_b": b, "bytes_per_entry": eb}


# -- 3. many jobs --------------------------------------------------------------------------------


@dataclass
class ManyResult:
    submit_s: float
    done_s: float
    states: Counter[str]
    machines: Counter[str]
    calls: Counter[str]  # calls on the manager by kind (Swarm)
    sids: list[str]


async def _many_once(run: Run, tracker: DockerTracker, candidate: str, n: int,
                     counter: CallCounter | None) -> ManyResult:  # fmt: skip
    tmpl = template(("true",), candidate)
    limit = asyncio.Semaphore(32)
    submitted: list[float] = []
    finished: list[float] = []
    states: Counter[str] = Counter()
    ids: list[str] = []
    calls0 = counter.calls.copy() if counter else Counter[str]()
    t0 = time.perf_counter()

    async def one() -> None:
        async with limit:
            jid = await tracker.add_job(tmpl)
        ids.append(jid)
        submitted.append(time.perf_counter())
        try:
            state = await tracker.wait(jid, timeout=600)
        except Exception as exc:
            run.issues.append(f"3. {jid}: wait: {type(exc).__name__}: {exc}")
            states["error"] += 1
            return
        finished.append(time.perf_counter())
        states[str(state)] += 1

    await asyncio.gather(*(one() for _ in range(n)))
    calls = (counter.calls - calls0) if counter else Counter[str]()
    machines: Counter[str] = Counter()
    if isinstance(tracker, SwarmTracker):
        for task in Swarm.run_tasks(await run.swarm.tasks(ids)).values():
            machines[run.swarm.hostnames.get(task.get("NodeID", ""), "?")] += 1
    else:
        machines["single engine"] = n
    return ManyResult(max(submitted) - t0, max(finished, default=math.nan) - t0, states,
                      machines, calls, ids)  # fmt: skip


async def many_jobs(run: Run) -> tuple[list[Table], list[str]]:
    sizes = run.sizes
    n = sizes.many_jobs
    swarm = await run.tracker("many", "swarm", poll=0.1, hints=True)
    polling = await run.tracker("many-poll", "swarm", poll=0.1)
    docker = await run.tracker("many-docker", "docker")
    counters: dict[int, CallCounter] = {}
    for t in (swarm, polling):
        counters[id(t)] = CallCounter()
        counters[id(t)].attach(swarm_engine(t)._manager)
    configs = [
        ("swarm, 3 nodes (node hints)", swarm, "", "many"),
        (f"swarm, 1 node ({ONE_NODE}, node hints)", swarm, ONE_NODE, "many"),
        ("swarm, 3 nodes, poller only", polling, "", "many-poll"),
        ("docker, DockerTracker on the single engine", docker, "", "many-docker"),
    ]
    results: dict[str, list[ManyResult]] = {c[0]: [] for c in configs}
    costs: list[tuple[Table, dict[str, float]]] = []  # 2b, on the first 3-node run's services
    for rep in range(sizes.many_reps):
        order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
        for name, tracker, candidate, part in order:
            box: list[ManyResult] = []

            async def once(tracker: DockerTracker = tracker, candidate: str = candidate,
                           part: str = part, box: list[ManyResult] = box,
                           first: bool = rep == 0) -> None:  # fmt: skip
                box.append(await _many_once(run, tracker, candidate, n,
                                            counters.get(id(tracker))))  # fmt: skip
                if first and tracker is swarm and not candidate:
                    costs.append(await poll_cost(run, box[-1].sids))
                await run.cleanup(part)

            await run.steady(f"3. {name}", once)
            results[name].append(box[-1])
            print(f"  3. {name}: {box[-1].done_s:.1f} s", flush=True)
    base = median([r.done_s for r in results[configs[-1][0]]])
    table = Table(
        f"3. {n} jobs 'true', submitted at most 32 at once, each waited from its add_job "
        f"(median of {sizes.many_reps})",
        ["configuration", "submit s", "jobs/s submitted", "all done s", "jobs/s done",
         "vs docker", "states", "placed on", "manager calls per job", "GET /tasks per job"],
    )  # fmt: skip
    for name, rs in results.items():
        last = rs[-1]
        done = median([r.done_s for r in rs])
        submit = median([r.submit_s for r in rs])
        per_job = median([sum(r.calls.values()) / n for r in rs]) if rs[0].calls else math.nan
        tasks_per_job = median([r.calls[TASKS] / n for r in rs]) if rs[0].calls else math.nan
        if last.calls:
            kinds = ", ".join(f"{k} {v / n:.2f}" for k, v in last.calls.most_common())
            table.notes.append(f"{name}: manager calls per job by kind: {kinds}")
        table.add(name, fmt(submit, 1), fmt(n / submit, 1), fmt(done, 1), fmt(n / done, 1),
                  fmt_ratio(ratio(done, base)),
                  ", ".join(f"{k} {v}" for k, v in sorted(last.states.items())),
                  ", ".join(f"{k} {v}" for k, v in sorted(last.machines.items())),
                  fmt(per_job, 2) if rs[0].calls else "-",
                  fmt(tasks_per_job, 2) if rs[0].calls else "-")  # fmt: skip
        for k, v in last.states.items():
            if k != "done":
                run.issues.append(f"3. {name}: {v} jobs ended {k}")
    tables = [table]
    facts_notes: list[str] = []
    if costs:
        tables.append(costs[-1][0])
        facts_notes = [json.dumps(costs[-1][1])]
    return tables, facts_notes


# -- 4. another session's burst -----------------------------------------------------------------


# The other session: a process of its own (a tracker in this one would share the event loop
# with the tracker measured), which opens its tracker, says "ready", and on a line on its stdin
# submits its burst, waits for every job and exits.
_BURST = """
import asyncio, json, sys
from aiotracker import JobTemplate, SwarmTracker

async def main(session, labels, n, manager, nodes, image, timeout):
    async with SwarmTracker(session, docker_url=manager, node_urls=nodes, labels=labels) as t:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        limit = asyncio.Semaphore(32)
        template = JobTemplate(job_category=image, remote_command="true")

        async def one():
            async with limit:
                job_id = await t.add_job(template)
            try:
                await t.wait(job_id, timeout=timeout)
            except Exception as exc:
                print(f"wait: {type(exc).__name__}: {exc}", flush=True)

        await asyncio.gather(*(one() for _ in range(n)))

asyncio.run(main(*json.loads(sys.argv[1])))
"""


@dataclass(frozen=True, slots=True)
class BurstSample:
    from_exit: float  # ms
    from_die: float  # ms
    manager: float  # ms from the exit until a raw GET /tasks showed the task ended
    polls: int  # the tracker's polls during the wait
    backlog: int  # the most services queued to learn at once


async def _burst_case(run: Run, tracker: DockerTracker, proc: asyncio.subprocess.Process | None,
                      box: list[BurstSample]) -> None:  # fmt: skip
    engine = swarm_engine(tracker)
    jid = await tracker.add_job(template(("sh", "-c", "sleep 2"), WORKERS))
    try:
        await tracker.wait(jid, JobState.RUNNING, timeout=run.sizes.wait_timeout)
    except Exception as exc:
        why = await diagnose(run, tracker, jid)
        run.report(f"4. {jid}: wait for RUNNING: {type(exc).__name__}: {exc}; {why}")
        return
    polls0, backlog = engine.polls, 0
    if proc is not None:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()

    async def wait() -> tuple[JobState, int]:
        state = await tracker.wait(jid, timeout=run.sizes.wait_timeout)
        return state, time.time_ns()

    waiting = asyncio.create_task(wait())
    seen = 0  # when a raw GET /tasks every 20 ms first showed the task ended
    while not waiting.done() or not seen:
        backlog = max(backlog, len(engine._tracker.to_learn)) if not waiting.done() else backlog
        if not seen:
            with contextlib.suppress(RuntimeError, aiohttp.ClientError, OSError):
                tasks = await run.swarm.manager.json("tasks", _filters(service=[jid]))
                last = Swarm.run_tasks(tasks).get(jid) or {}
                if (last.get("Status") or {}).get("State") in ENDED:
                    seen = time.time_ns()
        await asyncio.sleep(PROBE_EVERY)
    state, returned = waiting.result()
    if proc is not None:
        assert proc.stdout is not None
        async with asyncio.timeout(run.sizes.wait_timeout + 30):
            said = (await proc.stdout.read()).decode(errors="replace").strip()
            await proc.wait()
        if said or proc.returncode:
            run.notes.append(f"4. the other session's process ({proc.returncode}): {said[:300]}")
    if state != JobState.DONE:
        run.issues.append(f"4. {jid}: wait returned {state}")
    ex = (await swarm_exits(run.swarm, [jid])).get(jid)
    if ex is None or ex.finished_ns is None:
        run.issues.append(f"4. {jid}: no FinishedAt")
        return
    for _ in range(40):
        if ex.container_id in run.monitor.dies:
            break
        await asyncio.sleep(0.05)
    die = run.monitor.dies.get(ex.container_id)
    from_die = (returned - die) / 1e6 if die else math.nan
    manager = (seen - ex.finished_ns) / 1e6
    box.append(BurstSample((returned - ex.finished_ns) / 1e6, from_die, manager,
                           engine.polls - polls0, backlog))  # fmt: skip


async def _other_session(run: Run, n: int) -> asyncio.subprocess.Process:
    args = [run.session("burst-b"), run.labels("burst-b"), n, MANAGER, list(NODES), IMAGE,
            run.sizes.wait_timeout]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BURST, json.dumps(args), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = await proc.stdout.readline()
    if line.strip() != b"ready":
        proc.kill()
        raise RuntimeError(f"the other session's process said {line!r}")
    return proc


async def interference(run: Run) -> list[Table]:
    """One job waited by a tracker while another session's tracker (another process) submits a
    burst of jobs (each service create and update is an event every SwarmTracker reads the
    service of), against the same wait with no burst; poller only and with node hints."""
    sizes = run.sizes
    methods = [
        ("poller only, poll 0.1 s", await run.tracker("burst-a", "swarm", poll=0.1)),
        ("node hints, poll 0.1 s", await run.tracker("burst-h", "swarm", poll=0.1, hints=True)),
    ]
    rows: dict[tuple[str, int], list[BurstSample]] = {}
    for rep in range(sizes.burst_reps):
        cases = [(name, t, burst) for name, t in methods for burst in (0, sizes.burst_jobs)]
        if rep % 2:
            cases.reverse()
        for name, tracker, burst in cases:
            box: list[BurstSample] = []

            async def once(tracker: DockerTracker = tracker, burst: int = burst,
                           box: list[BurstSample] = box) -> None:  # fmt: skip
                proc = await _other_session(run, burst) if burst else None
                try:
                    await _burst_case(run, tracker, proc, box)
                finally:
                    if proc is not None and proc.returncode is None:
                        proc.kill()
                        await proc.wait()

            await run.steady(f"4. {name}, burst {burst}", once)
            if box:
                rows.setdefault((name, burst), []).append(box[-1])
            await run.cleanup("burst-b")
    await run.cleanup("burst-a")
    await run.cleanup("burst-h")
    table = Table(
        f"4. A wait while another session submits {sizes.burst_jobs} jobs (sh -c 'sleep 2' on "
        f"the workers, waited from RUNNING; median of {sizes.burst_reps})",
        ["tracker", "other session's burst", "from exit, ms", "from die, ms",
         "manager shows it ended, ms from exit", "polls during the wait",
         "most services queued to learn"],
    )  # fmt: skip
    for (name, burst), got in rows.items():
        table.add(name, f"{burst} jobs" if burst else "none",
                  fmt(median([g.from_exit for g in got])), fmt(median([g.from_die for g in got])),
                  fmt(median([g.manager for g in got])), fmt(median([g.polls for g in got]), 0),
                  fmt(median([g.backlog for g in got]), 0))  # fmt: skip
    table.notes += [
        "the poller's task learns of the swarm's service creates and updates (anyone's: a "
        "service event names no session) before its next GET /tasks",
        "manager shows it ended: a raw GET /tasks on the job's service every 20 ms meanwhile "
        "(the reference of 1.)",
    ]
    return [table]


# -- projection ----------------------------------------------------------------------------------


def projection(facts: dict[str, float], lag_ms: Sequence[float]) -> Table:
    """The manager's cost of one tracker's poller at 10 and 100 nodes, from the measured
    per-task costs: one GET /tasks per (poll_interval + its call time), filtered on the
    unfinished jobs."""
    per_entry = facts.get("bytes_per_entry", math.nan)
    per_job = facts.get("entries_per_job", 1.0)
    a, b = facts.get("call_ms_a", math.nan), facts.get("call_ms_b", math.nan)
    lag = median(lag_ms) if lag_ms else math.nan
    table = Table(
        "Projection: one tracker's poller (poll 0.1 s) with J unfinished jobs per node, "
        "from the measured costs",
        ["nodes", "jobs/node", "unfinished jobs", "call ms", "GET /tasks/s", "bytes per call",
         "MB/s from the manager", "poller-only latency from exit, ms (median est.)"],
    )  # fmt: skip
    for nodes in (3, 10, 100):
        for per_node in (4, 10):
            jobs = nodes * per_node
            call = a + b * jobs
            period = 0.1 + call / 1000
            size = jobs * per_job * per_entry
            table.add(nodes, per_node, jobs, fmt(call, 1), fmt(1 / period, 1), f"{size:,.0f}",
                      fmt(size / period / 1e6, 2),
                      fmt(lag + period * 1000 / 2 + call, 0))  # fmt: skip
    table.notes.append(
        f"call ms = {a:.2f} + {b:.3f} x unfinished jobs (2b's fit); {per_entry:.0f} bytes per "
        f"task entry, {per_job:.2f} entries per unfinished job; latency = manager lag "
        f"(reference row median, {lag:.0f} ms) + half a poll period + the call"
    )
    return table


# -- the run -------------------------------------------------------------------------------------


def _commit() -> str:
    """The commit the library was imported at (run at the start: the code is fixed then),
    and whether aiotracker/ differed from it."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", "-C", here, *args], capture_output=True, text=True,
                                 timeout=10, check=False)  # fmt: skip
        except OSError:
            return ""
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    return head + (" + uncommitted changes" if git("status", "--porcelain", "aiotracker") else "")


def _machine() -> str:
    cpus = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    load = os.getloadavg()
    return f"{cpus} vCPU, {mem:.0f} GiB, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


async def run_all(sizes: Sizes, token: str, only: set[int], markdown: str, commit: str) -> int:
    swarm = Swarm()
    monitor = Monitor(
        token, {**{f"n{i + 1}": swarm.nodes[u] for i, u in enumerate(NODES)},
                "docker": swarm.docker}, swarm.manager,
    )  # fmt: skip
    run = Run(sizes, token, swarm, monitor)
    tables: list[Table] = []
    facts: dict[str, float] = {}
    lag: list[float] = []
    failed = 0
    try:
        await swarm.ready()
        await monitor.start()

        async def one() -> None:
            t, reference = await wait_latency(run)
            tables.extend(t)
            lag.extend(reference)

        async def two() -> None:
            t, f = await manager_calls(run)
            tables.extend(t)
            facts.update(f)

        async def three() -> None:
            t, extra = await many_jobs(run)
            tables.extend(t)
            for text in extra:
                facts.update(json.loads(text))

        async def four() -> None:
            tables.extend(await interference(run))

        steps: list[tuple[int, Callable[[], Awaitable[None]]]] = [
            (1, one), (2, two), (3, three), (4, four)
        ]  # fmt: skip
        for number, step in steps:
            if number not in only:
                continue
            began, load = time.perf_counter(), os.getloadavg()[0]
            try:
                await step()
            except Exception:
                failed += 1
                traceback.print_exc()
            finally:
                await run.close_trackers()
            took = time.perf_counter() - began
            end_load = os.getloadavg()[0]
            run.notes.append(
                f"{number}. took {took:.0f} s, load average (1 min) {load:.1f} at its start, "
                f"{end_load:.1f} at its end"
            )
            print(f"  {number}. took {took:.0f} s", flush=True)
        if "bytes_per_entry" in facts:
            tables.append(projection(facts, lag))
    finally:
        await run.close_trackers()
        await monitor.stop()
        await swarm.close()
    title = f"Swarm benchmark ({sizes.mode}), token {token}, aiotracker at {commit}: {_machine()}"
    out = [title]
    out += [t.text() + "\n" for t in tables]
    out += ["Remarks and reruns:", *[f"  - {n}" for n in run.notes], ""]
    out += ["Possible library bugs:", *([f"  - {i}" for i in run.issues] or ["  none seen"])]
    print("\n".join(out), flush=True)
    if markdown:
        md = [title, ""]
        md += [t.markdown() + "\n" for t in tables]
        md += ["Remarks and reruns:", "", *[f"- {n}" for n in run.notes], ""]
        md += ["Possible library bugs:", "", *[f"- {i}" for i in run.issues or ["none seen"]]]
        with open(markdown, "w") as f:
            f.write("\n".join(md) + "\n")
    return 1 if failed else 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.swarm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="2-5 minutes (default)")
    mode.add_argument("--full", action="store_true", help="300 jobs, more samples: 12-20 min")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, about a minute")
    parser.add_argument("--only", default="1,2,3,4", help="which measurements (1,2,3,4)")
    parser.add_argument("--markdown", default="", help="also write the tables to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = FULL if args.full else SMOKE if args.smoke else QUICK
    only = {int(x) for x in args.only.split(",") if x.strip()}
    token = uuid.uuid4().hex[:12]
    commit = _commit()
    print(f"swarm benchmark, {sizes.mode}, token {token} (label {RUN_LABEL}={token}), "
          f"aiotracker at {commit}", flush=True)  # fmt: skip
    began = time.perf_counter()
    status = 0
    try:
        status = asyncio.run(run_all(sizes, token, only, args.markdown, commit))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        services, containers = cleanup_sync(token)
        print(f"cleanup: {services} services and {containers} containers removed; "
              f"{time.perf_counter() - began:.0f} s in all", flush=True)  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
