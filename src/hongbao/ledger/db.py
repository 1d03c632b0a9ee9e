"""Ledger database URLs, engines and transactions, for SQLite (default) and PostgreSQL.

SQLite is opened with WAL, `synchronous=FULL` (a committed payout survives a power cut),
a busy timeout and foreign keys on; every write transaction starts with `BEGIN IMMEDIATE`, so
the single writer is chosen when the transaction starts, not half-way through it.
PostgreSQL runs on psycopg 3; write transactions that lose a deadlock or a serialisation race are
retried whole.

>>> engine = create_ledger_engine("sqlite:///hongbao.db")
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from hongbao.defaults import DEFAULT_LEDGER_URL
from hongbao.errors import ConfigurationError

__all__ = [
    "DEFAULT_LEDGER_URL",
    "LedgerBusy",
    "create_ledger_engine",
    "display_url",
    "normalise_url",
    "read_transaction",
    "write_transaction",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE = "hongbao_write"
_NO_WAIT = "hongbao_no_wait"
_SQLITE_BUSY = 5
# PostgreSQL SQLSTATEs after which the whole transaction may simply run again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
_MAX_RETRIES = 8

T = TypeVar("T")


class LedgerBusy(Exception):
    """Another connection holds the SQLite ledger's write lock (`write_transaction(wait=False)`)."""


def normalise_url(url: str | URL) -> URL:
    """Parse a ledger URL; `postgres://` and `postgresql://` get the psycopg 3 driver."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        raise ConfigurationError(f"ledger URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise ConfigurationError(
                "the ledger must be a file (sqlite:///path/to/ledger.db): "
                "an in-memory database forgets every payout when the process ends"
            )
        if not database.startswith("file:") and not Path(database).parent.is_dir():
            raise ConfigurationError(
                f"ledger directory {str(Path(database).parent)!r} does not exist"
            )
    else:
        raise ConfigurationError(
            f"unsupported ledger database {backend!r}: use sqlite:///file.db or "
            "postgresql+psycopg://user@host/dbname"
        )
    return parsed


def display_url(url: str | URL) -> str:
    """The URL with any password hidden, fit for messages and logs."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def create_ledger_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for the ledger at `url`, configured for durability and one-writer SQLite."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)
    engine = create_engine(parsed, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module: it would otherwise BEGIN lazily
    # (deferred), and a deferred reader that later writes can fail with SQLITE_BUSY mid-claim.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if not options.get(_WRITE, False):
        conn.exec_driver_sql("BEGIN")
    elif options.get(_NO_WAIT, False):
        # Take the write lock now or fail at once; the connection keeps its busy timeout.
        conn.exec_driver_sql("PRAGMA busy_timeout = 0")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _busy(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _SQLITE_BUSY


def _retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def write_transaction(
    engine: Engine, work: Callable[[Connection], T], *, wait: bool = True
) -> T:
    """Run `work` in one committed write transaction (retried whole after a deadlock).

    With `wait=False`, a SQLite ledger whose write lock another connection holds raises
    `LedgerBusy` at once, having done nothing, instead of waiting up to its busy timeout
    (PostgreSQL, whose writers do not exclude each other, ignores it).
    """
    for attempt in range(_MAX_RETRIES + 1):
        try:
            with engine.connect() as conn:
                conn.execution_options(**{_WRITE: True, _NO_WAIT: not wait})
                with conn.begin():
                    return work(conn)
        except DBAPIError as exc:
            if not wait and _busy(exc):
                raise LedgerBusy(str(exc.orig)) from exc
            if attempt == _MAX_RETRIES or not _retryable(exc):
                raise
        # Jitter so the two losers of a deadlock do not collide again in lockstep.
        time.sleep(random.uniform(0.001, 0.01 * (attempt + 1)))  # noqa: S311
    raise AssertionError("unreachable")  # pragma: no cover


def read_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in one read transaction (a consistent snapshot on SQLite WAL)."""
    with engine.connect() as conn, conn.begin():
        return work(conn)
