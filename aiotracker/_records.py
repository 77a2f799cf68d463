"""Typed records of what the engine says about containers: the only shapes that leave ``_docker``.

Pure data. ``_docker`` builds them from aiodocker's dicts; ``_mapping`` and ``_cache`` read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """One container event of ``GET /events``."""

    container_id: str
    action: str
    time_ns: int
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity for de-duplicating the inclusive ``since`` boundary on reconnect."""
        return (self.container_id, self.action, self.time_ns)


@dataclass(frozen=True, slots=True)
class ContainerSummary:
    """One entry of ``GET /containers/json``: cheap, but without exit details."""

    container_id: str
    name: str
    state: str  # created|running|paused|restarting|removing|exited|dead
    status: str  # human text: "Exited (3) 2 seconds ago"
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ContainerDetails:
    """What ``GET /containers/{id}/json`` says that the tracker uses."""

    container_id: str
    name: str
    status: str
    running: bool
    paused: bool
    restarting: bool
    oom_killed: bool
    dead: bool
    exit_code: int
    error: str
    created: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    labels: Mapping[str, str]
    image: str = ""
    cmd: tuple[str, ...] = ()
    user: str = ""
    hostname: str = ""
    working_dir: str = ""
    restart_policy: str = ""
