"""SwarmTracker: the same tracker, its jobs run as Docker Swarm services."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal

from ._connect import swarm_engine
from ._engine.swarm import SwarmEngine
from ._errors import engine_errors
from ._exceptions import InvalidArgumentError
from ._mapping import machine_from_info
from ._model import Machine
from ._monitoring import MonitoringSession
from ._pull import PullProgress
from ._tracker import DockerTracker


class SwarmTracker(DockerTracker):
    """Runs DRMAA2 jobs as services of a Docker Swarm and tracks them; the API and its
    semantics are ``DockerTracker``'s (docs/swarm.md says where Swarm differs).

    Each job is a replicated-job service with one completion, placed by the swarm on any node
    (``candidate_machines``: one node hostname, or a constraint such as
    ``node.labels.zone==a``); ``JobInfo.allocated_machines`` names the node that ran it. An
    array's tasks are services submitted in index order, never more than ``max_parallel``
    unfinished at once. Swarm sends no task events: one task poller for the whole session
    follows every unfinished job (one ``GET /tasks`` per ``poll_interval``, nothing when no
    job is unfinished), and the nodes' own engines, where given, make exits known at once.

    Args:
        job_session: The session name, as for ``DockerTracker``.
        docker_url: A manager's engine (None: the client configuration, as for Docker).
        node_urls: The nodes' engines, if this process can reach them: exits are then known
            about 1 ms after they happen instead of within a poll interval, and jobs can be
            suspended and resumed (Swarm itself cannot pause a task).
        poll_interval: Seconds between task polls while any job has not ended.
        node_down_grace: Seconds a job's node may stay down (the job UNDETERMINED from the
            moment the manager says it is down) before the job is given up as FAILED (exit
            status 255, the reason in its annotation). Swarm itself says nothing more until
            the node comes back.
        The other arguments are ``DockerTracker``'s.
    """

    def __init__(
        self,
        job_session: str,
        *,
        docker_url: str | None = None,
        node_urls: Sequence[str] = (),
        poll_interval: float = 0.1,
        node_down_grace: float = 60.0,
        connection_limit: int = 32,
        engine_timeout: float = 30.0,
        labels: dict[str, str] | None = None,
        max_inspects: int = 16,
        role: Literal["worker", "observer"] = "worker",
        on_pull: Callable[[PullProgress], None] | None = None,
        max_running: int = 0,
    ) -> None:
        engine = swarm_engine(
            docker_url, node_urls=node_urls, poll_interval=poll_interval,
            node_down_grace=node_down_grace, connection_limit=connection_limit,
            timeout=engine_timeout,
        )  # fmt: skip
        super().__init__(
            job_session, connection_limit=connection_limit, engine_timeout=engine_timeout,
            labels=labels, max_inspects=max_inspects, role=role, on_pull=on_pull,
            max_running=max_running, engine=engine,
        )  # fmt: skip


class SwarmMonitoringSession(MonitoringSession):
    """DRMAA2's monitoring session over a swarm: ``get_all_machines`` lists its nodes (a node
    that is down or drained is not ``available``), ``get_all_jobs`` its jobs (services) and the
    manager's own containers. Arguments as ``SwarmTracker``'s."""

    def __init__(
        self, docker_url: str | None = None, *, node_urls: Sequence[str] = (),
        engine_timeout: float = 30.0,
    ) -> None:  # fmt: skip
        engine = swarm_engine(
            docker_url, node_urls=node_urls, poll_interval=1.0, node_down_grace=60.0,
            connection_limit=8, timeout=engine_timeout,
        )  # fmt: skip
        assert isinstance(engine, SwarmEngine)
        self._swarm = engine
        super().__init__(engine=engine, engine_timeout=engine_timeout)

    async def get_all_machines(self, names: Sequence[str] | None = None) -> list[Machine]:
        """The swarm's nodes (sorted by name); with ``names``, those named."""
        self._open_engine()
        if isinstance(names, str):
            raise InvalidArgumentError("names must be a collection of machine names")
        with engine_errors("nodes"):
            nodes = await self._swarm.nodes()
        machines = [
            dataclasses.replace(machine_from_info(info), available=up) for info, up in nodes
        ]
        return [m for m in machines if names is None or m.name in names]
