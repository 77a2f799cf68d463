"""Raw Engine API calls over a unix socket, for what a test does behind the tracker's back.

``EngineAPI`` asks the daemon's clock, replays the event ring (``since``/``until``), sends
signals in bulk; ``EventWitness`` is an independent event subscriber that records what the
daemon sends, to compare with what the tracker counted. Both use aiohttp directly (not the
tracker's client) and close every session they open.

Against Podman (``GET /version`` names a Podman component) an ``event`` filter is applied here,
not by the engine: Podman 4.3 compares it with its internal names, so ``die`` matches nothing
(fixed in 4.4.0). Its ``remove`` is recorded as Docker's ``destroy`` and the actions outside the
filter (``init``, ``cleanup``, ``stop``, ``kill``, ...) are dropped, as the tracker does.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import aiohttp

_PODMAN_ACTIONS = {"remove": "destroy"}
_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_ns(text: str) -> int:
    """Docker's RFC 3339 nano time -> ns since the epoch (exact, unlike a float)."""
    m = _TIME_RE.match(text)
    if m is None:
        raise ValueError(f"not a Docker time: {text!r}")
    whole, frac, zone = m.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return int(seconds) * 10**9 + int((frac or "").ljust(9, "0")[:9])


def since_param(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def parse_since(text: str) -> int:
    seconds, _, frac = text.partition(".")
    return int(seconds) * 10**9 + int(frac.ljust(9, "0")[:9])


class EngineAPI:
    """A small aiohttp client for one engine socket (``async with EngineAPI(path) as api``)."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None
        self.podman = False

    async def __aenter__(self) -> Self:
        connector = aiohttp.UnixConnector(self.socket_path, limit=0)
        self._session = aiohttp.ClientSession(
            "http://docker", connector=connector, timeout=aiohttp.ClientTimeout()
        )
        try:
            async with self._session.get("/version") as resp:
                resp.raise_for_status()
                components = (await resp.json()).get("Components") or []
        except BaseException:
            await self._session.close()
            raise
        self.podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
        return self

    def event_query(
        self, filters: Mapping[str, Sequence[str]]
    ) -> tuple[dict[str, list[str]], Callable[[dict[str, Any]], dict[str, Any] | None]]:
        """The filters to send for ``filters``, and what to make of each event received (None:
        not one ``filters`` asks for). Docker applies every filter itself."""
        sent = {k: list(v) for k, v in filters.items()}
        if not self.podman or "event" not in sent:
            return sent, lambda event: event
        wanted = set(sent.pop("event"))

        def keep(event: dict[str, Any]) -> dict[str, Any] | None:
            action = _PODMAN_ACTIONS.get(event.get("Action", ""), event.get("Action", ""))
            return {**event, "Action": action} if action in wanted else None

        return sent, keep

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use EngineAPI as an async context manager"
        return self._session

    async def system_time_ns(self) -> int:
        async with self.session.get("/info") as resp:
            resp.raise_for_status()
            return parse_ns((await resp.json())["SystemTime"])

    async def inspect(self, cid: str) -> dict[str, Any]:
        async with self.session.get(f"/containers/{cid}/json") as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data

    async def kill(self, cid: str, signal: str) -> None:
        async with self.session.post(f"/containers/{cid}/kill", params={"signal": signal}) as resp:
            resp.raise_for_status()

    async def signal_many(self, cid: str, signal: str, count: int, concurrency: int = 16) -> None:
        """Send ``signal`` ``count`` times: each is one ``kill`` event in the daemon's ring."""
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await self.kill(cid, signal)

        await asyncio.gather(*(one() for _ in range(count)))

    async def replay(
        self, filters: Mapping[str, Sequence[str]], since_ns: int, until_ns: int
    ) -> list[dict[str, Any]]:
        """What the daemon's replay ring still holds for ``filters`` in [since, until]."""
        sent, keep = self.event_query(filters)
        params = {
            "filters": json.dumps(sent),
            "since": since_param(since_ns),
            "until": since_param(until_ns),
        }
        async with self.session.get("/events", params=params) as resp:
            resp.raise_for_status()
            events = [keep(json.loads(line)) async for line in resp.content if line.strip()]
        return [e for e in events if e is not None]

    def witness(self, filters: Mapping[str, Sequence[str]], since_ns: int) -> EventWitness:
        return EventWitness(self, filters, since_ns)


class EventWitness:
    """An independent subscriber: records every job event the daemon sends for ``filters``.

    Opened with ``since`` (so nothing between the call and the subscription is missed), it
    reads the stream in its own task until the ``async with`` block ends.
    """

    def __init__(self, api: EngineAPI, filters: Mapping[str, Sequence[str]], since_ns: int) -> None:
        self._api = api
        sent, self._keep = api.event_query(filters)
        self._params = {"filters": json.dumps(sent), "since": since_param(since_ns)}
        self.events: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read(ready))
        await ready
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @property
    def count(self) -> int:
        return len(self.events)

    def actions(self, cid: str) -> list[str]:
        return [e["Action"] for e in self.events if e["Actor"]["ID"] == cid]

    async def _read(self, ready: asyncio.Future[None]) -> None:
        try:
            async with self._api.session.get("/events", params=self._params) as resp:
                resp.raise_for_status()
                ready.set_result(None)
                async for line in resp.content:
                    if line.strip() and (event := self._keep(json.loads(line))) is not None:
                        # Jobs' events only: the trackers' lease containers share the session.
                        if "aiotracker.lease" not in event.get("Actor", {}).get("Attributes", {}):
                            self.events.append(event)
                        self._changed.set()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise
        raise RuntimeError("the witness's event stream ended")

    async def until(self, count: int, timeout: float = 60.0) -> None:
        """Wait until at least ``count`` events have been recorded."""
        async with asyncio.timeout(timeout):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()
