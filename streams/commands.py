"""Operator commands on the Faust app: ``faust -A streams.app <command>``.

The same as ``parley topics …`` and ``parley dead-letters …`` (see
streams/operations.py); ``parley outbox`` has no Faust twin, it is about PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from faust.cli import AppCommand, option

from parley.settings import Settings
from streams import operations


def _settings(command: AppCommand) -> Settings:
    settings = getattr(command.app, "settings", None)
    assert isinstance(settings, Settings), "the app was not configured"
    return settings


def install_commands(app: Any) -> None:
    """Declare the commands on ``app`` (Faust adds them to its command line)."""

    @app.command()  # type: ignore[untyped-decorator,misc]
    async def topics_create(self: AppCommand) -> None:
        """Create Parley's topics (partitions, retention) where missing."""
        await operations.create(_settings(self), self.say)

    @app.command()  # type: ignore[untyped-decorator,misc]
    async def topics_list(self: AppCommand) -> None:
        """Parley's topics with partitions, end offsets and the worker group's lag."""
        await operations.listing(_settings(self), self.say)

    @app.command(  # type: ignore[untyped-decorator,misc]
        option("--topic", type=str, required=True, help="topic name"),
        option("--from-beginning", is_flag=True, default=False),
        option("--limit", type=int, default=None, help="stop after this many records"),
        option("--follow", is_flag=True, default=False, help="wait for new records"),
    )
    async def topics_tail(
        self: AppCommand, topic: str, from_beginning: bool, limit: int | None, follow: bool
    ) -> None:
        """Print a topic's records as JSON lines."""
        await operations.tail_topic(
            _settings(self),
            self.say,
            topic=topic,
            from_beginning=from_beginning,
            limit=limit,
            follow=follow,
        )

    @app.command(option("--limit", type=int, default=None))  # type: ignore[untyped-decorator,misc]
    async def dead_letters_show(self: AppCommand, limit: int | None) -> None:
        """Print the dead-letter topic, each record with its `error`."""
        await operations.show_dead_letters(_settings(self), self.say, limit=limit)

    @app.command(option("--from-beginning", is_flag=True, default=False))  # type: ignore[untyped-decorator,misc]
    async def dead_letters_replay(self: AppCommand, from_beginning: bool) -> None:
        """Send dead-lettered events back to their topics (stored once each)."""
        await operations.replay_dead_letters(
            _settings(self), self.say, from_beginning=from_beginning
        )
