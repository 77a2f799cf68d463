"""The Docker implementation of the engine boundary: the only module that imports aiodocker
and aiohttp.

It turns aiodocker's dicts into the typed records of ``base`` and every failure into
``EngineCallError`` (the engine answered an error status) or ``EngineConnectionError`` (it
could not be reached, a call timed out, a stream broke). What those mean is ``_errors``'s call.

Connections: one pooled client for API calls, bounded by ``connection_limit``, with connect
and read timeouts; a second, unbounded one for the long-lived streams (the event stream, one
attach per running job that writes output files), with no read timeout, so that streams can
never starve API calls. Both bounds hold for ``unix://`` and ``tcp://`` engines alike; TCP
sockets send keepalive probes so that a peer that silently vanished is noticed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import IO, Any, NoReturn
from urllib.parse import quote, urlsplit

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError
from aiodocker.stream import Stream
from yarl import URL

from .._labels import is_container_id
from .._template_label import parse_go_time
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
from .endpoint import Endpoint, negotiate, resolve_endpoint
from .podman import (
    ACTION_ALIASES,
    INSPECT_RETRY_DELAYS,
    STATUS_ALIASES,
    exited_mid_read,
    podman_config,
    podman_failure,
    podman_statuses,
    product,
)

log = logging.getLogger("aiotracker")

_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, asyncio.IncompleteReadError)
_FRAME = struct.Struct(">BxxxL")  # the engine's multiplexed stream header


def resolve_url(docker_url: str | None) -> str:
    """The engine's address from ``docker_url`` or the client configuration (``endpoint``);
    ``ValueError`` (an ``EndpointError``) if malformed."""
    return resolve_endpoint(docker_url).url


def _keepalive_socket(idle: float) -> Callable[[Any], socket.socket]:
    """A socket factory for aiohttp that sends TCP keepalive probes after ``idle`` seconds."""

    def make(addr_info: Any) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        seconds = max(1, int(idle))
        for name, value in (("TCP_KEEPIDLE", seconds), ("TCP_KEEPINTVL", max(1, seconds // 3)),
                            ("TCP_KEEPCNT", 3)):  # fmt: skip
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        return sock

    return make


def _details(raw: Mapping[str, Any]) -> ContainerDetails:
    state = raw.get("State") or {}
    config = raw.get("Config") or {}
    host = raw.get("HostConfig") or {}
    restart = (host.get("RestartPolicy") or {}).get("Name") or ""
    return ContainerDetails(
        container_id=raw["Id"],
        name=str(raw.get("Name") or "").lstrip("/"),
        status=STATUS_ALIASES.get(str(state.get("Status") or ""), str(state.get("Status") or "")),
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
    """A container event the tracker uses, from its API 1.41 to 1.52 fields (``Type``,
    ``Action``, ``Actor``, ``timeNano``; never the legacy ``status``/``id``/``from``, which
    API 1.52 drops). Podman's ``remove`` is Docker's ``destroy``; other actions (Podman's
    ``init``/``cleanup``/``stop``, newer engines' ``exec_die``, ``health_status: ...``, which
    an engine may send when it cannot filter them) are dropped here."""
    if raw.get("Type") != "container":
        return None
    actor = raw.get("Actor") or {}
    cid, action, time_ns = actor.get("ID"), raw.get("Action"), raw.get("timeNano")
    if not isinstance(cid, str) or not isinstance(action, str) or not isinstance(time_ns, int):
        return None
    action = ACTION_ALIASES.get(action, action)
    if action not in EVENT_ACTIONS:
        return None
    return ContainerEvent(cid, action, time_ns, dict(actor.get("Attributes") or {}))


def pull_reference(image: str) -> tuple[str, str]:
    """``(fromImage, tag)`` for ``POST /images/create``: the tag (or digest) apart, ``latest``
    when the reference has none (an empty tag would pull every tag of the repository)."""
    name, at, digest = image.partition("@")
    if at:
        return name, digest
    head, _, last = name.rpartition("/")
    if ":" in last:
        repo, _, tag = last.partition(":")
        return f"{head}/{repo}" if head else repo, tag
    return name, "latest"


def event_params(filters: Mapping[str, Sequence[str]], since_ns: int | None) -> dict[str, str]:
    """``GET /events`` parameters: the filters, and ``since`` in the engine's s.ns format."""
    params = {"filters": json.dumps({k: list(v) for k, v in filters.items()})}
    if since_ns is not None:
        params["since"] = f"{since_ns // 10**9}.{since_ns % 10**9:09d}"
    return params


