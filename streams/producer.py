"""Producing events: acks=all, and a send returns only once the broker confirmed."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.errors import BrokerUnavailable
from streams.events import AgentMessage, VisitorMessage
from streams.security import KafkaSecurity

logger = logging.getLogger("parley.producer")

REQUEST_TIMEOUT = 5_000  # milliseconds the broker has to confirm a write
SEND_TIMEOUT = 8.0  # seconds a caller waits, metadata lookup included
LINGER = 0  # milliseconds: a chat message should not wait for company


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
