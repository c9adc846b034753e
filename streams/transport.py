"""Faust's aiokafka transport with a configurable, adaptive fetch wait.

faust-streaming hard-codes ``fetch_max_wait_ms=1500``. Brokers that answer a
long-poll as soon as data arrives (Kafka, Redpanda) do not mind, but Tansu, the
embedded broker, answers only when the wait is over, so the wait is the
consumer's latency. The app's ``fetch_wait_ms`` replaces it.

A short wait means hundreds of fetches a second, which costs the worker and the
broker a fifth of a core each while nothing flows. With ``fetch_idle_wait_ms``
set, the fetcher uses the short wait only while records arrive and the idle
wait once none came for ``IDLE_AFTER`` seconds: the first message after a quiet
spell waits at most the idle wait, the ones after it the short one.
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka.consumer.fetcher import Fetcher
from faust.transport.drivers import aiokafka as driver

IDLE_AFTER = 5.0  # seconds without a record before the fetcher waits longer


class AdaptiveWaitFetcher(Fetcher):  # type: ignore[misc]
    """An aiokafka fetcher whose long-poll wait follows the traffic.

    aiokafka reads ``_fetch_max_wait_ms`` each time it builds a fetch request, so
    a property is enough; :func:`adapt_fetcher` turns a started consumer's
    fetcher into one of these.
    """

    busy_wait_ms: int
    idle_wait_ms: int
    last_records_at: float

    @property  # type: ignore[override]
    def _fetch_max_wait_ms(self) -> int:
        if time.monotonic() - self.last_records_at < IDLE_AFTER:
            return self.busy_wait_ms
        return self.idle_wait_ms

    @_fetch_max_wait_ms.setter
    def _fetch_max_wait_ms(self, value: int) -> None:
        self.busy_wait_ms = value

    async def _proc_fetch_request(self, assignment: Any, node_id: Any, request: Any) -> bool:
        got_records: bool = await super()._proc_fetch_request(assignment, node_id, request)
        if got_records:
            self.last_records_at = time.monotonic()
        return got_records


def adapt_fetcher(fetcher: Fetcher, *, busy_wait_ms: int, idle_wait_ms: int) -> None:
    fetcher.__class__ = AdaptiveWaitFetcher
    fetcher.busy_wait_ms = busy_wait_ms
    fetcher.idle_wait_ms = idle_wait_ms
    # Start busy: a worker that starts usually has a backlog to read.
    fetcher.last_records_at = time.monotonic()


class TunedConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_wait_ms", None)
        if wait is not None:
            # Read by aiokafka when the consumer starts and builds its fetcher.
            consumer._fetch_max_wait_ms = int(wait)
        idle_wait = getattr(self.app, "fetch_idle_wait_ms", None)
        if wait is not None and idle_wait:
            start = consumer.start

            async def start_adaptive() -> None:
                # The fetcher exists only once the consumer has started.
                await start()
                adapt_fetcher(consumer._fetcher, busy_wait_ms=int(wait), idle_wait_ms=idle_wait)

            consumer.start = start_adaptive
        return consumer


class TunedConsumer(driver.Consumer):  # type: ignore[misc]
    def _new_consumer_thread(self) -> TunedConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TunedTransport(driver.Transport):  # type: ignore[misc]
    Consumer = TunedConsumer
