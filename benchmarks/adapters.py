"""One small adapter per method compared: submit a job, wait for its end.

Each ``wait`` returns ``time.time_ns()`` taken where the waiting call returned (in the thread,
for docker-py), so latencies are measured against the ``die`` event's ``timeNano`` (the same
wall clock: the engine runs on this host).

- ``AiotrackerMethod``: ``DockerTracker.add_job`` / ``wait`` (events and cache).
- ``PollingMethod``: what the Go drmaa2os tracker does (``helper.WaitForState``): check at
  once, then inspect on a 100 ms ticker (fixed rate, missed ticks dropped, as Go's
  ``time.Ticker``) until the container is not running; same aiodocker client as the raw one.
- ``PerJobWaitMethod``: aiodocker's ``container.wait()``, one long-poll connection per job.
- ``DockerPyMethod``: docker-py, ``containers.run(detach=True)`` and ``wait()`` in a thread
  per call, with the client's defaults (urllib3 pool of 10).
- ``RawMethod``: aiodocker create+start with nothing else (the limit for submission).
- ``EventsOnlyMethod``: a reference, not a product: raw submission, and waits resolved by
  the ``die`` event alone (aiodocker's event subscriber, no inspect, no cache): the floor of
  an in-process event-driven wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiodocker
import aiohttp
import docker
import docker.types

from aiotracker import DockerTracker, JobTemplate

from .common import IMAGE, NO_NETWORK, Context, raw_config, raw_run

POLL_PERIOD = 0.1  # drmaa2os pkg/helper WaitForState: time.NewTicker(100 ms)
# A container that is not running any more: Podman says "stopped" between the exit and its
# clean-up (Docker never does), so a poller sees the end there.
ENDED = ("exited", "dead", "stopped")


@dataclass(frozen=True)
class JobSpec:
    """What a job runs; every method turns it into its own create request."""

    command: tuple[str, ...]
    binds: dict[str, str] = field(default_factory=dict)
    output_path: str = ""


class Method(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, spec: JobSpec) -> str: ...

    async def wait(self, cid: str) -> int: ...


class AiotrackerMethod:
    """aiotracker: one tracker, waits resolved from its event-fed cache."""

    name = "aiotracker"

    def __init__(
        self, ctx: Context, part: str, session: str | None = None, *, docker_url: str = ""
    ) -> None:
        self.ctx = ctx
        self.part = part
        self.session = session or ctx.session(part)
        self.docker_url = docker_url or ctx.engine.url  # another: a proxy in front of it
        self._tracker: DockerTracker | None = None

    @property
    def tracker(self) -> DockerTracker:
        assert self._tracker is not None, "open() first"
        return self._tracker

    async def open(self) -> None:
        self._tracker = DockerTracker(
            self.session, docker_url=self.docker_url, labels=self.ctx.labels(self.part)
        )
        await self._tracker.open()

    async def close(self) -> None:
        if self._tracker is not None:
            await self._tracker.aclose()

    def template(self, spec: JobSpec) -> JobTemplate:
        return JobTemplate(
            job_category=IMAGE,
            remote_command=spec.command[0],
            args=list(spec.command[1:]),
            stage_in_files=dict(spec.binds),
            output_path=spec.output_path,
            extensions=NO_NETWORK,
        )

    def template_of(self, command: tuple[str, ...]) -> JobTemplate:
        return self.template(JobSpec(command))

    async def submit(self, spec: JobSpec) -> str:
        return await self.tracker.add_job(self.template(spec))

    async def wait(self, cid: str) -> int:
        await self.tracker.wait(cid)
        return time.time_ns()


class RawMethod:
    """aiodocker create+start, nothing else; ``limit`` None keeps aiodocker's default pool."""

    name = "raw aiodocker"

    def __init__(self, ctx: Context, part: str, *, limit: int | None = None) -> None:
        self.ctx = ctx
        self.part = part
        self.limit = limit
        self._docker: aiodocker.Docker | None = None
        self._connector: aiohttp.BaseConnector | None = None

    @property
    def docker(self) -> aiodocker.Docker:
        assert self._docker is not None, "open() first"
        return self._docker

    async def open(self) -> None:
        if self.limit is None:
            # its own UnixConnector: limit 100
            self._docker = aiodocker.Docker(url=self.ctx.engine.url)
        else:
            self._connector = aiohttp.UnixConnector(self.ctx.engine.socket, limit=self.limit)
            self._docker = aiodocker.Docker(url="unix://localhost", connector=self._connector)
        # The API version is negotiated here, once: aiodocker does it on a client's first call,
        # for every call made before it is known (no lock). On Docker a GET /version costs about
        # a millisecond; on Podman 0.3 s (it runs conmon, runc and dpkg-query), and 104 waits
        # started at once on a fresh client spent their first seconds on 104 of them.
        await self._docker.version()

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
        if self._connector is not None:
            await self._connector.close()

    async def submit(self, spec: JobSpec) -> str:
        config = raw_config(self.ctx, self.part, spec.command, binds=spec.binds)
        return await raw_run(self.docker, config)

    async def wait(self, cid: str) -> int:
        raise NotImplementedError("the raw method does not wait: the observer is its limit")


