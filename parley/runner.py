"""``parley run`` (``make run``): the whole service in the foreground until Ctrl-C.

Starts embedded services for unset URLs, migrates, makes sure a demo project and
agent exist, prints how to connect, writes the state file a second terminal reads
(:mod:`parley.run_state`), then runs the gateway, the Faust worker and the outbox
relay as supervised child processes.

The embedded broker keeps its log in memory, so two things protect what the
gateway acknowledged:

- **Stop drains.** Ctrl-C stops the gateway first (its producer flushes), waits
  until the worker committed every record (:mod:`parley.backlog`), and only then
  stops the worker and the broker. A second Ctrl-C skips the wait.
- **Recycling.** Tansu's reads slow down with the number of record batches in a
  partition. Once a partition holds ``RECYCLE_RECORDS``, the gateway is paused,
  the worker's backlog drained, and the broker restarted empty; the worker starts
  again from the new log's beginning. The pause lasts a few seconds; clients
  see a slower ack, nothing is refused or lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from gateway.tokens import TokenSigner
from parley import run_state
from parley.backlog import group_backlog, wait_drained
from parley.settings import Settings
from parley.stack import LocalStack, ServiceUnreachable, migrate
from parley.supervisor import Child
from persistence.database import create_engine
from persistence.directory import Agent, Directory, Project
from streams.errors import BrokerUnavailable
from streams.topics import ensure_topics, parley_topics

logger = logging.getLogger("parley.runner")

DEMO_PROJECT = "Demo project"
DEMO_AGENT = "demo@parley.local"
DRAIN_TIMEOUT = 120.0  # seconds a stop waits for the worker to store the backlog
RECYCLE_DRAIN_TIMEOUT = 5.0  # seconds the gateway stays paused at most for a recycle
RECYCLE_CHECK_INTERVAL = 30.0  # seconds between two looks at the embedded broker's log
RECYCLE_RETRY_INTERVAL = 5.0  # seconds before the next look when the worker was behind
# A recycle pauses the gateway only when the worker is this close to the end of the
# log, so the pause stays short; otherwise it waits for a calmer moment.
RECYCLE_MAX_BEHIND = 200  # records
# Past this many times the recycle threshold, the gateway is paused until the worker
# caught up whatever it takes: reads slow down with the log, so waiting for a calm
# moment that never comes would end with a broker too slow to read at all.
RECYCLE_FORCE_FACTOR = 2
FORCED_DRAIN_TIMEOUT = 30.0  # seconds the gateway stays paused at most for a forced recycle
IN_FLIGHT_GRACE = 1.0  # seconds for the broker to finish writes sent before the pause
# NOTIFY wakes the relay for every stored message; its poll is only the safety net, and
# an idle `make run` should not query PostgreSQL every second for it.
LOCAL_RELAY_POLL_INTERVAL = 5.0  # seconds, unless PARLEY_RELAY_POLL_INTERVAL says otherwise


async def ensure_demo(settings: Settings) -> tuple[Project, Agent]:
    engine = create_engine(settings.sqlalchemy_url, pool_size=1)
    try:
        directory = Directory(engine=engine)
        project = await directory.first_project()
        if project is None:
            project = await directory.create_project(name=DEMO_PROJECT)
        agent = await directory.add_agent(
            project_id=project.id, email=DEMO_AGENT, display_name="Demo agent"
        )
        return project, agent
    finally:
        await engine.dispose()


def child_env(settings: Settings) -> dict[str, str]:
    assert settings.database_url and settings.redis_url and settings.kafka_bootstrap_servers
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        PARLEY_KAFKA_FETCH_WAIT_MS=str(settings.fetch_wait_ms),
        PARLEY_KAFKA_FETCH_IDLE_WAIT_MS=str(settings.fetch_idle_wait_ms),
        PARLEY_KAFKA_SESSION_TIMEOUT=str(settings.session_timeout),
        PARLEY_RELAY_POLL_INTERVAL=str(settings.relay_poll_interval),
        PARLEY_DATA_DIR=str(Path(settings.data_dir).resolve()),
        PARLEY_HOST=settings.host,
        PARLEY_PORT=str(settings.port),
        PYTHONUNBUFFERED="1",
    )
    return env


def process_commands() -> dict[str, list[str]]:
    python = sys.executable
    faust_worker = [python, "-m", "faust", "-A", "streams.app", "worker"]
    return {
        "gateway": [python, "-m", "parley.cli", "gateway"],
        "worker": [*faust_worker, "-l", "info", "--without-web"],
        "relay": [python, "-m", "parley.cli", "relay"],
    }


class LocalRun:
    """The children of one ``parley run`` and the order they start and stop in."""

    def __init__(self, *, stack: LocalStack, settings: Settings) -> None:
        self._stack = stack
        self._settings = settings
        env = child_env(settings)
        self.children = {
            name: Child(name=name, command=command, env=env, on_spawn=self._pids_changed)
            for name, command in process_commands().items()
        }
        self.gateway = self.children["gateway"]
        self.worker = self.children["worker"]
        self.relay = self.children["relay"]
        self.recycles = 0
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._serving = False

    @property
    def consumed_topics(self) -> list[str]:
        return [self._settings.visitor_topic, self._settings.agent_topic]

    def state(self) -> run_state.RunState:
        s = self._settings
        assert s.database_url and s.redis_url and s.kafka_bootstrap_servers
        pids = {name: child.pid for name, child in self.children.items() if child.pid}
        pids.update({svc.name: svc.pid for svc in self._stack.embedded if svc.pid})
        return run_state.RunState(
            pid=os.getpid(),
            database_url=s.database_url,
            redis_url=s.redis_url,
            kafka_bootstrap_servers=s.kafka_bootstrap_servers,
            gateway_url=f"http://{s.host}:{s.port}",
            pids=pids,
        )

    def write_state(self) -> None:
        self.state().write(self._settings.data_dir)

    def _pids_changed(self) -> None:
        # The state file lists the children's pids; keep them current after a restart.
        if self._serving and not self._stopping.is_set():
            self.write_state()

    def request_stop(self) -> None:
        if self._stopping.is_set():
            print("parley: stopping without waiting for the worker", file=sys.stderr, flush=True)
            self._hurry.set()
        self._stopping.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        for child in (self.relay, self.worker, self.gateway):
            await child.start()
        self._serving = True
        self.write_state()
        recycler = None
        if self._stack.broker is not None:
            recycler = asyncio.create_task(self._recycle_loop(), name="broker-recycler")
        try:
            await self._stopping.wait()
        finally:
            if recycler is not None:
                recycler.cancel()
                await asyncio.gather(recycler, return_exceptions=True)
            await self.stop()

    async def stop(self) -> None:
        """Gateway, then the worker once it stored everything, then the relay."""
        await self.gateway.stop()
        if self._stack.broker is not None:
            await self._drain_before_stop()
        await self.worker.stop()
        await self.relay.stop()
        run_state.remove(self._settings.data_dir)

    async def _drain_before_stop(self) -> None:
        print("parley: waiting for the worker to store every accepted message ...", flush=True)
        drain = asyncio.create_task(self._drain(DRAIN_TIMEOUT))
        hurry = asyncio.create_task(self._hurry.wait())
        await asyncio.wait({drain, hurry}, return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        if not drain.done():
            drain.cancel()
            print("parley: stopped before the backlog was stored", file=sys.stderr, flush=True)
            return
        left = drain.result()
        if left < 0:
            print("parley: the backlog could not be checked", file=sys.stderr, flush=True)
        elif left:
            print(
                f"parley: {left} accepted messages were not stored and are lost with the "
                "in-memory broker",
                file=sys.stderr,
                flush=True,
            )

    async def _drain(self, within: float) -> int:
        """Wait until the worker committed everything; return the records still behind."""
        assert self._settings.kafka_bootstrap_servers
        try:
            left = await wait_drained(
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                group_id=self._settings.worker_id,
                topics=self.consumed_topics,
                within=within,
            )
        except BrokerUnavailable as exc:
            logger.warning("backlog unknown: %s", exc, extra={"action": "run.drain_failed"})
            return -1
        return sum(entry.behind for entry in left)

    async def _recycle_loop(self) -> None:
        assert self._settings.kafka_bootstrap_servers
        pause = RECYCLE_CHECK_INTERVAL
        while True:
            await asyncio.sleep(pause)
            pause = RECYCLE_CHECK_INTERVAL
            try:
                backlog = await group_backlog(
                    bootstrap_servers=self._settings.kafka_bootstrap_servers,
                    group_id=self._settings.worker_id,
                    topics=self.consumed_topics,
                )
                longest = max((entry.end for entry in backlog), default=0)
                limit = self._settings.broker_recycle_records
                if longest < limit:
                    continue
                forced = longest >= limit * RECYCLE_FORCE_FACTOR
                if not forced and sum(entry.behind for entry in backlog) > RECYCLE_MAX_BEHIND:
                    pause = RECYCLE_RETRY_INTERVAL
                    continue
                within = FORCED_DRAIN_TIMEOUT if forced else RECYCLE_DRAIN_TIMEOUT
                if not await self.recycle_broker(within=within):
                    pause = RECYCLE_RETRY_INTERVAL
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("broker recycle failed", extra={"action": "run.recycle_failed"})
                self.gateway.resume()

    async def recycle_broker(self, *, within: float = RECYCLE_DRAIN_TIMEOUT) -> bool:
        """Restart the in-memory broker empty once the worker stored all it holds.

        The gateway is paused meanwhile (``within`` seconds at most); False when the
        worker did not catch up in that time and the broker was left as it was.
        """
        broker = self._stack.broker
        assert broker is not None and self._settings.kafka_bootstrap_servers
        paused_at = time.monotonic()
        worker_stopped = False
        self.gateway.pause()
        try:
            await asyncio.sleep(IN_FLIGHT_GRACE)
            left = await self._drain(within)
            if left != 0:
                logger.info(
                    "broker recycle postponed: %s records not stored yet",
                    left,
                    extra={"action": "run.recycle_postponed"},
                )
                return False
            # Everything is committed: the worker has nothing to lose.
            worker_stopped = True
            await self.worker.kill()
            await asyncio.to_thread(broker.restart)
            await ensure_topics(
                self._settings.kafka_bootstrap_servers,
                parley_topics(self._settings),
                replication=self._settings.topic_replication,
            )
        finally:
            self.gateway.resume()
            if worker_stopped:
                await self.worker.start()
        self.recycles += 1
        self.write_state()
        logger.info(
            "embedded broker recycled; the gateway was paused for %.1f s",
            time.monotonic() - paused_at,
            extra={"action": "run.recycled", "count": self.recycles},
        )
        return True


def run_local(settings: Settings) -> int:
    stack = LocalStack(settings=settings)
    try:
        resolved = stack.start()
    except ServiceUnreachable as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 1
    if "PARLEY_RELAY_POLL_INTERVAL" not in os.environ:
        resolved = resolved.replace(relay_poll_interval=LOCAL_RELAY_POLL_INTERVAL)
    try:
        migrate(resolved)
        project, agent = asyncio.run(ensure_demo(resolved))
        token = TokenSigner(secret=resolved.secret, ttl=resolved.token_ttl).issue(
            agent.id, version=agent.token_version
        )
        url = f"http://{resolved.host}:{resolved.port}"
        print(
            "\n".join(
                [
                    "",
                    f"Parley gateway:   {url}  (widget on a host page: {url}/widget.html,"
                    f" dashboard: {url}/dashboard)",
                    f"Demo project id:  {project.id}",
                    f"Dashboard token:  {token}",
                    "Embedded services: "
                    + (", ".join(f"{s.name} 127.0.0.1:{s.port}" for s in stack.embedded) or "none"),
                    f"Other terminals:  `parley …` finds these services in "
                    f"{run_state.state_path(resolved.data_dir)}",
                    "Press Ctrl-C to stop.",
                    "",
                ]
            ),
            flush=True,
        )
        asyncio.run(LocalRun(stack=stack, settings=resolved).serve())
        return 0
    finally:
        stack.stop()
