"""The event feed: one stream of the session's container events, kept open forever.

It reads ``GET /events`` (through the engine boundary) on a task that only de-duplicates and
queues, never blocking the socket (the engine drops events for a reader that stalls 100 ms);
it reconnects with backoff, replaying from the last event seen (``since`` is inclusive, hence
the de-duplication); it tells when an outage begins, when it ends (the caller re-syncs) and when
it has lasted longer than ``engine_timeout`` (the caller fails pending waits). ``process`` hands
the queued events, in order, to one handler.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

import anyio
import anyio.abc

from ._engine.base import ContainerEvent, Engine, EngineCallError, EngineConnectionError
from ._errors import translate
from ._waiters import Wake

log = logging.getLogger("aiotracker")

_DEDUPE_WINDOW = 1024


class EventFeed:
    """The session's event stream: connection, de-duplication, reconnect, outage."""

    def __init__(
        self,
        engine: Engine,
        labels: list[str],
        *,
        engine_timeout: float,
        on_reconnect: Callable[[], None],
        on_engine_lost: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._labels = labels
        self._engine_timeout = engine_timeout
        self._on_reconnect = on_reconnect
        self._on_engine_lost = on_engine_lost
        self._queue: collections.deque[ContainerEvent] = collections.deque()
        self._wake = Wake()
        self._recent: collections.deque[tuple[str, str, int]] = collections.deque()
        self._recent_set: set[tuple[str, str, int]] = set()
        self.last_event_ns = 0
        self.connected = False
        self.engine_lost = False
        self.reconnects = 0
        self.events = 0
        self._outage_since: float | None = None

    async def run(self, since_ns: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Keep the stream open; ready once the first subscription is registered.

        The first connection's failure is raised (opening fails); later ones are retried.
        """
        started = False
        backoff = 0.05

        def connected() -> None:
            nonlocal started, backoff
            self.connected = True
            backoff = 0.05
            if not started:
                started = True
                task_status.started()
                return
            if self._outage_since is not None:
                log.warning("event stream of %s reconnected", self._labels[0])
            self._outage_since = None
            self.engine_lost = False
            self._on_reconnect()

        try:
            while True:
                try:
                    await self._engine.stream_events(
                        self._labels, self.last_event_ns or since_ns, connected, self._on_event
                    )
                except (EngineConnectionError, EngineCallError) as exc:
                    # An error status (a daemon restarting, a proxy's 502) is an outage too:
                    # the stream is tried again, never left to stop the tracker.
                    if not started:
                        raise translate(exc, op="event stream") from exc
                    self._lost(exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
        finally:
            self.connected = False

    def _lost(self, exc: Exception) -> None:
        self.connected = False
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            self.reconnects += 1
            log.warning("event stream of %s lost (%s); reconnecting", self._labels[0], exc)
        elif not self.engine_lost and now - self._outage_since > self._engine_timeout:
            self.engine_lost = True
            log.error("engine away for over %.0f s: failing pending waits", self._engine_timeout)
            self._on_engine_lost()

    def _on_event(self, event: ContainerEvent) -> None:
        """On the read path: de-duplicate (``since`` is inclusive) and queue. Never blocks."""
        key = event.key
        if key in self._recent_set:
            return
        self._recent.append(key)
        self._recent_set.add(key)
        if len(self._recent) > _DEDUPE_WINDOW:
            self._recent_set.discard(self._recent.popleft())
        self.last_event_ns = max(self.last_event_ns, event.time_ns)
        self.events += 1
        self._queue.append(event)
        self._wake.set()

    async def process(self, handler: Callable[[ContainerEvent], None]) -> None:
        """Hand queued events to ``handler`` in order, forever (a synchronous handler)."""
        queue = self._queue
        while True:
            while queue:
                handler(queue.popleft())
            await self._wake.wait()
