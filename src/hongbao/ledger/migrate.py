"""Apply and check the ledger's schema migrations from Python; no alembic.ini is needed.

>>> upgrade("sqlite:///hongbao.db")        # what `hongbao db upgrade` runs
>>> check_schema("sqlite:///hongbao.db")   # what the engine runs before it touches a payout
>>> upgrade("sqlite:///staging.db", ledger_id=2)   # ... and gives the ledger identity 2

Creating a ledger draws its identity (`hongbao.ids.LEDGER_IDS`) at random; `ledger_id` sets it,
on a new ledger or an existing one, so that two ledgers of one merchant surely differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, column, inspect, select, table
from sqlalchemy.engine import URL

from hongbao.clock import SystemClock
from hongbao.errors import ConfigurationError
from hongbao.ledger.bills import check_ledger_id, read_ledger_id, set_ledger_id
from hongbao.ledger.db import create_ledger_engine, display_url, normalise_url, write_transaction
from hongbao.ledger.schema import VERSION_TABLE, ledger_meta

__all__ = ["SchemaStatus", "check_schema", "head_revision", "schema_status", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"
# What each migration file declares, read without importing alembic or the file: the engine
# checks the schema as it starts, and alembic is a tenth of a second to import.
_DECLARED = re.compile(r'^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:"(\w+)"|None)', re.M)


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


def _declared() -> dict[str, str | None]:
    """Each shipped revision → the one it follows, as the migration files declare them."""
    found: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("v*.py"):
        names = dict((match[1], match[2]) for match in _DECLARED.finditer(path.read_text("utf-8")))
        revision = names.get("revision")
        assert revision is not None, f"{path.name} declares no revision"
        found[revision] = names.get("down_revision")
    return found


def head_revision() -> str:
    """The newest schema revision this hongbao ships (the one no other revision follows)."""
    declared = _declared()
    [head] = set(declared) - set(declared.values())
    return head


def _current(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    version_num = table(VERSION_TABLE, column("version_num")).c.version_num
    current: str | None = conn.execute(select(version_num)).scalar()
    return current


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
            from alembic import command
            from alembic.config import Config

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
    if status.current is not None and status.current not in _declared():
        raise ConfigurationError(
            f"ledger schema at {where} is at {status.current}, newer than this hongbao "
            f"understands ({status.head}): upgrade hongbao"
        )
    at = status.current or "empty (no hongbao tables)"
    raise ConfigurationError(
        f"ledger schema at {where} is at {at}, this hongbao needs {status.head}: "
        "run `hongbao db upgrade`"
    )
