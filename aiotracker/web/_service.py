"""The service behind the routes: its tracker, its event hub, its policy, its token, and the
life cycle that aiohttp's signals drive.

Order matters at shutdown: aiohttp calls ``on_shutdown`` and then waits (up to its shutdown
timeout) for the handlers still running before it calls ``on_cleanup``. So ``on_shutdown``
answers every pending long poll at once (503) and ends every stream, and only ``on_cleanup``
closes the tracker: shutting down takes milliseconds, not the pending jobs' run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar

from aiohttp import web

from .._exceptions import TrackerClosedError
from .._tracker import DockerTracker
from ._events import EventHub
from ._policy import Policy

log = logging.getLogger("aiotracker.web")
T = TypeVar("T")

MAX_BODY = 256 * 1024  # bytes of JSON a request may send


class Service:
    """One tracker served over HTTP (``setup`` makes it and ties it to an app's signals)."""

    def __init__(
        self,
        session: str,
        *,
        docker_url: str | None = None,
        token: str | None = None,
        allowed_images: Iterable[str] = (),
        allow: Iterable[str] = (),
        role: Literal["worker", "observer"] = "worker",
        max_body: int = MAX_BODY,
        tracker_options: Mapping[str, Any] | None = None,
    ) -> None:
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ValueError("token must be a string of at least 16 characters")
        self.session = session
        self.docker_url = docker_url
        # A token of its own when none is given: never an open service by accident.
        self.token = token if token is not None else secrets.token_urlsafe(24)
        self.generated_token = token is None
        self.policy = Policy.of(allowed_images, allow)
        self.role = role
        self.max_body = max_body
        self._tracker_options = dict(tracker_options or {})
        self._tracker: DockerTracker | None = None
        self._hub: EventHub | None = None
        self.closing = asyncio.Event()
        self.pending = 0  # long polls and streams under way (for tests and statistics)

    @property
    def tracker(self) -> DockerTracker:
        if self._tracker is None or self.closing.is_set():
            raise TrackerClosedError("the service is not running")
        return self._tracker

    @property
    def hub(self) -> EventHub:
        if self._hub is None:
            raise TrackerClosedError("the service is not running")
        return self._hub

    # -- life cycle (aiohttp signals) ---------------------------------------------------

    async def on_startup(self, app: web.Application) -> None:
        tracker = DockerTracker(
            self.session, docker_url=self.docker_url, role=self.role, **self._tracker_options
        )
        await tracker.open()
        try:
            hub = EventHub(tracker)
            await hub.start()
        except BaseException:
            await tracker.aclose()
            raise
        self._tracker, self._hub = tracker, hub
        if self.generated_token:
            log.warning("aiotracker service token (generated): %s", self.token)

    async def on_shutdown(self, app: web.Application) -> None:
        self.closing.set()
        if self._hub is not None:
            self._hub.close()

    async def on_cleanup(self, app: web.Application) -> None:
        self.closing.set()
        hub, tracker, self._hub, self._tracker = self._hub, self._tracker, None, None
        if hub is not None:
            await hub.aclose()
        if tracker is not None:
            await tracker.aclose()

    # -- requests ----------------------------------------------------------------------

    def authorized(self, request: web.Request) -> bool:
        """A bearer token equal to the service's, compared in constant time."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), self.token.encode())

    async def until_closing(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, or raise ``TrackerClosedError`` as soon as the service shuts
        down (the awaitable is then cancelled)."""
        self.pending += 1
        task = asyncio.ensure_future(awaitable)
        closing: asyncio.Future[Any] = asyncio.ensure_future(self.closing.wait())
        try:
            await asyncio.wait((task, closing), return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            raise TrackerClosedError("the service is shutting down")
        finally:
            self.pending -= 1
            for future in (task, closing):
                if not future.done():
                    future.cancel()
                    with contextlib.suppress(BaseException):
                        await future

    async def items_until_closing(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """The items of ``items`` until it ends or the service shuts down."""
        self.pending += 1
        closing: asyncio.Future[Any] = asyncio.ensure_future(self.closing.wait())
        try:
            while True:
                step: asyncio.Future[Any] = asyncio.ensure_future(anext(items))
                await asyncio.wait((step, closing), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(BaseException):
                        await step
                    return
                try:
                    item: T = step.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self.pending -= 1
            closing.cancel()
            with contextlib.suppress(BaseException):
                await closing


Handler = Callable[[Service, web.Request], Awaitable[web.StreamResponse]]
