"""Rule mode (满额送) in the ledger: a payment and its payouts, recorded in one transaction.

`RuleLedger.record` is what makes a notification safe to acknowledge. In ONE committed write
transaction it

1. locks the row of every rule that judges the payment (`rule_budgets`: `SELECT … FOR UPDATE` on
   PostgreSQL; on SQLite the transaction began with `BEGIN IMMEDIATE`, so it is the only writer),
   which puts every payment of the merchant's rules in one order;
2. inserts the `rule_payments` row, keyed on `transaction_id` (`ON CONFLICT DO NOTHING`): a
   duplicate notification, however concurrent, finds the row and changes nothing;
3. hands a `LedgerHistory` over the same connection to the caller's judge (the rule
   evaluation): the customer's counts and the rule's committed fen it reads cannot change
   before the commit;
4. charges each match against its rule's budget with one conditional UPDATE (guarded by a CHECK
   constraint as well), records the payout (natural key `rule:<name>:<transaction_id>`, a bill
   number minted in this transaction, frozen parameters) and, for every rule, what it gave
   (`rule_results`: "match" or the reason it gave nothing).

A crash before the commit leaves nothing (WeChat resends); after it, the payment and all its
payouts are there. Nothing here knows what a rule is: the judge comes from the engine.

A rule's budget and per-customer counts include every red packet it decided to give, whatever
became of it later (a ceiling on what the rule ever committed, never a figure that grows back).

>>> ledger = RuleLedger(store.engine)  # doctest: +SKIP
>>> recorded = ledger.record(row, [RuleBudget("big", "shop", 500_000)], judge)  # doctest: +SKIP
>>> recorded.new, recorded.payout_ids  # doctest: +SKIP
(True, [17])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)

from hongbao.clock import Clock, SystemClock, beijing_day
from hongbao.ledger.bills import BillSerials
from hongbao.ledger.db import read_transaction, write_transaction
from hongbao.ledger.records import NewPayout, StateTotal
from hongbao.ledger.rows import dialect_insert, payout_values, upsert
from hongbao.ledger.schema import (
    payouts,
    rule_budgets,
    rule_payments,
    rule_results,
)
from hongbao.ledger.statements import INSERT_PAYOUT_IDS, insert_events
from hongbao.ledger.states import PayoutState

__all__ = [
    "MATCH",
    "LedgerHistory",
    "NewPayment",
    "RecordedPayment",
    "RuleBudget",
    "RuleDecision",
    "RuleLedger",
    "RuleResult",
    "RuleSummary",
]

T = TypeVar("T")
P = PayoutState

MATCH = "match"
"""The `outcome` of a rule that gave the payment a red packet (otherwise: the skip reason)."""
BUDGET_EXHAUSTED = "budget_exhausted"

_DETAIL_MAX = 512


@dataclass(frozen=True, slots=True)
class NewPayment:
    """A verified payment to record (amounts in fen, `time_end` aware)."""

    transaction_id: str
    merchant: str
    """The configuration name of the merchant whose key verified it."""
    mch_id: str
    appid: str
    openid: str
    trade_type: str
    total_fee: int
    cash_fee: int
    out_trade_no: str
    result_code: str
    time_end: datetime
    attach: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Every received field but `sign`, kept as the audit trail of the notification."""

    @property
    def day(self) -> date:
        """The UTC+8 day of the payment."""
        return beijing_day(self.time_end)


@dataclass(frozen=True, slots=True)
class RuleBudget:
    """A rule's budget row: locked by every payment it judges, charged by every match."""

    rule: str
    merchant: str
    budget_fen: int


@dataclass(frozen=True, slots=True)
class RuleDecision:
    """What the judge decided for one rule: a payout to record (`payout`) or why not."""

    rule: str
    natural_key: str
    outcome: str
    """`MATCH`, or the reason nothing is given (a `SkipReason` value)."""
    detail: str | None = None
    amount_fen: int | None = None
    payout: NewPayout | None = None


@dataclass(frozen=True, slots=True)
class RuleResult:
    """What a rule gave a payment, as recorded."""

    rule: str
    natural_key: str
    outcome: str
    detail: str | None
    amount_fen: int | None
    payout_id: int | None


