"""``make bench-stages``: each stage of the path alone (``python -m tests.bench.stages``).

- **agent**: visitor-message events are preloaded on the topic, then the Faust
  worker starts; msg/s stored is measured from the first stored row to the last.
- **relay**: the outbox holds the rows the agent wrote (no relay ran meanwhile),
  then the relay starts; events/s published is measured while the outbox drains,
  and a subscriber checks that every event reached the Redis channel.
- **fanout**: one gateway with dashboards in the project room; ``message.created``
  events are published straight to the Redis channel (at most ``window`` ahead of
  what the dashboards received); events/s is measured as received by every dashboard.
- **sockets**: visitor sockets connect to one gateway with a UUID visitorUid in
  their connect auth and ``identify``; the gateway's resident memory is read once
  all are connected. Like browsers, they offer permessage-deflate in the
  websocket handshake (``--no-deflate``: they do not).

Each stage prints its rate (or memory) and the CPU of the processes involved.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from parley.settings import to_plain_url
from streams.events import VisitorMessage
from tests.bench.procs import ProcessWatch, Watched, format_report
from tests.bench.stack import BenchStack, bench_stack, service_pid
from tests.bench.stats import write_json
from tests.bench.wire import SocketClient

STAGES = ("agent", "relay", "fanout", "sockets")
DEFAULT_EVENTS = 50_000
DEFAULT_VISITORS = 1_000  # conversations the preloaded events are spread over
DEFAULT_FANOUT_EVENTS = 50_000
DEFAULT_FANOUT_WINDOW = 2_000  # events published ahead of what the dashboards received
DEFAULT_SOCKETS = 5_000
STAGE_TIMEOUT = 300.0  # seconds any one stage may take
POLL = 0.05  # seconds between progress checks
PUBLISH_CHUNK = 250  # events per Redis pipeline
SOCKET_CONCURRENCY = 10  # sockets connecting and identifying at once
IDENTIFY_ATTEMPTS = 20
IDENTIFY_RETRY = 0.5  # seconds before identify is retried after `unavailable`


def _watch(stack: BenchStack, names: list[str]) -> ProcessWatch:
    """The named children and services only (the stage's own processes)."""
    full = stack.watch(client=False)
    return ProcessWatch([w for w in full.watched if w.name in names])


async def _count(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def preload_topic(stack: BenchStack, events: int, visitors: int, size: int) -> float:
    """Produce ``events`` visitor messages over ``visitors`` visitors; return the seconds."""
    settings = stack.settings
    uids = [str(uuid.uuid4()) for _ in range(visitors)]
    content = "x" * size
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    began = time.perf_counter()
    try:
        pending = []
        for index in range(events):
            event = VisitorMessage(
                project_id=stack.project_id,
                visitor_uid=uids[index % visitors],
                temp_id=str(uuid.uuid4()),
                content=content,
            )
            pending.append(
                await producer.send(
                    settings.visitor_topic,
                    value=event.to_json(),
                    key=event.key,
                    headers=event.headers,
                )
            )
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - began


async def _until(condition: Any, what: str) -> float:
    deadline = time.perf_counter() + STAGE_TIMEOUT
    while not await condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} did not happen within {STAGE_TIMEOUT:g} s")
        await asyncio.sleep(POLL)
    return time.perf_counter()


async def stage_agent(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    produce_s = await preload_topic(stack, args.events, args.visitors, args.size)
    print(f"agent: {args.events} events preloaded in {produce_s:.1f} s; starting the worker")
    conn = await asyncpg.connect(to_plain_url(stack.database_url))
    try:
        await stack.cluster.worker("worker")
        watch = _watch(stack, ["worker", "postgresql", "broker"])
        watch.start_sampling()
        first_seen = 0

        async def started() -> bool:
            nonlocal first_seen
            first_seen = await _count(conn, "messages")
            return first_seen > 0

        began = await _until(started, "the first stored message")
        watch.mark()
        goal = args.events + 0

        async def done() -> bool:
            return await _count(conn, "messages") >= goal

        ended = await _until(done, f"{goal} stored messages")
        await watch.stop_sampling()
        stored = goal - first_seen
        rate = stored / (ended - began)
        outbox = await _count(conn, "outbox")
        duplicates = await conn.fetchval(
            "SELECT count(*) - count(DISTINCT (conversation_id, temp_id)) FROM messages"
        )
    finally:
        await conn.close()
    report = watch.report(stored)
    print(f"agent: stored {stored} in {ended - began:.2f} s = {rate:,.0f} msg/s")
    print(format_report(report))
    return {
        "events": args.events,
        "measured": stored,
        "seconds": round(ended - began, 3),
        "msg_per_s": round(rate, 1),
        "outbox_rows": outbox,
        "duplicates": duplicates,
        "processes": report,
    }


async def stage_relay(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    conn = await asyncpg.connect(to_plain_url(stack.database_url))
    client = aioredis.Redis.from_url(stack.settings.redis_url or "")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(stack.settings.events_channel)
    received = 0
    first_at = 0.0
    ids: set[int] = set()

    async def listen() -> None:
        nonlocal received, first_at
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None:
                if not received:
                    first_at = time.perf_counter()
                received += 1
                ids.add(json.loads(message["data"])["eventId"])

    listener = asyncio.create_task(listen(), name="bench-relay-listener")
    try:
        rows = await _count(conn, "outbox")
        if rows == 0:
            raise RuntimeError("the outbox is empty: run the agent stage first")
        print(f"relay: {rows} rows in the outbox; starting the relay")
        relay = stack.cluster.relay("relay")
        started = asyncio.create_task(relay)

        async def publishing() -> bool:
            return received > 0

        # Measured from the first event on the channel: the process's start-up is not.
        began = await _until(publishing, "the first relayed event")
        watch = _watch(stack, ["relay", "postgresql", "redis"])
        watch.mark()
        watch.start_sampling()
        published_before = received

        async def drained() -> bool:
            return await _count(conn, "outbox") == 0

        ended = await _until(drained, "an empty outbox")
        await watch.stop_sampling()
        await started

        async def all_received() -> bool:
            return received >= rows

        await _until(all_received, f"{rows} events on the channel")
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
        await conn.close()
    # Rate and CPU over the same stretch: from the first event on the channel to empty.
    measured = rows - published_before
    rate = measured / (ended - began)
    report = watch.report(measured)
    print(
        f"relay: published {measured} in {ended - began:.2f} s = {rate:,.0f} events/s "
        f"(received {received}, {len(ids)} distinct)"
    )
    print(format_report(report))
    return {
        "rows": rows,
        "seconds": round(ended - began, 3),
        "events_per_s": round(rate, 1),
        "received": received,
        "distinct": len(ids),
        "processes": report,
    }


def _event(event_id: int, project_id: int, size: int) -> str:
    message = {
        "id": event_id,
        "conversationId": event_id,
        "projectId": project_id,
        "visitorUid": str(uuid.uuid4()),
        "seq": 1,
        "content": "x" * size,
        "fromCustomer": True,
        "senderType": "visitor",
        "status": "sent",
        "tempId": str(uuid.uuid4()),
        "createdAt": "2026-01-01T00:00:00Z",
    }
    return json.dumps(
        {
            "eventId": event_id,
            "conversationId": event_id,
            "type": "message.created",
            "message": message,
        },
        separators=(",", ":"),
    )


async def stage_fanout(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    url = await stack.cluster.gateway("gateway")
    counts = [0] * args.dashboards
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    dashboards: list[SocketClient] = []
    client = aioredis.Redis.from_url(stack.settings.redis_url or "")
    try:
        for index in range(args.dashboards):

            def count(event: str, data: Any, at: float, index: int = index) -> None:
                if data.startswith('42["newMessage"'):
                    counts[index] += 1

            dashboard = await SocketClient.connect(
                session, url, {"token": stack.token}, count, raw=True
            )
            await dashboard.call("joinProjectRoom", {"projectId": stack.project_id})
            dashboards.append(dashboard)
        total = args.fanout_events
        base = 10**12  # event ids no relay hands out in this database
        payloads = [_event(base + i, stack.project_id, args.size) for i in range(total)]
        watch = _watch(stack, ["gateway", "redis"])
        watch.mark()
        watch.start_sampling()
        print(f"fanout: publishing {total} events to {args.dashboards} dashboards ...")
        began = time.perf_counter()
        sent = 0
        deadline = began + STAGE_TIMEOUT
        while sent < total:
            if time.perf_counter() > deadline:
                raise TimeoutError("the fan-out stage took too long")
            if sent - min(counts) >= args.fanout_window:
                await asyncio.sleep(0.001)
                continue
            chunk = payloads[sent : sent + PUBLISH_CHUNK]
            async with client.pipeline(transaction=False) as pipe:
                for payload in chunk:
                    pipe.publish(stack.settings.events_channel, payload)
                await pipe.execute()
            sent += len(chunk)

        async def delivered() -> bool:
            return min(counts) >= total

        ended = await _until(delivered, f"{total} events on every dashboard")
        await watch.stop_sampling()
    finally:
        for dashboard in dashboards:
            await dashboard.close()
        await session.close()
        await client.aclose()
    rate = total / (ended - began)
    report = watch.report(total)
    print(
        f"fanout: {total} events to every dashboard in {ended - began:.2f} s = "
        f"{rate:,.0f} events/s ({rate * args.dashboards:,.0f} socket emits/s)"
    )
    print(format_report(report))
    return {
        "events": total,
        "dashboards": args.dashboards,
        "seconds": round(ended - began, 3),
        "events_per_s": round(rate, 1),
        "processes": report,
    }


async def stage_sockets(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    url = await stack.cluster.gateway("gateway-sockets")
    gateway = next(c for c in stack.cluster.children if c.name == "gateway-sockets")
    assert gateway.process is not None
    watched = Watched(name="gateway", pid=gateway.process.pid)
    baseline = watched.resident_mb()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sockets: list[SocketClient] = []
    limit = asyncio.Semaphore(SOCKET_CONCURRENCY)
    retries = 0
    connected = 0

    async def one() -> SocketClient:
        nonlocal retries, connected
        uid = str(uuid.uuid4())
        async with limit:
            for attempt in range(IDENTIFY_ATTEMPTS):
                try:
                    socket = await SocketClient.connect(
                        session,
                        url,
                        {"projectId": stack.project_id, "visitorUid": uid},
                        deflate=not args.no_deflate,
                    )
                    break
                except (TimeoutError, aiohttp.ClientError):
                    if attempt == IDENTIFY_ATTEMPTS - 1:
                        raise
                    retries += 1
                    await asyncio.sleep(IDENTIFY_RETRY)
            hello = {"projectId": stack.project_id, "visitorUid": uid}
            for _ in range(IDENTIFY_ATTEMPTS):
                ack = await socket.call("identify", hello)
                if ack == {"ok": True}:
                    connected += 1
                    if connected % 1000 == 0:
                        print(f"sockets: {connected} identified", flush=True)
                    return socket
                # A widget retries `unavailable` the same way.
                if not (isinstance(ack, dict) and ack["error"]["code"] == "unavailable"):
                    break
                retries += 1
                await asyncio.sleep(IDENTIFY_RETRY)
            raise RuntimeError(f"identify answered {ack!r}")

    try:
        began = time.perf_counter()
        sockets = list(await asyncio.gather(*(one() for _ in range(args.sockets))))
        connected_s = time.perf_counter() - began
        await asyncio.sleep(3.0)  # let the gateway settle (presence writes, buffers)
        resident = watched.resident_mb()
        watched.sample()
        alive = sum(not s.closed.is_set() for s in sockets)
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
        await session.close()
    per_socket_kb = (resident - baseline) * 1024 / max(1, len(sockets))
    print(
        f"sockets: {alive} of {args.sockets} connected and identified in {connected_s:.1f} s; "
        f"gateway resident {resident:.1f} MB (idle {baseline:.1f} MB, "
        f"{per_socket_kb:.1f} KB per socket, peak {watched.peak_kb / 1024:.1f} MB; "
        f"{retries} connects or identifies retried; "
        f"permessage-deflate {'not offered' if args.no_deflate else 'offered'})"
    )
    return {
        "sockets": args.sockets,
        "alive": alive,
        "connect_seconds": round(connected_s, 1),
        "gateway_idle_mb": round(baseline, 1),
        "gateway_resident_mb": round(resident, 1),
        "gateway_peak_mb": round(watched.peak_kb / 1024, 1),
        "kb_per_socket": round(per_socket_kb, 1),
        "identify_retries": retries,
        "deflate_offered": not args.no_deflate,
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    chosen = args.only.split(",") if args.only else list(STAGES)
    results: dict[str, Any] = {}
    async with bench_stack(workdir) as stack:
        if "agent" in chosen or "relay" in chosen:
            if "agent" in chosen:
                results["agent"] = await stage_agent(stack, args)
            else:
                await preload_topic(stack, args.events, args.visitors, args.size)
                await stack.cluster.worker("worker")
                conn = await asyncpg.connect(to_plain_url(stack.database_url))

                async def stored() -> bool:
                    return await _count(conn, "messages") >= args.events

                await _until(stored, "the preloaded events stored")
                await conn.close()
            if "relay" in chosen:
                results["relay"] = await stage_relay(stack, args)
        if "fanout" in chosen:
            results["fanout"] = await stage_fanout(stack, args)
        if "sockets" in chosen:
            results["sockets"] = await stage_sockets(stack, args)
        for service in stack.services.embedded:
            service_pid(service)  # all still up: a stage that killed one would show here
    results["options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results["loadavg"] = os.getloadavg()
    load1, load5, _ = results["loadavg"]
    print(f"load average at the end: {load1:.2f} (1 min), {load5:.2f} (5 min)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help=f"comma-separated stages of {', '.join(STAGES)}")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="agent/relay events")
    parser.add_argument("--visitors", type=int, default=DEFAULT_VISITORS)
    parser.add_argument("--size", type=int, default=40, help="characters per message")
    parser.add_argument("--dashboards", type=int, default=2, help="fan-out dashboards")
    parser.add_argument("--fanout-events", type=int, default=DEFAULT_FANOUT_EVENTS)
    parser.add_argument("--fanout-window", type=int, default=DEFAULT_FANOUT_WINDOW)
    parser.add_argument("--sockets", type=int, default=DEFAULT_SOCKETS)
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="sockets stage: do not offer permessage-deflate (browsers offer it)",
    )
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--workdir", type=Path, help="keep services' data and logs here")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = asyncio.run(run(args, args.workdir.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="parley-stages-") as workdir:
            results = asyncio.run(run(args, Path(workdir)))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
