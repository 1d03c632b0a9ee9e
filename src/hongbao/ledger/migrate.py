"""Apply and check the ledger's schema migrations from Python; no alembic.ini is needed.

>>> upgrade("sqlite:///hongbao.db")        # what `hongbao db upgrade` runs
>>> check_schema("sqlite:///hongbao.db")   # what the engine runs before it touches a payout
>>> upgrade("sqlite:///staging.db", ledger_id=2)   # ... and gives the ledger identity 2

Creating a ledger draws its identity (`hongbao.ids.LEDGER_IDS`) at random; `ledger_id` sets it,
on a new ledger or an existing one, so that two ledgers of one merchant surely differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.engine import URL

from hongbao.clock import SystemClock
from hongbao.errors import ConfigurationError
from hongbao.ledger.bills import check_ledger_id, read_ledger_id, set_ledger_id
from hongbao.ledger.db import create_ledger_engine, display_url, normalise_url, write_transaction
from hongbao.ledger.schema import VERSION_TABLE, ledger_meta

__all__ = ["SchemaStatus", "check_schema", "head_revision", "schema_status", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """The revision a ledger is at, the one this hongbao needs, and the ledger's identity."""

    current: str | None
    head: str
    ledger_id: int | None = None
    """The identity in the ledger's bill numbers; None before the schema has one."""

    @property
    def up_to_date(self) -> bool:
        """True when no migration is pending."""
        return self.current == self.head


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str:
    """The newest schema revision this hongbao ships."""
    head = _scripts().get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


def _known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def _current(conn: Connection) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _ledger_id(conn: Connection) -> int | None:
    if not inspect(conn).has_table(ledger_meta.name):
        return None
    return read_ledger_id(conn)


def _engine(target: str | URL | Engine) -> tuple[Engine, bool]:
    if isinstance(target, Engine):
        return target, False
    return create_ledger_engine(target), True


def schema_status(target: str | URL | Engine) -> SchemaStatus:
    """Read the revision of the ledger at `target` (a URL or an engine)."""
    if not isinstance(target, Engine):
        url = normalise_url(target)
        database = url.database or ""
        sqlite_file = url.get_backend_name() == "sqlite" and not database.startswith("file:")
        if sqlite_file and not Path(database).exists():
            # Looking must not create: SQLite would make an empty file on connect.
            return SchemaStatus(current=None, head=head_revision())
    engine, owned = _engine(target)
    try:
        with engine.connect() as conn:
            return SchemaStatus(_current(conn), head_revision(), _ledger_id(conn))
    finally:
        if owned:
            engine.dispose()


def upgrade(target: str | URL | Engine, *, ledger_id: int | None = None) -> SchemaStatus:
    """Apply every pending migration in one transaction; returns the status before upgrading.

    `ledger_id` gives the ledger that identity (1 … 3332), whether it is new or not; otherwise a
    new ledger keeps the identity it drew at random and an existing one keeps its own.
    """
    if ledger_id is not None:
        try:
            check_ledger_id(ledger_id)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    engine, owned = _engine(target)
    try:

        def migrate(conn: Connection) -> SchemaStatus:
            before = SchemaStatus(_current(conn), head_revision(), _ledger_id(conn))
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            if ledger_id is not None:
                set_ledger_id(conn, ledger_id, SystemClock().now())
            return before

        return write_transaction(engine, migrate)
    finally:
        if owned:
            engine.dispose()


def check_schema(target: str | URL | Engine) -> None:
    """Refuse an out-of-date ledger with a ConfigurationError that says what to run."""
    status = schema_status(target)
    if status.up_to_date:
        return
    where = display_url(target.url if isinstance(target, Engine) else target)
    if status.current is not None and status.current not in _known_revisions():
        raise ConfigurationError(
            f"ledger schema at {where} is at {status.current}, newer than this hongbao "
            f"understands ({status.head}): upgrade hongbao"
        )
    at = status.current or "empty (no hongbao tables)"
    raise ConfigurationError(
        f"ledger schema at {where} is at {at}, this hongbao needs {status.head}: "
        "run `hongbao db upgrade`"
    )
