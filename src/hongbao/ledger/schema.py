"""The ledger's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

```
campaigns        one row per campaign: template, budget and what is committed against it
payouts          one row per intended red packet: natural key, pre-minted bill number, frozen
                 request parameters (with nonce_str, never sign or key), state and outcome
payout_events    append-only audit of every claim, attempt and transition (secrets masked);
                 database triggers refuse UPDATE and DELETE
daily_counters   per (mch_id, openid, UTC+8 day): packets and fen committed; openid "" holds
                 the merchant's own daily total
bill_serials     per (mch_id, UTC+8 day): the next serial for minting bill numbers
ledger_meta      one row: the ledger's identity, which takes part in every bill number it mints
limiter_state    per mch_id: the GCRA theoretical arrival time shared by every process
rule_payments    rule mode: one row per payment notification verified, keyed on transaction_id
rule_results     rule mode: what each rule gave each payment (a payout, or the reason it did not)
rule_budgets     rule mode: per rule, its budget and the fen committed against it
webhook_outbox   one row per reportable state change (payout sent, failed, unknown, received,
                 refunded; campaign completed, paused), written in the transaction that makes it
webhook_deliveries  per (outbox event, endpoint): the signed body's payload, attempts, outcome
```

The Alembic migrations in `hongbao/ledger/migrations/versions` create exactly this; a test
compares the two. Every time is stored in UTC (naive on SQLite, aware on PostgreSQL) and comes
back as an aware UTC datetime.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

from hongbao.ids import LEDGER_IDS

__all__ = [
    "MERCHANT_TOTAL",
    "VERSION_TABLE",
    "UTCDateTime",
    "bill_serials",
    "campaigns",
    "daily_counters",
    "ledger_meta",
    "limiter_state",
    "metadata",
    "payout_events",
    "payouts",
    "rule_budgets",
    "rule_payments",
    "rule_results",
    "webhook_deliveries",
    "webhook_outbox",
]

VERSION_TABLE = "hongbao_schema_version"
"""Alembic's version table, named so it never collides with an application's own migrations
when the ledger shares the application's database."""

