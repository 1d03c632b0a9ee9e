"""Alembic migrations of the ledger, applied by `hongbao.ledger.upgrade` (no alembic.ini needed)."""
