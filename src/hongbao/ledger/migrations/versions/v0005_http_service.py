"""The HTTP service: payouts carry the caller's metadata; webhooks get an outbox and deliveries.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add payouts.metadata, webhook_outbox and webhook_deliveries."""
    with op.batch_alter_table("payouts") as batch:
        batch.add_column(sa.Column("metadata", sa.Text(), nullable=True))
    op.create_table(
        "webhook_outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payout_id", _ID, nullable=True),
        sa.Column("campaign_id", _ID, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("err_code", sa.String(64), nullable=True),
        sa.Column("detail", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_outbox"),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.id"], name="fk_webhook_outbox_payout_id_payouts"
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name="fk_webhook_outbox_campaign_id_campaigns"
        ),
    )
    op.create_index("ix_webhook_outbox_at", "webhook_outbox", ["at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("outbox_id", _ID, nullable=False),
        sa.Column("endpoint", sa.String(512), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("given_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["webhook_outbox.id"],
            name="fk_webhook_deliveries_outbox_id_webhook_outbox",
        ),
        sa.UniqueConstraint(
            "outbox_id", "endpoint", name="uq_webhook_deliveries_outbox_id_endpoint"
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_next_attempt_at", "webhook_deliveries", ["next_attempt_at"]
    )


def downgrade() -> None:
    """Drop everything this revision created."""
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_outbox")
    with op.batch_alter_table("payouts") as batch:
        batch.drop_column("metadata")
