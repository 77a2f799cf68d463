"""What every measurement shares: the run, sizes, statistics, tables, goals, probes, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import os
import re
import shutil
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiodocker

from aiotracker._labels import LEASE_LABEL

IMAGE = os.environ.get("AIOTRACKER_BENCH_IMAGE", "aiotracker/busybox:latest")
DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_URL = f"unix://{DOCKER_SOCKET}"
# scripts/podman-engine.sh's socket (the same variable moves it).
PODMAN_SOCKET = os.environ.get("AIOTRACKER_PODMAN_SOCKET", "/run/podman-test/podman.sock")
RUN_LABEL = "aiotracker.bench-run"  # every container of a run carries it: cleanup by label
# Every job of a run has no network, disabled (Config.NetworkDisabled): Docker 20.10.24's
# network controller can deadlock when containers on one network end together
# (moby/moby#42545); a disabled network has no sandbox or endpoint (docs/template.md).
NO_NETWORK = {"network-disabled": "true"}
PART_LABEL = "aiotracker.bench-part"  # which measurement made it
# drmaa2os's session label, which aiotracker shares: containers made raw with it are jobs of
# that session for a tracker opened on it.
SESSION_LABEL = "drmaa2_jobsession"


# -- the engine ----------------------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


@dataclass(frozen=True, slots=True)
class Engine:
    """The engine a run talks to (``--engine``): every client of the run uses its socket."""

    name: str  # "docker" or "podman"
    socket: str

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def podman(self) -> bool:
        return self.name == "podman"

    def log_driver(self, driver: str | None) -> str | None:
        """The log driver a create body asks for: Podman refuses ``local`` (a 500 "invalid
        log driver"); aiotracker asks it for ``k8s-file`` instead, and so do the raw bodies."""
        return "k8s-file" if self.podman and driver == "local" else driver

    def cli(self, *args: str) -> list[str]:
        """A docker CLI command line aimed at this engine (``-H``: no context, no DOCKER_HOST)."""
        return ["docker", "-H", self.url, *args]

    def get(self, path: str, timeout: float = 10.0) -> Any:
        """``GET path`` on the engine's socket, the JSON answer; None if it does not answer."""
        conn = _UnixHTTPConnection(self.socket, timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            return json.loads(body) if response.status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def describe(self) -> str:
        """``Docker Engine 20.10.24 (API 1.41), cgroup v1, default log driver json-file``."""
        version = self.get("/version") or {}
        info = self.get("/info") or {}
        names = [str((c or {}).get("Name") or "") for c in version.get("Components") or ()]
        product = next((n for n in names if "podman" in n.lower()), "Docker Engine")
        driver = info.get("LoggingDriver") or ""
        if not driver and self.podman:  # the compat /info leaves it empty; libpod's says it
            driver = ((self.get("/v4.0.0/libpod/info") or {}).get("host") or {}).get(
                "logDriver", ""
            )
        if not version:
            return f"{self.name} at {self.socket}: NOT ANSWERING"
        return (
            f"{product} {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}), "
            f"cgroup v{info.get('CgroupVersion', '?')}, default log driver {driver or '?'}"
        )


DOCKER = Engine("docker", DOCKER_SOCKET)
PODMAN = Engine("podman", PODMAN_SOCKET)
ENGINES = {e.name: e for e in (DOCKER, PODMAN)}


# -- sizes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each measurement is; ``QUICK`` runs them all in about 3 minutes, ``SMOKE``
    (every measurement at a tiny size, to prove it still runs) in under a minute."""

    mode: str
    wait_jobs: int  # 1: jobs per method (rounds of 10)
    idle_jobs: int  # 2, 3: running jobs (above 100 to show aiodocker's pool limit)
    idle_seconds: float  # 2: the idle window
    query_seconds: float  # 3: how long each query loop runs
    submit_jobs: int  # 4
    submit_reps: int  # 4: interleaved repetitions, median reported
    array_tasks: int  # 5: unbounded array
    array_reps: int  # 5: interleaved repetitions of the unbounded array, median reported
    bounded_tasks: int  # 5: max_parallel 5, 0.5 s tasks
    output_bytes: int  # 6
    output_reps: int  # 6: interleaved repetitions, median reported
    scale_jobs: tuple[int, ...]  # 7: cache sizes (cumulative)
    open_jobs: int  # 7: open a tracker on a session of this many jobs
    many_jobs: int  # 8: pending jobs on the fake engine
    many_wait_cap: int  # 8: at most this many for the (quadratic) asyncio.wait loop
    many_real_jobs: int  # 8: held jobs on the real engine (0: none)
    many_rounds: int  # 8: interleaved rounds, median reported
    burst_jobs: int  # 1: jobs per method made to exit at the same moment
    cost_jobs: int  # 9: jobs per method and round
    cost_rounds: int  # 9: interleaved rounds, median reported
    settle: float = 1.0  # scales the fixed pauses (settling, trailing windows); smoke: shorter
    open_runs: int = 3  # 7: open() is timed in this many fresh processes, median reported
    engines_wait_jobs: int = 10  # 11: jobs per engine (rounds of 10)
    engines_submit_jobs: int = 10  # 11: jobs per engine, method and mode
    engines_reps: int = 1  # 11: interleaved submission rounds, median reported


QUICK = Sizes(
    mode="quick", wait_jobs=10, idle_jobs=104, idle_seconds=2.0, query_seconds=0.5,
    submit_jobs=10, submit_reps=1, array_tasks=8, array_reps=1, bounded_tasks=10,
    output_bytes=4 * 2**20, output_reps=1, scale_jobs=(40, 80), open_jobs=40,
    many_jobs=1000, many_wait_cap=1000, many_real_jobs=25, many_rounds=1,
    burst_jobs=40, cost_jobs=10, cost_rounds=1,
    engines_wait_jobs=10, engines_submit_jobs=10, engines_reps=1,
)  # fmt: skip
FULL = Sizes(
    mode="full", wait_jobs=50, idle_jobs=200, idle_seconds=10.0, query_seconds=3.0,
    submit_jobs=50, submit_reps=3, array_tasks=50, array_reps=3, bounded_tasks=25,
    output_bytes=20 * 2**20, output_reps=3, scale_jobs=(1000, 10_000), open_jobs=1000,
    many_jobs=10_000, many_wait_cap=10_000, many_real_jobs=150, many_rounds=3,
    burst_jobs=500, cost_jobs=50, cost_rounds=3,
    engines_wait_jobs=30, engines_submit_jobs=50, engines_reps=2,
)  # fmt: skip
# Every measurement at a tiny size: proves the benchmarks still run (CI), measures nothing.
SMOKE = Sizes(
    mode="smoke", wait_jobs=2, idle_jobs=4, idle_seconds=0.3, query_seconds=0.1,
    submit_jobs=2, submit_reps=1, array_tasks=2, array_reps=1, bounded_tasks=2,
    output_bytes=64 * 2**10, output_reps=1, scale_jobs=(3, 6), open_jobs=3,
    many_jobs=200, many_wait_cap=200, many_real_jobs=3, many_rounds=1,
    burst_jobs=3, cost_jobs=2, cost_rounds=1, settle=0.3, open_runs=1,
    engines_wait_jobs=2, engines_submit_jobs=2, engines_reps=1,
)  # fmt: skip


# -- the run -------------------------------------------------------------------------------


@dataclass
class Context:
    """One benchmark run: its token (on every container), sizes and scratch directory."""

    sizes: Sizes
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    workdir: Path = Path()
    observer: Any = None  # observer.Observer, set by the runner
    engine: Engine = DOCKER

    def __post_init__(self) -> None:
        if self.workdir == Path():
            self.workdir = Path(f"/tmp/aiotracker-bench-{self.token}")

    def labels(self, part: str) -> dict[str, str]:
        return {RUN_LABEL: self.token, PART_LABEL: part}

    def session(self, part: str) -> str:
        return f"bench-{self.token}-{part}"

    def scratch(self, name: str) -> Path:
        """A fresh directory under the run's scratch directory (world-writable for jobs)."""
        path = self.workdir / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        path.chmod(0o777)
        return path


def raw_config(
    ctx: Context,
    part: str,
    command: Sequence[str],
    *,
    binds: dict[str, str] | None = None,
    session: str | None = None,
    log_driver: str | None = "local",
) -> dict[str, Any]:
    """A create body like aiotracker's (log driver ``local``, no network: disabled, as the
    benchmark's jobs ask aiotracker with ``network-disabled``), minus its labels.

    On Podman, ``local`` becomes ``k8s-file``, as aiotracker's own bodies do there.
    """
    labels = ctx.labels(part)
    if session is not None:
        labels[SESSION_LABEL] = session
    host: dict[str, Any] = {"NetworkMode": "none"}
    log_driver = ctx.engine.log_driver(log_driver)
    if log_driver is not None:
        host["LogConfig"] = {"Type": log_driver, "Config": {}}
    if binds:
        host["Binds"] = [f"{src}:{dst}" for src, dst in binds.items()]
    return {
        "Image": IMAGE,
        "Cmd": list(command),
        "Labels": labels,
        "Tty": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "NetworkDisabled": True,
        "HostConfig": host,
    }


async def raw_run(docker: aiodocker.Docker, config: dict[str, Any]) -> str:
    """Create and start, nothing else: the engine's own cost of a job."""
    container = await docker.containers.create(config)
    await container.start()
    return str(container.id)


async def bounded(n: int, coros: Iterable[Any]) -> list[Any]:
    """Run coroutines with at most ``n`` in flight, results in order."""
    limit = asyncio.Semaphore(n)

    async def one(coro: Any) -> Any:
        try:
            async with limit:
                return await coro
        finally:
            coro.close()  # never started if cancelled while queued: no "never awaited"

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def remove_containers(ctx: Context, part: str | None = None) -> int:
    """Force-remove the run's containers (of one measurement, or all); returns how many.

    Between the rounds of one measurement (``part`` given) the trackers' lease containers
    stay: the trackers are still open and hold them (removing them would make every round pay
    for a new lease, which no user's tracker does); the run's end removes them too.
    """
    label = f"{RUN_LABEL}={ctx.token}"
    filters: dict[str, list[str]] = {"label": [label]}
    if part is not None:
        filters["label"].append(f"{PART_LABEL}={part}")
    async with aiodocker.Docker(url=ctx.engine.url) as docker:
        found = await docker.containers.list(all=True, filters=json.dumps(filters))
        if part is not None:
            found = [c for c in found if LEASE_LABEL not in (c["Labels"] or {})]

        async def rm(container: Any) -> None:
            with contextlib.suppress(aiodocker.DockerError):
                await container.delete(force=True, v=True)

        await bounded(16, (rm(c) for c in found))
    return len(found)


def remove_containers_sync(token: str, engine: Engine) -> int:
    """Last-resort cleanup with docker-py (no event loop needed): on error and Ctrl-C."""
    import docker  # the benchmark's own dependency (pyproject: bench extra)

    client = docker.DockerClient(base_url=engine.url)
    try:
        found = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={token}"})
        for container in found:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True, v=True)
        return len(found)
    finally:
        client.close()


# -- statistics ----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median of the values that are not NaN (a run that could not be timed)."""
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 50 samples is the largest; of 250, the third largest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> float:
    if not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}{unit}"


def fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


# -- tables and goals ----------------------------------------------------------------------


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        out = [self.title, line(self.columns), line(["-" * w for w in widths])]
        out += [line(r) for r in self.rows]
        out += [f"  * {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |"]
        out.append("|" + "|".join("---" for _ in self.columns) + "|")
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out)


@dataclass(frozen=True)
class Goal:
    text: str
    met: bool | None  # None: could not be judged (a method failed)
    value: str

    def mark(self) -> str:
        return {True: "MET", False: "NOT MET", None: "UNKNOWN"}[self.met]

    def line(self) -> str:
        return f"[{self.mark()}] {self.text}: {self.value}"


@dataclass
class Section:
    """The result of one measurement: tables, goals and the headline ratios."""

    number: int
    title: str
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    headlines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def text(self) -> str:
        out = [f"=== {self.number}. {self.title} ({self.seconds:.0f} s) ==="]
        out += [t.text() + "\n" for t in self.tables]
        out += [g.line() for g in self.goals]
        return "\n".join(out) + "\n"

    def markdown(self) -> str:
        out = [f"## {self.number}. {self.title}", "", f"({self.seconds:.0f} s)", ""]
        for t in self.tables:
            out += [t.markdown(), ""]
        if self.goals:
            out += ["| goal | result | figure |", "|---|---|---|"]
            out += [f"| {g.text} | **{g.mark()}** | {g.value} |" for g in self.goals]
            out.append("")
        return "\n".join(out)


