"""Runs the scenarios one after the other: a fresh stack each, load and fault together.

The services (embedded, or those the URLs name) start once, fresh, for the whole
run; each scenario gets its own database, topics, channel and consumer group, and
its own Parley processes. A scenario ends when everything acked is stored, shown
on every dashboard and confirmed to its widget, or when the drain time is over;
then the tally reads PostgreSQL.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.database import create_engine
from persistence.directory import Directory
from tests.faults.load import Load, LoopLag
from tests.faults.observer import ObservedDashboard
from tests.faults.scenarios import Context, Scenario
from tests.faults.stack import SERVICE_KINDS, Stack, embedded, scenario_settings
from tests.faults.tally import ScenarioResult, StoredRow, settled, tally
from tests.faults.widget import Widget
from tests.services import ServiceSet

logger = logging.getLogger("parley.faults")

DASHBOARDS = 2
OPEN_CONCURRENCY = 25  # widgets connecting at once
SETTLE_POLL = 0.5  # seconds between checks of the stored state while draining
DRAIN_CAP = 180.0  # seconds a drain may last while it still makes progress
SCENARIO_SLACK = 180.0  # seconds a scenario may take beyond its load and drain (setup, fault)
CLOSE_TIMEOUT = 30.0  # seconds to close every client
TOKEN_TTL = 3600  # seconds

STORED_ROWS = """
SELECT m.id, m.temp_id::text AS temp_id, v.uid, m.seq
FROM messages m
JOIN conversations c ON c.id = m.conversation_id
JOIN visitors v ON v.id = c.visitor_id
WHERE m.project_id = $1 AND m.sender_type = 'visitor'
"""


@dataclasses.dataclass(frozen=True)
class Options:
    rate: float  # messages per second, all visitors together
    visitors: int
    duration: float  # seconds of load
    fault_at: float  # seconds into the load
    drain: float  # seconds without progress after which a drain gives up
    scenarios: list[Scenario]
    workdir: Path


async def run_suite(
    options: Options, *, on_result: Callable[[ScenarioResult], None]
) -> list[ScenarioResult]:
    # Only the services are read from the environment; each scenario has its own secret.
    env = {**os.environ, "PARLEY_SECRET": secrets.token_urlsafe(48)}
    services = await asyncio.to_thread(
        ServiceSet.start, Settings.from_env(env), options.workdir / "services"
    )
    results = []
    try:
        await asyncio.to_thread(services.create_template)
        for scenario in options.scenarios:
            result = await run_scenario(scenario, services=services, options=options)
            on_result(result)
            results.append(result)
    finally:
        await asyncio.to_thread(services.stop)
    return results


async def run_scenario(
    scenario: Scenario, *, services: ServiceSet, options: Options
) -> ScenarioResult:
    result = ScenarioResult(name=scenario.name, rate=options.rate, may_lose=scenario.may_lose)
    if scenario.restarts and embedded(services, SERVICE_KINDS[scenario.restarts]) is None:
        result.skipped = f"{scenario.restarts} is external (named by its URL); not restarted"
        return result
    database = await services.clone_template()
    settings = scenario_settings(services, database, options.workdir / scenario.name)
    stack = Stack(services=services, settings=settings, logs=options.workdir / scenario.name)
    widgets: list[Widget] = []
    dashboards: list[ObservedDashboard] = []
    watching: asyncio.Task[None] | None = None
    sending: asyncio.Task[None] | None = None
    budget = options.duration + DRAIN_CAP + SCENARIO_SLACK
    try:
        async with asyncio.timeout(budget):
            project_id, token = await _project(settings)
            await stack.start()
            dashboards = [
                ObservedDashboard(
                    name=f"dashboard-{i}",
                    project_id=project_id,
                    token=token,
                    urls=_rotated(stack.urls, i),
                    log=options.workdir / scenario.name / f"dashboard-{i}.log",
                )
                for i in range(DASHBOARDS)
            ]
            widgets = [
                Widget(project_id=project_id, urls=_rotated(stack.urls, i))
                for i in range(options.visitors)
            ]
            await _open_all(dashboards, widgets)
            load = Load(widgets=widgets, rate=options.rate, duration=options.duration)
            lag = LoopLag()
            watching = asyncio.create_task(lag.watch(), name="loop-lag")
            sending = asyncio.create_task(load.run(), name="load")
            await asyncio.sleep(options.fault_at)
            context = Context(
                stack=stack,
                services=services,
                settings=settings,
                dashboards=dashboards,
                project_id=project_id,
                load_seconds=max(0.0, options.duration - options.fault_at),
                notes=result.notes,
                violations=result.violations,
            )
            await scenario.inject(context)
            await sending
            rows = await _drain(services, database, project_id, widgets, dashboards, options)
            tally(result, widgets=widgets, dashboards=dashboards, rows=rows)
            result.achieved_rate = load.achieved_rate
            result.notes.append(f"widget process: event loop up to {lag.worst * 1000:.0f} ms late")
            result.notes.extend(_client_notes(widgets, dashboards))
    except Exception as exc:  # a broken scenario is reported, and the next one runs
        logger.exception("scenario %s failed", scenario.name)
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        for task in (watching, sending):
            if task is not None:
                task.cancel()
        await _close_all(dashboards, widgets)
        await asyncio.to_thread(stack.stop)
        await _restore(services)
        with contextlib.suppress(Exception):
            await services.drop_database(database)
    result.notes.append(f"logs: {options.workdir / scenario.name}")
    return result


async def _project(settings: Settings) -> tuple[int, str]:
    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        directory = Directory(engine=engine)
        project = await directory.create_project(name="faults")
        agent = await directory.add_agent(project_id=project.id, email="agent@faults.test")
    finally:
        await engine.dispose()
    return project.id, TokenSigner(secret=settings.secret, ttl=TOKEN_TTL).issue(agent.id)


def _rotated(urls: list[str], index: int) -> list[str]:
    """Client ``index``'s own gateway first, the others after it."""
    start = index % len(urls)
    return urls[start:] + urls[:start]


