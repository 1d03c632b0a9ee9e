"""Shared fixtures: ledger databases on SQLite and PostgreSQL.

`ledger_url` runs a test once per backend: a fresh SQLite file, and a fresh PostgreSQL schema.
PostgreSQL tests use one database per test session, `hongbao_test_<random>`, created on the
server named by `HONGBAO_TEST_POSTGRES` (default `postgresql://postgres@127.0.0.1:5432/test`,
the database used only to create and drop it) and dropped at the end, so parallel runs never
meet; each test gets its own schema inside it. When the server cannot be reached the tests skip
with the reason, unless `HONGBAO_REQUIRE_POSTGRES=1` (CI), where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

ADMIN_URL_ENV = "HONGBAO_TEST_POSTGRES"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL)


def _connect(dbname: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
    url = make_url(_admin_url())
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password or None,
        dbname=dbname or url.database or "postgres",
        autocommit=True,
        connect_timeout=5,
    )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test session (its name), dropped at the end."""
    try:
        admin = _connect()
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {make_url(_admin_url()).render_as_string()} unreachable: {exc}"
        if os.environ.get("HONGBAO_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (HONGBAO_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    name = f"hongbao_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with _connect() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _new_schema(pg_database: str) -> tuple[str, str]:
    """A new empty schema of the session's database: its name and a SQLAlchemy URL of it."""
    schema = f"t_{secrets.token_hex(6)}"
    with _connect(pg_database) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    base = make_url(_admin_url()).set(drivername="postgresql+psycopg", database=pg_database)
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A SQLAlchemy URL of an empty PostgreSQL schema of this test, dropped afterwards."""
    schema, url = _new_schema(pg_database)
    yield url
    with _connect(pg_database) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="session")
def make_pg_url(pg_database: str) -> Callable[[], str]:
    """URLs of new empty PostgreSQL schemas, for fixtures that outlive a test (a module's
    server); they go with the session's database."""
    return lambda: _new_schema(pg_database)[1]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL of a fresh SQLite ledger file."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest) -> str:
    """An empty ledger database, once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url
