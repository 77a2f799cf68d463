"""The engine's own event delivery, seen by a reader that does nothing else.

``python -m benchmarks.observer SOCKET LABEL SINCE`` (started by ``Observer``) opens
``GET /events`` with a plain blocking socket (HTTP/1.0: the body is the raw JSON lines),
stamps each read with ``time.time_ns()`` the moment ``recv`` returns, and writes
``<recv_ns> <event json>`` lines to stdout. It runs in its own process so that nothing the
benchmark's event loop does can delay the stamp: ``recv_ns - timeNano`` is the engine's
delivery delay, the floor no tracker in any process can beat.

``Observer`` (in the benchmark's loop) reads those lines and keeps, per container, the
``timeNano`` and receipt time of each action, with futures to wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field


def _serve(sock_path: str, label: str, since: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sock_path)
    filters = json.dumps({"type": ["container"], "label": [label]})
    query = urllib.parse.urlencode({"filters": filters, "since": since})
    sock.sendall(f"GET /events?{query} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the engine closed the event stream")
        buffer += chunk
    head, buffer = buffer.split(b"\r\n\r\n", 1)
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise SystemExit(f"events: {head.decode(errors='replace')}")
    out = sys.stdout.buffer
    out.write(b"READY\n")
    out.flush()
    while True:
        chunk = sock.recv(65536)
        now = time.time_ns()
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                out.write(b"%d %s\n" % (now, line))
        out.flush()


@dataclass(slots=True)
class Seen:
    """One event as the observer saw it: engine time and receipt time (both ns, wall clock)."""

    time_ns: int
    recv_ns: int
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def delivery_ns(self) -> int:
        return self.recv_ns - self.time_ns


class Observer:
    """The observer process and what it reported: ``seen[container_id][action]`` (first one)."""

    def __init__(self, sock_path: str, label: str) -> None:
        self._sock_path = sock_path
        self._label = label
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.seen: dict[str, dict[str, Seen]] = defaultdict(dict)
        self.all_events: list[tuple[str, str, Seen]] = []
        self._futures: dict[tuple[str, str], asyncio.Future[Seen]] = {}
        self.recording = True  # False: lines are read and dropped

    def clear(self) -> None:
        """Forget what was seen (between measurements: it only grows)."""
        self.seen.clear()
        self.all_events.clear()

    async def start(self) -> None:
        since = f"{time.time() - 1:.9f}"
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.observer", self._sock_path, self._label, since,
            stdout=asyncio.subprocess.PIPE, limit=1 << 20,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 30)
        if line.strip() != b"READY":
            raise RuntimeError(f"the event observer did not start: {line!r}")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            if not self.recording and not self._futures:
                continue
            recv, _, raw = line.partition(b" ")
            event = json.loads(raw)
            actor = event.get("Actor") or {}
            cid, action = actor.get("ID", ""), event.get("Action", "")
            seen = Seen(int(event["timeNano"]), int(recv), dict(actor.get("Attributes") or {}))
            self.all_events.append((cid, action, seen))
            self.seen[cid].setdefault(action, seen)
            future = self._futures.pop((cid, action), None)
            if future is not None and not future.done():
                future.set_result(self.seen[cid][action])

    async def wait_for(self, cid: str, action: str, timeout: float = 60.0) -> Seen:
        """The first ``action`` event of ``cid``, once the observer has seen it."""
        if action in self.seen.get(cid, {}):
            return self.seen[cid][action]
        future = self._futures.get((cid, action))
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._futures[(cid, action)] = future
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def wait_all(self, cids: list[str], action: str, timeout: float = 120.0) -> list[Seen]:
        return list(
            await asyncio.wait_for(
                asyncio.gather(*(self.wait_for(c, action, timeout) for c in cids)), timeout
            )
        )

    def get(self, cid: str, action: str) -> Seen | None:
        return self.seen.get(cid, {}).get(action)

    def events_between(self, start_ns: int, end_ns: int) -> list[tuple[str, str, Seen]]:
        return [e for e in self.all_events if start_ns <= e[2].time_ns <= end_ns]

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for future in self._futures.values():
            future.cancel()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        _serve(sys.argv[1], sys.argv[2], sys.argv[3])
