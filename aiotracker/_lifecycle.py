"""The life cycle of DRMAA2's session objects: opened once, closed once (DRMAA2's
InvalidSessionException, ``InvalidSessionError``, for a second close or a call after it),
usable as an async context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from ._exceptions import InvalidSessionError


class Lifecycle:
    """``open`` runs ``_opening`` once; ``close`` runs ``_closing`` once; ``_check`` raises
    ``InvalidSessionError`` unless open. ``what`` names the session in messages."""

    what = "the session"

    def __init__(self) -> None:
        self._state = "new"

    async def _opening(self) -> None:
        raise NotImplementedError

    async def _closing(self) -> None:
        raise NotImplementedError

    async def open(self) -> None:
        if self._state != "new":
            raise InvalidSessionError(f"{self.what} can be opened once")
        try:
            await self._opening()
        except BaseException:
            self._state = "closed"
            raise
        self._state = "open"

    async def close(self) -> None:
        if self._state == "closed":
            raise InvalidSessionError(f"{self.what} is closed already")
        self._state = "closed"
        await self._closing()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._state != "closed":
            await self.close()

    def _check(self) -> None:
        if self._state != "open":
            what = "closed" if self._state == "closed" else "not open"
            raise InvalidSessionError(f"{self.what} is {what}")
