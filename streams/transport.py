"""Faust's aiokafka transport with a configurable fetch wait.

faust-streaming hard-codes ``fetch_max_wait_ms=1500``. Brokers that answer a
long-poll as soon as data arrives (Kafka, Redpanda) do not mind, but Tansu, the
embedded broker, answers only when the wait is over, so the wait is the
consumer's latency. The app's ``fetch_wait_ms`` replaces it.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver


class TunedConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_wait_ms", None)
        if wait is not None:
            # Read by aiokafka when the consumer starts and builds its fetcher.
            consumer._fetch_max_wait_ms = int(wait)
        return consumer


class TunedConsumer(driver.Consumer):  # type: ignore[misc]
    def _new_consumer_thread(self) -> TunedConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TunedTransport(driver.Transport):  # type: ignore[misc]
    Consumer = TunedConsumer
