"""A counting proxy on the engine's socket: every Engine API request a client makes, as sent.

``CountingProxy`` listens on a Unix socket of its own and forwards each connection, byte for
byte in both directions, to the engine's socket. It reads the client's side as HTTP/1.1
(request line, headers, a ``Content-Length`` body) and records one ``Call`` per request: its
kind (``create``, ``start``, ``attach``, ``inspect``, ...), the container it names, and for a
create its labels. After a request that upgrades the connection (``attach``: the stream is
hijacked), nothing more is parsed on it. A client pointed at the proxy (``DockerTracker(
docker_url="unix://<proxy socket>")``) is measured without a change to its code: what is
counted is what reached the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_VERSION = re.compile(r"^/v\d+(\.\d+)*(?=/)")
_ENDPOINTS = {
    ("POST", "/containers/create"): "create",
    ("GET", "/containers/json"): "list",
    ("GET", "/events"): "events",
    ("GET", "/version"): "version",
    ("GET", "/info"): "info",
    ("GET", "/_ping"): "ping",
    ("HEAD", "/_ping"): "ping",
}


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the engine received it."""

    kind: str  # create, start, attach, wait, inspect, list, events, ... or "METHOD /path"
    method: str
    path: str  # without the API version prefix and the query
    container: str  # the container id or name in the path ("" if none)
    labels: dict[str, str] = field(default_factory=dict)  # a create's labels
    at: float = 0.0  # time.monotonic() when its head arrived


def classify(method: str, target: str) -> tuple[str, str, str]:
    """(kind, path, container) of a request line's method and target."""
    path = _VERSION.sub("", target.split("?", 1)[0])
    if path.startswith("/libpod/"):  # Podman's own API, same shapes
        path = path[len("/libpod") :]
    if (method, path) in _ENDPOINTS:
        return _ENDPOINTS[(method, path)], path, ""
    parts = path.strip("/").split("/")
    if parts[0] == "containers" and len(parts) >= 2:
        container = parts[1]
        if len(parts) == 2:
            kind = "remove" if method == "DELETE" else f"{method} /containers/{{id}}"
        elif parts[2] == "json":
            kind = "inspect"
        else:
            kind = "/".join(parts[2:])  # start, attach, wait, logs, kill, rename, ...
        return kind, path, container
    return f"{method} {path}", path, ""


class _Requests:
    """The client's side of one connection, parsed into requests."""

    def __init__(self, record: list[Call]) -> None:
        self._record = record
        self._buffer = bytearray()
        self._head: tuple[str, str, dict[str, str], float] | None = None
        self._hijacked = False

    def feed(self, data: bytes) -> None:
        if self._hijacked:
            return
        self._buffer += data
        while not self._hijacked:
            if self._head is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
                del self._buffer[: end + 4]
                method, target = lines[0].split(" ", 2)[:2]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self._head = (method, target, headers, time.monotonic())
            method, target, headers, at = self._head
            if "chunked" in headers.get("transfer-encoding", "").lower():
                length = -1  # not sent by the clients measured; parse no further
            else:
                length = int(headers.get("content-length") or 0)
            if len(self._buffer) < max(length, 0):
                return
            body = bytes(self._buffer[: max(length, 0)])
            del self._buffer[: max(length, 0)]
            self._head = None
            kind, path, container = classify(method, target)
            labels: dict[str, str] = {}
            if kind == "create" and body:
                with contextlib.suppress(ValueError, AttributeError):
                    labels = dict(json.loads(body).get("Labels") or {})
            self._record.append(Call(kind, method, path, container, labels, at))
            if length < 0 or "upgrade" in headers:
                self._hijacked = True  # a raw stream from here on (stdin of an attach)


class CountingProxy:
    """Forwards ``path`` to ``target`` (the engine's socket); ``calls`` holds every request."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self.calls: list[Call] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def stop(self) -> None:
        """Close every connection, then the socket. (The handlers end on their own: in
        Python 3.11 a cancelled handler of ``start_unix_server`` logs a spurious error.)"""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        if self._handlers:
            _, late = await asyncio.wait(self._handlers, timeout=5)
            for task in late:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(client_out)
        engine_out: asyncio.StreamWriter | None = None
        try:
            engine_in, engine_out = await asyncio.open_unix_connection(self.target)
            self._writers.add(engine_out)
            requests = _Requests(self.calls)
            await asyncio.gather(
                _pipe(client_in, engine_out, requests.feed), _pipe(engine_in, client_out, None)
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (client_out, engine_out):
                if writer is not None:
                    writer.close()
                    self._writers.discard(writer)
            self._handlers.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, tap: Any) -> None:
    """Copy until EOF, then half-close the other side (an attach's stdin ends so)."""
    try:
        while data := await source.read(65536):
            if tap is not None:
                tap(data)
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        sink.close()  # the other direction ends too
