"""The ledger schema: migrations, the schema check, URLs and database-level guarantees."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from hongbao.errors import ConfigurationError
from hongbao.ledger import (
    LedgerStore,
    check_schema,
    create_ledger_engine,
    display_url,
    head_revision,
    schema_status,
    upgrade,
)
from hongbao.ledger.db import SQLITE_BUSY_TIMEOUT_MS, normalise_url
from hongbao.ledger.migrate import MIGRATIONS
from hongbao.ledger.schema import VERSION_TABLE, metadata

from .conftest import PayoutFactory


def test_an_empty_database_is_refused_with_the_command_to_run(ledger_url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_schema(ledger_url)
    message = str(caught.value)
    assert "hongbao db upgrade" in message
    assert head_revision() in message
    with pytest.raises(ConfigurationError):
        LedgerStore.open(ledger_url)


def test_upgrade_brings_the_schema_to_head_and_is_idempotent(ledger_url: str) -> None:
    before = upgrade(ledger_url)
    assert before.current is None
    check_schema(ledger_url)
    again = upgrade(ledger_url)
    assert again.current == again.head == head_revision()
    assert schema_status(ledger_url).up_to_date


def test_migrations_create_exactly_the_declared_schema(ledger_url: str) -> None:
    upgrade(ledger_url)
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_a_ledger_newer_than_this_hongbao_asks_for_a_newer_hongbao(ledger_url: str) -> None:
    upgrade(ledger_url)
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
        with pytest.raises(ConfigurationError, match="upgrade hongbao"):
            check_schema(engine)
    finally:
        engine.dispose()


def test_payout_events_cannot_be_updated_or_deleted(
    ledger_url: str, make_payout: PayoutFactory
) -> None:
    upgrade(ledger_url)
    with LedgerStore.open(ledger_url) as store:
        store.add_payout(make_payout("oA"))
        store.claim("1900000109")
        engine = store.engine
        for statement in ("UPDATE payout_events SET kind = 'forged'", "DELETE FROM payout_events"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
        with engine.connect() as conn:
            kinds = conn.execute(text("SELECT kind FROM payout_events")).scalars().all()
        assert kinds == ["claim"]


def test_sqlite_ledger_is_durable_wal_with_foreign_keys(sqlite_url: str) -> None:
    engine = create_ledger_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgres://u@db/hongbao", "postgresql+psycopg"),
        ("postgresql://u@db/hongbao", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/hongbao", "postgresql+psycopg"),
    ],
)
def test_postgresql_urls_use_psycopg_3(given: str, driver: str) -> None:
    assert normalise_url(given).drivername == driver


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("mysql://u@db/x", "unsupported"),
        ("not a url", "not a database URL"),
    ],
)
def test_unusable_ledger_urls_are_configuration_errors(url: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        normalise_url(url)


def test_a_sqlite_file_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        normalise_url(f"sqlite:///{tmp_path / 'nowhere' / 'ledger.db'}")


def test_urls_are_displayed_without_their_password() -> None:
    shown = display_url("postgresql+psycopg://hongbao:s3cret-pw@db:5432/ledger")
    assert "s3cret-pw" not in shown
    assert "db:5432/ledger" in shown


def test_the_head_read_from_the_migration_files_is_the_one_alembic_finds() -> None:
    # The engine reads the head without alembic (it checks the schema as it starts).
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS))
    assert head_revision() == scripts.get_current_head()