def goal(text: str, met: bool | None, value: str) -> Goal:
    return Goal(text, met, value)


# -- process probes ------------------------------------------------------------------------


def _peer_paths(engine: Engine) -> set[str]:
    return {engine.socket, os.path.realpath(engine.socket)}


def engine_connections(engine: Engine) -> int:
    """Unix sockets of this process connected to the engine's socket.

    Each fd of /proc/self/fd that is a socket is dup'ed and asked for its peer: a client
    socket connected to dockerd (or Podman's service) reports the path the engine bound (its
    /proc/net/unix entry has no path, only the server's end has). Counts docker-py's sockets
    in threads too.
    """
    peers = _peer_paths(engine)
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            dup = os.dup(int(name))
        except OSError:
            continue  # closed meanwhile
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        try:
            if sock.family == socket.AF_UNIX and sock.getpeername() in peers:
                count += 1
        except OSError:
            pass
        finally:
            sock.close()
    return count


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Samples this process's RSS every ``interval`` s in a thread; ``peak`` is the highest."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.baseline = rss_bytes()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def _processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process this one can read."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\x00")
        except OSError:
            continue
        if argv and argv[0]:
            yield int(entry), argv


def _engine_pid(engine: Engine) -> int | None:
    """dockerd (or ``podman system service``) serving the engine's socket (other engines may
    run on this host)."""
    if engine.podman:
        return _podman_pid(engine)
    for pid, argv in _processes():
        if os.path.basename(argv[0]) != "dockerd":
            continue
        hosts = [a.split("=", 1)[1] for a in argv if a.startswith(("--host=", "-H="))]
        hosts += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--host", "-H")]
        if not hosts or any(h.endswith(engine.socket) for h in hosts):
            return pid
    return None


