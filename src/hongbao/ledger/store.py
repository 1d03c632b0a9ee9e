"""`LedgerStore`: every read and write the engine makes, each write one committed transaction.

Exactly-once rests on three operations here:

* `claim` moves due PLANNED/DEFERRED payouts of a merchant to SENDING under a lease, and in the
  *same* transaction charges the campaign budget (an atomic conditional UPDATE of the campaign's
  `committed_fen`, also guarded by a CHECK constraint) and the per-user and merchant daily
  counters (a conditional upsert). On PostgreSQL candidate rows are taken `FOR UPDATE SKIP
  LOCKED`; on SQLite the transaction starts with `BEGIN IMMEDIATE`. No number of concurrent
  claimers can claim one payout twice or overshoot a budget or a cap.
* `transition` is a compare-and-set (`UPDATE … WHERE id=? AND state=?`) plus its audit event in
  one transaction; leaving the money-committing states gives the amount back to the budget and
  the counters in that same transaction. `transition_many` commits several such compare-and-sets
  in one transaction (one commit, one fsync, for many payouts: a dispatcher's group commit).
* `claim_stale` re-leases SENDING/UNKNOWN payouts whose lease ran out, for recovery by gethbinfo
  or a same-bill resend.

>>> store = LedgerStore.open("sqlite:///hongbao.db")
>>> batch = store.claim("1900000109", limit=10, lease_seconds=60)
>>> store.transition(batch.claimed[0].id, PayoutState.SENDING, PayoutState.SENT,
...                  send_listid="1000041701202403153000082277434")
True
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from hongbao.clock import CST, beijing_day
from hongbao.ledger.accounting import release, reserve, reserve_all
from hongbao.ledger.campaign_records import CampaignRecords
from hongbao.ledger.db import write_transaction
from hongbao.ledger.holders import RESEND_GAP, this_holder
from hongbao.ledger.payout_reads import PayoutReads, gone_holders
from hongbao.ledger.records import (
    AddResult,
    CapPolicy,
    ClaimRequest,
    ClaimResult,
    DailyCaps,
    EventInfo,
    IllegalTransitionError,
    LedgerLookupError,
    NewPayout,
    Payout,
    ReissueError,
    Scope,
    Transition,
    freeze_params,
)
from hongbao.ledger.rows import payout_from_row, payout_from_values, payout_values
from hongbao.ledger.schema import payouts
from hongbao.ledger.statements import (
    INSERT_PAYOUTS,
    cas_update,
    claim_candidates,
    in_scope,
    insert_events,
    latest_by_keys,
    lock_payouts,
    scope_params,
    scope_shape,
    take_payouts,
)
from hongbao.ledger.states import CLAIMABLE, COMMITTING, PayoutState, is_allowed
from hongbao.ledger.storebase import StoreBase

__all__ = ["LedgerStore"]

R = TypeVar("R")
T = TypeVar("T")
P = PayoutState

TRANSITION_FIELDS = frozenset(
    {
        "reason",
        "err_code",
        "err_code_des",
        "bill_dead",
        "send_listid",
        "lease_until",
        "next_attempt_at",
        "sent_at",
        "resolved_at",
        "received_at",
        "refunded_at",
        "refund_amount",
    }
)
"""Columns a transition may set; identity, amounts and frozen parameters never change."""

_IN_FLIGHT = frozenset({P.SENDING, P.UNKNOWN})
_ISSUED = frozenset({P.SENT, P.RECEIVED, P.REFUNDED})
_NEVER_SENT = frozenset({P.FAILED, P.SKIPPED})
"""Terminal states an operator's retry may replace (whether the money left is the engine's
call: an UNKNOWN outcome is never among them)."""


def _next_day_start(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), CST).astimezone(UTC)


def _transition_values(change: Transition, now: datetime) -> tuple[dict[str, Any], bool]:
    """The columns a transition sets, and whether it gives back budget and counters.

    Raises `IllegalTransitionError` or `TypeError` for a transition `transition` refuses.
    """
    from_state, to_state, fields = change.from_state, change.to_state, change.fields
    if not is_allowed(from_state, to_state):
        raise IllegalTransitionError(f"a payout cannot go from {from_state} to {to_state}")
    if to_state is P.SENDING:
        raise IllegalTransitionError("only claim() moves a payout to SENDING")
    unknown = set(fields) - TRANSITION_FIELDS
    if unknown:
        raise TypeError(f"transition() cannot set {sorted(unknown)}")
    values: dict[str, Any] = {"state": to_state, "updated_at": now, **fields}
    if from_state in _IN_FLIGHT and to_state not in _IN_FLIGHT:
        values.setdefault("lease_until", None)
        values.setdefault("resolved_at", now)
    if to_state is P.UNKNOWN:
        values.setdefault("lease_until", None)
    if to_state in _ISSUED and from_state in _IN_FLIGHT:
        values.setdefault("sent_at", now)
    if to_state is P.RECEIVED:
        values.setdefault("received_at", now)
    if to_state is P.REFUNDED:
        values.setdefault("refunded_at", now)
    releases = from_state in COMMITTING and to_state not in COMMITTING
    if releases:
        values["counted_day"] = None
    return dict(sorted(values.items())), releases


@dataclass(frozen=True, slots=True)
class _Brief:
    """What claiming and transitions read of a payout they change (`BRIEF_COLUMNS`)."""

    id: int
    state: PayoutState
    attempts: int
    counted_day: date | None
    campaign_id: int | None
    mch_id: str
    re_openid: str
    total_amount: int

    @classmethod
    def of(cls, row: Sequence[Any]) -> _Brief:
        """From the values of `BRIEF_COLUMNS`, in that order."""
        return cls(row[0], PayoutState(row[1]), *row[2:])


class LedgerStore(CampaignRecords, PayoutReads, StoreBase):
    """Typed access to the ledger on SQLite or PostgreSQL; safe to share between threads.

    This module holds the exactly-once core (bill numbers, recording, claims, transitions);
    campaigns and their reports are `CampaignRecords`, reads `PayoutReads`.
    """

    # -- bill numbers ----------------------------------------------------------------------

    def reserve_bill_numbers(self, mch_id: str, when: datetime, count: int) -> list[str]:
        """Up to `count` new bill numbers of `mch_id` dated `when`'s UTC+8 day, never minted
        before by this ledger nor by a ledger of another identity (`hongbao.ledger.bills`).

        Fewer only for the last of the day's 3,000,000; past them, `BillSerialsExhaustedError`.
        """
        return write_transaction(
            self._engine, lambda conn: self._bills.reserve(conn, mch_id, when, count)
        )

    # -- payouts: recording ----------------------------------------------------------------

    def add_payouts(self, rows: Iterable[NewPayout], *, batch_size: int = 1000) -> AddResult:
        """Record payouts, streaming in batches; a natural key already present is left alone.

        Each batch commits on its own, so a crash part-way leaves whole batches, and running
        the same plan again inserts only what is missing.
        """
        inserted = existing = 0
        iterator = iter(rows)
        while batch := list(islice(iterator, batch_size)):
            now = self._clock.now()
            values = [payout_values(new, now) for new in batch]

            def work(conn: Connection, values: list[dict[str, Any]] = values) -> int:
                return INSERT_PAYOUTS.run(conn, values)

            count = write_transaction(self._engine, work)
            inserted += count
            existing += len(batch) - count
        return AddResult(inserted=inserted, existing=existing)

    def add_payout(self, new: NewPayout) -> tuple[Payout, bool]:
        """Record one payout; returns it and whether it was new (False: the key existed)."""
        result = self.add_payouts([new])
        payout = self.find_payout(new.natural_key)
        assert payout is not None
        return payout, result.inserted == 1

    def record(self, news: Sequence[NewPayout]) -> list[tuple[Payout, bool]]:
        """Record payouts in one transaction: for each, in order, the payout as it stands and
        whether this call recorded it (a key already recorded comes back in its latest
        generation)."""
        if not news:
            return []
        values = [payout_values(new, self._clock.now()) for new in news]
        return write_transaction(self._engine, lambda conn: self._record(conn, values, None))

    def record_and_claim(
        self,
        news: Sequence[NewPayout],
        *,
        lease_seconds: float,
        caps: DailyCaps | None = None,
        on_cap: CapPolicy = CapPolicy.DEFER,
    ) -> list[tuple[Payout, bool]]:
        """Record payouts and claim those that are new — in one transaction.

        For each, in order: the payout as it stands after the commit (SENDING under a lease
        when claimed; DEFERRED or SKIPPED when a cap refused it) and whether this call recorded
        it. A key already recorded is left alone and comes back in its latest generation.
        SENDING is committed before anything can leave, as with `claim`, in one commit for all.
        """
        if not news:
            return []
        values = [payout_values(new, self._clock.now()) for new in news]

        def claim(conn: Connection, ids: list[int]) -> ClaimResult:
            request = ClaimRequest(
                scope=Scope.ids(ids),
                limit=len(ids),
                lease_seconds=lease_seconds,
                caps=caps or DailyCaps(),
                on_cap=on_cap,
            )
            return self._events(conn, self._claim, request)

        return write_transaction(self._engine, lambda conn: self._record(conn, values, claim))

    def _record(
        self,
        conn: Connection,
        values: list[dict[str, Any]],
        claim: Callable[[Connection, list[int]], ClaimResult] | None,
    ) -> list[tuple[Payout, bool]]:
        keys = sorted({value["natural_key"] for value in values})
        INSERT_PAYOUTS.run(conn, values)
        latest = latest_by_keys().rows(conn, {"keys": keys})
        found = {p.natural_key: p for p in (payout_from_values(list(row)) for row in latest)}
        # A bill number is minted once: the rows carrying ours are the ones this call made.
        bills = {key: payout.mch_billno for key, payout in found.items()}
        mine = {v["natural_key"] for v in values if bills[v["natural_key"]] == v["mch_billno"]}
        if mine and claim is not None:
            result = claim(conn, [found[key].id for key in sorted(mine)])
            found.update({payout.natural_key: payout for payout in result.claimed})
            refused = set(result.deferred) | set(result.skipped)
            if refused:
                for row in conn.execute(select(payouts).where(payouts.c.id.in_(refused))):
                    found[row.natural_key] = payout_from_row(row)
        return [
            (found[v["natural_key"]], bills[v["natural_key"]] == v["mch_billno"]) for v in values
        ]

    def reissue(
        self, payout_id: int, params: Mapping[str, object], *, retry: bool = False
    ) -> Payout:
        """Record a new payout with a new bill number for the intent of a dead one.

        Allowed when WeChat definitively said the old bill FAILED (`bill_dead`), or, with
        `retry` (an operator's `hongbao campaign retry`), for any FAILED or SKIPPED payout: the
        caller has established that its money never left (`hongbao.engine.outcomes.never_issued`).
        The new row links to the old one, and a payout can be re-issued once: one intent never
        has two live bills, however many retries run at once.
        """
        frozen = freeze_params(params)
        now = self._clock.now()

        def work(conn: Connection) -> Payout:
            old_row = conn.execute(
                select(payouts).where(payouts.c.id == payout_id).with_for_update()
            ).first()
            if old_row is None:
                raise LedgerLookupError(f"no payout with id {payout_id}")
            old = payout_from_row(old_row)
            retried = retry and old.state in _NEVER_SENT
            if not retried and (old.state is not P.FAILED or not old.bill_dead):
                raise ReissueError(
                    f"payout {payout_id} is {old.state}"
                    + ("" if old.state is not P.FAILED else " without a definitive FAILED")
                    + ": only a bill WeChat reported FAILED may be replaced by a new one"
                )
            for name, before in (
                ("mch_id", old.mch_id),
                ("re_openid", old.re_openid),
                ("total_amount", old.total_amount),
                ("total_num", old.total_num),
            ):
                if str(frozen.get(name, 1)) != str(before):
                    raise ReissueError(f"a re-issue must keep {name} ({before!r})")
            if frozen["mch_billno"] == old.mch_billno:
                raise ReissueError("a re-issue needs a new bill number")
            values = {
                **payout_values(
                    NewPayout(
                        natural_key=old.natural_key,
                        merchant=old.merchant,
                        api=old.api,
                        params=frozen,
                        campaign_id=old.campaign_id,
                        line_no=old.line_no,
                        metadata=old.metadata,
                    ),
                    now,
                ),
                "generation": old.generation + 1,
                "previous_payout_id": old.id,
            }
            new_row = conn.execute(insert(payouts).values(**values).returning(*payouts.c)).one()
            new = payout_from_row(new_row)
            why = f"{old.state} {old.err_code}" if old.err_code else str(old.state)
            self._event(
                conn,
                payout_id=new.id,
                attempt=0,
                kind="retry" if retried else "reissue",
                from_state=None,
                to_state=P.PLANNED,
                detail=f"{'retry' if retried else 're-issue'} of payout {old.id} "
                f"(bill {old.mch_billno} {why})",
            )
            return new

        try:
            return write_transaction(self._engine, work)
        except IntegrityError as exc:
            raise ReissueError(f"payout {payout_id} was already re-issued ({exc.orig})") from None

    # -- claiming --------------------------------------------------------------------------

    def claim(
        self,
        mch_id: str | None = None,
        *,
        payout_ids: Collection[int] | None = None,
        limit: int = 1,
        lease_seconds: float = 60.0,
        caps: DailyCaps | None = None,
        on_cap: CapPolicy = CapPolicy.DEFER,
        campaign_id: int | None = None,
        scope: Scope | None = None,
    ) -> ClaimResult:
        """Move up to `limit` due payouts to SENDING, leased for `lease_seconds`.

        Which: those of `scope`, or of merchant `mch_id`, or among `payout_ids` (a
        dispatcher's chunk), or both. Due: PLANNED, or DEFERRED with `next_attempt_at` passed;
        of a RUNNING campaign or of no campaign. Each is checked against its campaign's budget
        (over it: SKIPPED) and the daily caps of its receiver and merchant (over them: per
        `on_cap`) in the same transaction.
        """
        request = ClaimRequest(
            mch_id=mch_id,
            payout_ids=payout_ids,
            limit=limit,
            lease_seconds=lease_seconds,
            caps=caps or DailyCaps(),
            on_cap=on_cap,
            campaign_id=campaign_id,
            scope=scope,
        )
        return write_transaction(
            self._engine, lambda conn: self._events(conn, self._claim, request)
        )

    def _events(
        self,
        conn: Connection,
        work: Callable[[Connection, R, list[dict[str, Any]]], T],
        arg: R,
    ) -> T:
        """Run `work(conn, arg, events)`, then insert the events it collected, in one go."""
        events: list[dict[str, Any]] = []
        result = work(conn, arg, events)
        if events:
            insert_events(conn, events)
        return result

    def _claim(
        self, conn: Connection, request: ClaimRequest, events: list[dict[str, Any]]
    ) -> ClaimResult:
        now = self._clock.now()
        day = beijing_day(now)
        limit, caps, scope = request.limit, request.caps, request.target
        shape = scope_shape(scope)
        params = {"now": now, "limit": limit, **scope_params(scope)}
        found = [
            _Brief.of(row)
            for state in sorted(CLAIMABLE)
            for row in claim_candidates(state, shape).rows(conn, params)
        ]
        # The first `limit` by id over both states; then one lock order (campaign, then id)
        # across claimers keeps deadlocks rare.
        candidates = sorted(found, key=lambda p: p.id)[:limit]
        candidates.sort(key=lambda p: (p.campaign_id or 0, p.id))
        result = ClaimResult(claimed=[], deferred=[], skipped=[])
        if not candidates:
            return result
        if reserve_all(conn, candidates, day, caps):
            fitting = candidates
        else:
            fitting = []
            for payout in candidates:
                refusal = reserve(conn, self._dialect, payout, day, caps)
                if refusal is None:
                    fitting.append(payout)
                elif refusal == "over_budget" or request.on_cap is CapPolicy.SKIP:
                    self._refuse(conn, payout, P.SKIPPED, refusal, None)
                    result.skipped.append(payout.id)
                else:
                    self._refuse(conn, payout, P.DEFERRED, refusal, _next_day_start(day))
                    result.deferred.append(payout.id)
        result.claimed.extend(self._take(conn, fitting, now, day, request.lease_seconds, events))
        return result

    def _take(
        self,
        conn: Connection,
        batch: Sequence[_Brief],
        now: datetime,
        day: date,
        lease_seconds: float,
        events: list[dict[str, Any]],
    ) -> list[Payout]:
        """Move the (locked, charged) payouts of `batch` to SENDING in one statement."""
        if not batch:
            return []
        params = {
            "ids": [payout.id for payout in batch],
            "now": now,
            "lease_until": now + timedelta(seconds=lease_seconds),
            "holder": this_holder(),
            "day": day,
        }
        taken = {row[0]: payout_from_values(list(row)) for row in take_payouts().rows(conn, params)}
        if len(taken) != len(batch):
            # The candidates are locked by this transaction: nothing else can have moved them.
            raise RuntimeError(f"claim: {len(batch) - len(taken)} locked payouts moved away")
        events.extend(
            self._event_row(
                payout_id=payout.id,
                attempt=taken[payout.id].attempts,
                kind="claim",
                from_state=payout.state,
                to_state=P.SENDING,
                at=now,
            )
            for payout in batch
        )
        return [taken[payout.id] for payout in batch]

    def _refuse(
        self,
        conn: Connection,
        payout: _Brief,
        to_state: PayoutState,
        reason: str,
        next_attempt_at: datetime | None,
    ) -> None:
        conn.execute(
            update(payouts)
            .where(payouts.c.id == payout.id, payouts.c.state == payout.state)
            .values(
                state=to_state,
                reason=reason,
                next_attempt_at=next_attempt_at,
                updated_at=self._clock.now(),
            )
        )
        self._event(
            conn,
            payout_id=payout.id,
            attempt=payout.attempts,
            kind="claim",
            from_state=payout.state,
            to_state=to_state,
            detail=reason,
        )

    def claim_stale(
        self,
        mch_id: str | None = None,
        *,
        payout_ids: Collection[int] | None = None,
        limit: int = 10,
        lease_seconds: float = 60.0,
        scope: Scope | None = None,
    ) -> list[Payout]:
        """Lease in-flight payouts nobody is resolving, for recovery; all come back UNKNOWN.

        Stale: SENDING whose lease expired (its sender died or hung: the request may have left,
        so it becomes UNKNOWN), or UNKNOWN whose lease expired and whose next attempt is due.
        A lease whose holder is provably gone (a process of this host that has ended,
        `hongbao.ledger.holders`) counts as expired once `RESEND_GAP` has passed since it was
        taken, so a rerun after Ctrl-C or `kill -9` need not wait for it. Recovery resolves
        them by gethbinfo or by a resend with the same bill number, before any new work is
        claimed. Chosen by `scope`, or by merchant and/or ids, as in `claim`.
        """
        if scope is None:
            if mch_id is None and payout_ids is None:
                raise ValueError("claim_stale needs a merchant or payout ids")
            ids = None if payout_ids is None else frozenset(payout_ids)
            scope = Scope(mch_id, None, None, ids)
        chosen, chosen_params = in_scope(scope)

        def work(conn: Connection) -> list[Payout]:
            now = self._clock.now()
            lease_over = or_(payouts.c.lease_until.is_(None), payouts.c.lease_until <= now)
            gone = gone_holders(conn, chosen, chosen_params, now)
            if gone:
                lease_over = or_(
                    lease_over,
                    and_(
                        payouts.c.lease_holder.in_(gone),
                        payouts.c.updated_at <= now - timedelta(seconds=RESEND_GAP),
                    ),
                )
            due = or_(payouts.c.next_attempt_at.is_(None), payouts.c.next_attempt_at <= now)
            query = (
                select(payouts)
                .where(
                    chosen,
                    or_(
                        and_(payouts.c.state == P.SENDING, lease_over),
                        and_(payouts.c.state == P.UNKNOWN, lease_over, due),
                    ),
                )
                .order_by(payouts.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            taken = []
            rows = conn.execute(query, chosen_params).all()
            for payout in [payout_from_row(row) for row in rows]:
                row = conn.execute(
                    update(payouts)
                    .where(payouts.c.id == payout.id, payouts.c.state == payout.state)
                    .values(
                        state=P.UNKNOWN,
                        lease_until=now + timedelta(seconds=lease_seconds),
                        lease_holder=this_holder(),
                        attempts=payouts.c.attempts + 1,
                        updated_at=now,
                    )
                    .returning(*payouts.c)
                ).one()
                leased = payout_from_row(row)
                lost = payout.state is P.SENDING
                self._event(
                    conn,
                    payout_id=payout.id,
                    attempt=leased.attempts,
                    kind="recover",
                    from_state=payout.state,
                    to_state=P.UNKNOWN,
                    detail="lease expired while sending" if lost else "due for resolution",
                )
                taken.append(leased)
            return taken

        return write_transaction(self._engine, work)

    def extend_lease(self, payout_id: int, state: PayoutState, lease_seconds: float) -> bool:
        """Renew the lease of an in-flight payout still in `state` (a long resend, a slow query).

        False when the payout has moved on; its holder must then stop acting on it.
        """
        if state not in _IN_FLIGHT:
            raise IllegalTransitionError(
                f"only SENDING or UNKNOWN payouts hold a lease, not {state}"
            )

        def work(conn: Connection) -> bool:
            now = self._clock.now()
            result = conn.execute(
                update(payouts)
                .where(payouts.c.id == payout_id, payouts.c.state == state)
                .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
            )
            return result.rowcount == 1

        return write_transaction(self._engine, work)

    # -- transitions -----------------------------------------------------------------------

    def transition(
        self,
        payout_id: int,
        from_state: PayoutState,
        to_state: PayoutState,
        *,
        event: EventInfo | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set a payout's state and record the event, in one transaction.

        Returns False (and writes nothing) when the payout is no longer in `from_state`.
        Leaving SENDING/UNKNOWN for a state that commits no money returns its amount to the
        budget and the daily counters. Only `claim` may enter SENDING.
        """
        [moved] = self.transition_many([Transition(payout_id, from_state, to_state, event, fields)])
        return moved

    def transition_many(
        self, transitions: Sequence[Transition], *, wait: bool = True
    ) -> list[bool]:
        """Several `transition`s, in order, in one transaction: one commit for many payouts.

        Each is the same compare-and-set with its event as `transition`; the result says for
        each whether it moved its payout (False: the payout was no longer in `from_state`, and
        nothing was written for it). An illegal one is refused before anything is written.
        `wait=False`: raise `LedgerBusy` rather than wait for SQLite's write lock.

        >>> store.transition_many([Transition(7, PayoutState.SENDING, PayoutState.SENT,
        ...                                   fields={"send_listid": "1000041701…"})])
        [True]
        """
        planned = self._plan_transitions(transitions)
        if not planned:
            return []
        return write_transaction(
            self._engine, lambda conn: self._events(conn, self._transition, planned), wait=wait
        )

    def transition_and_claim(
        self, transitions: Sequence[Transition], claim: ClaimRequest, *, wait: bool = True
    ) -> tuple[list[bool], ClaimResult]:
        """`transition_many`, then `claim`, in one transaction: a dispatcher's whole round.

        The outcomes of the drives that finished and the payouts for the workers they free are
        committed together: one commit (one fsync on SQLite) instead of two. `wait` as in
        `transition_many`.
        """
        planned = self._plan_transitions(transitions)

        def work(conn: Connection) -> tuple[list[bool], ClaimResult]:
            events: list[dict[str, Any]] = []
            moved = self._transition(conn, planned, events) if planned else []
            claimed = self._claim(conn, claim, events)
            if events:
                insert_events(conn, events)
            return moved, claimed

        return write_transaction(self._engine, work, wait=wait)

    def _plan_transitions(
        self, transitions: Sequence[Transition]
    ) -> list[tuple[Transition, dict[str, Any], bool]]:
        now = self._clock.now()
        return [(change, *_transition_values(change, now)) for change in transitions]

    def _transition(
        self,
        conn: Connection,
        planned: list[tuple[Transition, dict[str, Any], bool]],
        events: list[dict[str, Any]],
    ) -> list[bool]:
        ids = sorted({change.payout_id for change, _, _ in planned})
        # Locked in id order (PostgreSQL); on SQLite the write lock is already held.
        found = lock_payouts().rows(conn, {"ids": ids})
        current = {row[0]: _Brief.of(row) for row in found}
        moved: list[bool] = []
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        pending: set[int] = set()
        for change, values, releases in planned:
            payout = current.get(change.payout_id)
            if payout is None or payout.state is not change.from_state:
                moved.append(False)
                continue
            if payout.id in pending:
                # A second move of one payout: the first must be written before it.
                self._update_payouts(conn, updates)
                updates, pending = {}, set()
            updates.setdefault(tuple(values), []).append(
                {"_id": payout.id, "_from": change.from_state, **values}
            )
            pending.add(payout.id)
            if releases:
                release(conn, payout, payout.counted_day)
            current[payout.id] = replace(
                payout,
                state=change.to_state,
                counted_day=values.get("counted_day", payout.counted_day),
            )
            events.append(
                self._event_row(
                    payout_id=payout.id,
                    attempt=payout.attempts,
                    kind="transition",
                    from_state=change.from_state,
                    to_state=change.to_state,
                    info=change.event,
                    err_code=change.fields.get("err_code"),
                    detail=change.fields.get("reason"),
                    at=values["updated_at"],
                )
            )
            moved.append(True)
        self._update_payouts(conn, updates)
        return moved

    def _update_payouts(
        self, conn: Connection, updates: Mapping[tuple[str, ...], list[dict[str, Any]]]
    ) -> None:
        """Run the compare-and-set UPDATEs, one executemany per set of columns."""
        for columns, rows in updates.items():
            changed = cas_update(columns).run(conn, rows)
            if changed != len(rows):
                # The rows are locked by this transaction: nothing else can have moved them.
                raise RuntimeError(f"transition: {len(rows) - changed} locked rows moved")

    def record_event(self, payout_id: int, event: EventInfo) -> None:
        """Append an event that changed no state (e.g. a query that told nothing new)."""

        def work(conn: Connection) -> None:
            row = conn.execute(
                select(payouts.c.state, payouts.c.attempts).where(payouts.c.id == payout_id)
            ).first()
            if row is None:
                raise LedgerLookupError(f"no payout with id {payout_id}")
            state = PayoutState(row.state)
            self._event(
                conn,
                payout_id=payout_id,
                attempt=row.attempts,
                kind=event.kind,
                from_state=state,
                to_state=state,
                info=event,
            )

        write_transaction(self._engine, work)
