"""An in-memory engine that behaves like Docker 20.10, for driving the tracker in unit tests.

State changes and their events are synchronous (no await between them): a test steps a job's
life with the sync helpers (``exit``, ``write_output``, ``emit``, ...) and lets deliveries run
with ``await engine.drain()`` (or ``anyio.wait_all_tasks_blocked()``, which polls every 0.1 s on
asyncio). Races are forced with ``fail``, ``hold``, ``set_down``, ``cut_streams`` and
``cut_attach``; ``calls``, ``call_log``, ``open_streams`` and ``open_attaches`` count.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import itertools
import math
import re
import tarfile
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import IO, Any, Concatenate, NoReturn, ParamSpec, TypeAlias, TypeVar

import anyio
import anyio.lowlevel

from .._labels import is_container_id
from .base import (
    EVENT_ACTIONS,
    ContainerDetails,
    ContainerEvent,
    ContainerSummary,
    EngineCallError,
    EngineConnectionError,
    EngineInfo,
    OutputReader,
)
from .fake_client import FakeClient
from .fake_container import LIVE, FakeContainer, Frame, dt
from .faults import Faults, Gate, Pipe, Rule

P = ParamSpec("P")
T = TypeVar("T")
RING_SIZE = 256  # Docker's eventsLimit: the last 256 events, of every container


def _image_key(image: str) -> str:
    return image if ":" in image.rsplit("/", 1)[-1] or "@" in image else f"{image}:latest"


def _label_matches(label: str, attributes: Mapping[str, str]) -> bool:
    key, eq, value = label.partition("=")
    return key in attributes and (not eq or attributes[key] == value)


_Sync: TypeAlias = Callable[Concatenate["FakeEngine", P], T]
_Async: TypeAlias = Callable[Concatenate["FakeEngine", P], Coroutine[Any, Any, T]]


def _api(op: str) -> Callable[[_Sync[P, T]], _Async[P, T]]:
    """Make a sync state change an engine call: counted, faulted, held, refused when down."""

    def wrap(act: _Sync[P, T]) -> _Async[P, T]:
        signature, key = inspect.signature(act), "name" if op == "create" else "cid"

        @functools.wraps(act)
        async def call(self: FakeEngine, /, *args: P.args, **kwargs: P.kwargs) -> T:
            gate = await self._enter(op, signature.bind(self, *args, **kwargs).arguments.get(key))
            try:
                return act(self, *args, **kwargs)
            finally:
                if gate is not None:  # hold(after=True): acted (or failed), not returned yet
                    await gate._pass()

        return call

    return wrap


_Sub = tuple[tuple[str, ...], Pipe[ContainerEvent]]  # an event stream: its labels, its queue


class FakeEngine:
    """An in-memory ``Engine``: a deterministic clock, Docker's statuses, fault injection."""

    def __init__(
        self,
        *,
        host_name: str = "fake-host",
        images: Sequence[str] = ("aiotracker/busybox:latest",),
        api_version: str = "1.41",
        cpus: int = 4,
        memory_bytes: int = 8 << 30,
        architecture: str = "x86_64",
        scheduling: bool = False,
    ) -> None:
        self.host_name, self.images, self.api_version = host_name, set(images), api_version
        self.cpus, self.memory_bytes, self.architecture = cpus, memory_bytes, architecture
        self.clock_ns = 1_700_000_000 * 10**9
        self.calls: Counter[str] = Counter()
        self.call_log: list[tuple[str, str | None]] = []
        self.max_backlog = 0
        self.closed = self.down = False
        self._containers: dict[str, FakeContainer] = {}
        self._ring: deque[ContainerEvent] = deque(maxlen=RING_SIZE)
        self._subs: list[_Sub] = []
        self._faults = Faults()
        # The fake registry's images: image -> the X-Registry-Auth its pull needs (None: any).
        self.registry: dict[str, str | None] = {}
        self._serial = 0
        # A scheduling engine (as Swarm is): start only schedules; ``place`` runs the job.
        self.starts_at_once = not scheduling

    @property
    def url(self) -> str:
        """Where the engine is, for messages."""
        return "fake://"

    @property
    def open_streams(self) -> int:
        """Event streams currently connected."""
        return len(self._subs)

    @property
    def open_attaches(self) -> int:
        """Attach streams currently connected."""
        return sum(len(c.pipes) for c in self._containers.values())

    # -- test helpers --------------------------------------------------------------------------

    def container(self, ref: str) -> FakeContainer:
        """A container's state, by id, name or unique id prefix."""
        return self._resolve(ref)

    def fail(
        self, op: str, error: BaseException | None = None, *, times: int = 1,
        match: str | None = None,
    ) -> None:  # fmt: skip
        """Make the next ``times`` calls of ``op`` (about container ``match``) raise ``error``."""
        error = error if error is not None else EngineConnectionError("injected")
        self._add_rule(Rule(op, match, times, error=error))

    def hold(self, op: str, *, match: str | None = None, after: bool = False) -> Gate:
        """Block the next call of ``op`` before it acts (``after``: before it returns)."""
        gate = Gate()
        self._add_rule(Rule(op, match, 1, gate=gate, after=after))
        return gate

    def set_down(self, down: bool) -> None:
        """While down every call raises ``EngineConnectionError``; going down cuts all streams."""
        self.down = down
        if down:
            self._cut_all()

    def cut_streams(self) -> None:
        """Break every event stream: ``stream_events`` raises ``EngineConnectionError``."""
        for _, queue in self._subs:
            queue.end(cut=True)
        self._subs.clear()

    def cut_attach(self, cid: str) -> None:
        """Drop a container's attach streams: their readers return None at once."""
        self._end_pipes(self._resolve(cid), cut=True)

    def refuse_start(self, cid: str, status: int = 400, message: str = "") -> None:
        """Make the next start of a container fail, as a missing entrypoint does."""
        message = message or 'failed to create shim task: exec: "/nonexistent": no such file'
        self._resolve(cid).refusal = (status, message)

    def exit(self, cid: str, code: int = 0, *, oom: bool = False) -> None:
        """The container's process exits with ``code`` (OOM-killed first if ``oom``)."""
        container = self._resolve(cid)
        if container.status not in LIVE:
            raise ValueError(f"container {container.name} is {container.status}")
        self._die(container, code, oom=oom)

    def restart(self, cid: str) -> None:
        """The restart policy brings a restarting container back (a ``start`` event)."""
        container = self._resolve(cid)
        if container.status != "restarting":
            raise ValueError(f"container {container.name} is {container.status}")
        self._run(container)

    async def drain(self) -> None:
        """Let every event stream deliver what it holds (anyio's ``wait_all_tasks_blocked``
        polls every 0.1 s on asyncio; this only yields, at most 1000 times)."""
        for _ in range(1000):
            await anyio.lowlevel.checkpoint()
            if all(queue.idle() for _, queue in self._subs):
                return

    def write_output(self, cid: str, stream: int, data: bytes) -> None:
        """The container writes ``data`` to stdout (1) or stderr (2)."""
        container = self._resolve(cid)
        container.logs.append((stream, data))
        for pipe in container.pipes:
            pipe.put((stream, data))

    def emit(self, cid: str, action: str, **attributes: str) -> ContainerEvent:
        """Publish a raw event for a container (known or not) at the next clock time."""
        container = self._find(cid)
        if container is not None:
            attributes = {**container.labels, "name": container.name, "image": container.image,
                          **attributes}  # fmt: skip
            cid = container.id
        event = ContainerEvent(cid, action, self._tick(), attributes)
        self._ring.append(event)
        for entry in self._subs:
            self._offer(entry, event)
        return event

    # -- the Engine protocol (see ``base.Engine``) ----------------------------------------------

    def client(self) -> FakeClient:
        """A connection of its own to this engine, for one of several trackers."""
        return FakeClient(self)

    def is_job_id(self, text: str) -> bool:
        return is_container_id(text)

    async def open(self) -> EngineInfo:
        """Connect (again after ``aclose``): an ``info`` call."""
        self.closed = False
        try:
            return await self.info()
        except BaseException:
            self.closed = True
            raise

    async def aclose(self) -> None:
        """Cut every stream and refuse every call until ``open``."""
        self.calls["aclose"] += 1
        self.closed = True
        self._cut_all()

    @_api("info")
    def info(self) -> EngineInfo:
        """The engine's identity and clock."""
        return EngineInfo(
            self.host_name, self.clock_ns, self.api_version, cpus=self.cpus,
            memory_bytes=self.memory_bytes, architecture=self.architecture, os_type="linux",
            operating_system="aiotracker fake", kernel_version="6.1.0",
        )  # fmt: skip

    @_api("create")
    def create(self, config: Mapping[str, Any], name: str | None) -> str:
        """Create a container (``create`` event); returns its id."""
        image, host = str(config.get("Image") or ""), config.get("HostConfig") or {}
        if _image_key(image) not in {_image_key(i) for i in self.images}:
            raise EngineCallError(404, f"No such image: {image}")
        policy = str((host.get("RestartPolicy") or {}).get("Name") or "")
        if policy not in ("", "no") and host.get("AutoRemove"):
            raise EngineCallError(400, "can't create 'AutoRemove' container with restart policy")
        self._serial += 1
        container = FakeContainer(
            id=hashlib.sha256(f"fake-container-{self._serial}".encode()).hexdigest(),
            name=self._free_name(name) if name is not None else f"fake_{self._serial}",
            config=dict(config), labels=dict(config.get("Labels") or {}), image=image,
            restart_policy="" if policy == "no" else policy,
            auto_remove=bool(host.get("AutoRemove")), created=dt(self.clock_ns),
        )  # fmt: skip
        self._containers[container.id] = container
        container.created = dt(self._emit(container, "create"))
        return container.id

    @_api("start")
    def start(self, cid: str) -> None:
        """Start a created or exited container (``start``); a live one is a 304, not an error."""
        container = self._resolve(cid)
        if container.status in (*LIVE, "restarting") or container.scheduled:
            return
        if container.refusal is not None:  # no start, no die: the state stays created
            (status, message), container.refusal = container.refusal, None
            container.error, container.exit_code = message, 127
            self._end_pipes(container)  # Docker's Reset closes the streams: attaches end
            raise EngineCallError(status, message)
        if not self.starts_at_once:
            container.scheduled = True  # created still, as a Swarm job waits for a node
            return
        self._run(container)

    def place(self, cid: str) -> None:
        """A scheduling fake's scheduler runs a started job (its ``start`` event)."""
        container = self._resolve(cid)
        if not container.scheduled:
            raise ValueError(f"container {container.name} was not started")
        container.scheduled = False
        self._run(container)

    @_api("inspect")
    def inspect(self, cid: str) -> ContainerDetails:
        """A snapshot of a container's state (``hold(after=True)`` makes it stale)."""
        return self._resolve(cid).details()

    @_api("list_containers")
    def list_containers(
        self, label: str | None, *, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerSummary]:
        """Every container carrying ``label`` (``k`` or ``k=v``; None: all), newest first;
        ``filters`` as Docker's: ``id`` prefixes, ``name`` regular expressions searched in
        the name, ``status`` state words (an unknown filter is a 400, as Docker's)."""
        tests: dict[str, Callable[[FakeContainer, str], bool]] = {
            "id": lambda c, v: c.id.startswith(v),
            "name": lambda c, v: re.search(v, c.name) is not None,
            "status": lambda c, v: c.status == v,
        }
        for key in filters or {}:
            if key not in tests:
                raise EngineCallError(400, f"invalid filter '{key}'")
        return [
            c.summary() for c in reversed(self._containers.values())
            if (label is None or _label_matches(label, c.labels))
            and all(
                any(tests[key](c, v) for v in values) for key, values in (filters or {}).items()
            )
        ]  # fmt: skip

    @_api("cpu_usage_ns")
    def cpu_usage_ns(self, cid: str) -> int | None:
        """The CPU time a test gave the container (``container(cid).cpu_ns``), while it runs."""
        container = self._resolve(cid)
        return container.cpu_ns if container.status in LIVE and container.cpu_ns else None

    @_api("kill")
    def kill(self, cid: str) -> None:
        """SIGKILL: ``die`` with 137 (an "always" restart policy still brings it back)."""
        self._kill(self._resolve(cid))

    @_api("pause")
    def pause(self, cid: str) -> None:
        """Freeze a running container (``pause``)."""
        container = self._resolve(cid)
        if container.status == "paused":
            raise EngineCallError(409, f"Container {container.id} is already paused")
        if container.status != "running":
            raise EngineCallError(409, f"Container {container.id} is not running")
        container.status = "paused"
        self._emit(container, "pause")

    @_api("unpause")
    def unpause(self, cid: str) -> None:
        """Thaw a paused container (``unpause``)."""
        container = self._resolve(cid)
        if container.status != "paused":
            raise EngineCallError(500, f"Container {container.id} is not paused")
        container.status = "running"
        self._emit(container, "unpause")

    @_api("rename")
    def rename(self, cid: str, name: str) -> None:
        """Rename a container (``rename`` with ``oldName``)."""
        container = self._resolve(cid)
        if name.removeprefix("/") == container.name:
            raise EngineCallError(
                400, "Renaming a container with the same name as its current name"
            )
        old, container.name = container.name, self._free_name(name)
        self._emit(container, "rename", oldName=f"/{old}")

    @_api("disable_restart")
    def disable_restart(self, cid: str) -> None:
        """Set the restart policy to "no" (an ``update`` event, filtered out by the tracker)."""
        container = self._resolve(cid)
        container.restart_policy = ""
        self._emit(container, "update")

    @_api("remove")
    def remove(self, cid: str, *, force: bool = False) -> None:
        """Remove a container (``destroy``); ``force`` kills a live one first."""
        container = self._resolve(cid)
        if container.status in (*LIVE, "restarting"):
            if not force:
                raise EngineCallError(
                    409, f"You cannot remove a {container.status} container {container.id}. "
                    "Stop the container before attempting removal or force remove",
                )  # fmt: skip
            container.restart_policy = ""
            self._kill(container)
        if container.id in self._containers:  # not auto-removed already
            self._destroy(container)

    @_api("image_tags")
    def image_tags(self) -> list[str]:
        """The image tags present."""
        return sorted(self.images)

    @_api("image_present")
    def image_present(self, image: str) -> bool:
        return _image_key(image) in {_image_key(i) for i in self.images}

    async def pull(
        self, image: str, auth: str | None, progress: Callable[[Mapping[str, Any]], None]
    ) -> None:
        """Pull from the fake registry (``registry``: image -> the X-Registry-Auth it wants,
        or None for anyone): a progress message per step, then the image is present."""
        gate = await self._enter("pull", image)
        key = _image_key(image)
        if key not in self.registry:
            raise EngineCallError(404, f"manifest for {key} not found: manifest unknown")
        wanted = self.registry[key]
        if wanted is not None and auth != wanted:
            raise EngineCallError(500, f"Head {key}: no basic auth credentials")
        if gate is not None:
            await gate._pass()
        for status, current in (("Pulling fs layer", 0), ("Downloading", 512),
                                ("Pull complete", 1024)):  # fmt: skip
            await anyio.lowlevel.checkpoint()
            progress({"status": status, "id": "layer1",
                      "progressDetail": {"current": current, "total": 1024}})  # fmt: skip
        self.images.add(key)

    async def stream_events(
        self,
        labels: Sequence[str],
        since_ns: int | None,
        on_connected: Callable[[], None],
        on_event: Callable[[ContainerEvent], None],
    ) -> NoReturn:
        """Replay the ring from ``since_ns`` (inclusive), call ``on_connected``, then go live."""
        gate = await self._enter("stream_events", None)
        entry = (tuple(labels), Pipe[ContainerEvent]())
        since = since_ns if since_ns is not None else math.inf  # no since: no replay
        replay = sum(self._offer(entry, past) for past in self._ring if past.time_ns >= since)
        self._subs.append(entry)  # in the same step as the replay: no gap, no duplicate
        try:
            if gate is not None:
                await gate._pass()
            for delivered in itertools.count():
                if delivered == replay and not entry[1].cut:
                    on_connected()
                if (event := await entry[1].get()) is None:
                    break
                on_event(event)
        finally:
            if entry in self._subs:
                self._subs.remove(entry)
            entry[1].close()
        raise EngineConnectionError(self._why("the event stream was cut"))

    @asynccontextmanager
    async def attach_output(self, cid: str, *, logs: bool = False) -> AsyncIterator[OutputReader]:
        """Attach to stdout and stderr until the container exits; ``logs`` replays first."""
        async with self._follow("attach_output", cid, replay=logs) as read:
            yield read

    @asynccontextmanager
    async def _follow(self, op: str, cid: str, *, replay: bool) -> AsyncIterator[OutputReader]:
        """A stream of what the container writes from now (its log first if ``replay``),
        until it exits."""
        gate = await self._enter(op, cid)
        container, pipe = self._resolve(cid), Pipe[Frame]()
        try:
            for frame in container.logs if replay else ():
                pipe.put(frame)
            if container.status in ("created", *LIVE):
                container.pipes.append(pipe)
            else:
                pipe.end()
            if gate is not None:
                await gate._pass()
            yield pipe.get
        finally:
            if pipe in container.pipes:
                container.pipes.remove(pipe)
            pipe.close()

    @asynccontextmanager
    async def read_logs(self, cid: str, *, follow: bool = False) -> AsyncIterator[OutputReader]:
        """What the container wrote so far, then None; ``follow``: then what it writes, until
        it exits (the fake's log never lags its attach streams)."""
        if follow:
            async with self._follow("read_logs", cid, replay=True) as read_on:
                yield read_on
            return
        gate = await self._enter("read_logs", cid)
        frames = iter(list(self._resolve(cid).logs))
        if gate is not None:
            await gate._pass()

        async def read() -> Frame | None:
            await anyio.lowlevel.checkpoint()
            return next(frames, None)

        yield read

    @asynccontextmanager
    async def hold_stdin(self, cid: str) -> AsyncIterator[None]:
        """Hold the container's stdin: when released (or cut), a ``cat`` in it exits 0."""
        gate = await self._enter("hold_stdin", cid)
        container = self._resolve(cid)
        container.stdin_holders += 1
        try:
            if gate is not None:
                await gate._pass()
            yield
        finally:
            container.stdin_holders -= 1
            self._stdin_closed(container)

    def drop_stdin(self, cid: str) -> None:
        """The holder of the container's stdin vanished (its process was killed)."""
        container = self._resolve(cid)
        container.stdin_holders = 0
        self._stdin_closed(container)

    def _stdin_closed(self, container: FakeContainer) -> None:
        config = container.config
        if (
            container.stdin_holders == 0 and config.get("OpenStdin") and config.get("StdinOnce")
            and container.status in LIVE and container.id in self._containers
        ):  # fmt: skip
            self._die(container, 0)

    def write_file(self, cid: str, path: str, data: bytes) -> None:
        """The job writes a file in its container (what ``copy_out`` can read)."""
        self._resolve(cid).files[path] = data

    async def copy_out(self, cid: str, path: str, write: Callable[[bytes], object]) -> None:
        """The tar of a file or a directory of the container (``write_file``), in 3 chunks."""
        gate = await self._enter("copy_out", cid)
        container = self._resolve(cid)
        path = path.rstrip("/") or "/"
        root = path.rsplit("/", 1)[-1]
        inside = {p: d for p, d in container.files.items() if p.startswith(path + "/")}
        if path not in container.files and not inside:
            raise EngineCallError(404, f"Could not find the file {path} in container {cid}")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            entries = {root: container.files[path]} if path in container.files else {
                f"{root}{p[len(path):]}": d for p, d in sorted(inside.items())
            }  # fmt: skip
            for name, data in entries.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        if gate is not None:
            await gate._pass()
        body = buffer.getvalue()
        third = len(body) // 3 + 1
        for start in range(0, len(body), third):
            await anyio.lowlevel.checkpoint()
            write(body[start : start + third])

    async def feed_stdin(self, cid: str, source: IO[bytes]) -> None:
        """Read all of ``source`` into the container's ``stdin``."""
        gate = await self._enter("feed_stdin", cid)
        self._resolve(cid).stdin += source.read()
        if gate is not None:
            await gate._pass()

    # -- machinery -----------------------------------------------------------------------------

    def _add_rule(self, rule: Rule) -> None:
        self._faults.add(rule)

    def _why(self, default: str) -> str:
        return "engine closed" if self.closed else "engine down" if self.down else default

    async def _enter(self, op: str, target: str | None) -> Gate | None:
        """Count the call, apply the first rule that matches it, check that the engine is up."""
        self.calls[op] += 1
        self.call_log.append((op, target))
        await anyio.lowlevel.checkpoint()
        gate = await self._faults.enter(op, lambda match: self._about(match, target))
        if self.closed or self.down:
            raise EngineConnectionError(self._why(""))
        return gate

    def _about(self, match: str | None, target: str | None) -> bool:
        if match is None or match == target:
            return True
        container = self._find(target) if target is not None else None
        return container is not None and match in (container.id, container.name)

    def _find(self, ref: str) -> FakeContainer | None:
        try:
            return self._resolve(ref)
        except EngineCallError:
            return None

    def _resolve(self, ref: str) -> FakeContainer:
        """Docker's lookup: exact id, then exact name, then unique id prefix."""
        if ref in self._containers:
            return self._containers[ref]
        for container in self._containers.values():
            if container.name == ref.removeprefix("/"):
                return container
        hits = [c for cid, c in self._containers.items() if ref and cid.startswith(ref)]
        if len(hits) > 1:
            raise EngineCallError(500, f"multiple IDs found with provided prefix: {ref}")
        if not hits:
            raise EngineCallError(404, f"No such container: {ref}")
        return hits[0]

    def _free_name(self, name: str) -> str:
        name = name.removeprefix("/")
        for other in self._containers.values():
            if other.name == name:
                raise EngineCallError(
                    409, f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{other.id}". You have to remove (or rename) that container to be able to '
                    "reuse that name.",
                )  # fmt: skip
        return name

    def _cut_all(self) -> None:
        self.cut_streams()
        for container in self._containers.values():
            self._end_pipes(container, cut=True)

    def _end_pipes(self, container: FakeContainer, *, cut: bool = False) -> None:
        for pipe in container.pipes:
            pipe.end(cut=cut)
        container.pipes.clear()

    def _tick(self) -> int:
        self.clock_ns += 1000
        return self.clock_ns

    def _offer(self, sub: _Sub, event: ContainerEvent) -> bool:
        if event.action not in EVENT_ACTIONS:
            return False
        if not all(_label_matches(label, event.attributes) for label in sub[0]):
            return False
        self.max_backlog = max(self.max_backlog, sub[1].put(event))
        return True

    def _emit(self, container: FakeContainer, action: str, **extra: str) -> int:
        return self.emit(container.id, action, **extra).time_ns

    def _run(self, container: FakeContainer) -> None:
        container.started_at = dt(self._emit(container, "start"))
        container.status, container.exit_code, container.error = "running", 0, ""
        container.oom_killed = False

    def _die(self, c: FakeContainer, code: int, *, oom: bool = False, kill: bool = False) -> None:
        if oom:
            c.oom_killed = True
            self._emit(c, "oom")
        policy = c.restart_policy  # Docker's restart manager: "always" restarts even a kill
        restart = policy == "always" or (policy == "unless-stopped" and not kill)
        restart = restart or (policy == "on-failure" and code != 0)
        c.status, c.exit_code = "restarting" if restart else "exited", code
        c.finished_at = dt(self._emit(c, "die", exitCode=str(code)))
        self._end_pipes(c)
        if c.auto_remove:
            self._destroy(c)

    def _destroy(self, container: FakeContainer) -> None:
        self._end_pipes(container)
        self._emit(container, "destroy")
        del self._containers[container.id]

    def _kill(self, container: FakeContainer) -> None:
        if container.status == "restarting":
            container.status = "exited"  # the restart is cancelled; die was already sent
        elif container.status in LIVE:
            self._emit(container, "kill", signal="9")
            self._die(container, 137, kill=True)
        else:
            raise EngineCallError(409, f"Container {container.id} is not running")