@dataclass(frozen=True, slots=True)
class RecordedPayment:
    """A payment in the ledger; `new` False when an earlier delivery recorded it."""

    payment_id: int
    transaction_id: str
    new: bool
    results: list[RuleResult]

    @property
    def payout_ids(self) -> list[int]:
        """The payouts the rules gave this payment."""
        return [r.payout_id for r in self.results if r.payout_id is not None]


@dataclass(frozen=True, slots=True)
class RuleSummary:
    """What one rule has given so far: outcomes counted, fen committed, payouts by state."""

    rule: str
    merchant: str
    budget_fen: int
    committed_fen: int
    outcomes: dict[str, int]
    """Payments judged, per outcome (`MATCH` = hits)."""
    payouts: dict[PayoutState, StateTotal]
    """The rule's payouts (their latest bill) per state; states that occur only."""

    @property
    def hits(self) -> int:
        """Payments that earned a red packet."""
        return self.outcomes.get(MATCH, 0)


Minter = Callable[[], str]
"""Mints the next bill number of the merchant, reserved in the recording transaction."""
Judge = Callable[["LedgerHistory", Minter], list[RuleDecision]]
"""Decides every rule for the payment being recorded, from its history."""


class _Statements:
    """The statements of rule mode, built once per dialect: only their parameters change."""

    def __init__(self, dialect: str) -> None:
        r, c, b = rule_results.c, rule_payments.c, rule_budgets.c
        mine = and_(
            r.rule == bindparam("rule"),
            r.openid == bindparam("openid"),
            r.outcome == MATCH,
            r.natural_key != bindparam("excluding"),
        )
        self.rewards = select(func.count()).where(mine)
        self.rewards_on = select(func.count()).where(mine, r.day == bindparam("day"))
        self.own_amount = select(r.amount_fen).where(
            r.natural_key == bindparam("key"), r.outcome == MATCH
        )
        self.payment_id = select(c.id).where(c.transaction_id == bindparam("transaction_id"))
        others = select(c.id).where(
            c.mch_id == bindparam("mch_id"),
            c.openid == bindparam("openid"),
            c.result_code == "SUCCESS",
            c.transaction_id != bindparam("excluding"),
        )
        self.paid_any = others.limit(1)
        self.paid_earlier = others.where(c.id < bindparam("mine")).limit(1)
        self.results = (
            select(r.rule, r.natural_key, r.outcome, r.detail, r.amount_fen, r.payout_id)
            .where(r.payment_id == bindparam("payment_id"))
            .order_by(r.id)
        )
        self.committed = select(b.committed_fen).where(b.rule == bindparam("rule"))
        self.lock = (
            select(b.rule, b.committed_fen)
            .where(b.rule.in_(bindparam("names", expanding=True)))
            .order_by(b.rule)
            .with_for_update()
        )
        self.add_payment = (
            dialect_insert(dialect, rule_payments)
            .on_conflict_do_nothing(index_elements=["transaction_id"])
            .returning(c.id)
        )
        self.add_budget = dialect_insert(dialect, rule_budgets).on_conflict_do_nothing(
            index_elements=["rule"]
        )
        amount: BindParameter[int] = bindparam("b_amount", type_=BigInteger())
        self.charge = (
            update(rule_budgets)
            .where(
                b.rule == bindparam("b_rule"),
                b.committed_fen + amount <= b.budget_fen,
                b.committed_fen + amount <= bindparam("b_budget"),
            )
            .values(committed_fen=b.committed_fen + amount)
        )
        self.add_results = insert(rule_results)


_STATEMENTS: dict[str, _Statements] = {}


def _statements(dialect: str) -> _Statements:
    found = _STATEMENTS.get(dialect)
    if found is None:
        found = _STATEMENTS[dialect] = _Statements(dialect)
    return found


