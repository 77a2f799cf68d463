"""The Swarm task tracker's catch-up at (re)connecting, against a manager that has not heard
of exits its nodes know of: stub engines answer as Docker's API would, so that a node can be
made slow, or lose a container between its listing and its inspect, on purpose."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import anyio
import pytest

from aiotracker._engine import swarm_tasks
from aiotracker._engine.base import (
    ContainerDetails,
    ContainerEvent,
    ContainerSummary,
    EngineCallError,
    EngineConnectionError,
)
from aiotracker._engine.docker import DockerEngine
from aiotracker._engine.swarm_nodes import SwarmNodes
from aiotracker._engine.swarm_spec import RUN_LABEL
from aiotracker._engine.swarm_tasks import TaskTracker

NODE = "node-1"
JOBS = {"svc1": "c1", "svc2": "c2", "svc3": "c3"}  # service id -> its task's container
EXITS = {"c1": 0, "c2": 3}  # the node's exited containers; c3 still runs
FINISHED = datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC)


class Manager:
    """Lists every job's task as running on NODE (run 1): it has not heard of the exits."""

    async def request(self, what: str, path: str, **kw: Any) -> Any:
        if path == "nodes":
            return [{"ID": NODE, "Description": {"Hostname": "h1"}, "Status": {"State": "ready"}}]
        if path == "services":
            return [{"ID": sid, "Spec": {"Labels": {RUN_LABEL: "1"}}} for sid in JOBS]
        assert path == "tasks"
        return [
            {"ID": f"t-{sid}", "ServiceID": sid, "NodeID": NODE, "JobIteration": {"Index": 1},
             "Status": {"State": "running", "Timestamp": "2026-01-01T12:00:00Z",
                        "ContainerStatus": {"ContainerID": cid}}}
            for sid, cid in JOBS.items()
        ]  # fmt: skip


class Node:
    """A node's engine: the exited containers, their inspects; ``gone`` are removed between
    the listing and the inspect; ``hang`` never answers; ``away`` cannot be reached."""

    def __init__(self, *, gone: frozenset[str] = frozenset(), hang: bool = False,
                 away: bool = False) -> None:  # fmt: skip
        self.gone, self.hang, self.away = gone, hang, away

    async def list_containers(self, label: str | None, *, filters: Any) -> list[ContainerSummary]:
        if self.hang:
            await anyio.sleep_forever()
        if self.away:
            raise EngineConnectionError("cannot reach the node")
        assert filters["status"] == ["exited"]
        return [
            ContainerSummary(cid, "task", "exited", f"Exited ({EXITS[cid]})", {})
            for cid in filters["id"]
            if cid in EXITS
        ]

    async def inspect(self, cid: str) -> ContainerDetails:
        if cid in self.gone:
            raise EngineCallError(404, f"No such container: {cid}")
        return ContainerDetails(
            container_id=cid, name="task", status="exited", running=False, paused=False,
            restarting=False, oom_killed=False, dead=False, exit_code=EXITS[cid], error="",
            created=FINISHED, started_at=FINISHED, finished_at=FINISHED, labels={}, image="",
        )  # fmt: skip


def tracker(node: Node | None) -> tuple[TaskTracker, list[ContainerEvent]]:
    manager = cast(DockerEngine, Manager())
    nodes = SwarmNodes(manager, [], timeout=1)
    if node is not None:
        nodes._engines[NODE] = cast(DockerEngine, node)  # as open() notes a given node

    async def write_name(sid: str) -> bool:
        return True

    tasks = TaskTracker(manager, nodes, poll_interval=0.1, node_down_grace=60,
                        write_name=write_name)  # fmt: skip
    events: list[ContainerEvent] = []
    tasks.bind(events.append, ["drmaa2_jobsession=s"])
    return tasks, events


def dies(events: list[ContainerEvent]) -> dict[str, str]:
    return {e.container_id: e.attributes["exitCode"] for e in events if e.action == "die"}


async def test_exits_the_manager_has_not_heard_of_are_told_by_the_node() -> None:
    """Each exit the node knows of is a die, with its exit code and time, and noted
    (``job.exit``: what the listing and inspect say until the manager hears); a job still
    running is left to the poller."""
    tasks, events = tracker(Node())
    await tasks.catch_up()
    assert dies(events) == {"svc1": "0", "svc2": "3"}
    finished_ns = int(FINISHED.timestamp()) * 10**9
    assert [e.time_ns for e in events if e.action == "die"] == [finished_ns] * 2
    assert tasks.polled == {"svc3"}
    job = tasks.get("svc2")
    assert job is not None
    assert job.exit == (3, finished_ns)


async def test_without_the_nodes_engine_the_jobs_are_left_to_the_poller() -> None:
    tasks, events = tracker(None)
    await tasks.catch_up()
    assert dies(events) == {}
    assert tasks.polled == set(JOBS)


async def test_a_container_gone_before_its_inspect_leaves_the_other_exits_told() -> None:
    """A task container removed between the listing and its inspect (another tracker removed
    its service): its exit comes from the manager; the node's other exits are told now."""
    tasks, events = tracker(Node(gone=frozenset({"c1"})))
    await tasks.catch_up()
    assert dies(events) == {"svc2": "3"}


@pytest.mark.parametrize("node", [Node(hang=True), Node(away=True)], ids=["hangs", "away"])
async def test_a_node_that_does_not_answer_holds_nothing_up(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that accepts and says nothing is given NODE_ASK_TIMEOUT, not its engine's
    timeout; one away fails at once: either way the catch-up (and the opening) goes on."""
    monkeypatch.setattr(swarm_tasks, "NODE_ASK_TIMEOUT", 0.05)
    tasks, events = tracker(node)
    with anyio.fail_after(1):
        await tasks.catch_up()
    assert dies(events) == {}
    assert tasks.polled == set(JOBS)
