"""The Docker boundary: the only module that imports aiodocker and aiohttp.

It turns aiodocker's dicts into the typed records of ``_records`` and its errors into
aiotracker's exceptions, once, here (``raise ... from exc``). Everything above it is typed.

Connections: one pooled client for API calls, with a bounded pool (``connection_limit``), and
a second, unbounded one for the long-lived streams (the event stream and one attach stream per
running job that writes output files), so that streams can never starve API calls (aiodocker's
own pool of 100 blocks every call once 100 streams are open).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any, NoReturn
from urllib.parse import quote

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError
from aiodocker.stream import Stream
from yarl import URL

from ._exceptions import (
    DrmCommunicationError,
    ImageNotFoundError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    JobNotFoundError,
    TrackerError,
)
from ._mapping import parse_go_time
from ._records import ContainerDetails, ContainerEvent, ContainerSummary

log = logging.getLogger("aiotracker")

# The container actions that can change a job's state; the rest (exec_*, health_status, attach,
# kill, ...) would only be noise on the stream.
EVENT_ACTIONS = ("create", "start", "die", "oom", "pause", "unpause", "rename", "destroy")

_HEX_RE = re.compile(r"^[0-9a-f]{1,64}$")


def is_container_id(text: str) -> bool:
    """A (prefix of a) container id. Names are not job ids: the engine would resolve them."""
    return bool(_HEX_RE.match(text))


@dataclass(frozen=True, slots=True)
class EngineInfo:
    host_name: str
    system_time_ns: int
    api_version: str


def _raise_communication(exc: BaseException, what: str) -> NoReturn:
    raise DrmCommunicationError(f"cannot reach the Docker engine ({what}): {exc}") from exc


def translate(exc: BaseException, *, what: str, job_id: str | None = None) -> TrackerError:
    """The most specific aiotracker error for an engine error (the caller raises it ``from``)."""
    if isinstance(exc, DockerError):
        status, message = exc.status, str(exc.message)
        if status == 900:
            return DrmCommunicationError(f"{what}: {message}", job_id=job_id)
        if status == 404:
            return JobNotFoundError(f"{what}: no such job {job_id!r}", job_id=job_id)
        if status == 500 and "multiple ids found" in message.lower():
            # An id prefix that matches several containers names no one job.
            return JobNotFoundError(f"{what}: ambiguous job id {job_id!r}", job_id=job_id)
        if status in (304, 409):
            return InvalidStateError(f"{what}: {message}", job_id=job_id)
        if status == 400:
            return InvalidArgumentError(f"{what}: {message}", job_id=job_id)
        return InternalError(f"{what}: engine answered {status}: {message}", job_id=job_id)
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return DrmCommunicationError(
            f"{what}: connection to the engine failed: {exc!r}", job_id=job_id
        )
    return InternalError(f"{what}: {exc!r}", job_id=job_id)


_ENGINE_ERRORS = (DockerError, aiohttp.ClientError, OSError, TimeoutError)


def _details(raw: Mapping[str, Any]) -> ContainerDetails:
    state = raw.get("State") or {}
    config = raw.get("Config") or {}
    host = raw.get("HostConfig") or {}
    restart = (host.get("RestartPolicy") or {}).get("Name") or ""
    return ContainerDetails(
        container_id=raw["Id"],
        name=str(raw.get("Name") or "").lstrip("/"),
        status=str(state.get("Status") or ""),
        running=bool(state.get("Running")),
        paused=bool(state.get("Paused")),
        restarting=bool(state.get("Restarting")),
        oom_killed=bool(state.get("OOMKilled")),
        dead=bool(state.get("Dead")),
        exit_code=int(state.get("ExitCode") or 0),
        error=str(state.get("Error") or ""),
        created=parse_go_time(raw.get("Created")),
        started_at=parse_go_time(state.get("StartedAt")),
        finished_at=parse_go_time(state.get("FinishedAt")),
        labels=dict(config.get("Labels") or {}),
        image=str(config.get("Image") or ""),
        cmd=tuple(config.get("Cmd") or ()),
        user=str(config.get("User") or ""),
        hostname=str(config.get("Hostname") or ""),
        working_dir=str(config.get("WorkingDir") or ""),
        restart_policy="" if restart == "no" else restart,
    )


def _event(raw: Mapping[str, Any]) -> ContainerEvent | None:
    if raw.get("Type") != "container":
        return None
    actor = raw.get("Actor") or {}
    cid = actor.get("ID")
    action = raw.get("Action")
    time_ns = raw.get("timeNano")
    if not isinstance(cid, str) or not isinstance(action, str) or not isinstance(time_ns, int):
        return None
    attributes = actor.get("Attributes") or {}
    return ContainerEvent(cid, action, time_ns, dict(attributes))


def _connector(url: str, limit: int) -> tuple[str, aiohttp.BaseConnector | None]:
    """aiodocker rewrites unix URLs only when it builds the connector; we build it to bound it."""
    if url.startswith("unix://"):
        return "unix://localhost", aiohttp.UnixConnector(url[len("unix://") :], limit=limit)
    return url, None


def resolve_url(docker_url: str | None) -> str:
    """docker_url, else DOCKER_HOST, else the local socket (as the docker CLI does)."""
    if docker_url:
        return docker_url
    env = os.environ.get("DOCKER_HOST")
    if env:
        return env
    for path in ("/run/docker.sock", "/var/run/docker.sock"):
        if os.path.exists(path):
            return f"unix://{path}"
    return "unix:///var/run/docker.sock"


# Reads the next frame of a job's output: (1 stdout | 2 stderr, bytes), or None at the end.
OutputReader = Callable[[], Awaitable[tuple[int, bytes] | None]]
_FRAME = struct.Struct(">BxxxL")  # the engine's multiplexed stream header


class DockerClient:
    """A typed client for what the tracker needs of the Engine API."""

    def __init__(self, docker_url: str | None = None, *, connection_limit: int = 32) -> None:
        self.url = resolve_url(docker_url)
        self._connection_limit = connection_limit
        self._api: aiodocker.Docker | None = None
        self._streams: aiodocker.Docker | None = None
        self._sessions: list[aiohttp.ClientSession] = []
        self.api_version = ""

    def _client(self, limit: int) -> aiodocker.Docker:
        url, connector = _connector(self.url, limit)
        if connector is None:
            return aiodocker.Docker(url=url)
        # aiodocker leaves a session it was given open; this one owns the connector, and
        # close() closes it.
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout())
        self._sessions.append(session)
        return aiodocker.Docker(url=url, session=session)

    @property
    def api(self) -> aiodocker.Docker:
        if self._api is None:
            raise DrmCommunicationError("the Docker client is closed")
        return self._api

    @property
    def streams(self) -> aiodocker.Docker:
        if self._streams is None:
            raise DrmCommunicationError("the Docker client is closed")
        return self._streams

    async def open(self) -> EngineInfo:
        """Connect and read the engine's identity and clock; DrmCommunicationError if away."""
        try:
            self._api = self._client(self._connection_limit)
            self._streams = self._client(0)
            info = await self.info()
            self._streams.api_version = self._api.api_version
            self.api_version = self._api.api_version
            return info
        except BaseException:
            await self.close()
            raise

    async def info(self) -> EngineInfo:
        try:
            raw = await self.api._query_json("info")
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="connect") from exc
        now = parse_go_time(raw.get("SystemTime"))
        if now is None:
            raise InternalError("the engine did not tell its time")
        ns = int(now.timestamp()) * 10**9 + now.microsecond * 1000
        return EngineInfo(str(raw.get("Name") or ""), ns, self.api.api_version)

    async def close(self) -> None:
        api, streams = self._api, self._streams
        self._api = self._streams = None
        for client in (streams, api):
            if client is not None:
                await client.close()
        sessions, self._sessions = self._sessions, []
        for session in sessions:
            await session.close()

    # -- containers --------------------------------------------------------------------

    async def create(self, config: Mapping[str, Any], name: str | None) -> str:
        params = {"name": name} if name else None
        try:
            raw = await self.api._query_json(
                "containers/create", method="POST", data=dict(config), params=params
            )
        except DockerError as exc:
            if exc.status == 404:
                image = str(config.get("Image"))
                raise ImageNotFoundError(
                    f"image {image!r} is not present on the engine (nothing is pulled)",
                    image=image,
                ) from exc
            if exc.status == 409:
                raise InvalidArgumentError(
                    f"job_name {name!r} is already in use: {exc.message}"
                ) from exc
            if exc.status in (400, 500):
                # The engine validates the config on create: a bad mount, mode or option.
                raise InvalidArgumentError(f"the engine refused the job: {exc.message}") from exc
            raise translate(exc, what="create") from exc
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="create") from exc
        return str(raw["Id"])

    async def start(self, cid: str) -> None:
        try:
            await self._request(f"containers/{cid}/start", "POST")
        except DockerError as exc:
            message = str(exc.message)
            # A 404 naming something else (a network, a namespace's container) or a 500 (unknown
            # user, no GPU driver, the OCI runtime refusing): the job's config cannot run here.
            if (exc.status == 404 and cid not in message) or exc.status == 500:
                raise InvalidArgumentError(
                    f"the engine cannot start the job: {message}", job_id=cid
                ) from exc
            raise translate(exc, what="start", job_id=cid) from exc
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="start", job_id=cid) from exc

    async def kill(self, cid: str) -> None:
        await self._post(f"containers/{cid}/kill", cid, "terminate")

    async def pause(self, cid: str) -> None:
        await self._post(f"containers/{cid}/pause", cid, "suspend")

    async def unpause(self, cid: str) -> None:
        await self._post(f"containers/{cid}/unpause", cid, "resume")

    async def rename(self, cid: str, name: str) -> None:
        await self._post(f"containers/{cid}/rename", cid, "rename", params={"name": name})

    async def disable_restart(self, cid: str) -> None:
        await self._post(
            f"containers/{cid}/update", cid, "update", data={"RestartPolicy": {"Name": "no"}}
        )

    async def remove(self, cid: str, *, force: bool = False) -> None:
        params = {"v": "1", "force": "1" if force else "0"}
        try:
            await self._request(f"containers/{cid}", "DELETE", params=params)
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="delete", job_id=cid) from exc

    async def _post(
        self,
        path: str,
        cid: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            await self._request(
                path, "POST", params=params, data=json.dumps(data) if data is not None else None
            )
        except DockerError as exc:
            if exc.status == 500 and "is not paused" in str(exc.message):
                raise InvalidStateError(f"{what}: {exc.message}", job_id=cid) from exc
            raise translate(exc, what=what, job_id=cid) from exc
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what=what, job_id=cid) from exc

    async def _request(
        self, path: str, method: str, *, params: Mapping[str, str] | None = None,
        data: str | None = None,
    ) -> None:  # fmt: skip
        """A call whose answer has no body we need; the connection goes back to the pool."""
        async with self.api._query(
            path, method=method, params=dict(params) if params else None, data=data
        ) as resp:
            # aiodocker's _query hands over the response without ever releasing it.
            await resp.read()
            resp.release()

    async def inspect(self, cid: str) -> ContainerDetails:
        try:
            raw = await self.api._query_json(f"containers/{quote(cid)}/json")
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="inspect", job_id=cid) from exc
        return _details(raw)

    async def list_containers(self, label: str) -> list[ContainerSummary]:
        params = {"all": "1", "filters": json.dumps({"label": [label]})}
        try:
            raw = await self.api._query_json("containers/json", params=params)
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="list") from exc
        return [
            ContainerSummary(
                container_id=c["Id"],
                name=str((c.get("Names") or [""])[0]).lstrip("/"),
                state=str(c.get("State") or ""),
                status=str(c.get("Status") or ""),
                labels=dict(c.get("Labels") or {}),
            )
            for c in raw
        ]

    async def image_tags(self) -> list[str]:
        try:
            raw = await self.api._query_json("images/json")
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="list images") from exc
        return sorted(
            {
                tag
                for image in raw
                for tag in (image.get("RepoTags") or [])
                if tag != "<none>:<none>"
            }
        )

    # -- events ----------------------------------------------------------------------

    async def stream_events(
        self,
        labels: Sequence[str],
        since_ns: int | None,
        on_connected: Callable[[], None],
        on_event: Callable[[ContainerEvent], None],
    ) -> NoReturn:
        """Read ``GET /events`` until it breaks, calling ``on_event`` for each container event.

        ``on_event`` must not block: the daemon drops events for a reader that stalls 100 ms.
        The stream never ends quietly: an end of stream (daemon restart, cut proxy) raises
        ``DrmCommunicationError`` like a broken connection does.
        """
        filters = {"type": ["container"], "label": list(labels), "event": list(EVENT_ACTIONS)}
        params: dict[str, str] = {"filters": json.dumps(filters)}
        if since_ns is not None:
            params["since"] = f"{since_ns // 10**9}.{since_ns % 10**9:09d}"
        try:
            async with self.streams._query(
                "events", params=params, timeout=aiohttp.ClientTimeout()
            ) as resp:
                try:
                    on_connected()
                    buffer = b""
                    async for chunk in resp.content.iter_any():
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            if not line.strip():
                                continue
                            event = _event(json.loads(line))
                            if event is not None:
                                on_event(event)
                finally:
                    resp.close()  # a stream cut short cannot go back to the pool
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="event stream") from exc
        except ValueError as exc:  # a line that is not JSON: the stream is broken
            raise DrmCommunicationError(f"event stream sent garbage: {exc}") from exc
        raise DrmCommunicationError("the event stream ended")

    # -- output and input ------------------------------------------------------------

    @asynccontextmanager
    async def attach_output(self, cid: str, *, logs: bool = False) -> AsyncIterator[OutputReader]:
        """Attach to stdout and stderr (before start); yields ``read`` -> (stream, bytes) | None.

        Binary-safe and streams kept apart (1 stdout, 2 stderr), in order of arrival; nothing is
        held beyond the reader's 64 KiB flow-control window. ``logs`` replays what the log
        driver kept (used when a tracker reopens on a running job).
        """
        query = URL(f"containers/{cid}/attach").with_query(
            {"logs": int(logs), "stdout": 1, "stderr": 1, "stream": 1, "stdin": 0,
             "detachKeys": ""}
        )  # fmt: skip

        async def setup() -> tuple[URL, bytes | None, bool]:
            return query, None, False  # Tty is always false for jobs

        stream = Stream(self.streams, setup, aiohttp.ClientTimeout())
        try:
            await stream._init()
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="attach", job_id=cid) from exc
        try:
            yield stream.read_out
        finally:
            await stream.close()

    @asynccontextmanager
    async def read_logs(self, cid: str) -> AsyncIterator[OutputReader]:
        """What the log driver kept of a finished job: yields ``read`` like ``attach_output``.

        Raw ``GET /logs`` demultiplexed here, binary-safe with the ``local`` driver jobs use
        (aiodocker's ``log()`` decodes text and drops bytes).
        """
        params = {"stdout": "1", "stderr": "1", "follow": "0"}
        try:
            async with self.streams._query(
                f"containers/{cid}/logs", params=params, timeout=aiohttp.ClientTimeout()
            ) as resp:
                content = resp.content

                async def read() -> tuple[int, bytes] | None:
                    try:
                        header = await content.readexactly(8)
                    except asyncio.IncompleteReadError:
                        return None
                    stream, size = _FRAME.unpack(header)
                    return stream, await content.readexactly(size)

                try:
                    yield read
                finally:
                    resp.close()
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="logs", job_id=cid) from exc

    async def feed_stdin(self, cid: str, source: IO[bytes]) -> None:
        """Attach to stdin, write all of ``source`` and close it (the job sees end of file)."""
        query = URL(f"containers/{cid}/attach").with_query(
            {"stdin": 1, "stdout": 0, "stderr": 0, "stream": 1, "logs": 0, "detachKeys": ""}
        )

        async def setup() -> tuple[URL, bytes | None, bool]:
            return query, None, False

        stream = Stream(self.streams, setup, aiohttp.ClientTimeout())
        try:
            await stream._init()
            while chunk := source.read(1 << 16):
                await stream.write_in(chunk)
        except _ENGINE_ERRORS as exc:
            raise translate(exc, what="stdin", job_id=cid) from exc
        finally:
            await stream.close()
