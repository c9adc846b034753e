"""Producing events: acks=all, and a send returns only once the broker confirmed."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from streams.errors import BrokerUnavailable
from streams.events import AgentMessage, VisitorMessage
from streams.security import KafkaSecurity

logger = logging.getLogger("parley.producer")

REQUEST_TIMEOUT = 5_000  # milliseconds the broker has to confirm a write
SEND_TIMEOUT = 8.0  # seconds a caller waits, metadata lookup included
LINGER = 0  # milliseconds: a chat message should not wait for company
MAX_REMEMBERED_KEYS = 100_000  # keys whose hash the partitioner keeps (about 10 MB at most)


class KeyPartitioner:
    """Kafka's default partitioning (murmur2 of the key), with each key's hash remembered.

    aiokafka computes murmur2 in pure Python on every send: 2 % of the gateway's
    CPU at the benchmark's maximum. A conversation's key comes back with each of
    its messages, so the hash is kept; the partition is the same as aiokafka's and
    Kafka's for any partition count. Keyless sends take aiokafka's own path.
    """

    def __init__(self, *, max_keys: int = MAX_REMEMBERED_KEYS) -> None:
        self._default = DefaultPartitioner()
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()  # simpler than LRU; a miss costs one hash
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


class EventProducer(Protocol):
    """What the gateway needs from the broker."""

    async def send_visitor_message(self, event: VisitorMessage) -> None: ...

    async def send_agent_message(self, event: AgentMessage) -> None: ...


class KafkaEventProducer:
    """An aiokafka producer bound to Parley's topics."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        visitor_topic: str,
        agent_topic: str,
        security: KafkaSecurity | None = None,
    ) -> None:
        self._visitor_topic = visitor_topic
        self._agent_topic = agent_topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            linger_ms=LINGER,
            partitioner=KeyPartitioner(),
            request_timeout_ms=REQUEST_TIMEOUT,
            client_id="parley-gateway",
            **(security or KafkaSecurity()).aiokafka_kwargs(),
        )
        self.started = False

    async def start(self) -> None:
        try:
            await self._producer.start()
        except (KafkaError, OSError) as exc:
            raise BrokerUnavailable(f"broker cannot be reached: {type(exc).__name__}") from exc
        self.started = True

    async def stop(self) -> None:
        # stop() flushes what is in flight, so accepted messages are not dropped.
        await self._producer.stop()
        self.started = False

    async def send_visitor_message(self, event: VisitorMessage) -> None:
        await self._send(self._visitor_topic, event)

    async def send_agent_message(self, event: AgentMessage) -> None:
        await self._send(self._agent_topic, event)

    async def _send(self, topic: str, event: VisitorMessage | AgentMessage) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await self._producer.send_and_wait(
                    topic, value=event.to_json(), key=event.key, headers=event.headers
                )
        except (KafkaError, TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"broker did not confirm: {type(exc).__name__}") from exc

    async def ping(self) -> None:
        """Raise BrokerUnavailable unless the cluster answers a metadata request."""
        try:
            async with asyncio.timeout(2.0):
                await self._producer.client.fetch_all_metadata()
        except (KafkaError, TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"broker unavailable: {type(exc).__name__}") from exc