class LedgerHistory:
    """A customer's past as the ledger holds it, read on one connection (a `CustomerHistory`).

    Counts include every payout a rule decided, whatever became of it (see the module
    docstring), and leave out the key `excluding`; `paid_before` counts successful payments of
    the merchant recorded before the one judged (all of them, when it is not recorded).
    """

    def __init__(self, conn: Connection, *, committed: Mapping[str, int] | None = None) -> None:
        self._conn = conn
        self._sql = _statements(conn.dialect.name)
        # Committed fen read under the rules' lock, while recording a payment that has no
        # result yet: there is nothing of its own to leave out.
        self._committed = dict(committed or {})

    def rewards(self, rule: str, openid: str, *, excluding: str) -> int:
        """Red packets `rule` decided for `openid`."""
        params = {"rule": rule, "openid": openid, "excluding": excluding}
        return int(self._conn.execute(self._sql.rewards, params).scalar_one())

    def rewards_on(self, rule: str, openid: str, day: date, *, excluding: str) -> int:
        """The same, for payments made on the UTC+8 day `day`."""
        params = {"rule": rule, "openid": openid, "excluding": excluding, "day": day}
        return int(self._conn.execute(self._sql.rewards_on, params).scalar_one())

    def paid_before(self, mch_id: str, openid: str, *, excluding: str) -> bool:
        """Whether `openid` paid `mch_id` successfully before payment `excluding` was recorded."""
        mine = self._conn.execute(
            self._sql.payment_id, {"transaction_id": excluding}
        ).scalar_one_or_none()
        params: dict[str, object] = {"mch_id": mch_id, "openid": openid, "excluding": excluding}
        query = self._sql.paid_any
        if mine is not None:
            query, params["mine"] = self._sql.paid_earlier, mine
        return self._conn.execute(query, params).first() is not None

    def committed_fen(self, rule: str, *, excluding: str) -> int:
        """Fen `rule` has committed, without the payout keyed `excluding`."""
        locked = self._committed.get(rule)
        if locked is not None:
            return locked
        committed = self._conn.execute(self._sql.committed, {"rule": rule}).scalar() or 0
        own = self._conn.execute(self._sql.own_amount, {"key": excluding}).scalar_one_or_none()
        return int(committed) - int(own or 0)