class PollingMethod(RawMethod):
    """drmaa2os's wait: inspect at once, then every 100 ms on a fixed-rate ticker."""

    name = "polling 100 ms"

    def __init__(self, ctx: Context, part: str, *, limit: int | None = None) -> None:
        super().__init__(ctx, part, limit=limit)
        self.inspects = 0

    async def wait(self, cid: str) -> int:
        container = self.docker.containers.container(cid)
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            state = (await container.show())["State"]
            self.inspects += 1
            if state["Status"] in ENDED and not state.get("Restarting"):
                return time.time_ns()
            now = loop.time()
            tick += POLL_PERIOD
            if tick < now:  # Go's ticker drops the ticks a slow receiver missed
                tick += ((now - tick) // POLL_PERIOD + 1) * POLL_PERIOD
            await asyncio.sleep(tick - now)


class PerJobWaitMethod(RawMethod):
    """aiodocker ``container.wait()``: a long poll, one pooled connection per pending wait."""

    name = "aiodocker wait()"

    async def wait(self, cid: str) -> int:
        await self.docker.containers.container(cid).wait()
        return time.time_ns()


class EventsOnlyMethod(RawMethod):
    """Waits resolved by the die event as it reaches this process; no inspect, no cache."""

    name = "die event only"

    def __init__(self, ctx: Context, part: str, *, limit: int | None = None) -> None:
        super().__init__(ctx, part, limit=limit)
        self._dead: dict[str, int] = {}
        self._waiting: dict[str, asyncio.Future[int]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await super().open()
        labels = [f"{k}={v}" for k, v in self.ctx.labels(self.part).items()]
        filters = {"type": ["container"], "event": ["die"], "label": labels}
        if self.ctx.engine.podman:
            # Podman 4.3 compares the event filter with its internal name ("died"): a "die"
            # filter matches nothing. The die events are picked out in _read instead.
            del filters["event"]
        subscriber = self.docker.events.subscribe(filters=json.dumps(filters))
        self._reader = asyncio.create_task(self._read(subscriber))
        await asyncio.sleep(0.2)  # aiodocker gives no "connected" signal

    async def _read(self, subscriber: Any) -> None:
        while (event := await subscriber.get()) is not None:
            now = time.time_ns()
            if event.get("Action") != "die":
                continue
            cid = event["Actor"]["ID"]
            self._dead[cid] = now
            future = self._waiting.pop(cid, None)
            if future is not None and not future.done():
                future.set_result(now)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await super().close()

    async def wait(self, cid: str) -> int:
        if cid in self._dead:
            return self._dead[cid]
        future = asyncio.get_running_loop().create_future()
        self._waiting[cid] = future
        await future
        return time.time_ns()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class DockerPyMethod:
    """docker-py as a Python user writes it: run(detach=True), then wait() in a thread per job."""

    name = "docker-py threads"

    def __init__(self, ctx: Context, part: str) -> None:
        self.ctx = ctx
        self.part = part
        self._client: Any = None
        self.threads: list[threading.Thread] = []

    @property
    def client(self) -> Any:
        assert self._client is not None, "open() first"
        return self._client

    async def open(self) -> None:
        # Past its pool of 10, urllib3 warns once per connection it drops: not 200 times here.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        self._client = await asyncio.to_thread(docker.DockerClient, base_url=self.ctx.engine.url)

    async def close(self) -> None:
        for thread in self.threads:
            await asyncio.to_thread(thread.join, 30)
        self.threads = [t for t in self.threads if t.is_alive()]
        if self._client is not None:
            self._client.close()

    def in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn`` in a new thread; the future gets its result (or error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def run() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(_settle, future, result, error)

        thread = threading.Thread(target=run, daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()]
        self.threads.append(thread)
        thread.start()
        return future

    def _run(self, spec: JobSpec) -> str:
        container = self.client.containers.run(
            IMAGE,
            list(spec.command),
            detach=True,
            labels=self.ctx.labels(self.part),
            network_mode="none",
            network_disabled=True,
            log_config=docker.types.LogConfig(type=self.ctx.engine.log_driver("local")),
            volumes={src: {"bind": dst, "mode": "rw"} for src, dst in spec.binds.items()},
        )
        return str(container.id)

    def _wait(self, cid: str) -> int:
        self.client.api.wait(cid)
        return time.time_ns()

    async def submit(self, spec: JobSpec) -> str:
        return str(await self.in_thread(self._run, spec))

    async def wait(self, cid: str) -> int:
        return int(await self.in_thread(self._wait, cid))
