"""Shared helpers of the integration tests: the docker CLI, the main engine's socket, and
``eventually`` for conditions no event announces."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiotracker._labels import SESSION_LABEL
from tests.conftest import RUN_LABEL, RUN_TOKEN


def _main_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return "/run/docker.sock" if os.path.exists("/run/docker.sock") else "/var/run/docker.sock"


MAIN_SOCKET = _main_socket()


async def adocker(*args: str, host: str | None = None, check: bool = True) -> str:
    """The docker CLI, without blocking the event loop (the tracker reads events meanwhile)."""
    argv = ["docker", *(["-H", host] if host else []), *args]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def session_containers(session: str, host: str | None = None) -> list[str]:
    """Full ids of the session's job containers (its trackers' lease containers left out)."""
    out = await adocker(
        "ps", "-a", "--no-trunc", "--filter", f"label={SESSION_LABEL}={session}",
        "--format", '{{.ID}} {{.Label "aiotracker.lease"}}', host=host,
    )  # fmt: skip
    return sorted(line.split()[0] for line in out.splitlines() if len(line.split()) == 1)


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 60.0
) -> None:
    """Wait (checking every 10 ms) until ``predicate()``; for conditions no event announces."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        await asyncio.sleep(0.01)


def remove_session_containers(session: str) -> None:
    """Remove the session's containers that carry this run's label (blocking; for fixtures)."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={SESSION_LABEL}={session}",
         "--filter", f"label={RUN_LABEL}={RUN_TOKEN}"],
        capture_output=True, text=True, check=False, timeout=120,
    ).stdout.split()  # fmt: skip
    for i in range(0, len(ids), 200):
        subprocess.run(
            ["docker", "rm", "-f", "-v", *ids[i : i + 200]],
            capture_output=True, check=False, timeout=300,
        )  # fmt: skip


async def gather_bounded(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run the calls concurrently, at most ``limit`` at a time, results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))
