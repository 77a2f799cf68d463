"""The engine boundary: what the tracker needs from a container engine, and nothing more.

``Engine`` is a ``Protocol``: the Docker implementation (``_engine.docker``) and the in-memory
fake (``_engine.fake``) both satisfy it, and the tracker is written against it only. Records are
typed and frozen; engine errors are two private exception types that say *what the engine
answered* (``EngineCallError``, with its HTTP status) or that *it could not be reached*
(``EngineConnectionError``). Which aiotracker exception that becomes is policy, decided once,
in ``_errors``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, NoReturn, Protocol

# The container actions that can change a job's state; the rest (exec_*, health_status,
# attach, kill, ...) would only be noise on the stream.
EVENT_ACTIONS = ("create", "start", "die", "oom", "pause", "unpause", "rename", "destroy")


class EngineCallError(Exception):
    """The engine answered a call with an error status (``status`` is the HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class EngineConnectionError(Exception):
    """The engine could not be reached, the connection broke, a call timed out, or a stream
    ended (an event stream never ends on its own)."""


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """Who the engine is, and its clock (``since`` is compared with the engine's clock)."""

    host_name: str
    system_time_ns: int
    api_version: str
    product: str = "docker"  # "docker" or "podman": where their APIs differ, the boundary adapts
    version: str = ""  # the engine's own version ("20.10.24", "4.3.1")
    # The machine it runs on, as ``GET /info`` tells (a monitoring session's ``Machine``).
    cpus: int = 0  # NCPU: the engine tells no sockets or threads
    memory_bytes: int = 0  # MemTotal
    architecture: str = ""  # as uname -m says: x86_64, aarch64
    os_type: str = ""  # linux, windows
    operating_system: str = ""  # "Debian GNU/Linux 12 (bookworm)"
    kernel_version: str = ""


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """One container event of ``GET /events``."""

    container_id: str
    action: str
    time_ns: int
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity for de-duplicating the inclusive ``since`` boundary on reconnect."""
        return (self.container_id, self.action, self.time_ns)


@dataclass(frozen=True, slots=True)
class ContainerSummary:
    """One entry of ``GET /containers/json``: cheap, but without exit details."""

    container_id: str
    name: str
    state: str  # created|running|paused|restarting|removing|exited|dead
    status: str  # human text: "Exited (3) 2 seconds ago"
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ContainerDetails:
    """What ``GET /containers/{id}/json`` says that the tracker uses."""

    container_id: str
    name: str
    status: str
    running: bool
    paused: bool
    restarting: bool
    oom_killed: bool
    dead: bool
    exit_code: int
    error: str
    created: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    labels: Mapping[str, str]
    image: str = ""
    cmd: tuple[str, ...] = ()
    user: str = ""
    hostname: str = ""
    working_dir: str = ""
    restart_policy: str = ""
    machine: str = ""  # the node that ran it, where an engine has several (Swarm)


# Reads the next frame of a job's output: (1 stdout | 2 stderr, bytes), or None at the end.
OutputReader = Callable[[], Awaitable[tuple[int, bytes] | None]]


class Engine(Protocol):
    """What the tracker needs of an engine. Every call raises ``EngineCallError`` or
    ``EngineConnectionError`` on failure, never anything else on purpose."""

    @property
    def url(self) -> str:
        """Where the engine is, for messages."""
        ...

    @property
    def starts_at_once(self) -> bool:
        """Whether a start that returned means the job runs (Docker), or only that a scheduler
        will place it (Swarm: QUEUED until its start event)."""
        ...

    async def open(self) -> EngineInfo:
        """Connect and read the engine's identity and clock."""
        ...

    async def aclose(self) -> None:
        """Close every connection; idempotent, never raises."""
        ...

    async def info(self) -> EngineInfo: ...

    def is_job_id(self, text: str) -> bool:
        """Whether ``text`` may be (a prefix of) one of this engine's job ids, as opposed to a
        name, which the engine would resolve too."""
        ...

    async def create(self, config: Mapping[str, Any], name: str | None) -> str:
        """Create a container; returns its full id."""
        ...

    async def start(self, cid: str) -> None:
        """Start a container; a 304 (already started) is not an error."""
        ...

    async def inspect(self, cid: str) -> ContainerDetails: ...

    async def list_containers(
        self, label: str | None, *, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerSummary]:
        """Every container (running or not) that carries ``label`` (``k`` or ``k=v``; None:
        every container), newest first. ``filters``: more of the engine's list filters
        (``id``: id prefixes, ``name``: name patterns, ``status``: state words), each a set
        of alternatives, all of them applied."""
        ...

    async def cpu_usage_ns(self, cid: str) -> int | None:
        """The CPU time the container's cgroup has used (one-shot stats), if the engine can
        tell: while it runs (after it exits, the engine no longer has it)."""
        ...

    async def kill(self, cid: str) -> None: ...

    async def pause(self, cid: str) -> None: ...

    async def unpause(self, cid: str) -> None: ...

    async def rename(self, cid: str, name: str) -> None: ...

    async def disable_restart(self, cid: str) -> None:
        """Set the restart policy to "no" (so that a killed job stays dead)."""
        ...

    async def remove(self, cid: str, *, force: bool = False) -> None: ...

    async def image_tags(self) -> list[str]: ...

    async def image_present(self, image: str) -> bool:
        """Whether the engine has the image (by reference or id)."""
        ...

    async def pull(
        self, image: str, auth: str | None, progress: Callable[[Mapping[str, Any]], None]
    ) -> None:
        """Pull an image (its tag, ``latest`` if none), ``auth`` as the X-Registry-Auth
        header; ``progress`` gets each of the engine's progress messages. An error the engine
        reports inside its stream is an ``EngineCallError`` too."""
        ...

    async def stream_events(
        self,
        labels: Sequence[str],
        since_ns: int | None,
        on_connected: Callable[[], None],
        on_event: Callable[[ContainerEvent], None],
    ) -> NoReturn:
        """Read container events until the stream breaks, then raise ``EngineConnectionError``.

        ``on_connected`` is called once the engine has registered the subscription (events
        from then on are delivered); ``since_ns`` replays what the engine still holds from
        that time on (inclusive). ``on_event`` must not block.
        """
        ...

    def attach_output(
        self, cid: str, *, logs: bool = False
    ) -> AbstractAsyncContextManager[OutputReader]:
        """Attach to stdout and stderr; ``logs`` first replays what the log driver kept."""
        ...

    def read_logs(
        self, cid: str, *, follow: bool = False
    ) -> AbstractAsyncContextManager[OutputReader]:
        """What the log driver kept of a container; ``follow``: then what it writes next,
        until it exits. The log may lag the attach stream (Docker's log copier holds a line
        back until its newline, up to 16 KiB)."""
        ...

    async def copy_out(self, cid: str, path: str, write: Callable[[bytes], object]) -> None:
        """The tar archive of ``path`` in the container (a file or a directory, as the engine's
        ``GET /containers/{id}/archive`` sends it), handed to ``write`` chunk by chunk. A
        404 whose message does not say "no such container" is a path that does not exist."""
        ...

    async def feed_stdin(self, cid: str, source: IO[bytes]) -> None:
        """Attach to stdin, write all of ``source``, then close it (the job sees EOF)."""
        ...

    def hold_stdin(self, cid: str) -> AbstractAsyncContextManager[None]:
        """Attach to stdin and keep it open while the context lasts (or this process lives).

        A container with ``OpenStdin`` and ``StdinOnce`` running ``cat`` then lives exactly as
        long as the holder: the liveness signal that leases are made of.
        """
        ...
