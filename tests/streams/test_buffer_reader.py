"""The agent's bulk read of its stream buffer: Faust's own queue, flow control and messages.

The real worker reads through it in every e2e test of the agent (poison records,
backpressure, a stop during an outage); these tests pin what is hard to provoke
there: a batch bounded by the limit, events of an earlier consumer generation
and of a suspended flow left unacknowledged, and a stop thrown into the channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from faust.types import TP
from faust.types.tuples import ConsumerMessage, Message
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.buffer_reader import BufferReader

TOPIC = "visitor-messages"


@dataclasses.dataclass
class Event:
    message: Message


class Consumer:
    def __init__(self) -> None:
        self.tracked: list[int] = []

    def track_message(self, message: Message) -> None:
        self.tracked.append(message.offset)


@dataclasses.dataclass
class Topics:
    acking_topics: set[str]


class App:
    """The attributes of a Faust app the reader reads, around real flow control."""

    def __init__(self) -> None:
        self.consumer_generation_id = 7
        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.consumer = Consumer()
        self.topics = Topics(acking_topics={TOPIC})


class Channel:
    def __init__(self, app: App) -> None:
        self.queue: ThrowableQueue[Any] = ThrowableQueue(flow_control=app.flow_control)


class Stream:
    def __init__(self) -> None:
        self.app = App()
        self.channel = Channel(self.app)


def event(offset: int, *, generation: int = 7) -> Event:
    message = ConsumerMessage(
        TOPIC, 0, offset, 0.0, 0, [], b"k", b"v", None, tp=TP(TOPIC, 0), generation_id=generation
    )
    return Event(message=message)


def offsets(events: list[Event]) -> list[int]:
    return [e.message.offset for e in events]


async def test_a_read_takes_what_is_buffered_in_order_up_to_the_limit() -> None:
    stream = Stream()
    for offset in range(7):
        stream.channel.queue.put_nowait(event(offset))
    reader = BufferReader(stream=stream, limit=5)

    assert offsets(await reader.read()) == [0, 1, 2, 3, 4]
    assert offsets(await reader.read()) == [5, 6]
    assert stream.app.consumer.tracked == list(range(7))  # pending ack, as Faust tracks them


async def test_a_read_waits_for_the_first_event() -> None:
    stream = Stream()
    reader = BufferReader(stream=stream)
    pending = asyncio.create_task(reader.read())
    await asyncio.sleep(0.05)
    assert not pending.done()
    stream.channel.queue.put_nowait(event(3))
    assert offsets(await pending) == [3]


async def test_events_of_an_earlier_generation_are_dropped_unacknowledged() -> None:
    stream = Stream()
    for offset, generation in [(0, 6), (1, 7), (2, 6), (3, 7)]:
        stream.channel.queue.put_nowait(event(offset, generation=generation))

    taken = await BufferReader(stream=stream).read()

    assert offsets(taken) == [1, 3]
    # Dropped, not acked: the partition's owner reads them again from the committed offset.
    assert stream.app.consumer.tracked == [1, 3]


async def test_events_read_while_the_flow_is_suspended_are_dropped() -> None:
    stream = Stream()
    stream.channel.queue.put_nowait(event(0))
    stream.app.flow_control.suspend()

    assert await BufferReader(stream=stream).read() == []
    assert stream.app.consumer.tracked == []


async def test_a_stop_thrown_into_the_channel_ends_a_waiting_read() -> None:
    stream = Stream()
    reader = BufferReader(stream=stream)
    pending = asyncio.create_task(reader.read())
    await asyncio.sleep(0.05)
    # What faust's Actor.cancel() does when the agent stops.
    stream.channel.queue._throw(StopAsyncIteration())
    try:
        await pending
    except StopAsyncIteration:
        pass
    else:
        raise AssertionError("the read did not end")