def _pull_line(raw: Any, progress: Callable[[Mapping[str, Any]], None]) -> None:
    """One line of a pull's progress stream; an error in it (the engine had answered 200
    before the registry failed) is the call's failure."""
    if not isinstance(raw, dict):
        return
    if raw.get("error") or raw.get("errorDetail"):
        detail = raw.get("errorDetail") if isinstance(raw.get("errorDetail"), dict) else {}
        message = str(raw.get("error") or (detail or {}).get("message") or "pull failed")
        code = (detail or {}).get("code")
        raise EngineCallError(code if isinstance(code, int) and code >= 400 else 500, message)
    progress(raw)


def _failure(exc: BaseException, what: str) -> Exception:
    if isinstance(exc, DockerError):
        if exc.status == 900:  # aiodocker's own "cannot connect"
            return EngineConnectionError(f"{what}: {exc.message}")
        return EngineCallError(exc.status, str(exc.message))
    return EngineConnectionError(f"{what}: connection to the engine failed: {exc!r}")


class DockerEngine:
    """The Engine API through aiodocker (see ``base.Engine`` for each call's contract)."""

    def __init__(
        self, docker_url: str | None = None, *, connection_limit: int = 32, timeout: float = 30.0,
        endpoint: Endpoint | None = None,
    ) -> None:  # fmt: skip
        self.endpoint = endpoint if endpoint is not None else resolve_endpoint(docker_url)
        self.url = self.endpoint.url
        self._ssl = self.endpoint.tls.context() if self.endpoint.tls is not None else None
        self.product = "docker"
        self.starts_at_once = True
        self._limit = connection_limit
        self._timeout = timeout
        self._api: aiodocker.Docker | None = None
        self._streams: aiodocker.Docker | None = None
        self._sessions: list[aiohttp.ClientSession] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._version = ""

    def _client(self, limit: int, timeout: aiohttp.ClientTimeout) -> aiodocker.Docker:
        connector: aiohttp.BaseConnector
        url = self.endpoint.http_url
        if self.url.startswith("unix://"):
            connector = aiohttp.UnixConnector(urlsplit(self.url).path, limit=limit)
        else:
            connector = aiohttp.TCPConnector(
                limit=limit, socket_factory=_keepalive_socket(self._timeout / 3),
                ssl=self._ssl if self._ssl is not None else True,
            )  # fmt: skip
        # aiodocker leaves a session it was given open: close() closes it. Its requests take
        # aiodocker's timeout, not the session's.
        session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self._sessions.append(session)
        # The connector too: without one, aiodocker makes a spare one of its own from
        # DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, raising FileNotFoundError if cert.pem is absent.
        return aiodocker.Docker(url=url, connector=connector, session=session, timeout=timeout)

    @property
    def _api_client(self) -> aiodocker.Docker:
        if self._api is None:
            raise EngineConnectionError("the Docker client is closed")
        return self._api

    @property
    def _stream_client(self) -> aiodocker.Docker:
        if self._streams is None:
            raise EngineConnectionError("the Docker client is closed")
        return self._streams

    async def open(self) -> EngineInfo:
        self._loop = asyncio.get_running_loop()
        calls = aiohttp.ClientTimeout(sock_connect=self._timeout, sock_read=self._timeout)
        try:
            self._api = self._client(self._limit, calls)
            self._streams = self._client(0, aiohttp.ClientTimeout(sock_connect=self._timeout))
            try:
                version = await self._json("version", "version", versioned_api=False)
            except EngineCallError as exc:  # not an engine we can speak to (HTTP to HTTPS)
                raise EngineConnectionError(
                    f"{self.endpoint.http_url} ({self.endpoint.origin}) answered GET /version "
                    f"with {exc.status}: {exc.message}"
                ) from exc
            api = "v" + negotiate(
                self.endpoint.api_version,
                str(version.get("ApiVersion") or ""),
                str(version.get("MinAPIVersion") or ""),
            )
            self._api.api_version = self._streams.api_version = api
            self.product = product(version)
            self._version = str(version.get("Version") or "")
            return await self.info()
        except BaseException:
            await self.aclose()
            raise

    def is_job_id(self, text: str) -> bool:
        return is_container_id(text)

    async def info(self) -> EngineInfo:
        raw = await self._json("info", "info")
        now = parse_go_time(raw.get("SystemTime"))
        if now is None:
            raise EngineCallError(200, "the engine did not tell its time")
        ns = int(now.timestamp()) * 10**9 + now.microsecond * 1000
        return EngineInfo(
            str(raw.get("Name") or ""), ns, self._api_client.api_version, self.product,
            self._version, cpus=int(raw.get("NCPU") or 0),
            memory_bytes=int(raw.get("MemTotal") or 0),
            architecture=str(raw.get("Architecture") or ""),
            os_type=str(raw.get("OSType") or ""),
            operating_system=str(raw.get("OperatingSystem") or ""),
            kernel_version=str(raw.get("KernelVersion") or ""),
        )  # fmt: skip

    async def aclose(self) -> None:
        self._api = self._streams = None
        sessions, self._sessions = self._sessions, []
        loop = asyncio.get_running_loop()
        for session in sessions:
            if self._loop is not None and self._loop is not loop:
                _close_abandoned(session)  # the loop that owned it is gone
                continue
            try:
                await session.close()
            except Exception:  # closing must not fail
                _close_abandoned(session)

    def _failure(self, exc: BaseException, what: str) -> Exception:
        error = _failure(exc, what)
        return podman_failure(error, what) if self.product == "podman" else error

    # -- calls -------------------------------------------------------------------------

    async def _json(self, what: str, path: str, **kw: Any) -> Any:
        try:
            return await self._api_client._query_json(path, **kw)
        except (DockerError, *_TRANSPORT_ERRORS) as exc:
            raise self._failure(exc, what) from exc

    async def _podman_read(self, what: str, path: str) -> Any:
        """A read-only call to Podman, asked again while it fails only because the job's
        process exited as Podman read its /proc (``exited_mid_read``)."""
        for delay in INSPECT_RETRY_DELAYS:
            try:
                return await self._json(what, path)
            except EngineCallError as exc:
                if not exited_mid_read(exc):
                    raise
                log.debug("%s of %s: %s; asking again", what, path, exc.message)
            await asyncio.sleep(delay)
        return await self._json(what, path)

    async def _call(
        self, what: str, path: str, method: str = "POST", *,
        params: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """A call whose answer has no body we need; the connection goes back to the pool."""
        try:
            async with self._api_client._query(
                path, method=method, params=dict(params) if params else None,
                data=json.dumps(data) if data is not None else None,
            ) as resp:  # fmt: skip
                # aiodocker's _query hands over the response without ever releasing it.
                await resp.read()
                resp.release()
        except (DockerError, *_TRANSPORT_ERRORS) as exc:
            if isinstance(exc, DockerError) and exc.status == 304:
                return  # already in the wanted state (start of a started container)
            raise self._failure(exc, what) from exc

    async def create(self, config: Mapping[str, Any], name: str | None) -> str:
        params = {"name": name} if name else None
        if self.product == "podman":
            config = podman_config(config)
        raw = await self._json(
            "create", "containers/create", method="POST", data=dict(config), params=params
        )
        return str(raw["Id"])

    async def start(self, cid: str) -> None:
        await self._call("start", f"containers/{quote(cid)}/start")

    async def kill(self, cid: str) -> None:
        await self._call("kill", f"containers/{quote(cid)}/kill")

    async def pause(self, cid: str) -> None:
        await self._call("pause", f"containers/{quote(cid)}/pause")
        if self.product == "podman":
            # Podman 4.3 can answer 204 to the pause of a container whose process has exited
            # but which it has not yet marked exited (2 of 60 pauses right after the start of
            # `exit 0`): it then reads exited, never paused, and no unpause can follow. That
            # is the race Docker answers with a 409 or a 500: the job was not suspended.
            details = await self.inspect(cid)
            if not details.paused and not details.running:
                raise EngineCallError(
                    409, f"container {cid} exited before it could be paused ({details.status})"
                )

    async def unpause(self, cid: str) -> None:
        await self._call("unpause", f"containers/{quote(cid)}/unpause")

    async def rename(self, cid: str, name: str) -> None:
        await self._call("rename", f"containers/{quote(cid)}/rename", params={"name": name})

    async def disable_restart(self, cid: str) -> None:
        if self.product == "podman":
            # Podman 4.3 has no compat update (404 "Not Found") and needs none: its kill marks
            # the container stopped by the user, which no restart policy restarts (measured
            # for always, unless-stopped and on-failure: exited, RestartCount 0).
            return
        body = {"RestartPolicy": {"Name": "no"}}
        await self._call("update", f"containers/{quote(cid)}/update", data=body)

    async def remove(self, cid: str, *, force: bool = False) -> None:
        params = {"v": "1", "force": "1" if force else "0"}
        await self._call("remove", f"containers/{quote(cid)}", "DELETE", params=params)

    async def inspect(self, cid: str) -> ContainerDetails:
        path = f"containers/{quote(cid)}/json"
        if self.product == "podman":
            raw = await self._podman_read("inspect", path)
        else:
            raw = await self._json("inspect", path)
        details = _details(raw)
        if self.product == "podman" and details.image.startswith("localhost/"):
            details = dataclasses.replace(details, image=details.image.removeprefix("localhost/"))
        return details

    async def cpu_usage_ns(self, cid: str) -> int | None:
        params = {"stream": "0", "one-shot": "1"}
        # Read as JSON whatever the Content-Type: Podman 4.3 sends none with its stats (and
        # aiodocker then returns "" for a JSON body).
        raw = await self.request("stats", f"containers/{quote(cid)}/stats", params=params)
        usage = ((raw or {}).get("cpu_stats") or {}).get("cpu_usage") or {}
        total = usage.get("total_usage")
        return int(total) if isinstance(total, int) and total > 0 else None

    async def list_containers(
        self, label: str | None, *, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerSummary]:
        wanted = {key: list(values) for key, values in (filters or {}).items()}
        if label is not None:
            wanted["label"] = [label]
        if self.product == "podman" and "status" in wanted:
            wanted["status"] = podman_statuses(wanted["status"])
            if not wanted["status"]:
                return []
        params = {"all": "1", "filters": json.dumps(wanted)}
        raw = await self._json("list", "containers/json", params=params)
        return [
            ContainerSummary(
                container_id=c["Id"],
                name=str((c.get("Names") or [""])[0]).lstrip("/"),
                state=STATUS_ALIASES.get(str(c.get("State") or ""), str(c.get("State") or "")),
                status=str(c.get("Status") or ""),
                labels=dict(c.get("Labels") or {}),
            )
            for c in raw
        ]

    async def image_tags(self) -> list[str]:
        raw = await self._json("images", "images/json")
        tags = {t for image in raw for t in (image.get("RepoTags") or []) if t != "<none>:<none>"}
        if self.product == "podman":  # Podman lists local images as localhost/<name>
            tags = {t.removeprefix("localhost/") for t in tags}
        return sorted(tags)

    async def image_present(self, image: str) -> bool:
        try:
            await self._json("image", f"images/{quote(image, safe='/:@')}/json")
        except EngineCallError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def pull(
        self, image: str, auth: str | None, progress: Callable[[Mapping[str, Any]], None]
    ) -> None:
        from_image, tag = pull_reference(image)
        headers = {"X-Registry-Auth": auth} if auth else None
        timeout = aiohttp.ClientTimeout(sock_connect=self._timeout, sock_read=self._timeout)
        try:
            async with self._stream_client._query(
                "images/create", method="POST", params={"fromImage": from_image, "tag": tag},
                headers=headers, timeout=timeout,
            ) as resp:  # fmt: skip
                try:
                    buffer = b""
                    async for chunk in resp.content.iter_any():
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            if line.strip():
                                _pull_line(json.loads(line), progress)
                    if buffer.strip():
                        _pull_line(json.loads(buffer), progress)
                finally:
                    resp.close()
        except (DockerError, *_TRANSPORT_ERRORS) as exc:
            raise self._failure(exc, "pull") from exc
        except ValueError as exc:
            raise EngineConnectionError(f"pull: the engine sent garbage: {exc}") from exc

    # -- events ------------------------------------------------------------------------

    async def stream_events(
        self,
        labels: Sequence[str],
        since_ns: int | None,
        on_connected: Callable[[], None],
        on_event: Callable[[ContainerEvent], None],
    ) -> NoReturn:
        filters = {"type": ["container"], "label": list(labels), "event": list(EVENT_ACTIONS)}
        if self.product == "podman":
            # Podman 4.3 compares an event filter with its internal names ("died"): a "die"
            # filter matches nothing. The actions are filtered here instead (``_event``).
            del filters["event"]

        def line(raw: Any) -> None:
            if (event := _event(raw)) is not None:
                on_event(event)

        await self.stream_json("event stream", "events", event_params(filters, since_ns),
                               on_connected, line)  # fmt: skip

    async def stream_json(
        self, what: str, path: str, params: Mapping[str, str],
        on_connected: Callable[[], None], on_item: Callable[[Any], None],
    ) -> NoReturn:  # fmt: skip
        """Read a stream of JSON lines (``GET /events`` and its kin) until it breaks, then
        raise ``EngineConnectionError``; ``on_item`` gets each decoded line."""
        try:
            async with self._stream_client._query(
                path, params=dict(params), timeout=aiohttp.ClientTimeout()
            ) as resp:
                try:
                    on_connected()
                    buffer = b""
                    async for chunk in resp.content.iter_any():
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            if line.strip():
                                on_item(json.loads(line))
                finally:
                    resp.close()  # a stream cut short cannot go back to the pool
        except (DockerError, *_TRANSPORT_ERRORS) as exc:
            raise self._failure(exc, what) from exc
        except ValueError as exc:  # a line that is not JSON: the stream is broken
            raise EngineConnectionError(f"{what} sent garbage: {exc}") from exc
        raise EngineConnectionError(f"the {what} ended")

    async def request(
        self, what: str, path: str, method: str = "GET", *,
        params: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        """Any Engine API call answered with JSON (or nothing: None), for the engines built
        on this one's transport (Swarm's services and tasks)."""
        try:
            async with self._api_client._query(
                path, method=method, params=dict(params) if params else None,
                data=json.dumps(data) if data is not None else None,
                headers=dict(headers) if headers else None,
            ) as resp:  # fmt: skip
                body = await resp.read()
                resp.release()
        except (DockerError, *_TRANSPORT_ERRORS) as exc:
            raise self._failure(exc, what) from exc
        try:
            return json.loads(body) if body.strip() else None
        except ValueError as exc:
            raise EngineCallError(200, f"{what}: the engine answered no JSON: {exc}") from exc

    # -- output and input --------------------------------------------------------------

    def _hijack(self, cid: str, **query: int) -> Stream:
        url = URL(f"containers/{cid}/attach").with_query({**query, "stream": 1, "detachKeys": ""})

        async def setup() -> tuple[URL, bytes | None, bool]:
            return url, None, False  # Tty is always false for jobs

        return Stream(self._stream_client, setup, aiohttp.ClientTimeout())

    @asynccontextmanager
    async def attach_output(self, cid: str, *, logs: bool = False) -> AsyncIterator[OutputReader]:
        if logs and self.product == "podman":
            # Podman 4.3's attach?logs=1 writes an unframed newline into the replay: the log,
            # followed, is the same stream (replayed, then live, ending at the exit).
            async with self.read_logs(cid, follow=True) as followed:
                yield followed
            return
        stream = self._hijack(cid, logs=int(logs), stdout=1, stderr=1, stdin=0)
        await self._upgrade(stream, "attach")

        async def read() -> tuple[int, bytes] | None:
            try:
                message = await stream.read_out()
            except (DockerError, *_TRANSPORT_ERRORS) as exc:
                raise self._failure(exc, "attach") from exc
            return None if message is None else (message.stream, bytes(message.data))

        try:
            yield read
        finally:
            await stream.close()

    def read_logs(
        self, cid: str, *, follow: bool = False
    ) -> AbstractAsyncContextManager[OutputReader]:
        params = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0"}
        return self.read_frames("logs", f"containers/{quote(cid)}/logs", params)

    @asynccontextmanager
    async def read_frames(
        self, what: str, path: str, params: Mapping[str, str]
    ) -> AsyncIterator[OutputReader]:
        """A multiplexed output stream (``/logs`` of a container, of a Swarm task), frame by
        frame: (1 stdout | 2 stderr, bytes), None at its end."""
        try:
            async with self._stream_client._query(
                path, params=dict(params), timeout=aiohttp.ClientTimeout()
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
        except (DockerError, *_TRANSPORT_ERRORS) as exc:
            raise self._failure(exc, what) from exc

    async def copy_out(self, cid: str, path: str, write: Callable[[bytes], object]) -> None:
        try:
            async with self._stream_client._query(
                f"containers/{quote(cid)}/archive", params={"path": path},
                timeout=aiohttp.ClientTimeout(sock_connect=self._timeout, sock_read=self._timeout),
            ) as resp:  # fmt: skip
                try:
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        write(chunk)
                finally:
                    resp.close()
        except (DockerError, *_TRANSPORT_ERRORS) as exc:
            raise self._failure(exc, "archive") from exc

    @asynccontextmanager
    async def hold_stdin(self, cid: str) -> AsyncIterator[None]:
        stream = self._hijack(cid, stdin=1, stdout=0, stderr=0, logs=0)
        await self._upgrade(stream, "stdin")
        async with _held(stream):
            yield

    async def _upgrade(self, stream: Stream, what: str) -> None:
        """Open a hijacked stream; if that fails (cancellation too) its response is closed.
        Not with aiodocker's ``close``, which asserts a connection that an engine answering
        without the upgrade (a plain 200) has already released."""
        try:
            await stream._init()
        except BaseException as exc:
            if stream._resp is not None:
                stream._closed = True  # what aiodocker's close marks (else it warns)
                stream._resp.close()  # synchronous: done even when cancelled
            if isinstance(exc, (DockerError, *_TRANSPORT_ERRORS)):
                raise self._failure(exc, what) from exc
            raise

    async def feed_stdin(self, cid: str, source: IO[bytes]) -> None:
        stream = self._hijack(cid, stdin=1, stdout=0, stderr=0, logs=0)
        await self._upgrade(stream, "stdin")
        try:
            while chunk := source.read(1 << 16):
                await stream.write_in(chunk)
        except (DockerError, *_TRANSPORT_ERRORS) as exc:
            raise self._failure(exc, "stdin") from exc
        finally:
            await stream.close()


@asynccontextmanager
async def _held(stream: Stream) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await stream.close()


def _close_abandoned(session: aiohttp.ClientSession) -> None:
    """Close a session whose event loop is gone: its sockets, without that loop's help."""
    connector = session.connector
    if connector is not None:
        for protocols in list(getattr(connector, "_conns", {}).values()):
            for proto, _ in protocols:
                transport = getattr(proto, "transport", None)
                sock = transport.get_extra_info("socket") if transport is not None else None
                if sock is not None:
                    sock.close()
        connector._conns.clear()
        connector._closed = True
    session._connector = None
