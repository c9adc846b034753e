"""Each project's widget settings: what the public settings call answers.

Only the values an operator set are stored; every other field keeps its default
here, so one shape reaches both Parley's widget and the seed's reference widget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.errors import NotFound, PersistenceError, wrap_errors
from persistence.models import projects, widget_settings

HEADER_TEXT_MAX = 50  # characters, as the reference widget's settings allow
TEXT_MAX = 500  # characters for welcome, offline and agent-name texts
URL_MAX = 2048  # characters for logo and background URLs
AUTO_OPEN_DELAY_MAX = 3600  # seconds
THEMES = ("light", "dark")
POSITIONS = ("bottom-right", "bottom-left")
HISTORY_VISIBILITY = ("limit_to_active", "forever")


class InvalidSetting(PersistenceError):
    """A widget setting that is unknown or out of range; nothing was stored."""


def _choice(options: tuple[str, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return check


def _text(limit: int, *, nullable: bool = True) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    return check


def _url(value: Any) -> Any:
    if value is None or value == "":
        return None
    checked = _text(URL_MAX)(value)
    if not checked.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return checked


def _opacity(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError("must be a number from 0 to 1")
    return float(value)


def _delay(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a whole number of seconds, or null for never")
    if value > AUTO_OPEN_DELAY_MAX:
        raise ValueError(f"must be at most {AUTO_OPEN_DELAY_MAX} seconds")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class WidgetSettings:
    """The answer of ``GET /api/v1/public/projects/{id}/settings`` (camelCase there)."""

    theme: str = "light"
    background_image_url: str | None = None
    background_opacity: float = 1.0
    header_text: str = "Chat with us"
    position: str = "bottom-right"
    font_family: str | None = None
    company_logo_url: str | None = None
    welcome_message: str | None = "Hi! Ask us anything, we usually answer within minutes."
    agent_display_name: str | None = None
    offline_message: str | None = "You are offline. Messages are sent when you reconnect."
    # Seconds after the page loaded before the window opens by itself; None: never.
    auto_open_delay: int | None = None
    history_visibility: str = "limit_to_active"

    def public(self) -> dict[str, Any]:
        return {_camel(field.name): getattr(self, field.name) for field in dataclasses.fields(self)}


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "theme": _choice(THEMES),
    "background_image_url": _url,
    "background_opacity": _opacity,
    "header_text": _text(HEADER_TEXT_MAX, nullable=False),
    "position": _choice(POSITIONS),
    "font_family": _text(200),
    "company_logo_url": _url,
    "welcome_message": _text(TEXT_MAX),
    "agent_display_name": _text(100),
    "offline_message": _text(TEXT_MAX),
    "auto_open_delay": _delay,
    "history_visibility": _choice(HISTORY_VISIBILITY),
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


FIELDS = {_camel(name): name for name in _CHECKS}  # camelCase (as served) → field name


def validate(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check camelCase changes; the answer is keyed by field name. Raises InvalidSetting."""
    checked: dict[str, Any] = {}
    for key, value in changes.items():
        name = FIELDS.get(key)
        if name is None:
            raise InvalidSetting(f"unknown setting {key!r}; known: {', '.join(FIELDS)}")
        try:
            checked[name] = _CHECKS[name](value)
        except ValueError as exc:
            raise InvalidSetting(f"{key} {exc}") from None
    return checked


def _from_stored(values: Mapping[str, Any]) -> WidgetSettings:
    # A value that no longer passes (a limit tightened since) falls back to its default.
    kept: dict[str, Any] = {}
    for name, value in values.items():
        if name in _CHECKS:
            try:
                kept[name] = _CHECKS[name](value)
            except ValueError:
                continue
    return WidgetSettings(**kept)


class WidgetSettingsStore:
    """Reads and changes the settings of one project at a time."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, project_id: int) -> WidgetSettings:
        """The project's settings, defaults filled in; NotFound for an unknown project."""
        async with wrap_errors(), self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(projects.c.id, widget_settings.c["values"])
                    .select_from(projects.outerjoin(widget_settings))
                    .where(projects.c.id == project_id)
                )
            ).one_or_none()
        if row is None:
            raise NotFound(f"project {project_id} does not exist")
        return _from_stored(row[1] or {})

    async def update(
        self, project_id: int, changes: Mapping[str, Any], *, reset: tuple[str, ...] = ()
    ) -> WidgetSettings:
        """Apply camelCase ``changes`` and drop the ``reset`` ones back to their defaults."""
        checked = validate(changes)
        unknown = [key for key in reset if key not in FIELDS]
        if unknown:
            raise InvalidSetting(f"unknown setting {unknown[0]!r}; known: {', '.join(FIELDS)}")
        dropped = [FIELDS[key] for key in reset]
        async with wrap_errors(), self._engine.begin() as conn:
            exists = (
                await conn.execute(sa.select(projects.c.id).where(projects.c.id == project_id))
            ).first()
            if exists is None:
                raise NotFound(f"project {project_id} does not exist")
            current = (
                await conn.execute(
                    sa.select(widget_settings.c["values"])
                    .where(widget_settings.c.project_id == project_id)
                    .with_for_update()
                )
            ).scalar_one_or_none() or {}
            merged = {k: v for k, v in {**current, **checked}.items() if k not in dropped}
            await conn.execute(
                insert(widget_settings)
                .values(project_id=project_id, values=merged)
                .on_conflict_do_update(
                    index_elements=[widget_settings.c.project_id],
                    set_={"values": merged, "updated_at": sa.func.now()},
                )
            )
        return _from_stored(merged)
