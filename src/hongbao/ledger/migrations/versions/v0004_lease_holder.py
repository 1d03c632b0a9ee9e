"""Lease holders: who holds a payout's lease (host and pid), so that a rerun on the same host
takes over at once what a process that is provably gone left in flight.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add payouts.lease_holder."""
    op.add_column("payouts", sa.Column("lease_holder", sa.String(128), nullable=True))


def downgrade() -> None:
    """Drop payouts.lease_holder."""
    with op.batch_alter_table("payouts") as batch:
        batch.drop_column("lease_holder")
