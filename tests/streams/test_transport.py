"""The worker's fetch wait follows the traffic (short while records arrive, long when idle);
its producer buffer counts what waits to be produced."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from aiokafka.consumer.fetcher import Fetcher

from streams.transport import IDLE_AFTER, AdaptiveWaitFetcher, LeanProducerBuffer, adapt_fetcher


def fetcher() -> AdaptiveWaitFetcher:
    plain = object.__new__(Fetcher)
    plain.__dict__["_fetch_max_wait_ms"] = 500  # what Fetcher.__init__ leaves behind
    adapt_fetcher(plain, busy_wait_ms=20, idle_wait_ms=250)
    assert isinstance(plain, AdaptiveWaitFetcher)
    return plain


def test_a_started_fetcher_uses_the_busy_wait() -> None:
    assert fetcher()._fetch_max_wait_ms == 20


def test_the_idle_wait_takes_over_once_no_record_came_for_a_while() -> None:
    adapted = fetcher()
    adapted.last_records_at = time.monotonic() - IDLE_AFTER - 0.1
    assert adapted._fetch_max_wait_ms == 250
    adapted.last_records_at = time.monotonic()
    assert adapted._fetch_max_wait_ms == 20


async def test_records_in_a_fetch_answer_switch_back_to_the_busy_wait(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    adapted = fetcher()
    adapted.last_records_at = 0.0

    async def answer(self: Fetcher, assignment: object, node_id: int, request: object) -> bool:
        return self.__dict__.get("next_answer", False)  # type: ignore[no-any-return]

    monkeypatch.setattr(Fetcher, "_proc_fetch_request", answer)
    adapted.__dict__["next_answer"] = False
    await adapted._proc_fetch_request(None, 0, None)
    assert adapted._fetch_max_wait_ms == 250
    adapted.__dict__["next_answer"] = True
    await adapted._proc_fetch_request(None, 0, None)
    assert adapted._fetch_max_wait_ms == 20


def test_the_producer_buffer_counts_what_waits_to_be_produced() -> None:
    buffer = LeanProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    assert buffer.size == 0
    buffer.pending.put_nowait(object())
    buffer.pending.put_nowait(object())
    assert buffer.size == 2
    # Read once: the setting does not change once the app is configured.
    buffer.app.conf = None
    assert buffer.size == 2


def test_a_threaded_producer_buffer_counts_its_thread_queue() -> None:
    buffer = LeanProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=True))
    assert buffer.size == 0  # the thread's queue is attached on the first send
    buffer.queue = asyncio.Queue()
    buffer.queue.put_nowait(object())
    assert buffer.size == 1
