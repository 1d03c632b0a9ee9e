"""The first ledger schema: campaigns, payouts, payout events, counters, bill serials, limiter.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types in hongbao.ledger.schema: a migration must not change when the
# application's code does.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)

_APPEND_ONLY = "payout_events is append-only"


def upgrade() -> None:
    """Create every table, and the triggers that keep payout_events append-only."""
    op.create_table(
        "campaigns",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("merchant", sa.String(64), nullable=False),
        sa.Column("mch_id", sa.String(32), nullable=False),
        sa.Column("api", sa.String(32), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("budget_fen", sa.BigInteger(), nullable=True),
        sa.Column("committed_fen", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pause_reason", sa.String(256), nullable=True),
        sa.Column("source_name", sa.String(512), nullable=True),
        sa.Column("source_digest", sa.String(64), nullable=True),
        sa.Column("lines_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lines_good", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lines_bad", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.UniqueConstraint("name", name="uq_campaigns_name"),
        sa.CheckConstraint(
            "budget_fen IS NULL OR committed_fen <= budget_fen",
            name="ck_campaigns_committed_within_budget",
        ),
        sa.CheckConstraint("committed_fen >= 0", name="ck_campaigns_committed_not_negative"),
    )
    op.create_table(
        "payouts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("natural_key", sa.String(200), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("previous_payout_id", Id, nullable=True),
        sa.Column("campaign_id", Id, nullable=True),
        sa.Column("line_no", sa.Integer(), nullable=True),
        sa.Column("merchant", sa.String(64), nullable=False),
        sa.Column("mch_id", sa.String(32), nullable=False),
        sa.Column("api", sa.String(32), nullable=False),
        sa.Column("mch_billno", sa.String(28), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("re_openid", sa.String(32), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("total_num", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("err_code", sa.String(64), nullable=True),
        sa.Column("err_code_des", sa.String(256), nullable=True),
        sa.Column("bill_dead", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("send_listid", sa.String(32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_until", Time, nullable=True),
        sa.Column("next_attempt_at", Time, nullable=True),
        sa.Column("counted_day", sa.Date(), nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.Column("claimed_at", Time, nullable=True),
        sa.Column("sent_at", Time, nullable=True),
        sa.Column("resolved_at", Time, nullable=True),
        sa.Column("received_at", Time, nullable=True),
        sa.Column("refunded_at", Time, nullable=True),
        sa.Column("refund_amount", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_payouts"),
        sa.ForeignKeyConstraint(
            ["previous_payout_id"], ["payouts.id"], name="fk_payouts_previous_payout_id_payouts"
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name="fk_payouts_campaign_id_campaigns"
        ),
        sa.UniqueConstraint("previous_payout_id", name="uq_payouts_previous_payout_id"),
        sa.UniqueConstraint("natural_key", "generation", name="uq_payouts_natural_key_generation"),
        sa.UniqueConstraint("mch_id", "mch_billno", name="uq_payouts_mch_id_mch_billno"),
        sa.CheckConstraint("total_amount > 0", name="ck_payouts_amount_positive"),
        sa.CheckConstraint("total_num > 0", name="ck_payouts_num_positive"),
    )
    op.create_index(
        "ix_payouts_mch_id_state_next_attempt_at",
        "payouts",
        ["mch_id", "state", "next_attempt_at"],
    )
    op.create_index("ix_payouts_campaign_id_state", "payouts", ["campaign_id", "state"])
    op.create_table(
        "payout_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("payout_id", Id, nullable=False),
        sa.Column("at", Time, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("err_code", sa.String(64), nullable=True),
        sa.Column("detail", sa.String(512), nullable=True),
        sa.Column("request", sa.Text(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_payout_events"),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.id"], name="fk_payout_events_payout_id_payouts"
        ),
    )
    op.create_index("ix_payout_events_payout_id_id", "payout_events", ["payout_id", "id"])
    op.create_table(
        "daily_counters",
        sa.Column("mch_id", sa.String(32), nullable=False),
        sa.Column("openid", sa.String(32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("mch_id", "openid", "day", name="pk_daily_counters"),
        sa.CheckConstraint("count >= 0 AND amount_fen >= 0", name="ck_daily_counters_not_negative"),
    )
    op.create_table(
        "bill_serials",
        sa.Column("mch_id", sa.String(32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("next_serial", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("mch_id", "day", name="pk_bill_serials"),
    )
    op.create_table(
        "limiter_state",
        sa.Column("mch_id", sa.String(32), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("mch_id", name="pk_limiter_state"),
    )
    _create_append_only_triggers()


def downgrade() -> None:
    """Drop everything this revision created."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS payout_events_append_only ON payout_events")
        op.execute("DROP FUNCTION IF EXISTS hongbao_payout_events_append_only()")
    for table in ("limiter_state", "bill_serials", "daily_counters", "payout_events"):
        op.drop_table(table)
    op.drop_table("payouts")
    op.drop_table("campaigns")


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION hongbao_payout_events_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{_APPEND_ONLY}'; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER payout_events_append_only BEFORE UPDATE OR DELETE ON payout_events "
            "FOR EACH ROW EXECUTE FUNCTION hongbao_payout_events_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER payout_events_no_{action.lower()} BEFORE {action} ON payout_events "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        )
