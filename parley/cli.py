"""The ``parley`` command: JSON out, for people and scripts alike."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from parley.logs import configure_logging
from parley.settings import Settings, SettingsError

T = TypeVar("T")


def _print(data: Any) -> None:
    print(json.dumps(data, indent=None, default=str), flush=True)


def _with_engine(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from persistence.database import create_engine

    async def run() -> T:
        engine = create_engine(settings.sqlalchemy_url, pool_size=1)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from persistence.schema import prepare

    settings.require("database_url")
    assert settings.database_url is not None
    prepare(settings.database_url)
    _print({"migrated": True})
    return 0


def cmd_project_create(settings: Settings, args: argparse.Namespace) -> int:
    from persistence.directory import Directory

    async def work(engine: Any) -> Any:
        return await Directory(engine=engine).create_project(name=args.name, origins=args.origin)

    project = _with_engine(settings, work)
    _print({"id": project.id, "name": project.name, "origins": list(project.allowed_origins)})
    return 0


def cmd_agent_create(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.tokens import TokenSigner
    from persistence.directory import Directory

    async def work(engine: Any) -> Any:
        return await Directory(engine=engine).add_agent(
            project_id=args.project, email=args.email, display_name=args.name or ""
        )

    agent = _with_engine(settings, work)
    token = TokenSigner(secret=settings.secret, ttl=settings.token_ttl).issue(agent.id)
    _print({"id": agent.id, "email": agent.email, "project": args.project, "token": token})
    return 0


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    settings.require("database_url", "redis_url", "kafka_bootstrap_servers")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
        ws="websockets-sansio",
    )
    return 0


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    from persistence.relay import run_relay

    settings.require("database_url", "redis_url")
    asyncio.run(run_relay(settings))
    return 0


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from persistence.outbox import Outbox

    async def work(engine: Any) -> Any:
        outbox = Outbox(engine=engine)
        if args.action == "retry":
            return {"retried": await outbox.retry_parked(args.id or None)}
        parked = await outbox.parked()
        return {"pending": await outbox.pending(), "parked": [vars(row) for row in parked]}

    _print(_with_engine(settings, work))
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from parley.runner import run_local

    return run_local(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="create the database if missing and apply migrations")
    project = sub.add_parser("project", help="manage projects").add_subparsers(
        dest="action", required=True
    )
    create = project.add_parser("create", help="create a project")
    create.add_argument("--name", required=True)
    create.add_argument("--origin", action="append", default=[], help="allowed widget origin")

    agent = sub.add_parser("agent", help="manage agents").add_subparsers(
        dest="action", required=True
    )
    agent_create = agent.add_parser("create", help="add an agent to a project; prints a token")
    agent_create.add_argument("--project", type=int, required=True)
    agent_create.add_argument("--email", required=True)
    agent_create.add_argument("--name", help="display name (default: the email's local part)")

    sub.add_parser("gateway", help="run the Socket.IO + HTTP gateway")
    sub.add_parser("relay", help="run the outbox relay")
    outbox = sub.add_parser("outbox", help="inspect or retry parked outbox rows")
    outbox.add_argument("action", choices=["status", "retry"])
    outbox.add_argument("--id", type=int, action="append", help="row id to retry (repeatable)")
    sub.add_parser("run", help="run everything locally, with embedded services where unset")
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "migrate": cmd_migrate,
    "project": cmd_project_create,
    "agent": cmd_agent_create,
    "gateway": cmd_gateway,
    "relay": cmd_relay,
    "outbox": cmd_outbox,
    "run": cmd_run,
}


# These start or are the services themselves: they never borrow a running `make run`'s.
OWN_SERVICES = {"run", "gateway", "relay"}


def load_settings(command: str) -> Settings:
    """Settings from the environment, with a live ``make run``'s URLs where it sets none."""
    if command in OWN_SERVICES:
        return Settings.from_env()
    from parley.run_state import env_with_run_state

    env, state_file = env_with_run_state(os.environ)
    if state_file is not None:
        print(f"parley: using the services of `make run` listed in {state_file}", file=sys.stderr)
    return Settings.from_env(env)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.command)
        configure_logging(settings.log_level)
        return COMMANDS[args.command](settings, args)
    except SettingsError as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from parley.stack import ServiceUnreachable
        from persistence.errors import PersistenceError

        if isinstance(exc, ServiceUnreachable | PersistenceError):
            print(f"parley: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
