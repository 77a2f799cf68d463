"""The async iterators the tracker hands out (output chunks, state changes, completions)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Generic, Self, TypeVar

T = TypeVar("T")


class Stream(Generic[T]):
    """An async iterator that is also an async context manager: leaving the block (or
    ``aclose()``) unregisters it at once. ``on_enter`` runs when the block is entered (a
    watch registers there, before anything is read); ``on_close`` when it is closed, whether
    or not it was ever read."""

    def __init__(
        self, items: AsyncGenerator[T, None], *, on_enter: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        self._items = items
        self._on_enter = on_enter
        self._on_close = on_close

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._items.__anext__()

    async def aclose(self) -> None:
        try:
            await self._items.aclose()
        finally:
            if self._on_close is not None:
                self._on_close()

    async def __aenter__(self) -> Self:
        if self._on_enter is not None:
            self._on_enter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
