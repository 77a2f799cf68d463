"""A unix-socket proxy between a tracker and an engine, whose connections a test can cut.

The tracker connects to ``proxy.url``; every connection is piped to the engine's socket. A test
can ``cut()`` every open connection (the event stream included) and keep the engine away until
``restore()``: while cut, new connections are either accepted and dropped at once (counted in
``dropped``) or, with ``refuse=True``, not accepted at all (the socket file is gone). The proxy
also records the request line of every HTTP request it forwards, so a test can read the
tracker's ``GET /events?since=...`` and count its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

_REQUEST_LINE = re.compile(rb"(?m)^(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP/1\.[01]\r$")


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request line seen on the way to the engine."""

    method: str
    target: str

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    @property
    def is_events(self) -> bool:
        return self.path.endswith("/events")


class _Link:
    """One proxied connection: the client's transport and the engine's."""

    __slots__ = ("client", "upstream")

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def abort(self) -> None:
        self.client.transport.abort()
        self.upstream.transport.abort()


class UnixProxy:
    """Listens on ``path`` and forwards each connection to the unix socket ``upstream``."""

    def __init__(self, path: str, upstream: str) -> None:
        self.path = path
        self.upstream = upstream
        self.requests: list[Request] = []
        self.accepted = 0
        self.dropped = 0
        self.max_open = 0
        self.cuts = 0
        self._down = False
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def is_down(self) -> bool:
        """True while cut (a method: the state changes across awaits)."""
        return self._down

    @property
    def open_connections(self) -> int:
        return len(self._links)

    @property
    def events_requests(self) -> list[Request]:
        return [r for r in self.requests if r.is_events]

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._handle, self.path)

    async def aclose(self) -> None:
        """Stop listening, cut everything and wait for every handler to end."""
        self._down = True
        self._abort_all()
        await self._stop_listening()
        while self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)

    def _abort_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        return len(links)

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Abort before waiting: from Python 3.12 on, wait_closed() waits for every connection.
            self._abort_all()
            await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def cut(self, *, refuse: bool = False) -> int:
        """Abort every open connection and keep the engine away; returns how many were cut.

        ``refuse=False``: new connections are accepted and dropped at once (a reset);
        ``refuse=True``: the socket file is removed, so connecting fails (engine gone).
        """
        self._down = True
        self.cuts += 1
        cut = self._abort_all()
        if refuse:
            await self._stop_listening()
        self._notify()
        return cut

    async def restore(self) -> None:
        """Forward new connections again (listening again if the cut refused them)."""
        self._down = False
        if self._server is None:
            await self.start()
        self._notify()

    async def until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait until ``predicate()`` holds; it is checked after every change the proxy sees."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)
            self._notify()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = object()  # this connection, for the hooks
        try:
            if self.is_down():
                raise ConnectionAbortedError("the proxy is cut")
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        except OSError:
            self.dropped += 1
            writer.transport.abort()
            return
        if self.is_down():  # cut while connecting
            self.dropped += 1
            writer.transport.abort()
            up_writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        self.accepted += 1
        self.max_open = max(self.max_open, len(self._links))
        self._notify()
        try:
            await asyncio.gather(
                self._pipe(key, reader, up_writer, inspect=True),
                self._pipe(key, up_reader, writer, inspect=False),
            )
        finally:
            self._links.discard(link)
            link.abort()
            self._closed_link(key)

    async def _pipe(
        self, key: object, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        *, inspect: bool,
    ) -> None:  # fmt: skip
        try:
            while data := await reader.read(1 << 16):
                await self._gate()
                if inspect:
                    for m in _REQUEST_LINE.finditer(data):
                        self._on_request(key, Request(m[1].decode(), m[2].decode()))
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    # Hooks for subclasses: before bytes are forwarded, on each request line, at a link's end.

    async def _gate(self) -> None:
        return

    def _on_request(self, key: object, request: Request) -> None:
        self.requests.append(request)
        self._notify()

    def _closed_link(self, key: object) -> None:
        return


class TcpProxy(UnixProxy):
    """Listens on TCP (``127.0.0.1``, a free port) and forwards each connection to the unix
    socket ``upstream``, so a tracker can be given a ``tcp://`` engine.

    Everything of ``UnixProxy`` works (``cut``, ``restore``, ``requests``, ``until``); in
    addition ``freeze()`` stops forwarding bytes in both directions while every socket stays
    open (new connections are accepted and held too), until ``thaw()``: an engine that hangs.
    ``max_api_open`` counts, at most at once, the open connections whose latest request is an
    API call (not a stream: events, attach, logs, wait; a connection that carried a stream never
    carries anything else).
    """

    _STREAMS = ("/events", "/attach", "/logs", "/wait")

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        super().__init__("", upstream)
        self.host = host
        self.port = 0
        self.max_api_open = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._api_links: set[object] = set()

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def is_frozen(self) -> bool:
        return not self._flowing.is_set()

    def freeze(self) -> None:
        """Stop forwarding (both ways, every connection, new ones too); sockets stay open."""
        self._flowing.clear()
        self._notify()

    def thaw(self) -> None:
        self._flowing.set()
        self._notify()

    async def aclose(self) -> None:
        self.thaw()  # a handler held by a freeze would never end
        await super().aclose()

    async def start(self) -> None:
        # The same port again after a cut(refuse=True) and restore().
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            self._abort_all()
            await server.wait_closed()

    async def _gate(self) -> None:
        await self._flowing.wait()

    def _on_request(self, key: object, request: Request) -> None:
        if request.path.endswith(self._STREAMS):
            self._api_links.discard(key)
        else:
            self._api_links.add(key)
            self.max_api_open = max(self.max_api_open, len(self._api_links))
        super()._on_request(key, request)

    def _closed_link(self, key: object) -> None:
        self._api_links.discard(key)
