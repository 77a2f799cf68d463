"""One fake container: its state, and what an inspect or a list entry says of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .base import ContainerDetails, ContainerSummary
from .faults import Pipe

Frame = tuple[int, bytes]
LIVE = ("running", "paused")
_STATUS_TEXT = {"created": "Created", "running": "Up 1 second", "paused": "Up 1 second (Paused)",
                "exited": "Exited ({}) 1 second ago",
                "restarting": "Restarting ({}) 1 second ago"}  # fmt: skip


def dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=ns % 10**9 // 1000)


@dataclass(eq=False)
class FakeContainer:
    """One fake container's state (``FakeEngine.container`` returns it; tests may read it)."""

    id: str
    name: str
    config: dict[str, Any]
    labels: dict[str, str]
    image: str
    restart_policy: str
    auto_remove: bool
    created: datetime
    status: str = "created"
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    logs: list[Frame] = field(default_factory=list)
    stdin: bytes = b""
    stdin_holders: int = 0
    cpu_ns: int = 0
    refusal: tuple[int, str] | None = None
    scheduled: bool = False  # started on a scheduling fake, not yet placed (runs at place)
    pipes: list[Pipe[Frame]] = field(default_factory=list)
    # Its file system, as far as tests give it one: absolute path -> contents (directories
    # are the prefixes of the paths).
    files: dict[str, bytes] = field(default_factory=dict)

    def details(self) -> ContainerDetails:
        """What an inspect says now."""
        c = self
        config = c.config
        return ContainerDetails(
            container_id=c.id, name=c.name, status=c.status,
            running=c.status in (*LIVE, "restarting"), paused=c.status == "paused",
            restarting=c.status == "restarting", oom_killed=c.oom_killed, dead=False,
            exit_code=c.exit_code, error=c.error, created=c.created, started_at=c.started_at,
            finished_at=c.finished_at, labels=dict(c.labels), image=c.image,
            cmd=tuple(config.get("Cmd") or ()), user=str(config.get("User") or ""),
            hostname=str(config.get("Hostname") or ""),
            working_dir=str(config.get("WorkingDir") or ""), restart_policy=c.restart_policy,
        )  # fmt: skip

    def summary(self) -> ContainerSummary:
        """What a list entry says now (Docker's state word and status text)."""
        text = _STATUS_TEXT[self.status].format(self.exit_code)
        return ContainerSummary(self.id, self.name, self.status, text, dict(self.labels))
