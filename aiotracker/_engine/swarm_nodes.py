"""The swarm's nodes as this process knows them: the engines given for them (``node_urls``),
which node each engine is, their hostnames, and which nodes the manager says are down.

The nodes' engines are a bonus: one that does not answer is tried again every few seconds,
and meanwhile the task poller alone says how its jobs go (``swarm_tasks``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import NoReturn

import anyio

from .base import ContainerEvent, EngineCallError, EngineConnectionError
from .docker import DockerEngine

log = logging.getLogger("aiotracker")


class SwarmNodes:
    """The nodes of the swarm whose manager is ``manager``, and the engines of those given."""

    def __init__(self, manager: DockerEngine, node_urls: Sequence[str], *, timeout: float) -> None:
        self.manager = manager
        self.given = [DockerEngine(u, connection_limit=4, timeout=timeout) for u in node_urls]
        self._engines: dict[str, DockerEngine] = {}  # node id -> its engine (those given)
        self._opened: set[DockerEngine] = set()  # node engines that answered once
        self._manager_node = ""  # the manager's own node id
        self._node_ids: dict[str, DockerEngine] = {}  # node id -> the given engine that is it
        self._hostnames: dict[str, str] = {}  # node id -> hostname
        self.down: set[str] = set()  # nodes the manager says are down
        self.down_since: dict[str, int] = {}  # node id -> when the manager said it went down

    async def open(self, manager_node: str) -> None:
        """The manager (node ``manager_node``, open already) and the given engines that answer."""
        # The manager is a node too: its own tasks' containers are on its engine.
        self._manager_node = manager_node
        self._engines[manager_node] = self.manager
        for node in self.given:
            try:
                await self._open_node(node)
            except EngineConnectionError as exc:  # hints are a bonus: the poller is enough
                log.warning("swarm: node engine %s does not answer (%s); hints from it "
                            "when it does", node.url, exc)  # fmt: skip

    async def aclose(self) -> None:
        for engine in self.given:
            await engine.aclose()

    async def _open_node(self, node: DockerEngine) -> str:
        await node.open()
        try:
            raw = await node.request("info", "info")
        except BaseException:
            await node.aclose()  # tried again later: no client left behind meanwhile
            raise
        node_id = str(((raw or {}).get("Swarm") or {}).get("NodeID") or "")
        if not node_id:
            await node.aclose()
            raise EngineConnectionError(f"{node.url} is not a node of a swarm")
        self._engines.setdefault(node_id, node)  # the manager's own node: its engine stays
        self._node_ids[node_id] = node
        self._opened.add(node)
        return node_id

    def _node_of(self, engine: DockerEngine) -> str:
        """The node id of a given node engine ("" until it answered)."""
        return next((n for n, e in self._node_ids.items() if e is engine), "")

    def engine(self, node_id: str) -> DockerEngine | None:
        """The engine of a node, if given (the manager's for its own node)."""
        return self._engines.get(node_id)

    # -- names and state, as the manager says them -------------------------------------------

    async def read(self) -> list[tuple[str, bool]]:
        """The manager's nodes, their hostnames noted: (node id, whether it is down) each."""
        out = []
        for node in await self.manager.request("nodes", "nodes") or ():
            node_id = str(node.get("ID") or "")
            self._hostnames[node_id] = str((node.get("Description") or {}).get("Hostname") or "")
            out.append((node_id, ((node.get("Status") or {}).get("State")) == "down"))
        return out

    def known(self, node_id: str) -> bool:
        return node_id in self._hostnames

    def hostname(self, node_id: str) -> str:
        return self._hostnames.get(node_id, node_id)

    def went_down(self, node_id: str, at: int) -> None:
        self.down.add(node_id)
        self.down_since.setdefault(node_id, at)

    def came_back(self, node_id: str) -> None:
        self.down.discard(node_id)
        self.down_since.pop(node_id, None)

    # -- hints -------------------------------------------------------------------------------

    async def stream_hints(
        self, node: DockerEngine, labels: Sequence[str],
        on_event: Callable[[DockerEngine, ContainerEvent], None],
    ) -> NoReturn:  # fmt: skip
        """A node's container events, for as long as the tracker runs: a node that goes away
        (or never answered) is tried again, every few seconds; the poller covers the gap."""
        backoff = 0.5
        while True:
            try:
                if node not in self._opened:
                    await self._open_node(node)
                if self._node_of(node) == self._manager_node:
                    # The manager's engine: its events come with the manager's own stream.
                    await anyio.sleep_forever()
                await node.stream_events(labels, None, lambda: None, partial(on_event, node))
            except (EngineConnectionError, EngineCallError) as exc:
                log.debug("swarm: hints from %s stopped: %s", node.url, exc)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
