"""The persistence package's exceptions; driver errors are translated at this boundary.

A failed write is one of three kinds, and the caller's answer differs for each:

- :class:`DatabaseUnavailable`: PostgreSQL cannot be reached, is shutting down or
  out of resources. Nothing is wrong with the rows; retry until it is back.
- :class:`TransientFailure`: a deadlock, a serialization failure, a unique-key race
  with another writer. The same rows usually succeed on the next attempt, but not
  always (a duplicate inside the batch also raises a unique violation), so retry a
  bounded number of times.
- :class:`DataRejected`: PostgreSQL refused the rows themselves (NUL in text, a
  lone surrogate, an integer beyond bigint, …). The same rows fail the same way
  forever.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator

import asyncpg
import sqlalchemy.exc

REASON_LENGTH = 500  # characters of a driver message kept in a reason


class PersistenceError(Exception):
    """Root of every error this package raises."""


class DatabaseUnavailable(PersistenceError):
    """PostgreSQL could not be reached or dropped the connection; retrying may help."""


class TransientFailure(PersistenceError):
    """A concurrency failure (deadlock, serialization, unique race); a retry usually helps."""


class DataRejected(PersistenceError):
    """PostgreSQL refused the data itself; retrying the same rows cannot help."""


class NotFound(PersistenceError):
    """A project, agent or conversation id that does not exist."""


class Conflict(PersistenceError):
    """A unique value (an agent's email) is taken."""


class Failure(enum.Enum):
    UNAVAILABLE = "unavailable"
    TRANSIENT = "transient"
    DATA = "data"


_CONNECTION_ERRORS = (
    OSError,
    ConnectionError,  # TimeoutError is an OSError too
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.PostgresConnectionError,
)

# SQLSTATE classes and codes (PostgreSQL manual, appendix A).
_UNAVAILABLE_CLASSES = ("08", "53", "58")  # connection, insufficient resources, system error
_UNAVAILABLE_CODES = ("57P01", "57P02", "57P03")  # admin/crash shutdown, cannot connect now
_TRANSIENT_CLASSES = ("40",)  # transaction rollback: serialization failure, deadlock
_TRANSIENT_CODES = ("23505", "55P03", "57014")  # unique race, lock not available, timeout


def _driver_error(exc: BaseException) -> BaseException:
    """The asyncpg exception behind SQLAlchemy's wrappers, or ``exc`` itself."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        orig: BaseException = exc.orig
        return orig.__cause__ or orig
    return exc


def sqlstate(exc: BaseException) -> str | None:
    code = getattr(_driver_error(exc), "sqlstate", None)
    return code if isinstance(code, str) else None


def classify(exc: BaseException) -> Failure:
    """Which kind of failure a driver exception is (see the module docstring)."""
    if isinstance(exc, DatabaseUnavailable):
        return Failure.UNAVAILABLE
    if isinstance(exc, TransientFailure):
        return Failure.TRANSIENT
    if isinstance(exc, (DataRejected, NotFound, Conflict)):
        return Failure.DATA
    code = sqlstate(exc)
    if code is not None:
        if code.startswith(_UNAVAILABLE_CLASSES) or code in _UNAVAILABLE_CODES:
            return Failure.UNAVAILABLE
        if code.startswith(_TRANSIENT_CLASSES) or code in _TRANSIENT_CODES:
            return Failure.TRANSIENT
    if is_connection_error(exc):
        return Failure.UNAVAILABLE
    return Failure.DATA


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        driver = _driver_error(exc)
        # asyncpg raises DataError (an InterfaceError) for an argument it cannot
        # encode, such as an integer beyond bigint: the data, not the connection.
        if isinstance(driver, asyncpg.exceptions.DataError):
            return False
        return isinstance(driver, _CONNECTION_ERRORS) or isinstance(exc.orig, _CONNECTION_ERRORS)
    if isinstance(exc, asyncpg.exceptions.DataError):
        return False
    return isinstance(exc, (*_CONNECTION_ERRORS, sqlalchemy.exc.TimeoutError))


def reason(exc: BaseException) -> str:
    """A short, single-line description of why a write failed, for a dead letter."""
    driver = _driver_error(exc)
    code = sqlstate(exc)
    text = " ".join(str(driver).split())[:REASON_LENGTH]
    label = type(driver).__name__ + (f" {code}" if code else "")
    return f"{label}: {text}" if text else label


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


@contextlib.asynccontextmanager
async def wrap_write_errors() -> AsyncIterator[None]:
    """Translate every failure of a write into one of the three kinds above."""
    try:
        yield
    except PersistenceError:
        raise
    except Exception as exc:
        kind = classify(exc)
        if kind is Failure.UNAVAILABLE:
            raise DatabaseUnavailable(f"database unavailable: {reason(exc)}") from exc
        if kind is Failure.TRANSIENT:
            raise TransientFailure(reason(exc)) from exc
        raise DataRejected(reason(exc)) from exc
