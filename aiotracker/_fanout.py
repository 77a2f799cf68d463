"""A job's live output, handed from the tracker's one copy of its stream to live readers.

The copier (or a relay, for a job whose output the tracker does not copy) publishes each
frame once; every reader of that stream gets it in a buffer of its own. A buffer is bounded:
a reader that falls more than its limit behind is cut off with ``OutputOverrunError`` (it
knows how many bytes it had been given, and may start again with ``tail``), so that a slow
reader never slows the copy, the file, the job or the other readers, and never holds more
memory than its limit. No I/O here: the readers' history (what came before they joined) is
the watcher's business.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import anyio

from ._exceptions import OutputOverrunError, TrackerError


class Reader:
    """One reader's view of one stream: the bytes published from position ``start`` on."""

    def __init__(self, stream: int, start: int, limit: int) -> None:
        self.stream = stream
        self.start = start  # where its live feed starts; what comes before is its history
        self.limit = limit
        self.delivered = 0
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._wake = anyio.Event()
        self._ended = False
        self._error: TrackerError | None = None

    def push(self, data: bytes, position: int) -> bool:
        """Queue the bytes of a frame from ``start`` on (``position``: the frame's first byte
        in the stream); False if they put the reader over its limit (it is cut off). A frame
        is always taken whole by a reader that is not behind, however large."""
        if position + len(data) <= self.start:
            return True  # still history (a feed replaying what the reader reads from the log)
        if position < self.start:
            data = data[self.start - position :]
        if self._chunks and self._size + len(data) > self.limit:
            self._chunks.clear()
            self._size = 0
            self._error = OutputOverrunError(
                f"the reader fell more than {self.limit} bytes behind the job's output "
                f"and was cut off after {self.start + self.delivered} bytes"
            )
            self._wake.set()
            return False
        self._chunks.append(data)
        self._size += len(data)
        self._wake.set()
        return True

    def end(self, error: TrackerError | None = None) -> None:
        self._ended = True
        if self._error is None:
            self._error = error
        self._wake.set()

    async def next(self) -> bytes | None:
        """The next chunk (queued chunks joined), or None at the end; raises if cut off."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                return None
            await self._wake.wait()
            self._wake = anyio.Event()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        self.delivered += len(data)
        return data


class Fanout:
    """The readers of one job's output, and how much of each stream has been published.

    ``replayed``: how much of each stream the feed publishes that was already in the log when
    it began (a relay replays the log first): readers take it from the log, with ``tail``.
    ``ready`` is set once that is known.
    """

    def __init__(self, on_idle: Callable[[], None] | None = None) -> None:
        self.counts = {1: 0, 2: 0}
        self.replayed = {1: 0, 2: 0}
        self.ready = anyio.Event()
        self._readers: set[Reader] = set()
        self._waiting = 0  # readers waiting for ``ready`` to join
        self._on_idle = on_idle  # called when the last reader leaves
        self.ended = False

    @property
    def readers(self) -> int:
        return len(self._readers)

    async def wait_ready(self) -> None:
        """Wait for ``ready`` before joining: counted as a reader meanwhile, so that a
        reader that gives up then (cancelled, a timeout), if it was the only one, leaves the
        feed idle as a reader that joined would."""
        self._waiting += 1
        try:
            await self.ready.wait()
        except BaseException:
            self._waiting -= 1
            self._idle_if_unread()
            raise
        self._waiting -= 1

    def _idle_if_unread(self) -> None:
        if not self._readers and not self._waiting and self._on_idle is not None and not self.ended:
            self._on_idle()

    def join(self, stream: int, limit: int) -> Reader:
        reader = Reader(stream, max(self.counts[stream], self.replayed[stream]), limit)
        if self.ended:
            reader.end()
        else:
            self._readers.add(reader)
        return reader

    def leave(self, reader: Reader) -> None:
        self._readers.discard(reader)
        self._idle_if_unread()

    def publish(self, stream: int, data: bytes) -> None:
        position = self.counts[stream]
        self.counts[stream] += len(data)
        for reader in [r for r in self._readers if r.stream == stream]:
            if not reader.push(data, position):
                self._readers.discard(reader)

    def end(self, error: TrackerError | None = None) -> None:
        """The output is over (complete, or cut short with ``error``)."""
        self.ended = True
        self.ready.set()
        readers, self._readers = self._readers, set()
        for reader in readers:
            reader.end(error)