def _podman_pid(engine: Engine) -> int | None:
    """``podman [options] system service [--time=0] unix://SOCKET``: the oldest such process.

    The service forks for every conmon it runs; until the child execs, it shows the service's
    command line (seen here, under load): the oldest match is the service itself.
    """
    found: list[tuple[int, int]] = []  # (start time in ticks, pid)
    for pid, argv in _processes():
        if not (
            os.path.basename(argv[0]) == "podman"
            and "service" in argv
            and any(a.endswith(engine.socket) for a in argv)
        ):
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                found.append((int(f.read().rsplit(")", 1)[1].split()[19]), pid))
        except (OSError, IndexError, ValueError):
            continue
    return min(found)[1] if found else None


def engine_cpu_seconds(engine: Engine) -> float | None:
    """CPU seconds the engine's server process has used (user + system); None if it cannot be
    found. On Podman that is the API service only: each container's conmon and its
    ``podman container cleanup`` are processes of their own, not counted."""
    pid = _engine_pid(engine)
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...``, then ``t[0]`` holds the seconds."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


def ms(ns: float) -> float:
    return ns / 1e6


def write_fifo(path: Path, data: bytes = b"go\n", patience: float = 5.0) -> None:
    """Write to a FIFO whose reader is a job; retry while the job has not opened it yet."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)
            continue
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return


# -- the job's exit, as the engine recorded it ---------------------------------------------

_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def go_time_ns(text: str) -> int | None:
    """A Go RFC3339Nano time (``2026-11-23T19:08:12.382892312Z``, Docker's ``FinishedAt``) as
    Unix ns, exactly (``datetime`` keeps only µs); None for Go's zero time or no time."""
    match = _GO_TIME.match(text or "")
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    if moment.year <= 1:
        return None
    return int(moment.timestamp()) * 10**9 + int((fraction or "").ljust(9, "0"))


async def exit_times(ctx: Context, ids: Sequence[str]) -> dict[str, int]:
    """Each container's ``State.FinishedAt`` (Unix ns), read by inspect; a container that
    cannot be inspected, or has not finished, is left out."""
    async with aiodocker.Docker(url=ctx.engine.url) as docker:

        async def one(cid: str) -> tuple[str, int | None]:
            try:
                state = (await docker.containers.container(cid).show())["State"]
            except aiodocker.DockerError:
                return cid, None
            return cid, go_time_ns(str(state.get("FinishedAt") or ""))

        found = await bounded(16, (one(c) for c in ids))
    return {cid: ns for cid, ns in found if ns is not None}
