"""Fault injection for the fake engine: failing and holding calls, and the streams it feeds.

``Faults`` holds the rules a test set (``fail``: the next calls of an operation raise;
``hold``: the next call waits at a ``Gate`` the test opens); ``Pipe`` is an unbounded stream
that ends after its buffer, or is cut at once like a dropped connection.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")

OPS = frozenset(
    {"info", "create", "start", "inspect", "list_containers", "kill", "pause", "unpause",
     "rename", "disable_restart", "remove", "image_tags", "stream_events", "attach_output",
     "read_logs", "feed_stdin", "hold_stdin", "cpu_usage_ns", "copy_out",
     "image_present", "pull"}
)  # fmt: skip


class Pipe(Generic[T]):
    """An unbounded stream that ends (after its buffer) or is cut (at once)."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[T](math.inf)
        self.cut = False

    def put(self, item: T) -> int:
        self.send.send_nowait(item)
        return self.send.statistics().current_buffer_used

    def end(self, *, cut: bool = False) -> None:
        self.cut = self.cut or cut
        self.send.close()

    async def get(self) -> T | None:
        try:
            item = await self.receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        return None if self.cut else item

    def idle(self) -> bool:
        stats = self.receive.statistics()  # a reader waits again: it has taken everything
        return stats.current_buffer_used == 0 and stats.tasks_waiting_receive > 0

    def close(self) -> None:
        self.send.close()
        self.receive.close()


class Gate:
    """A held call: ``arrived`` is set when it gets there; ``release`` or ``fail`` lets it go."""

    def __init__(self) -> None:
        self.arrived = anyio.Event()
        self._go = anyio.Event()
        self._error: BaseException | None = None

    def release(self) -> None:
        """Let the held call go on."""
        self._go.set()

    def fail(self, exc: BaseException) -> None:
        """Make the held call raise ``exc`` instead."""
        self._error = exc
        self._go.set()

    async def _pass(self) -> None:
        self.arrived.set()
        await self._go.wait()
        if self._error is not None:
            raise self._error


@dataclass
class Rule:
    op: str
    match: str | None
    times: int
    error: BaseException | None = None
    gate: Gate | None = None
    after: bool = False


class Faults:
    """The rules in force, first match wins; each applies ``times`` times."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []

    def add(self, rule: Rule) -> None:
        if rule.op not in OPS:
            raise ValueError(f"unknown operation {rule.op!r}")
        self._rules.append(rule)

    async def enter(self, op: str, about: Callable[[str | None], bool]) -> Gate | None:
        """Apply the first rule for ``op`` whose ``match`` is ``about`` the call: raise its
        error, or wait at its gate; returns the gate to pass after acting (``after``)."""
        rule = next((r for r in self._rules if r.op == op and about(r.match)), None)
        if rule is None:
            return None
        rule.times -= 1
        if rule.times <= 0:
            self._rules.remove(rule)
        if rule.error is not None:
            raise rule.error
        if rule.gate is not None and not rule.after:
            await rule.gate._pass()
        return rule.gate if rule.after else None
