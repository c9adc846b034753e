"""CompactQueue and CompactEvent behave as asyncio's Queue and Event (each test runs on both)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from gateway.primitives import CompactEvent, CompactQueue

QUEUES = [pytest.param(asyncio.Queue, id="asyncio"), pytest.param(CompactQueue, id="compact")]
EVENTS = [pytest.param(asyncio.Event, id="asyncio"), pytest.param(CompactEvent, id="compact")]
WAIT = 5.0  # seconds before a test gives up on something that should happen at once


@pytest.mark.parametrize("make", QUEUES)
async def test_items_come_out_in_order(make: Any) -> None:
    queue = make()
    assert queue.empty() and queue.qsize() == 0
    for item in range(5):
        queue.put_nowait(item)
    await queue.put(5)
    assert queue.qsize() == 6
    assert [queue.get_nowait() for _ in range(3)] == [0, 1, 2]
    assert [await queue.get() for _ in range(3)] == [3, 4, 5]
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


@pytest.mark.parametrize("make", QUEUES)
async def test_get_waits_for_a_put(make: Any) -> None:
    queue = make()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait("x")
    assert await asyncio.wait_for(getter, WAIT) == "x"


@pytest.mark.parametrize("make", QUEUES)
async def test_getters_are_served_first_come_first_served(make: Any) -> None:
    queue = make()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for item in "abc":
        queue.put_nowait(item)
    assert await asyncio.wait_for(asyncio.gather(*getters), WAIT) == ["a", "b", "c"]


@pytest.mark.parametrize("make", QUEUES)
async def test_a_cancelled_getter_loses_nothing(make: Any) -> None:
    queue = make()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("only")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs: the item goes to the second
    assert await asyncio.wait_for(second, WAIT) == "only"
    assert first.cancelled()
    assert queue.empty()


@pytest.mark.parametrize("make", QUEUES)
async def test_a_get_that_timed_out_leaves_the_next_item_queued(make: Any) -> None:
    queue = make()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    queue.put_nowait(1)
    assert queue.get_nowait() == 1


@pytest.mark.parametrize("make", QUEUES)
async def test_join_returns_once_every_item_is_done(make: Any) -> None:
    queue = make()
    await queue.join()  # nothing queued: at once
    queue.put_nowait(1)
    queue.put_nowait(2)
    joined = asyncio.create_task(queue.join())
    queue.get_nowait()
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, WAIT)
    with pytest.raises(ValueError):
        queue.task_done()


@pytest.mark.parametrize("make", EVENTS)
async def test_wait_returns_once_set(make: Any) -> None:
    event = make()
    assert not event.is_set()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    event.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), WAIT) == [True, True, True]
    assert event.is_set()
    assert await event.wait() is True  # already set: at once
    event.clear()
    assert not event.is_set()
    again = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    assert not again.done()
    event.set()
    await asyncio.wait_for(again, WAIT)


@pytest.mark.parametrize("make", EVENTS)
async def test_a_cancelled_waiter_does_not_block_the_others(make: Any) -> None:
    event = make()
    cancelled = asyncio.create_task(event.wait())
    kept = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    event.set()
    assert await asyncio.wait_for(kept, WAIT) is True
    assert cancelled.cancelled()


def test_the_compact_ones_are_smaller() -> None:
    """What they are for: an idle socket's queues and event cost bytes, not kilobytes."""
    compact = sys.getsizeof(CompactQueue()) + sys.getsizeof(CompactEvent())
    stock_queue: asyncio.Queue[Any] = asyncio.Queue()
    stock = sum(
        sys.getsizeof(part)
        for part in (stock_queue, stock_queue._getters, stock_queue._putters, stock_queue._queue)
    )
    assert compact * 10 < stock