MERCHANT_TOTAL = ""
"""The `daily_counters.openid` of a merchant's own daily total (no openid is empty)."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite makes only "INTEGER PRIMARY KEY" an auto-incrementing rowid alias.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; naive values are refused rather than guessed.

    On SQLite a value is bound in one step (`_sqlite_text`): the same text as SQLAlchemy's
    SQLite DATETIME writes, without its two processors a value (2.8 µs instead of 5.3). Every
    payout and audit event of a commit round binds several, and the composed processors were
    a fifth of the ledger thread's CPU. It is read back in one step too (`_sqlite_time`).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_text
        return super().bind_processor(dialect)

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        if dialect.name == "sqlite":
            return _sqlite_time
        return super().result_processor(dialect, coltype)

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = _utc(value)
        # SQLite has no time zone type; UTC without offset keeps text comparison chronological.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        result: datetime = value
        return result.replace(tzinfo=UTC) if result.tzinfo is None else result.astimezone(UTC)


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"ledger times must be aware datetimes, got {value!r}")
    return value.astimezone(UTC)


def _sqlite_text(value: Any) -> str | None:
    """An aware time as SQLite stores it: UTC, no offset, `YYYY-MM-DD HH:MM:SS.ffffff` (what
    SQLAlchemy's SQLite DATETIME writes, microseconds always present)."""
    if value is None:
        return None
    return _utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_time(value: Any) -> datetime | None:
    """A time SQLite stored (`_sqlite_text`'s text, or SQLAlchemy's DATETIME's: the same), read
    in one step as an aware UTC time: C's `fromisoformat` instead of SQLAlchemy's regular
    expression and then `process_result_value` (a claim reads several for each payout)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("merchant", String(64), nullable=False),
    Column("mch_id", String(32), nullable=False),
    Column("api", String(32), nullable=False),
    Column("template", Text, nullable=False),
    Column("budget_fen", BigInteger, nullable=True),
    Column("committed_fen", BigInteger, nullable=False, server_default="0"),
    Column("state", String(16), nullable=False),
    Column("pause_reason", String(256), nullable=True),
    Column("source_name", String(512), nullable=True),
    Column("source_digest", String(64), nullable=True),
    Column("lines_total", Integer, nullable=False, server_default="0"),
    Column("lines_good", Integer, nullable=False, server_default="0"),
    Column("lines_bad", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # The budget is enforced by the database too: no bug above can commit past it.
    CheckConstraint(
        "budget_fen IS NULL OR committed_fen <= budget_fen", name="committed_within_budget"
    ),
    CheckConstraint("committed_fen >= 0", name="committed_not_negative"),
)

payouts = Table(
    "payouts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("natural_key", String(200), nullable=False),
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("previous_payout_id", Id, ForeignKey("payouts.id"), nullable=True, unique=True),
    Column("campaign_id", Id, ForeignKey("campaigns.id"), nullable=True),
    Column("line_no", Integer, nullable=True),
    Column("merchant", String(64), nullable=False),
    Column("mch_id", String(32), nullable=False),
    Column("api", String(32), nullable=False),
    Column("mch_billno", String(28), nullable=False),
    Column("params", Text, nullable=False),
    Column("re_openid", String(32), nullable=False),
    Column("total_amount", BigInteger, nullable=False),
    Column("total_num", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("err_code", String(64), nullable=True),
    Column("err_code_des", String(256), nullable=True),
    Column("bill_dead", Boolean, nullable=False, server_default=false()),
    Column("send_listid", String(32), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("counted_day", Date, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("claimed_at", UTCDateTime(), nullable=True),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("received_at", UTCDateTime(), nullable=True),
    Column("refunded_at", UTCDateTime(), nullable=True),
    Column("refund_amount", BigInteger, nullable=True),
    # Who holds the lease (`hongbao.ledger.holders`): a rerun on the same host takes over at
    # once the payouts of a process that is gone.
    Column("lease_holder", String(128), nullable=True),
    Column("metadata", Text, nullable=True),
    UniqueConstraint("natural_key", "generation"),
    UniqueConstraint("mch_id", "mch_billno"),
    CheckConstraint("total_amount > 0", name="amount_positive"),
    CheckConstraint("total_num > 0", name="num_positive"),
    Index(None, "mch_id", "state", "next_attempt_at"),
    Index(None, "campaign_id", "state"),
)

payout_events = Table(
    "payout_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("payout_id", Id, ForeignKey("payouts.id"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("err_code", String(64), nullable=True),
    Column("detail", String(512), nullable=True),
    Column("request", Text, nullable=True),
    Column("response", Text, nullable=True),
    Index(None, "payout_id", "id"),
)

daily_counters = Table(
    "daily_counters",
    metadata,
    Column("mch_id", String(32), primary_key=True),
    Column("openid", String(32), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    CheckConstraint("count >= 0 AND amount_fen >= 0", name="not_negative"),
)

bill_serials = Table(
    "bill_serials",
    metadata,
    Column("mch_id", String(32), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("next_serial", BigInteger, nullable=False),
)

ledger_meta = Table(
    "ledger_meta",
    metadata,
    Column("one", Integer, primary_key=True, autoincrement=False),
    Column("ledger_id", Integer, nullable=False),
    Column("chosen_at", UTCDateTime(), nullable=False),
    CheckConstraint("one = 1", name="one_row"),
    CheckConstraint(
        f"ledger_id >= {LEDGER_IDS.start} AND ledger_id < {LEDGER_IDS.stop}",
        name="ledger_id_in_range",
    ),
)
"""The ledger's identity (`hongbao.ids.LEDGER_IDS`), drawn at random when the ledger is created
(or set by the operator): the bill numbers of two ledgers with distinct identities never meet."""

limiter_state = Table(
    "limiter_state",
    metadata,
    Column("mch_id", String(32), primary_key=True),
    Column("tat", Float, nullable=False),
)

rule_payments = Table(
    "rule_payments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("transaction_id", String(32), nullable=False, unique=True),
    Column("merchant", String(64), nullable=False),
    Column("mch_id", String(32), nullable=False),
    Column("appid", String(32), nullable=False),
    Column("openid", String(128), nullable=False),
    Column("trade_type", String(16), nullable=False),
    Column("total_fee", BigInteger, nullable=False),
    Column("cash_fee", BigInteger, nullable=False),
    Column("out_trade_no", String(32), nullable=False),
    Column("result_code", String(16), nullable=False),
    Column("attach", String(128), nullable=True),
    Column("time_end", UTCDateTime(), nullable=False),
    Column("fields", Text, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Index(None, "mch_id", "openid", "id"),
)
"""Rule mode: every verified payment notification, recorded before it is acknowledged."""

rule_results = Table(
    "rule_results",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("payment_id", Id, ForeignKey("rule_payments.id"), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("natural_key", String(200), nullable=False, unique=True),
    Column("outcome", String(32), nullable=False),
    Column("detail", String(512), nullable=True),
    Column("openid", String(128), nullable=False),
    Column("day", Date, nullable=False),
    Column("amount_fen", BigInteger, nullable=True),
    Column("payout_id", Id, ForeignKey("payouts.id"), nullable=True),
    Index(None, "rule", "openid", "day"),
    Index(None, "rule", "outcome"),
)
"""Rule mode: what each rule gave each payment: `outcome` "match" (with its payout) or why not."""

rule_budgets = Table(
    "rule_budgets",
    metadata,
    Column("rule", String(64), primary_key=True),
    Column("merchant", String(64), nullable=False),
    Column("budget_fen", BigInteger, nullable=False),
    Column("committed_fen", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime(), nullable=False),
    # As for campaigns: no bug above can commit a rule past its budget.
    CheckConstraint("committed_fen <= budget_fen", name="committed_within_budget"),
    CheckConstraint("committed_fen >= 0", name="committed_not_negative"),
)
"""Rule mode: one row per rule, locked by every payment it judges; `committed_fen` only grows."""

webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("type", String(32), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("payout_id", Id, ForeignKey("payouts.id"), nullable=True),
    Column("campaign_id", Id, ForeignKey("campaigns.id"), nullable=True),
    Column("state", String(16), nullable=False),
    Column("err_code", String(64), nullable=True),
    Column("detail", String(512), nullable=True),
    Index(None, "at"),
)
"""Webhooks: every reportable state change, appended by the ledger in the transaction that
makes it (`hongbao.ledger.outbox`); never updated. The relay reads it."""

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("outbox_id", Id, ForeignKey("webhook_outbox.id"), nullable=False),
    Column("endpoint", String(512), nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Column("given_up_at", UTCDateTime(), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(256), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("outbox_id", "endpoint"),
    Index(None, "next_attempt_at"),
)
"""Webhooks: one row per event and endpoint, written only by the relay (`service/webhook_relay`):
the event's JSON body, frozen when first queued, and how its delivery went."""