class RuleLedger:
    """Rule mode's reads and writes over the ledger's engine; safe to share between threads."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock: Clock = clock or SystemClock()
        self._dialect = engine.dialect.name
        self._sql = _statements(self._dialect)
        self._bills = BillSerials(self._dialect)

    # -- rules -----------------------------------------------------------------------------

    def ensure_budgets(self, budgets: Sequence[RuleBudget]) -> None:
        """Create or update each rule's row to the configured budget.

        A budget lowered below what the rule has committed is set to the committed figure: the
        rule is then exhausted (what was committed stays committed).
        """
        if not budgets:
            return
        now = self._clock.now()

        def work(conn: Connection) -> None:
            b = rule_budgets.c
            for budget in budgets:
                conn.execute(
                    upsert(
                        self._dialect,
                        rule_budgets,
                        {
                            "rule": budget.rule,
                            "merchant": budget.merchant,
                            "budget_fen": budget.budget_fen,
                            "committed_fen": 0,
                            "updated_at": now,
                        },
                        ["rule"],
                        None,
                    )
                )
                conn.execute(
                    update(rule_budgets)
                    .where(b.rule == budget.rule)
                    .values(
                        merchant=budget.merchant,
                        budget_fen=func.max(b.committed_fen, budget.budget_fen)
                        if self._dialect == "sqlite"
                        else func.greatest(b.committed_fen, budget.budget_fen),
                        updated_at=now,
                    )
                )

        write_transaction(self._engine, work)

    # -- payments --------------------------------------------------------------------------

    def find_payment(self, transaction_id: str) -> RecordedPayment | None:
        """The payment `transaction_id` with what the rules gave it, if it is recorded."""
        return read_transaction(self._engine, lambda conn: self._recorded(conn, transaction_id))

    def record(
        self, payment: NewPayment, budgets: Sequence[RuleBudget], judge: Judge
    ) -> RecordedPayment:
        """Record `payment` and what `judge` decides for it, in one transaction (see above).

        `budgets` are the rows of the rules that judge it (locked first); a payment already
        recorded is returned as it is (`new` False) and is not judged again.
        """
        known = self.find_payment(payment.transaction_id)
        if known is not None:
            return known
        now = self._clock.now()
        locked = sorted(budgets, key=lambda b: b.rule)

        def work(conn: Connection) -> RecordedPayment:
            committed = self._lock(conn, locked, now)
            payment_id = conn.execute(
                self._sql.add_payment, _payment_values(payment, now)
            ).scalar_one_or_none()
            if payment_id is None:  # a concurrent delivery recorded it first
                existing = self._recorded(conn, payment.transaction_id)
                assert existing is not None
                return existing
            history = LedgerHistory(conn, committed=committed)
            minter = self._minter(conn, payment.mch_id, now, block=max(1, len(locked)))
            decisions = judge(history, minter)
            limits = {b.rule: b.budget_fen for b in locked}
            results = self._apply(conn, payment, int(payment_id), decisions, limits, now)
            return RecordedPayment(int(payment_id), payment.transaction_id, True, results)

        return write_transaction(self._engine, work)

    def judge_only(self, judge: Callable[[LedgerHistory], T]) -> T:
        """Run `judge` over the ledger's history in a read transaction: nothing is written."""
        return read_transaction(self._engine, lambda conn: judge(LedgerHistory(conn)))

    def _recorded(self, conn: Connection, transaction_id: str) -> RecordedPayment | None:
        payment_id = conn.execute(
            self._sql.payment_id, {"transaction_id": transaction_id}
        ).scalar_one_or_none()
        if payment_id is None:
            return None
        rows = conn.execute(self._sql.results, {"payment_id": payment_id}).all()
        results = [
            RuleResult(
                row.rule,
                row.natural_key,
                row.outcome,
                row.detail,
                None if row.amount_fen is None else int(row.amount_fen),
                None if row.payout_id is None else int(row.payout_id),
            )
            for row in rows
        ]
        return RecordedPayment(int(payment_id), transaction_id, False, results)

    def _lock(
        self, conn: Connection, budgets: Sequence[RuleBudget], now: datetime
    ) -> dict[str, int]:
        if not budgets:
            return {}
        names = {"names": [b.rule for b in budgets]}
        rows = {row[0]: row[1] for row in conn.execute(self._sql.lock, names).all()}
        missing = [b for b in budgets if b.rule not in rows]
        if missing:
            conn.execute(
                self._sql.add_budget,
                [
                    {
                        "rule": budget.rule,
                        "merchant": budget.merchant,
                        "budget_fen": budget.budget_fen,
                        "committed_fen": 0,
                        "updated_at": now,
                    }
                    for budget in missing
                ],
            )
            rows = {row[0]: row[1] for row in conn.execute(self._sql.lock, names).all()}
        return {name: int(value) for name, value in rows.items()}

    def _minter(self, conn: Connection, mch_id: str, now: datetime, *, block: int) -> Minter:
        """Bill numbers reserved `block` at a time, on first use (unused ones are just gaps)."""
        bills: list[str] = []

        def mint() -> str:
            if not bills:
                bills.extend(reversed(self._bills.reserve(conn, mch_id, now, block)))
            return bills.pop()

        return mint

    def _apply(
        self,
        conn: Connection,
        payment: NewPayment,
        payment_id: int,
        decisions: Sequence[RuleDecision],
        limits: Mapping[str, int],
        now: datetime,
    ) -> list[RuleResult]:
        """Charge each match to its budget, then record payouts, events and results in bulk."""
        outcomes: list[tuple[RuleDecision, str, str | None]] = []
        planned: list[tuple[RuleDecision, dict[str, Any]]] = []
        for decision in decisions:
            new = decision.payout
            if new is None:
                outcomes.append((decision, decision.outcome, decision.detail))
                continue
            values = payout_values(new, now)
            charge = {
                "b_rule": decision.rule,
                "b_amount": values["total_amount"],
                "b_budget": limits.get(decision.rule, values["total_amount"]),
            }
            if conn.execute(self._sql.charge, charge).rowcount == 1:
                planned.append((decision, values))
                outcomes.append((decision, decision.outcome, decision.detail))
            else:
                # Only a judge that read a stale figure gets here: the ledger has the last word.
                detail = f"the ledger refused {values['total_amount']} fen: over the rule's budget"
                outcomes.append((decision, BUDGET_EXHAUSTED, detail))
        payout_ids: dict[str, int] = {}
        if planned:
            ids = conn.execute(INSERT_PAYOUT_IDS, [values for _, values in planned]).scalars()
            payout_ids = {d.natural_key: int(i) for (d, _), i in zip(planned, ids, strict=True)}
            insert_events(
                conn,
                [
                    {
                        "payout_id": payout_ids[d.natural_key],
                        "at": now,
                        "kind": "plan",
                        "from_state": None,
                        "to_state": P.PLANNED.value,
                        "attempt": 0,
                        "detail": f"rule {d.rule}: {d.natural_key}"[:_DETAIL_MAX],
                    }
                    for d, _ in planned
                ],
            )
        results = [
            RuleResult(
                decision.rule,
                decision.natural_key,
                outcome,
                detail[:_DETAIL_MAX] if detail else None,
                decision.amount_fen if decision.natural_key in payout_ids else None,
                payout_ids.get(decision.natural_key),
            )
            for decision, outcome, detail in outcomes
        ]
        if results:
            conn.execute(
                self._sql.add_results,
                [
                    {
                        "payment_id": payment_id,
                        "rule": r.rule,
                        "natural_key": r.natural_key,
                        "outcome": r.outcome,
                        "detail": r.detail,
                        "openid": payment.openid,
                        "day": payment.day,
                        "amount_fen": r.amount_fen,
                        "payout_id": r.payout_id,
                    }
                    for r in results
                ],
            )
        return results

    # -- reports ---------------------------------------------------------------------------

    def summaries(self) -> list[RuleSummary]:
        """What every rule known to the ledger has given, by rule name."""

        def work(conn: Connection) -> list[RuleSummary]:
            budgets = conn.execute(select(rule_budgets).order_by(rule_budgets.c.rule)).all()
            r = rule_results.c
            outcomes: dict[str, dict[str, int]] = {}
            for rule, outcome, count in conn.execute(
                select(r.rule, r.outcome, func.count()).group_by(r.rule, r.outcome)
            ).all():
                outcomes.setdefault(rule, {})[outcome] = int(count)
            latest = payouts.alias("successor")
            p = payouts.c
            states: dict[str, dict[PayoutState, StateTotal]] = {}
            query = (
                select(r.rule, p.state, func.count(), func.coalesce(func.sum(p.total_amount), 0))
                .select_from(rule_results.join(payouts, p.natural_key == r.natural_key))
                .where(~select(latest.c.id).where(latest.c.previous_payout_id == p.id).exists())
                .group_by(r.rule, p.state)
            )
            for rule, state, count, amount in conn.execute(query).all():
                states.setdefault(rule, {})[PayoutState(state)] = StateTotal(
                    int(count), int(amount)
                )
            return [
                RuleSummary(
                    rule=row.rule,
                    merchant=row.merchant,
                    budget_fen=int(row.budget_fen),
                    committed_fen=int(row.committed_fen),
                    outcomes=outcomes.get(row.rule, {}),
                    payouts=states.get(row.rule, {}),
                )
                for row in budgets
            ]

        return read_transaction(self._engine, work)


def _payment_values(payment: NewPayment, now: datetime) -> dict[str, Any]:
    return {
        "transaction_id": payment.transaction_id,
        "merchant": payment.merchant,
        "mch_id": payment.mch_id,
        "appid": payment.appid,
        "openid": payment.openid,
        "trade_type": payment.trade_type,
        "total_fee": payment.total_fee,
        "cash_fee": payment.cash_fee,
        "out_trade_no": payment.out_trade_no,
        "result_code": payment.result_code,
        "attach": payment.attach,
        "time_end": payment.time_end,
        "fields": json.dumps(dict(payment.fields), ensure_ascii=False, separators=(",", ":")),
        "received_at": now,
    }
