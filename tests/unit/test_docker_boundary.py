"""The Docker boundary against answers that Docker 20.10 does not give here, served over HTTP
to the real ``DockerEngine`` (aiodocker, aiohttp, the boundary's parsing).

- Podman 4.3 answers the inspect of a container whose process exits as it reads its
  /proc/<pid>/cgroup with a 500 "read /proc/<pid>/cgroup: no such process" (podman#16383,
  fixed in 4.4). Seen in CI: ``job_info`` of an array task that had just run ``true`` failed
  with it.
- An engine (or a proxy) that answers an attach without taking the connection over.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aiotracker._engine.base import EngineCallError
from aiotracker._engine.docker import DockerEngine
from tests.unit._recorded_engine import UnixServer

FIXTURES = Path(__file__).parent / "fixtures" / "docker-29"
CID = "0f228c83b44dd1d0e7490732ca892120a281646f012bf457c86a69e8e70bf88b"
ESRCH = "read /proc/5312/cgroup: no such process"


class Engine(UnixServer):
    """``/version`` names Podman (or not); ``/containers/CID/json`` answers the queued errors
    first, then the recorded inspect."""

    def __init__(self, socket_path: str, *, podman: bool) -> None:
        super().__init__(socket_path)
        self.podman = podman
        self.errors: list[tuple[int, str]] = []
        self.inspects = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.split("/", 2)[-1] if request.path.startswith("/v1.") else request.path
        path = path.lstrip("/")
        if path == "version":
            version: dict[str, Any] = {"Version": "4.3.1", "ApiVersion": "1.41",
                                       "MinAPIVersion": "1.24", "Components": []}  # fmt: skip
            if self.podman:
                version["Components"] = [{"Name": "Podman Engine", "Version": "4.3.1"}]
            return web.json_response(version)
        if path == "info":
            return web.json_response(json.loads((FIXTURES / "info.json").read_text()))
        if path == f"containers/{CID}/json":
            self.inspects += 1
            if self.errors:
                status, message = self.errors.pop(0)
                return web.json_response({"cause": "x", "message": message}, status=status)
            payload = json.loads((FIXTURES / "inspect-exited.json").read_text())
            payload["Id"] = CID
            return web.json_response(payload)
        return web.json_response({"message": f"page not found: {path}"}, status=404)


@asynccontextmanager
async def _engine(*, podman: bool) -> AsyncIterator[tuple[Engine, DockerEngine]]:
    with tempfile.TemporaryDirectory(prefix="pod.", dir="/tmp") as tmp:
        async with Engine(str(Path(tmp) / "s"), podman=podman) as server:
            client = DockerEngine(server.url)
            try:
                await client.open()
                yield server, client
            finally:
                await client.aclose()


@pytest.fixture
async def podman() -> AsyncIterator[tuple[Engine, DockerEngine]]:
    async with _engine(podman=True) as pair:
        yield pair


@pytest.fixture
async def docker() -> AsyncIterator[tuple[Engine, DockerEngine]]:
    async with _engine(podman=False) as pair:
        yield pair


async def test_inspect_is_asked_again_when_the_process_exits_mid_read(
    podman: tuple[Engine, DockerEngine],
) -> None:
    server, client = podman
    assert client.product == "podman"
    server.errors = [(500, ESRCH), (500, ESRCH.replace("5312", "77"))]
    details = await client.inspect(CID)
    assert details.container_id == CID
    assert server.inspects == 3


async def test_inspect_gives_up_after_the_last_pause(podman: tuple[Engine, DockerEngine]) -> None:
    server, client = podman
    server.errors = [(500, ESRCH)] * 10
    with pytest.raises(EngineCallError, match="no such process") as caught:
        await client.inspect(CID)
    assert caught.value.status == 500
    assert server.inspects == 4  # the first call and three more


@pytest.mark.parametrize(
    "error",
    [(500, "some other failure"), (500, "open /proc/5312/cgroup: no such file or directory"),
     (404, "no such container")],
)  # fmt: skip
async def test_other_failures_are_not_asked_again(
    podman: tuple[Engine, DockerEngine], error: tuple[int, str]
) -> None:
    server, client = podman
    server.errors = [error]
    with pytest.raises(EngineCallError):
        await client.inspect(CID)
    assert server.inspects == 1


async def test_docker_is_not_asked_again(docker: tuple[Engine, DockerEngine]) -> None:
    server, client = docker
    assert client.product == "docker"
    server.errors = [(500, ESRCH)]
    with pytest.raises(EngineCallError, match="no such process"):
        await client.inspect(CID)
    assert server.inspects == 1


class NoUpgrade(Engine):
    """Answers an attach with a plain 200 and a body: no connection to take over."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith(f"/containers/{CID}/attach"):
            return web.Response(text="not upgraded")
        return await super()._handle(request)


@pytest.mark.parametrize("call", ["attach_output", "hold_stdin", "feed_stdin"])
async def test_an_attach_that_is_not_upgraded_is_the_engines_error(call: str) -> None:
    """An engine (or a proxy) that answers an attach without taking the connection over: the
    call fails with the boundary's error (it raised AssertionError from aiodocker's close)."""
    with tempfile.TemporaryDirectory(prefix="pod.", dir="/tmp") as tmp:
        async with NoUpgrade(str(Path(tmp) / "s"), podman=False) as server:
            client = DockerEngine(server.url)
            try:
                await client.open()
                with pytest.raises(EngineCallError, match="Cannot upgrade"):
                    await _use(client, call)
            finally:
                await client.aclose()


async def _use(client: DockerEngine, call: str) -> None:
    if call == "attach_output":
        async with client.attach_output(CID):
            pass
    elif call == "hold_stdin":
        async with client.hold_stdin(CID):
            pass
    else:
        await client.feed_stdin(CID, io.BytesIO(b"x"))
