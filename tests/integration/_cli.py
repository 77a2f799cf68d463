"""The docker CLI from async tests, and the main engine's socket."""

from __future__ import annotations

import asyncio
import os

from aiotracker._labels import SESSION_LABEL


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
