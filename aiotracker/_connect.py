"""Making and opening an engine for the public objects (tracker, sessions, monitoring), with
the endpoint's errors translated once: a malformed URL or unknown context is
``InvalidArgumentError``, ``ssh://`` is ``UnsupportedOperationError``, an engine that does
not answer is ``DrmCommunicationError``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from ._engine.base import Engine
from ._engine.docker import DockerEngine
from ._engine.endpoint import UnsupportedEndpointError
from ._engine.swarm import SwarmEngine
from ._errors import engine_errors
from ._exceptions import InvalidArgumentError, UnsupportedOperationError
from ._tasks import shielded


def docker_engine(docker_url: str | None, *, connection_limit: int, timeout: float) -> Engine:
    """The Docker (or Podman) engine at ``docker_url`` (None: the client configuration)."""
    try:
        return DockerEngine(docker_url, connection_limit=connection_limit, timeout=timeout)
    except UnsupportedEndpointError as exc:
        raise UnsupportedOperationError(str(exc)) from exc
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from exc


def swarm_engine(
    docker_url: str | None, *, node_urls: Sequence[str], poll_interval: float,
    node_down_grace: float, connection_limit: int, timeout: float,
) -> Engine:  # fmt: skip
    """The Swarm manager at ``docker_url``, with the nodes' engines at ``node_urls``."""
    if not poll_interval > 0:
        raise InvalidArgumentError(f"poll_interval must be positive, got {poll_interval!r}")
    if not node_down_grace >= 0:
        raise InvalidArgumentError(f"node_down_grace must be >= 0, got {node_down_grace!r}")
    try:
        return SwarmEngine(
            docker_url, node_urls=node_urls, poll_interval=poll_interval,
            node_down_grace=node_down_grace, connection_limit=connection_limit, timeout=timeout,
        )  # fmt: skip
    except UnsupportedEndpointError as exc:
        raise UnsupportedOperationError(str(exc)) from exc
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from exc


@asynccontextmanager
async def connected(
    docker_url: str | None, engine: Engine | None = None, *, timeout: float = 30.0
) -> AsyncIterator[Engine]:
    """An open engine for the block (``engine`` if given), closed after it, also on
    cancellation (bounded by ``timeout``)."""
    if engine is None:
        engine = docker_engine(docker_url, connection_limit=4, timeout=timeout)
    try:
        with engine_errors("connect"):
            await engine.open()
        yield engine
    finally:
        with shielded(timeout):
            await engine.aclose()
