"""Faust's aiokafka transport: an adaptive fetch wait, and a lighter delivery loop.

faust-streaming hard-codes ``fetch_max_wait_ms=1500``. Brokers that answer a
long-poll as soon as data arrives (Kafka, Redpanda) do not mind, but Tansu, the
embedded broker, answers only when the wait is over, so the wait is the
consumer's latency. The app's ``fetch_wait_ms`` replaces it.

A short wait means hundreds of fetches a second, which costs the worker and the
broker a fifth of a core each while nothing flows. With ``fetch_idle_wait_ms``
set, the fetcher uses the short wait only while records arrive and the idle
wait once none came for ``IDLE_AFTER`` seconds: the first message after a quiet
spell waits at most the idle wait, the ones after it the short one.

Faust's consumer hands each fetched record to the streams through
``Service.wait_first(callback(message), suspend_flow.wait())``: four tasks and
an ``asyncio.wait`` per record, so that a rebalance can interrupt a delivery
stuck on a full stream buffer. That race cost more worker CPU than storing the
message. :class:`TunedConsumer` awaits the delivery directly while the flow is
active (see :meth:`TunedConsumer._drain_messages` for why nothing is lost).

Under a backlog the stream buffer is full most of the time, and Faust then
delivers each record through a task of its own that waits for one free slot
(``ConductorHandler._handle_full``): the buffer is refilled one record, one
task and one ``asyncio.wait`` at a time. Faust already pauses a partition's
fetching when its buffer passes the high-water mark (80 %) and resumes it below
the low-water mark (40 %); :class:`TunedConsumer` also holds back the paused
partition's records already fetched until then, so the buffer never fills and
is refilled in bulk.

Before each delivery Faust also checks the producer's buffer
(``ProducerBuffer.wait_until_ebb``), whose size reads ``producer_threaded``
through Faust's settings registry each time; :class:`LeanProducerBuffer` reads
it once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from aiokafka.consumer.fetcher import Fetcher
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver
from faust.transport.producer import ProducerBuffer
from mode import Service
from prometheus_client import Counter

IDLE_AFTER = 5.0  # seconds without a record before the fetcher waits longer

BUFFER_WAITS = Counter(
    "parley_worker_buffer_waits_total",
    "Times delivery paused until a full stream buffer drained (backpressure)",
)


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set whenever Faust resumes a partition paused for a full stream buffer.
        self._buffer_drained = asyncio.Event()

    def on_buffer_drop(self, tp: Any) -> None:
        super().on_buffer_drop(tp)
        self._buffer_drained.set()

    async def _wait_for_room(self, tp: Any) -> None:
        """Wait while ``tp``'s stream buffer is past its high-water mark.

        Ends when Faust resumes the partition (its buffer drained to the
        low-water mark), when the flow is suspended (a rebalance clears the
        buffers, and the caller delivers as Faust would), or when the consumer
        stops or crashes.
        """
        BUFFER_WAITS.inc()
        drained = self._buffer_drained
        while tp in self._buffered_partitions and not self.suspend_flow.is_set():
            drained.clear()
            if (await self.wait_first(drained.wait(), self.suspend_flow.wait())).stopped:
                return

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover
        """Faust's ``Consumer._drain_messages``, without the per-record race.

        Faust races each delivery against ``suspend_flow`` so that a rebalance
        can abandon a delivery waiting for room in a full stream buffer. Here a
        delivery is awaited directly while the flow is active; nothing else
        changes (read offsets, gaps, ``commit_every``). Why that is safe:

        - a delivery waits only for room in a stream buffer (or for flow
          control, which is never suspended while ``suspend_flow`` is clear,
          and that is checked before each delivery); a rebalance suspends the
          flow, then clears every stream buffer, which cancels the waiting put,
          so the delivery returns and the loop sees the suspended flow;
        - a stop cancels this task (``Fetcher.on_stop``), whatever it awaits.

        While the flow is suspended, the original race is used unchanged. A
        record of a partition paused for a full buffer waits first for the
        buffer to drain (:meth:`_wait_for_room`), once for many records.
        """
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        suspended = self.suspend_flow.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        yield_every = 100  # records between yields to the loop, as in Faust
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                # As Faust: getmany may return at once, again and again.
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if tp in self._buffered_partitions:
                                await self._wait_for_room(tp)
                            if suspended():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                await callback(message)
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class LeanProducerBuffer(ProducerBuffer):  # type: ignore[misc]
    """Faust's producer buffer; ``producer_threaded`` is read once, not per message."""

    threaded: bool | None = None

    @property
    def size(self) -> int:
        if self.threaded is None:
            # ``app`` is set right after the buffer is made, before any message.
            self.threaded = bool(cast(Any, self.app).conf.producer_threaded)
        queue = self.queue if self.threaded else self.pending
        return 0 if queue is None else queue.qsize()


class TunedProducer(driver.Producer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer.__class__ = LeanProducerBuffer


class TunedTransport(driver.Transport):  # type: ignore[misc]
    Consumer = TunedConsumer
    Producer = TunedProducer
