"""The reading part of `LedgerStore`: payouts by id, key, bill, scope; audit trails; due times."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select

from hongbao.ledger.db import read_transaction
from hongbao.ledger.holders import RESEND_GAP, is_gone, this_holder
from hongbao.ledger.records import LedgerLookupError, OpenGroup, Payout, PayoutEvent, Scope
from hongbao.ledger.rows import event_from_row, payout_from_row, payout_from_values
from hongbao.ledger.schema import payout_events, payouts
from hongbao.ledger.statements import LATEST, in_scope, latest_by_keys
from hongbao.ledger.states import OPEN_STATES, PayoutState
from hongbao.ledger.storebase import StoreBase

__all__ = ["PayoutReads"]

P = PayoutState


def _aware(value: datetime | str) -> datetime:
    # An aggregate loses the column type: SQLite hands back the stored text, naive UTC.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class PayoutReads(StoreBase):
    """Reads of payouts and their audit trail; nothing here writes."""

    # -- payouts: reading ------------------------------------------------------------------

    def get_payout(self, payout_id: int) -> Payout:
        """The payout with this id."""
        row = self._first(select(payouts).where(payouts.c.id == payout_id))
        if row is None:
            raise LedgerLookupError(f"no payout with id {payout_id}")
        return payout_from_row(row)

    def find_payout(self, natural_key: str, generation: int | None = None) -> Payout | None:
        """The payout for an intent: its latest generation unless `generation` is given."""
        query = select(payouts).where(payouts.c.natural_key == natural_key)
        if generation is None:
            query = query.order_by(payouts.c.generation.desc()).limit(1)
        else:
            query = query.where(payouts.c.generation == generation)
        row = self._first(query)
        return payout_from_row(row) if row is not None else None

    def latest_payouts(self, natural_keys: Collection[str]) -> dict[str, Payout]:
        """The latest generation of each intent among `natural_keys` that is recorded."""
        params = {"keys": sorted(natural_keys)}
        rows = read_transaction(self._engine, lambda conn: latest_by_keys().rows(conn, params))
        found = [payout_from_values(list(row)) for row in rows]
        return {payout.natural_key: payout for payout in found}

    def find_payout_by_bill(self, mch_id: str, mch_billno: str) -> Payout | None:
        """The payout that owns a bill number."""
        query = select(payouts).where(
            payouts.c.mch_id == mch_id, payouts.c.mch_billno == mch_billno
        )
        row = self._first(query)
        return payout_from_row(row) if row is not None else None

    def find_payouts(
        self,
        states: Collection[PayoutState],
        *,
        mch_id: str | None = None,
        campaign_id: int | None = None,
        due: bool = False,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Payout]:
        """Payouts in `states`, by id; `due` keeps those whose next attempt time has come."""
        query = select(payouts).where(payouts.c.state.in_(states), payouts.c.id > after_id)
        if mch_id is not None:
            query = query.where(payouts.c.mch_id == mch_id)
        if campaign_id is not None:
            query = query.where(payouts.c.campaign_id == campaign_id)
        if due:
            now = self._clock.now()
            query = query.where(
                or_(payouts.c.next_attempt_at.is_(None), payouts.c.next_attempt_at <= now)
            )
        query = query.order_by(payouts.c.id).limit(limit)
        rows = self._all(query)
        return [payout_from_row(row) for row in rows]

    def list_payouts(
        self,
        scope: Scope,
        *,
        state: PayoutState | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Payout]:
        """The latest bill of each intent of `scope`, newest first; in `state`, created from
        `since` to before `until`, with an id below `before_id` (the page before it)."""
        successor = payouts.alias("successor")
        chosen, params = in_scope(scope)
        query = select(payouts).where(
            chosen,
            ~select(successor.c.id).where(successor.c.previous_payout_id == payouts.c.id).exists(),
        )
        if state is not None:
            query = query.where(payouts.c.state == state)
        if since is not None:
            query = query.where(payouts.c.created_at >= since)
        if until is not None:
            query = query.where(payouts.c.created_at < until)
        if before_id is not None:
            query = query.where(payouts.c.id < before_id)
        query = query.order_by(payouts.c.id.desc()).limit(limit)
        rows = read_transaction(self._engine, lambda conn: conn.execute(query, params).all())
        return [payout_from_row(row) for row in rows]

    def count_by_state(self) -> dict[tuple[str, str], int]:
        """How many payouts each merchant (by name) has in each state (every bill counts)."""
        query = select(payouts.c.merchant, payouts.c.state, func.count()).group_by(
            payouts.c.merchant, payouts.c.state
        )
        return {(str(row[0]), str(row[1])): int(row[2]) for row in self._all(query)}

    def iter_payouts(self, campaign_id: int, *, batch_size: int = 1000) -> Iterator[Payout]:
        """Every payout of a campaign in line order, read in short batches (for exports)."""
        last_id = 0
        while True:
            query = (
                select(payouts)
                .where(payouts.c.campaign_id == campaign_id, payouts.c.id > last_id)
                .order_by(payouts.c.id)
                .limit(batch_size)
            )
            rows = self._all(query)
            if not rows:
                return
            for row in rows:
                yield payout_from_row(row)
            last_id = rows[-1].id

    def unreplaced(
        self,
        campaign_id: int,
        state: PayoutState,
        *,
        err_code: str | None = None,
        after_id: int = 0,
        limit: int = 1000,
    ) -> list[Payout]:
        """A campaign's payouts in `state` (and with `err_code`) that no new bill replaced yet,
        by id from `after_id` on: what `hongbao campaign retry` may re-issue, a page at a time."""
        query = select(payouts).where(
            payouts.c.campaign_id == campaign_id,
            payouts.c.state == state,
            payouts.c.id > after_id,
            LATEST,
        )
        if err_code is not None:
            query = query.where(payouts.c.err_code == err_code)
        rows = self._all(query.order_by(payouts.c.id).limit(limit))
        return [payout_from_row(row) for row in rows]

    def events(self, payout_id: int) -> list[PayoutEvent]:
        """The audit trail of one payout, oldest first."""
        query = (
            select(payout_events)
            .where(payout_events.c.payout_id == payout_id)
            .order_by(payout_events.c.id)
        )
        rows = self._all(query)
        return [event_from_row(row) for row in rows]

    def dead_bills(
        self,
        *,
        campaign_id: int | None = None,
        mch_id: str | None = None,
        max_generation: int | None = None,
        limit: int = 100,
        scope: Scope | None = None,
    ) -> list[Payout]:
        """FAILED payouts whose bill WeChat reported dead and that were not re-issued yet.

        A re-issue after a crash starts from these; `max_generation` leaves out intents that
        already had that many bill numbers. Chosen by `scope`, or by campaign and/or merchant.
        """
        successor = payouts.alias("successor")
        query = select(payouts).where(
            payouts.c.state == P.FAILED,
            payouts.c.bill_dead.is_(True),
            ~select(successor.c.id).where(successor.c.previous_payout_id == payouts.c.id).exists(),
        )
        params: dict[str, Any] = {}
        if scope is not None:
            chosen, params = in_scope(scope)
            query = query.where(chosen)
        if campaign_id is not None:
            query = query.where(payouts.c.campaign_id == campaign_id)
        if mch_id is not None:
            query = query.where(payouts.c.mch_id == mch_id)
        if max_generation is not None:
            query = query.where(payouts.c.generation < max_generation)
        query = query.order_by(payouts.c.id).limit(limit)
        rows = read_transaction(self._engine, lambda conn: conn.execute(query, params).all())
        return [payout_from_row(row) for row in rows]

    def next_due(
        self, campaign_id: int | None = None, *, scope: Scope | None = None
    ) -> datetime | None:
        """When the next unfinished payout of a campaign (or `scope`) needs action; None when
        none is left.

        PLANNED payouts are due now; DEFERRED ones at `next_attempt_at`; SENDING ones when their
        lease runs out; UNKNOWN ones at the later of their lease and their next attempt.
        """
        if scope is None:
            if campaign_id is None:
                raise ValueError("next_due needs a campaign or a scope")
            mine: ColumnElement[bool] = payouts.c.campaign_id == campaign_id
            params: dict[str, Any] = {}
        else:
            mine, params = in_scope(scope)

        def work(conn: Connection) -> datetime | None:
            now = self._clock.now()
            state = payouts.c.state
            planned = conn.execute(
                select(payouts.c.id).where(mine, state == P.PLANNED).limit(1), params
            ).first()
            if planned is not None:
                return now
            lease = func.coalesce(payouts.c.lease_until, payouts.c.next_attempt_at)
            attempt = func.coalesce(payouts.c.next_attempt_at, payouts.c.lease_until)
            candidates = [
                select(func.min(payouts.c.next_attempt_at)).where(mine, state == P.DEFERRED),
                select(func.min(payouts.c.lease_until)).where(mine, state == P.SENDING),
                select(func.min(lease)).where(mine, state == P.UNKNOWN, lease > attempt),
                select(func.min(attempt)).where(mine, state == P.UNKNOWN, attempt >= lease),
            ]
            times = [conn.execute(query, params).scalar() for query in candidates]
            found = [_aware(value) for value in times if value is not None]
            unscheduled = conn.execute(
                select(payouts.c.id)
                .where(
                    mine,
                    state.in_((P.DEFERRED, P.SENDING, P.UNKNOWN)),
                    payouts.c.next_attempt_at.is_(None),
                    payouts.c.lease_until.is_(None),
                )
                .limit(1),
                params,
            ).first()
            if unscheduled is not None:
                found.append(now)
            gone = gone_holders(conn, mine, params, now)
            if gone:
                # A gone holder's leases are taken over RESEND_GAP after they were taken.
                taken = conn.execute(
                    select(func.min(payouts.c.updated_at)).where(
                        mine,
                        state.in_((P.SENDING, P.UNKNOWN)),
                        payouts.c.lease_holder.in_(gone),
                    ),
                    params,
                ).scalar()
                if taken is not None:
                    found.append(_aware(taken) + timedelta(seconds=RESEND_GAP))
            return min(found) if found else None

        return read_transaction(self._engine, work)

    def open_groups(
        self, scope: Scope, states: Collection[PayoutState] = OPEN_STATES
    ) -> list[OpenGroup]:
        """The scope's open payouts (or those in `states`) grouped by state, err_code, reason
        and lease (live or not, held by this process or not), with counts and times: what its
        dispatcher waits for."""
        chosen, params = in_scope(scope)
        c = payouts.c

        def work(conn: Connection) -> list[OpenGroup]:
            now = self._clock.now()
            leased = case((c.lease_until > now, 1), else_=0).label("leased")
            here = case(
                (and_(c.lease_until > now, c.lease_holder == this_holder()), 1), else_=0
            ).label("here")
            query = (
                select(
                    c.state,
                    c.err_code,
                    c.reason,
                    leased,
                    here,
                    func.count(),
                    func.min(c.next_attempt_at),
                    func.max(c.lease_until),
                    func.max(c.err_code_des),
                )
                .where(chosen, c.state.in_(sorted(state.value for state in states)))
                .group_by(c.state, c.err_code, c.reason, leased, here)
                .order_by(c.state, c.err_code, c.reason)
            )
            return [
                OpenGroup(
                    state=P(state),
                    err_code=err_code,
                    reason=reason,
                    leased=bool(is_leased),
                    held_here=bool(is_here),
                    count=count,
                    next_attempt_at=None if next_at is None else _aware(next_at),
                    lease_until=None if until is None else _aware(until),
                    err_code_des=des,
                )
                for state, err_code, reason, is_leased, is_here, count, next_at, until, des in (
                    conn.execute(query, params).all()
                )
            ]

        return read_transaction(self._engine, work)


def gone_holders(
    conn: Connection, chosen: ColumnElement[bool], params: Mapping[str, Any], now: datetime
) -> list[str]:
    """Holders of live leases among the `chosen` payouts that are provably gone (processes of
    this host that have ended, `hongbao.ledger.holders`): recovery need not wait for them."""
    live = (
        select(payouts.c.lease_holder)
        .distinct()
        .where(
            chosen,
            payouts.c.state.in_([PayoutState.SENDING.value, PayoutState.UNKNOWN.value]),
            payouts.c.lease_until > now,
            payouts.c.lease_holder.is_not(None),
        )
    )
    return [holder for holder in conn.execute(live, params).scalars() if is_gone(holder)]
