"""The faults, each injected into a running stack while the load flows.

Every scenario runs on two gateways with one dashboard on each; the first,
``two-gateways``, injects nothing and is the baseline. Only ``broker-restart`` may
lose messages, and only with the memory-only embedded broker (Tansu keeps
nothing across a restart): what the gateway acked and the worker had not yet
stored is gone, and the suite counts it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable

from parley.settings import Settings
from tests.faults.observer import ObservedDashboard
from tests.faults.poison import PoisonProducer, count_dead_letters, poison_values
from tests.faults.stack import SERVICE_KINDS, Stack, embedded, restart_service
from tests.servers import create_topics
from tests.services import ServiceSet

WORKER_DOWN = 5.0  # seconds between SIGKILL and restart
RELAY_DOWN = 2.0  # seconds
GATEWAY_DOWN = 2.0  # seconds
REDIS_DOWN = 2.0  # seconds
POSTGRES_DOWN = 5.0  # seconds
BROKER_DOWN = 2.0  # seconds
DASHBOARD_AWAY = 5.0  # seconds
POISON_ROUNDS = 2  # every kind of bad record is produced this many times
DEAD_LETTER_WAIT = 30.0  # seconds for the worker to set every poison record aside


@dataclasses.dataclass
class Context:
    """What a fault may act on."""

    stack: Stack
    services: ServiceSet
    settings: Settings
    dashboards: list[ObservedDashboard]
    project_id: int
    load_seconds: float  # how long the load has left to run when the fault starts
    notes: list[str]
    violations: list[str]  # what the fault's own checks found wrong: fails the scenario


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    does: str  # one sentence, for the report and the docs
    inject: Callable[[Context], Awaitable[None]]
    restarts: str | None = None  # the embedded service it stops and starts
    may_lose: bool = False


async def nothing(ctx: Context) -> None:
    ctx.notes.append("no fault: dashboards on different gateways")


async def kill_worker(ctx: Context) -> None:
    assert ctx.stack.worker is not None
    await ctx.stack.kill(ctx.stack.worker)
    await asyncio.sleep(WORKER_DOWN)
    await ctx.stack.restart(ctx.stack.worker)


async def kill_relay(ctx: Context) -> None:
    assert ctx.stack.relay is not None
    await ctx.stack.kill(ctx.stack.relay)
    await asyncio.sleep(RELAY_DOWN)
    await ctx.stack.restart(ctx.stack.relay)


async def kill_gateway(ctx: Context) -> None:
    gateway = ctx.stack.gateways[0]
    await ctx.stack.kill(gateway)
    await asyncio.sleep(GATEWAY_DOWN)
    await ctx.stack.restart(gateway)


async def restart_redis(ctx: Context) -> None:
    service = embedded(ctx.services, SERVICE_KINDS["redis"])
    assert service is not None
    await restart_service(service, down_for=REDIS_DOWN)


async def restart_postgres(ctx: Context) -> None:
    service = embedded(ctx.services, SERVICE_KINDS["postgres"])
    assert service is not None
    await restart_service(service, down_for=POSTGRES_DOWN)


async def restart_broker(ctx: Context) -> None:
    service = embedded(ctx.services, SERVICE_KINDS["broker"])
    assert service is not None
    await restart_service(service, down_for=BROKER_DOWN)
    # A memory-only broker comes back empty: recreate the topics, as `parley run` would.
    await create_topics(ctx.settings)


async def dashboard_away(ctx: Context) -> None:
    await ctx.dashboards[0].away(DASHBOARD_AWAY)


async def poison(ctx: Context) -> None:
    producer = PoisonProducer(
        bootstrap_servers=ctx.services.bootstrap_servers, topic=ctx.settings.visitor_topic
    )
    await producer.start()
    try:
        kinds = poison_values(ctx.project_id, "")
        gap = max(0.1, ctx.load_seconds / (POISON_ROUNDS * len(kinds) + 1))
        for _ in range(POISON_ROUNDS):
            for kind, _value in kinds:
                # One visitor per record, so the records spread over the partitions.
                visitor = str(uuid.uuid4())
                value = dict(poison_values(ctx.project_id, visitor))[kind]
                await producer.send(ctx.project_id, visitor, kind, value)
                await asyncio.sleep(gap)
    finally:
        await producer.stop()
    set_aside = await count_dead_letters(
        bootstrap_servers=ctx.services.bootstrap_servers,
        topic=ctx.settings.dead_letter_topic,
        expected=len(producer.sent),
        timeout=DEAD_LETTER_WAIT,
    )
    ctx.notes.append(
        f"{len(producer.sent)} poison records produced, {set_aside} on the dead-letter topic"
    )
    if set_aside < len(producer.sent):
        ctx.violations.append(
            f"only {set_aside} of {len(producer.sent)} poison records were dead-lettered"
        )


SCENARIOS = [
    Scenario("two-gateways", "No fault: two gateways, one dashboard on each.", nothing),
    Scenario(
        "kill-worker",
        f"SIGKILL the Faust worker, restart it {WORKER_DOWN:.0f} s later.",
        kill_worker,
    ),
    Scenario(
        "kill-relay", f"SIGKILL the outbox relay, restart it {RELAY_DOWN:.0f} s later.", kill_relay
    ),
    Scenario(
        "kill-gateway",
        f"SIGKILL the first gateway, restart it {GATEWAY_DOWN:.0f} s later on the same port; "
        "its clients reconnect to it or to the other.",
        kill_gateway,
    ),
    Scenario(
        "restart-redis",
        f"Stop Redis, start it {REDIS_DOWN:.0f} s later (pub/sub and the rate limiter go away).",
        restart_redis,
        restarts="redis",
    ),
    Scenario(
        "restart-postgres",
        f"Stop PostgreSQL (fast shutdown), start it {POSTGRES_DOWN:.0f} s later.",
        restart_postgres,
        restarts="postgres",
    ),
    Scenario(
        "dashboard-away",
        f"The first dashboard disconnects for {DASHBOARD_AWAY:.0f} s, then rejoins and syncs.",
        dashboard_away,
    ),
    Scenario(
        "restart-broker",
        f"Stop the broker, start it {BROKER_DOWN:.0f} s later; the embedded Tansu keeps nothing, "
        "so what was acked and not yet stored is lost (counted).",
        restart_broker,
        restarts="broker",
        may_lose=True,
    ),
    Scenario(
        "poison",
        "Produce raw bad records (not JSON, NUL, lone surrogate, bigint overflow, unknown "
        "project) straight to the visitor topic, mixed with the load.",
        poison,
    ),
]
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
