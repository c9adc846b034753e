"""``parley run`` (``make run``): the whole service in the foreground until Ctrl-C.

Starts embedded services for unset URLs, migrates, makes sure a demo project and
agent exist, prints how to connect, then runs the gateway, the Faust worker and
the outbox relay as child processes (honcho), stopping everything on exit.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from honcho.manager import Manager

from gateway.tokens import TokenSigner
from parley.settings import Settings
from parley.stack import LocalStack, ServiceUnreachable, migrate
from persistence.database import create_engine
from persistence.directory import Agent, Directory, Project

DEMO_PROJECT = "Demo project"
DEMO_AGENT = "demo@parley.local"


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
        PARLEY_DATA_DIR=str(Path(settings.data_dir).resolve()),
        PARLEY_HOST=settings.host,
        PARLEY_PORT=str(settings.port),
        PYTHONUNBUFFERED="1",
    )
    return env


def process_commands() -> dict[str, str]:
    python = sys.executable
    return {
        "gateway": f"{python} -m parley.cli gateway",
        "worker": f"{python} -m faust -A streams.app worker -l info --without-web",
        "relay": f"{python} -m parley.cli relay",
    }


def run_local(settings: Settings) -> int:
    stack = LocalStack(settings=settings)
    try:
        resolved = stack.start()
    except ServiceUnreachable as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 1
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
                    "Press Ctrl-C to stop.",
                    "",
                ]
            ),
            flush=True,
        )
        manager = Manager()
        env = child_env(resolved)
        for name, command in process_commands().items():
            manager.add_process(name, command, env=env)
        manager.loop()
        return int(manager.returncode or 0)
    finally:
        stack.stop()
