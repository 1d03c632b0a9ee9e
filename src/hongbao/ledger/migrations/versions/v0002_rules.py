"""Rule mode (满额送): payments received, what each rule gave them, and each rule's budget.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the types in hongbao.ledger.schema: a migration must not change when the
# application's code does.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create rule_payments, rule_results and rule_budgets."""
    op.create_table(
        "rule_payments",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("transaction_id", sa.String(32), nullable=False),
        sa.Column("merchant", sa.String(64), nullable=False),
        sa.Column("mch_id", sa.String(32), nullable=False),
        sa.Column("appid", sa.String(32), nullable=False),
        sa.Column("openid", sa.String(128), nullable=False),
        sa.Column("trade_type", sa.String(16), nullable=False),
        sa.Column("total_fee", sa.BigInteger(), nullable=False),
        sa.Column("cash_fee", sa.BigInteger(), nullable=False),
        sa.Column("out_trade_no", sa.String(32), nullable=False),
        sa.Column("result_code", sa.String(16), nullable=False),
        sa.Column("attach", sa.String(128), nullable=True),
        sa.Column("time_end", Time, nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("received_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rule_payments"),
        sa.UniqueConstraint("transaction_id", name="uq_rule_payments_transaction_id"),
    )
    op.create_index(
        "ix_rule_payments_mch_id_openid_id", "rule_payments", ["mch_id", "openid", "id"]
    )
    op.create_table(
        "rule_results",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("payment_id", Id, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("natural_key", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(512), nullable=True),
        sa.Column("openid", sa.String(128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("payout_id", Id, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rule_results"),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["rule_payments.id"], name="fk_rule_results_payment_id_rule_payments"
        ),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.id"], name="fk_rule_results_payout_id_payouts"
        ),
        sa.UniqueConstraint("natural_key", name="uq_rule_results_natural_key"),
    )
    op.create_index("ix_rule_results_rule_openid_day", "rule_results", ["rule", "openid", "day"])
    op.create_index("ix_rule_results_rule_outcome", "rule_results", ["rule", "outcome"])
    op.create_table(
        "rule_budgets",
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("merchant", sa.String(64), nullable=False),
        sa.Column("budget_fen", sa.BigInteger(), nullable=False),
        sa.Column("committed_fen", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("rule", name="pk_rule_budgets"),
        sa.CheckConstraint(
            "committed_fen <= budget_fen", name="ck_rule_budgets_committed_within_budget"
        ),
        sa.CheckConstraint("committed_fen >= 0", name="ck_rule_budgets_committed_not_negative"),
    )


def downgrade() -> None:
    """Drop everything this revision created."""
    op.drop_table("rule_budgets")
    op.drop_table("rule_results")
    op.drop_table("rule_payments")
