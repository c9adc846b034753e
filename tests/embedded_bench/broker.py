"""The embedded broker measured directly: why it degrades, and what each remedy buys.

For a log of N single-record batches in one partition (what the gateway produces
at chat rates), it measures

- the time to fetch the newest record with a consumer one record behind, which is
  every fetch of a worker that keeps up: Tansu's memory engine lists every batch
  object of the partition on each such fetch, so the time grows with N, and past
  the fetch wait the fetch comes back empty;
- the broker's CPU per such fetch;
- the rate of reading the whole partition from offset 0 with a 5 ms wait.

Fetch waits: 5 ms (what ``parley run`` used), 20 ms (what it uses now while
messages flow) and 500 ms.

Then it shows what a producer linger does to the number of batches under load
(records per batch, read rate from 0), and what a restart does (the recycle
``parley run`` performs): the same fetch on a fresh broker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from parley.embedded import EmbeddedBroker
from tests.embedded_bench.local_run import cpu_seconds

SIZES = (1_000, 2_500, 5_000, 7_500, 10_000)
QUICK_SIZES = (1_000, 2_500, 5_000)
TAIL_FETCHES = 50
SHORT_WAIT = 5  # milliseconds: the fetch wait `parley run` used before
BUSY_WAIT = 20  # milliseconds: the fetch wait `parley run` uses while messages flow
LONG_WAIT = 500  # milliseconds: a wait long enough for the listing to finish
WAITS = (SHORT_WAIT, BUSY_WAIT, LONG_WAIT)
READ_LIMIT = 30.0  # seconds a read from offset 0 may take before it is cut
PAYLOAD = b'{"content": "hello from the benchmark", "padding": "' + b"x" * 300 + b'"}'


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def fill(bootstrap: str, topic: str, count: int) -> None:
    """``count`` records, one per batch: each send waits for its ack, as at chat rates."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        for _ in range(count):
            await producer.send_and_wait(topic, PAYLOAD, partition=0)
    finally:
        await producer.stop()


async def tail_fetch(bootstrap: str, topic: str, broker_pid: int, wait_ms: int) -> str:
    """Produce one record, fetch it from one behind; repeat. Mean time and broker CPU."""
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=wait_ms)
    await producer.start()
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        took: list[float] = []
        empty = 0
        cpu_before = cpu_seconds(broker_pid) or 0.0
        for _ in range(TAIL_FETCHES):
            sent = await producer.send_and_wait(topic, PAYLOAD, partition=0)
            consumer.seek(tp, sent.offset)
            started = time.perf_counter()
            batch = await consumer.getmany(tp, timeout_ms=wait_ms + 2_000)
            took.append((time.perf_counter() - started) * 1000)
            if not batch.get(tp):
                empty += 1
        cpu = ((cpu_seconds(broker_pid) or 0.0) - cpu_before) * 1000 / TAIL_FETCHES
    finally:
        await consumer.stop()
        await producer.stop()
    mean = sum(took) / len(took)
    return f"fetch {mean:7.1f} ms, broker cpu {cpu:5.1f} ms per produce+fetch, empty {empty}"


async def read_rate(bootstrap: str, topic: str, count: int) -> str:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=SHORT_WAIT)
    tp = TopicPartition(topic, 0)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        read = 0
        started = time.perf_counter()
        while read < count and time.perf_counter() - started < READ_LIMIT:
            batch = await consumer.getmany(tp, timeout_ms=200)
            read += len(batch.get(tp, []))
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    cut = " (cut)" if read < count else ""
    return f"read from 0: {read / seconds:9.0f} msg/s ({read}/{count} in {seconds:.1f} s){cut}"


async def log_length(*, workdir: Path, sizes: tuple[int, ...]) -> None:
    print(f"one partition, N single-record batches; tail fetch one record behind, x{TAIL_FETCHES}")
    for size in sizes:
        broker = EmbeddedBroker(workdir=workdir / f"broker-{size}")
        broker.start()
        try:
            assert broker.pid is not None
            topic = f"bench-{uuid.uuid4().hex[:6]}"
            await create_topic(broker.url, topic, 1)
            await fill(broker.url, topic, size)
            for wait in WAITS:
                line = await tail_fetch(broker.url, topic, broker.pid, wait)
                label = f"N={size:>6}" if wait == WAITS[0] else ""
                print(f"{label:<9} wait {wait:>3} ms: {line}", flush=True)
            print(f"{'':9} {await read_rate(broker.url, topic, size)}", flush=True)
        finally:
            broker.stop()


async def linger(*, workdir: Path, seconds: float) -> None:
    """Records per batch and ack latency for a linger of 0 and 5 ms, at chat and burst rates.

    Sends are concurrent, as from many gateway sockets; batches are counted in the
    produce requests the producer sends.
    """
    print(f"8 partitions, concurrent sends for {seconds:.0f} s each:")
    for rate in (200, 2_000):
        for linger_ms in (0, 5):
            broker = EmbeddedBroker(workdir=workdir / f"linger-{rate}-{linger_ms}")
            broker.start()
            try:
                topic = f"bench-{uuid.uuid4().hex[:6]}"
                await create_topic(broker.url, topic, 8)
                line = await offered_load(broker.url, topic, rate, linger_ms, seconds)
                print(f"  {rate:>5} msg/s, linger {linger_ms} ms: {line}", flush=True)
            finally:
                broker.stop()


async def offered_load(
    bootstrap: str, topic: str, rate: int, linger_ms: int, seconds: float
) -> str:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms)
    await producer.start()
    batches = 0
    send = producer.client.send

    async def counting_send(node_id: int, request: Any, **kwargs: Any) -> Any:
        nonlocal batches
        for _, partitions in getattr(request, "_topics", ()):
            batches += len(partitions)
        return await send(node_id, request, **kwargs)

    producer.client.send = counting_send
    latencies: list[float] = []

    async def one(index: int) -> None:
        started = time.perf_counter()
        await producer.send_and_wait(topic, PAYLOAD, key=str(index % 97).encode())
        latencies.append((time.perf_counter() - started) * 1000)

    try:
        tasks = []
        started = time.perf_counter()
        total = int(rate * seconds)
        for index in range(total):
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
    finally:
        await producer.stop()
    latencies.sort()
    return (
        f"{batches} batches, {total / max(batches, 1):5.1f} records per batch, "
        f"ack p50 {latencies[len(latencies) // 2]:.1f} ms p99 "
        f"{latencies[int(len(latencies) * 0.99)]:.1f} ms"
    )


async def candidates(*, workdir: Path, quick: bool) -> None:
    await log_length(workdir=workdir, sizes=QUICK_SIZES if quick else SIZES)
    await linger(workdir=workdir, seconds=3.0 if quick else 10.0)
