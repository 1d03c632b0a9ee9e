"""Ledger identity: a number in every bill number, so two ledgers of one merchant never collide.

A ledger created, or upgraded, by this revision draws its identity at random from 1 … 3332 (the
operator may set it: `hongbao db upgrade --ledger-id N`). An upgraded ledger cannot collide with
the bills it minted before: those used identity 0 (the serial was the whole 10 digits), which no
ledger takes, and its serials of the day go on from where they were.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of hongbao.ids.LEDGER_IDS: a migration must not change when the code does.
FIRST_LEDGER_ID = 1
LEDGER_ID_STOP = 3333


def upgrade() -> None:
    """Create ledger_meta with an identity drawn at random."""
    table = op.create_table(
        "ledger_meta",
        sa.Column("one", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ledger_id", sa.Integer(), nullable=False),
        sa.Column("chosen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("one", name="pk_ledger_meta"),
        sa.CheckConstraint("one = 1", name="ck_ledger_meta_one_row"),
        sa.CheckConstraint(
            f"ledger_id >= {FIRST_LEDGER_ID} AND ledger_id < {LEDGER_ID_STOP}",
            name="ck_ledger_meta_ledger_id_in_range",
        ),
    )
    assert table is not None
    ledger_id = FIRST_LEDGER_ID + secrets.randbelow(LEDGER_ID_STOP - FIRST_LEDGER_ID)
    op.execute(
        table.insert().values(one=1, ledger_id=ledger_id, chosen_at=sa.func.current_timestamp())
    )


def downgrade() -> None:
    """Drop everything this revision created."""
    op.drop_table("ledger_meta")
