"""An HTTP engine that answers with recorded payloads, on a unix socket: the real
``DockerEngine`` (aiodocker, aiohttp, the boundary's parsing) against engines that cannot run
here (Docker 29, API 1.52). Payloads live in ``tests/unit/fixtures/<engine>/``:

- ``version.json``, ``info.json``: as ``GET /version`` and ``GET /info`` answer;
- ``containers-running.json``: ``GET /containers/json`` for the session's label;
- ``inspect-running.json`` then ``inspect-exited.json``: ``GET /containers/{id}/json``
  before and after the ``die`` of ``events.jsonl``;
- ``events.jsonl``: the event stream, sent line by line when the test calls ``play()``.

A versioned path below the engine's ``MinAPIVersion`` or above its ``ApiVersion`` is refused
with Docker's 400; every version asked for is recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any, Self

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures"
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def _as_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


class UnixServer:
    """An HTTP server on a unix socket whose every request goes to ``_handle``."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.UnixSite(self._runner, self.socket_path).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class RecordedEngine(UnixServer):
    def __init__(self, name: str, socket_path: str) -> None:
        super().__init__(socket_path)
        self.dir = FIXTURES / name
        self.version = self._json("version.json")
        self.container = self._json("containers-running.json")[0]["Id"]
        self.versions_asked: list[str] = []
        self.paths: list[str] = []
        self._events: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._exited = False
        self._removed = False
        self._sent = 0

    def _json(self, name: str) -> Any:
        return json.loads((self.dir / name).read_text())

    async def __aexit__(self, *exc: object) -> None:
        self._events.put_nowait(None)
        await super().__aexit__(*exc)

    def play(self, *, until: str | None = None) -> None:
        """Send the recorded events not sent yet, up to and including the first ``until``
        action (all if None)."""
        lines = (self.dir / "events.jsonl").read_bytes().splitlines(keepends=True)
        while self._sent < len(lines):
            line = lines[self._sent]
            self._sent += 1
            self._events.put_nowait(line)
            if until is not None and json.loads(line).get("Action") == until:
                return

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        match = _VERSIONED.match(path)
        if match is not None:
            asked = f"{match[1]}.{match[2]}"
            self.versions_asked.append(asked)
            path = match[3]
            low, high = (
                _as_tuple(self.version["MinAPIVersion"]),
                _as_tuple(self.version["ApiVersion"]),
            )
            if _as_tuple(asked) < low:
                return _error(400, f"client version {asked} is too old. Minimum supported API "
                              f"version is {self.version['MinAPIVersion']}, please upgrade your "
                              "client to a newer version")  # fmt: skip
            if _as_tuple(asked) > high:
                return _error(400, f"client version {asked} is too new. Maximum supported API "
                              f"version is {self.version['ApiVersion']}")  # fmt: skip
        self.paths.append(f"{request.method} {path}")
        if path == "/_ping":
            return web.Response(text="OK")
        if path == "/version":
            return web.json_response(self.version)
        if path == "/info":
            return web.json_response(self._json("info.json"))
        if path == "/containers/json":
            labels = json.loads(request.query.get("filters", "{}")).get("label", [])
            mine = any(label.startswith("drmaa2_jobsession=") for label in labels)
            return web.json_response(self._listing() if mine and not self._removed else [])
        if path == f"/containers/{self.container}/json":
            if self._removed:
                return _error(404, f"No such container: {self.container}")
            name = "inspect-exited.json" if self._exited else "inspect-running.json"
            return web.json_response(self._json(name))
        if path == "/events":
            return await self._stream_events(request)
        return _error(404, f"page not found: {path}")

    def _listing(self) -> list[dict[str, Any]]:
        listing: list[dict[str, Any]] = self._json("containers-running.json")
        if self._exited:
            listing[0].update(State="exited", Status="Exited (3) 1 second ago")
        return listing

    async def _stream_events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        while (line := await self._events.get()) is not None:
            event = json.loads(line)
            if event.get("Action") == "die":
                self._exited = True
            elif event.get("Action") in ("destroy", "remove"):
                self._removed = True
            await response.write(line)
        return response


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)
