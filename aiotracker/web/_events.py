"""The service's live state changes: one ``watch`` of the whole session, kept in a ring so
that a client that reconnects with ``Last-Event-ID`` gets what it missed, and handed to every
subscriber through a bounded queue of its own (a subscriber that falls behind is cut off and
reconnects; it never slows the others)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from .._exceptions import TrackerError
from .._tracker import DockerTracker
from ._codec import change_json

log = logging.getLogger("aiotracker.web")

RING = 10_000  # changes kept for resumption
QUEUE = 1_000  # changes a subscriber may lag behind before it is cut off


class Behind(Exception):
    """A subscriber fell ``QUEUE`` changes behind (it reconnects with its Last-Event-ID)."""


class EventHub:
    """Runs one watch over the session; subscribers get each change as a JSON-ready dict."""

    def __init__(self, tracker: DockerTracker) -> None:
        self._tracker = tracker
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=RING)
        self._seq = 0
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        # Event ids are "<epoch>.<seq>": another process's (or an earlier run's) ids say
        # nothing about this ring, and a client that brings one lists again.
        self.epoch = uuid.uuid4().hex[:8]

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(ready), name="aiotracker.web events")
        await ready

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            async with self._tracker.watch() as changes:
                ready.set_result(None)
                async for change in changes:
                    if change.lost:
                        self._publish({"seq": 0, "lost": change.lost})
                        continue
                    self._seq += 1
                    item = change_json(self._seq, change, self._tracker.job_array(change.job_id))
                    self._ring.append(item)
                    self._publish(item)
        except TrackerError as exc:  # the tracker closed or lost its engine
            log.info("the event hub stopped: %s", exc)
        finally:
            if not ready.done():
                ready.set_result(None)
            self.close()

    def _publish(self, item: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)  # cut off: its stream ends, the client reconnects

    def close(self) -> None:
        """End every subscriber's stream (the service shuts down)."""
        self.closed = True
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()

    async def aclose(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}.{seq}"

    def since(self, last_event_id: str | None) -> tuple[list[dict[str, Any]], bool]:
        """What a client that saw up to ``last_event_id`` missed, and whether the ring still
        held all of it (False: it must list the jobs again)."""
        if not last_event_id:
            return [], True
        epoch, _, seq = last_event_id.partition(".")
        if epoch != self.epoch or not seq.isdigit() or int(seq) > self._seq:
            return [], False
        last = int(seq)
        items = [item for item in self._ring if item["seq"] > last]
        whole = last == self._seq or (bool(self._ring) and self._ring[0]["seq"] <= last + 1)
        return items, whole

    async def subscribe(self, last_event_id: str | None) -> AsyncIterator[dict[str, Any]]:
        """Changes after ``last_event_id`` (the missed ones from the ring first), then live ones;
        ends when the service closes or the subscriber falls behind. A ``{"reset": true}``
        item first if the ring no longer holds all that was missed."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE)
        if self.closed:
            return
        missed, whole = self.since(last_event_id)  # in the same step as the registration
        self._subscribers.add(queue)
        try:
            if not whole:
                yield {"reset": True, "seq": self._seq}
            for item in missed:
                yield item
            while (live := await queue.get()) is not None:
                yield live
        finally:
            self._subscribers.discard(queue)
