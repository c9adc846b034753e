"""The persistence package's exceptions; driver errors are translated at this boundary."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import sqlalchemy.exc


class PersistenceError(Exception):
    """Root of every error this package raises."""


class DatabaseUnavailable(PersistenceError):
    """PostgreSQL could not be reached or dropped the connection; retrying may help."""


class NotFound(PersistenceError):
    """A project, agent or conversation id that does not exist."""


class Conflict(PersistenceError):
    """A unique value (an agent's email) is taken."""


_CONNECTION_ERRORS = (
    OSError,
    ConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.PostgresConnectionError,
)


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        cause = getattr(orig, "__cause__", None) or orig
        return isinstance(cause, _CONNECTION_ERRORS) or isinstance(orig, _CONNECTION_ERRORS)
    return isinstance(exc, (*_CONNECTION_ERRORS, sqlalchemy.exc.TimeoutError))


@contextlib.asynccontextmanager
async def wrap_errors() -> AsyncIterator[None]:
    """Turn driver connection errors into :class:`DatabaseUnavailable`."""
    try:
        yield
    except PersistenceError:
        raise
    except Exception as exc:
        if is_connection_error(exc):
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        raise
