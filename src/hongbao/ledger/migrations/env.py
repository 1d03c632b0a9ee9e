"""Alembic environment: migrates over the connection that `hongbao.ledger.migrate` hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from hongbao.ledger.schema import VERSION_TABLE, metadata


def run_migrations() -> None:
    """Run the pending migrations inside the caller's transaction."""
    connection = context.config.attributes["connection"]
    assert isinstance(connection, Connection), "hongbao.ledger.migrate passes a connection"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
