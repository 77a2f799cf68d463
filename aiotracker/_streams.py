"""The async iterators the tracker hands out (output chunks, state changes, completions)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Generic, Self, TypeVar

T = TypeVar("T")


class Stream(Generic[T]):
    """An async iterator that is also an async context manager: leaving the block (or
    ``aclose()``) unregisters it at once."""

    def __init__(self, items: AsyncGenerator[T, None]) -> None:
        self._items = items

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._items.__anext__()

    async def aclose(self) -> None:
        await self._items.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
