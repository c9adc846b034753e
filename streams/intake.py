"""The events between the stream and the storer: each batch is whatever arrived meanwhile.

Faust's ``take`` fills a batch only while the agent waits on its ``within``
window, and holds the stream still while the batch is stored: under load the
batches stay small and every one of them pays the window. Instead, the agent's
own loop keeps reading the stream into an :class:`Intake` while a separate task
stores; when the storer is free it takes everything buffered, up to
``batch_size``, at once. At low load a message is stored alone and without
delay; under load the batches grow by themselves, up to ``batch_size``.

The intake holds at most ``capacity`` events: a full intake stops the agent's
loop, and with it the stream, until the storer has taken a batch.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

T = TypeVar("T")


class IntakeClosed(Exception):
    """The storer has ended; nothing more can be taken."""


class Intake(Generic[T]):
    """A bounded FIFO that hands out everything it holds, a batch at a time."""

    def __init__(self, *, batch_size: int, capacity: int) -> None:
        if capacity < batch_size:
            raise ValueError("capacity must hold at least one batch")
        self._batch_size = batch_size
        self._capacity = capacity
        self._items: collections.deque[T] = collections.deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> None:
        """Add ``item``, waiting while the intake is full; IntakeClosed once it is closed."""
        while len(self._items) >= self._capacity and not self._closed:
            self._room.clear()
            await self._room.wait()
        if self._closed:
            raise IntakeClosed("the storer has ended")
        self._items.append(item)
        self._arrived.set()

    async def take(self) -> list[T]:
        """Wait for at least one item, then return all there are, up to ``batch_size``."""
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        count = min(len(self._items), self._batch_size)
        batch = [self._items.popleft() for _ in range(count)]
        self._room.set()
        return batch

    def close(self) -> None:
        """Refuse further items and wake whoever waits for room."""
        self._closed = True
        self._room.set()
