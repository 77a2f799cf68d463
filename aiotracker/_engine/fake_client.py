"""A client of the fake engine: several trackers (as several processes would) share one
``FakeEngine``, each through its own client, so that closing one closes only its own
connection."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import IO, TYPE_CHECKING, Any, NoReturn

from .base import (
    ContainerDetails,
    ContainerEvent,
    ContainerSummary,
    EngineConnectionError,
    EngineInfo,
    OutputReader,
)

if TYPE_CHECKING:
    from .fake import FakeEngine


class FakeClient:
    """One connection to a ``FakeEngine`` (``engine.client()``); an ``Engine`` itself."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.closed = True
        self.started: list[str] = []  # the containers this client started, in order
        self.refuse: set[str] = set()  # operations that fail on this client alone

    @property
    def url(self) -> str:
        return self.engine.url

    @property
    def starts_at_once(self) -> bool:
        return True

    def _up(self, op: str) -> FakeEngine:
        if self.closed or op in self.refuse:
            raise EngineConnectionError("this client is closed")
        return self.engine

    async def open(self) -> EngineInfo:
        self.closed = False
        return await self.engine.info()

    async def aclose(self) -> None:
        self.closed = True  # its streams end with the tasks of the tracker that closed it

    async def info(self) -> EngineInfo:
        return await self._up("info").info()

    def is_job_id(self, text: str) -> bool:
        return self.engine.is_job_id(text)

    async def create(self, config: Mapping[str, Any], name: str | None) -> str:
        return await self._up("create").create(config, name)

    async def start(self, cid: str) -> None:
        await self._up("start").start(cid)
        self.started.append(cid)

    async def inspect(self, cid: str) -> ContainerDetails:
        return await self._up("inspect").inspect(cid)

    async def list_containers(
        self, label: str | None, *, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[ContainerSummary]:
        return await self._up("list_containers").list_containers(label, filters=filters)

    async def cpu_usage_ns(self, cid: str) -> int | None:
        return await self._up("cpu_usage_ns").cpu_usage_ns(cid)

    async def kill(self, cid: str) -> None:
        await self._up("kill").kill(cid)

    async def pause(self, cid: str) -> None:
        await self._up("pause").pause(cid)

    async def unpause(self, cid: str) -> None:
        await self._up("unpause").unpause(cid)

    async def rename(self, cid: str, name: str) -> None:
        await self._up("rename").rename(cid, name)

    async def disable_restart(self, cid: str) -> None:
        await self._up("disable_restart").disable_restart(cid)

    async def remove(self, cid: str, *, force: bool = False) -> None:
        await self._up("remove").remove(cid, force=force)

    async def image_present(self, image: str) -> bool:
        return await self._up("image_present").image_present(image)

    async def pull(
        self, image: str, auth: str | None, progress: Callable[[Mapping[str, Any]], None]
    ) -> None:
        await self._up("pull").pull(image, auth, progress)

    async def image_tags(self) -> list[str]:
        return await self._up("image_tags").image_tags()

    async def stream_events(
        self,
        labels: Sequence[str],
        since_ns: int | None,
        on_connected: Callable[[], None],
        on_event: Callable[[ContainerEvent], None],
    ) -> NoReturn:
        await self._up("stream_events").stream_events(labels, since_ns, on_connected, on_event)

    def attach_output(
        self, cid: str, *, logs: bool = False
    ) -> AbstractAsyncContextManager[OutputReader]:
        return self._up("attach_output").attach_output(cid, logs=logs)

    def read_logs(
        self, cid: str, *, follow: bool = False
    ) -> AbstractAsyncContextManager[OutputReader]:
        return self._up("read_logs").read_logs(cid, follow=follow)

    async def feed_stdin(self, cid: str, source: IO[bytes]) -> None:
        await self._up("feed_stdin").feed_stdin(cid, source)

    async def copy_out(self, cid: str, path: str, write: Callable[[bytes], object]) -> None:
        await self._up("copy_out").copy_out(cid, path, write)

    def hold_stdin(self, cid: str) -> AbstractAsyncContextManager[None]:
        return self._up("hold_stdin").hold_stdin(cid)
