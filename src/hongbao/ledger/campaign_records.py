"""The campaign part of `LedgerStore`: campaigns, their states and their reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from hongbao.ledger.db import write_transaction
from hongbao.ledger.outbox import campaign_outbox_row
from hongbao.ledger.records import (
    Campaign,
    CodeTotal,
    IllegalTransitionError,
    LedgerLookupError,
    NewCampaign,
    StateTotal,
)
from hongbao.ledger.rows import campaign_from_row, to_json
from hongbao.ledger.schema import campaigns, payout_events, payouts
from hongbao.ledger.statements import INSERT_OUTBOX
from hongbao.ledger.states import CAMPAIGN_TRANSITIONS, CampaignState, PayoutState
from hongbao.ledger.storebase import StoreBase

__all__ = ["CampaignRecords"]

P = PayoutState


class CampaignRecords(StoreBase):
    """Campaigns: create, read, change state, cancel; their reports."""

    # -- campaigns -------------------------------------------------------------------------

    def create_campaign(self, new: NewCampaign) -> Campaign:
        """Record a new campaign in DRAFT; names are unique."""
        now = self._clock.now()

        def work(conn: Connection) -> Campaign:
            row = conn.execute(
                insert(campaigns)
                .values(
                    name=new.name,
                    merchant=new.merchant,
                    mch_id=new.mch_id,
                    api=new.api.value,
                    template=to_json(new.template),
                    budget_fen=new.budget_fen,
                    committed_fen=0,
                    state=CampaignState.DRAFT,
                    source_name=new.source_name,
                    source_digest=new.source_digest,
                    created_at=now,
                    updated_at=now,
                )
                .returning(*campaigns.c)
            ).one()
            return campaign_from_row(row)

        try:
            return write_transaction(self._engine, work)
        except IntegrityError:
            raise ValueError(f"a campaign named {new.name!r} already exists") from None

    def get_campaign(self, campaign_id: int) -> Campaign:
        """The campaign with this id."""
        row = self._first(select(campaigns).where(campaigns.c.id == campaign_id))
        if row is None:
            raise LedgerLookupError(f"no campaign with id {campaign_id}")
        return campaign_from_row(row)

    def list_campaigns(self) -> list[Campaign]:
        """Every campaign, oldest first."""
        return [campaign_from_row(row) for row in self._all(select(campaigns).order_by("id"))]

    def set_campaign_state(
        self,
        campaign_id: int,
        from_state: CampaignState,
        to_state: CampaignState,
        *,
        pause_reason: str | None = None,
    ) -> bool:
        """Compare-and-set a campaign's state; False when it was no longer `from_state`.

        Cancelling goes through `cancel_campaign`, which also cancels its unsent payouts.
        """
        if to_state not in CAMPAIGN_TRANSITIONS[from_state]:
            raise IllegalTransitionError(f"campaign cannot go from {from_state} to {to_state}")
        if to_state is CampaignState.CANCELLED:
            raise IllegalTransitionError("use cancel_campaign() to cancel a campaign")

        def work(conn: Connection) -> bool:
            now = self._clock.now()
            result = conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.state == from_state)
                .values(
                    state=to_state,
                    pause_reason=pause_reason if to_state is CampaignState.PAUSED else None,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                return False
            # The webhook event, in the transaction of the change it reports.
            reported = campaign_outbox_row(campaign_id, to_state, now, pause_reason)
            if reported is not None:
                INSERT_OUTBOX.run(conn, [reported])
            return True

        return write_transaction(self._engine, work)

    def record_campaign_source(
        self,
        campaign_id: int,
        *,
        source_name: str,
        source_digest: str,
        lines_total: int,
        lines_good: int,
        lines_bad: int,
    ) -> None:
        """Store which input file a campaign was planned from and what its lines amounted to."""

        def work(conn: Connection) -> None:
            result = conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id)
                .values(
                    source_name=source_name,
                    source_digest=source_digest,
                    lines_total=lines_total,
                    lines_good=lines_good,
                    lines_bad=lines_bad,
                    updated_at=self._clock.now(),
                )
            )
            if result.rowcount != 1:
                raise LedgerLookupError(f"no campaign with id {campaign_id}")

        write_transaction(self._engine, work)

    def cancel_campaign(self, campaign_id: int) -> int:
        """Cancel a campaign and every payout of it not yet sent; returns how many payouts.

        Payouts already SENDING or UNKNOWN are left to resolve: money may be on its way.
        """
        now = self._clock.now()
        unsent = (P.PLANNED, P.DEFERRED)

        def work(conn: Connection) -> int:
            state = conn.execute(
                select(campaigns.c.state).where(campaigns.c.id == campaign_id)
            ).scalar_one_or_none()
            if state is None:
                raise LedgerLookupError(f"no campaign with id {campaign_id}")
            if CampaignState.CANCELLED not in CAMPAIGN_TRANSITIONS[CampaignState(state)]:
                raise IllegalTransitionError(f"a {state} campaign cannot be cancelled")
            conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id)
                .values(state=CampaignState.CANCELLED, updated_at=now)
            )
            targets = and_(payouts.c.campaign_id == campaign_id, payouts.c.state.in_(unsent))
            # Events first, from the rows as they are, then one UPDATE: no per-row round trips
            # even for a million-line campaign.
            conn.execute(
                insert(payout_events).from_select(
                    ["payout_id", "at", "kind", "from_state", "to_state", "attempt", "detail"],
                    select(
                        payouts.c.id,
                        literal(now, payout_events.c.at.type),
                        literal("cancel"),
                        payouts.c.state,
                        literal(P.CANCELLED.value),
                        payouts.c.attempts,
                        literal("campaign cancelled"),
                    ).where(targets),
                )
            )
            result = conn.execute(
                update(payouts)
                .where(targets)
                .values(state=P.CANCELLED, reason="campaign_cancelled", updated_at=now)
            )
            return int(result.rowcount)

        return write_transaction(self._engine, work)

    def make_due(self, campaign_id: int, *, before: datetime) -> int:
        """Make a campaign's DEFERRED payouts due now if they wait for less than `before`.

        On resume: payouts held back by a pause (balance, setup) go at once, while those
        deferred to a later day by a daily limit (due at or after `before`) keep waiting.
        Returns how many were made due.
        """

        def work(conn: Connection) -> int:
            now = self._clock.now()
            result = conn.execute(
                update(payouts)
                .where(
                    payouts.c.campaign_id == campaign_id,
                    payouts.c.state == P.DEFERRED,
                    payouts.c.next_attempt_at > now,
                    payouts.c.next_attempt_at < before,
                )
                .values(next_attempt_at=now, updated_at=now)
            )
            return int(result.rowcount)

        return write_transaction(self._engine, work)

    # -- reports ---------------------------------------------------------------------------

    def totals_by_state(self, campaign_id: int) -> dict[PayoutState, StateTotal]:
        """Count and amount of a campaign's payouts per state (every state present, maybe 0)."""
        query = (
            select(
                payouts.c.state,
                func.count(),
                func.coalesce(func.sum(payouts.c.total_amount), 0),
            )
            .where(payouts.c.campaign_id == campaign_id)
            .group_by(payouts.c.state)
        )
        rows = self._all(query)
        totals = {state: StateTotal(0, 0) for state in PayoutState}
        for state, count, amount in rows:
            totals[PayoutState(state)] = StateTotal(int(count), int(amount))
        return totals

    def problems(self, campaign_id: int) -> list[CodeTotal]:
        """What kept a campaign's payouts from being sent, grouped by state, err_code, reason."""
        troubled = (P.FAILED, P.SKIPPED, P.DEFERRED, P.UNKNOWN, P.CANCELLED)
        query = (
            select(
                payouts.c.state,
                payouts.c.err_code,
                payouts.c.reason,
                func.count(),
                func.coalesce(func.sum(payouts.c.total_amount), 0),
            )
            .where(payouts.c.campaign_id == campaign_id, payouts.c.state.in_(troubled))
            .group_by(payouts.c.state, payouts.c.err_code, payouts.c.reason)
            .order_by(func.count().desc(), payouts.c.state)
        )
        rows = self._all(query)
        return [
            CodeTotal(PayoutState(state), err_code, reason, int(count), int(amount))
            for state, err_code, reason, count, amount in rows
        ]