async def _open_all(dashboards: list[ObservedDashboard], widgets: list[Widget]) -> None:
    # Each dashboard is ready once it joined and finished its first sync.
    await asyncio.gather(*(dash.open() for dash in dashboards))
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def open_one(widget: Widget) -> None:
        async with gate:
            await widget.open()

    await asyncio.gather(*(open_one(widget) for widget in widgets))


async def stored_rows(services: ServiceSet, database: str, project_id: int) -> list[StoredRow]:
    conn = await asyncpg.connect(services.database_url(database))
    try:
        records = await conn.fetch(STORED_ROWS, project_id)
    finally:
        await conn.close()
    return [
        StoredRow(id=r["id"], temp_id=r["temp_id"], visitor_uid=r["uid"], seq=r["seq"])
        for r in records
    ]


async def _drain(
    services: ServiceSet,
    database: str,
    project_id: int,
    widgets: list[Widget],
    dashboards: list[ObservedDashboard],
    options: Options,
) -> list[StoredRow]:
    """Wait until everything acked is everywhere it should be, or nothing moves any more.

    A slow machine is not a lossy one: the wait goes on while rows are stored or
    messages shown or confirmed, and ends ``options.drain`` seconds after the last
    progress (or at :data:`DRAIN_CAP`).
    """
    cap = time.monotonic() + DRAIN_CAP
    last_progress = time.monotonic()
    rows: list[StoredRow] = []
    progress: tuple[int, ...] = ()
    while True:
        await asyncio.gather(*(dash.refresh() for dash in dashboards))
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            rows = await stored_rows(services, database, project_id)
            if settled(widgets=widgets, dashboards=dashboards, rows=rows):
                return rows
        now_progress = (
            len(rows),
            sum(o.acked for w in widgets for o in w.outgoing.values()),
            sum(len(w.confirmed) for w in widgets),
            *(len(d.shown) for d in dashboards),
        )
        if now_progress != progress:
            progress, last_progress = now_progress, time.monotonic()
        if time.monotonic() > min(cap, last_progress + options.drain):
            rows = await stored_rows(services, database, project_id)
            await asyncio.gather(*(dash.refresh() for dash in dashboards))
            return rows
        await asyncio.sleep(SETTLE_POLL)


def _client_notes(widgets: list[Widget], dashboards: list[ObservedDashboard]) -> list[str]:
    errors: collections.Counter[str] = collections.Counter()
    for widget in widgets:
        errors.update(widget.errors)
    notes = [
        f"widgets: {sum(w.reconnects for w in widgets)} reconnects, "
        f"{sum(w.resyncs for w in widgets)} resyncs, "
        f"{sum(o.attempts for w in widgets for o in w.outgoing.values())} sendMessage calls"
        + (f", errors {dict(errors)}" if errors else "")
    ]
    for dash in dashboards:
        notes.append(
            f"{dash.name}: {dash.reconnects} reconnects, {dash.resyncs} resyncs, "
            f"{dash.syncs} syncs in {dash.pages} pages, {dash.repeats} repeats, "
            f"{dash.gapped} conversations with a visible seq gap"
            + (f", errors {dict(dash.errors)}" if dash.errors else "")
        )
    return notes


async def _close_all(dashboards: list[ObservedDashboard], widgets: list[Widget]) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await asyncio.gather(
                *(client.close() for client in [*dashboards, *widgets]), return_exceptions=True
            )


async def _restore(services: ServiceSet) -> None:
    """Start any embedded service a failed scenario left stopped."""
    for service in services.embedded:
        if not service.running:
            await asyncio.to_thread(service.start)
