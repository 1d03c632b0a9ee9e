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

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any, Self, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from hongbao.clock import CST, Clock, SystemClock, beijing_day
from hongbao.ledger.accounting import release, reserve, reserve_all
from hongbao.ledger.bills import BillSerials
from hongbao.ledger.db import create_ledger_engine, read_transaction, write_transaction
from hongbao.ledger.masking import mask
from hongbao.ledger.migrate import check_schema
from hongbao.ledger.records import (
    AddResult,
    Campaign,
    CapPolicy,
    ClaimRequest,
    ClaimResult,
    CodeTotal,
    DailyCaps,
    EventInfo,
    IllegalTransitionError,
    LedgerLookupError,
    NewCampaign,
    NewPayout,
    Payout,
    PayoutEvent,
    ReissueError,
    Scope,
    StateTotal,
    Transition,
    freeze_params,
)
from hongbao.ledger.rows import (
    campaign_from_row,
    event_from_row,
    payout_from_row,
    payout_values,
    to_json,
)
from hongbao.ledger.schema import (
    campaigns,
    daily_counters,
    payout_events,
    payouts,
)
from hongbao.ledger.statements import (
    INSERT_EVENTS,
    INSERT_PAYOUTS,
    cas_update,
    claim_candidates,
    in_scope,
    lock_payouts,
    scope_params,
    scope_shape,
    take_payouts,
)
from hongbao.ledger.states import (
    CAMPAIGN_TRANSITIONS,
    CLAIMABLE,
    COMMITTING,
    CampaignState,
    PayoutState,
    is_allowed,
)

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
_DETAIL_MAX = 512


def _aware(value: datetime | str) -> datetime:
    # An aggregate loses the column type: SQLite hands back the stored text, naive UTC.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    def of(cls, row: Any) -> _Brief:
        return cls(
            row.id,
            PayoutState(row.state),
            row.attempts,
            row.counted_day,
            row.campaign_id,
            row.mch_id,
            row.re_openid,
            row.total_amount,
        )


class LedgerStore:
    """Typed access to the ledger on SQLite or PostgreSQL; safe to share between threads."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock: Clock = clock or SystemClock()
        self._dialect = engine.dialect.name
        self._bills = BillSerials(self._dialect)

    @classmethod
    def open(
        cls, url: str | URL, *, clock: Clock | None = None, check: bool = True, **engine_kw: Any
    ) -> Self:
        """Connect to the ledger at `url`; refuses an out-of-date schema unless `check=False`."""
        engine = create_ledger_engine(url, **engine_kw)
        if check:
            try:
                check_schema(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine, clock=clock)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine underneath (for migrations and transactional outboxes)."""
        return self._engine

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LedgerStore({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- plumbing --------------------------------------------------------------------------

    # Rows of any shape: SQLAlchemy 2.0 and 2.1 type a row's columns differently.
    def _all(self, query: Select[Any]) -> Sequence[Any]:
        return read_transaction(self._engine, lambda conn: conn.execute(query).all())

    def _first(self, query: Select[Any]) -> Any:
        return read_transaction(self._engine, lambda conn: conn.execute(query).first())

    def _event(self, conn: Connection, **event: Any) -> None:
        """Append one event (the keywords of `_event_row`)."""
        INSERT_EVENTS.run(conn, [self._event_row(**event)])

    def _event_row(
        self,
        *,
        payout_id: int,
        attempt: int,
        kind: str,
        from_state: PayoutState | None,
        to_state: PayoutState | None,
        info: EventInfo | None = None,
        err_code: str | None = None,
        detail: str | None = None,
    ) -> dict[str, Any]:
        text = (info.detail if info is not None else None) or detail
        request = info.request if info is not None else None
        response = info.response if info is not None else None
        return {
            "payout_id": payout_id,
            "at": self._clock.now(),
            "kind": info.kind if info is not None else kind,
            "from_state": from_state,
            "to_state": to_state,
            "attempt": attempt,
            "err_code": (info.err_code if info is not None else None) or err_code,
            "detail": text[:_DETAIL_MAX] if text else None,
            "request": to_json(mask(request)) if request is not None else None,
            "response": to_json(mask(response)) if response is not None else None,
        }

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
            result = conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.state == from_state)
                .values(
                    state=to_state,
                    pause_reason=pause_reason if to_state is CampaignState.PAUSED else None,
                    updated_at=self._clock.now(),
                )
            )
            return result.rowcount == 1

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

    def record_and_claim(
        self,
        new: NewPayout,
        *,
        lease_seconds: float,
        caps: DailyCaps | None = None,
        on_cap: CapPolicy = CapPolicy.DEFER,
    ) -> tuple[Payout, bool]:
        """Record one payout and, when it is new, claim it — in one transaction.

        Returns the payout as it stands after the commit (SENDING under a lease when claimed;
        DEFERRED or SKIPPED when a cap refused it) and whether it was new. A key already
        recorded is left alone and returned in its latest generation. SENDING is committed
        before anything can leave, as with `claim`; one commit instead of two.
        """
        values = payout_values(new, self._clock.now())
        latest = (
            select(payouts)
            .where(payouts.c.natural_key == new.natural_key)
            .order_by(payouts.c.generation.desc())
            .limit(1)
        )

        def work(conn: Connection) -> tuple[Payout, bool]:
            inserted = INSERT_PAYOUTS.run(conn, [values]) == 1
            row = conn.execute(latest).one()
            if not inserted:
                return payout_from_row(row), False
            request = ClaimRequest(
                scope=Scope.ids([row.id]),
                lease_seconds=lease_seconds,
                caps=caps or DailyCaps(),
                on_cap=on_cap,
            )
            result = self._events(conn, self._claim, request)
            if result.claimed:
                return result.claimed[0], True
            return payout_from_row(conn.execute(latest).one()), True

        return write_transaction(self._engine, work)

    def reissue(self, payout_id: int, params: Mapping[str, object]) -> Payout:
        """Record a new payout with a new bill number for the intent of a dead one.

        Allowed only when WeChat definitively said the old bill FAILED (`bill_dead`); the new
        row links to it, and a payout can be re-issued once: one intent never has two live bills.
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
            if old.state is not P.FAILED or not old.bill_dead:
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
                if str(frozen[name]) != str(before):
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
                    ),
                    now,
                ),
                "generation": old.generation + 1,
                "previous_payout_id": old.id,
            }
            new_row = conn.execute(insert(payouts).values(**values).returning(*payouts.c)).one()
            new = payout_from_row(new_row)
            self._event(
                conn,
                payout_id=new.id,
                attempt=0,
                kind="reissue",
                from_state=None,
                to_state=P.PLANNED,
                detail=f"re-issue of payout {old.id} (bill {old.mch_billno} FAILED)",
            )
            return new

        try:
            return write_transaction(self._engine, work)
        except IntegrityError as exc:
            raise ReissueError(f"payout {payout_id} was already re-issued ({exc.orig})") from None

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
        limit: int = 100,
    ) -> list[Payout]:
        """The latest bill of each intent of `scope`, newest first; in `state`, created `since`."""
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
        query = query.order_by(payouts.c.id.desc()).limit(limit)
        rows = read_transaction(self._engine, lambda conn: conn.execute(query, params).all())
        return [payout_from_row(row) for row in rows]

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

    def events(self, payout_id: int) -> list[PayoutEvent]:
        """The audit trail of one payout, oldest first."""
        query = (
            select(payout_events)
            .where(payout_events.c.payout_id == payout_id)
            .order_by(payout_events.c.id)
        )
        rows = self._all(query)
        return [event_from_row(row) for row in rows]

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
            INSERT_EVENTS.run(conn, events)
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
            for row in conn.execute(claim_candidates(state, shape), params)
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
            "day": day,
        }
        taken = {row.id: payout_from_row(row) for row in conn.execute(take_payouts(), params)}
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
        Recovery resolves them by gethbinfo or by a resend with the same bill number, before
        any new work is claimed. Chosen by `scope`, or by merchant and/or ids, as in `claim`.
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

    def transition_many(self, transitions: Sequence[Transition]) -> list[bool]:
        """Several `transition`s, in order, in one transaction: one commit for many payouts.

        Each is the same compare-and-set with its event as `transition`; the result says for
        each whether it moved its payout (False: the payout was no longer in `from_state`, and
        nothing was written for it). An illegal one is refused before anything is written.

        >>> store.transition_many([Transition(7, PayoutState.SENDING, PayoutState.SENT,
        ...                                   fields={"send_listid": "1000041701…"})])
        [True]
        """
        planned = self._plan_transitions(transitions)
        if not planned:
            return []
        return write_transaction(
            self._engine, lambda conn: self._events(conn, self._transition, planned)
        )

    def transition_and_claim(
        self, transitions: Sequence[Transition], claim: ClaimRequest
    ) -> tuple[list[bool], ClaimResult]:
        """`transition_many`, then `claim`, in one transaction: a dispatcher's whole round.

        The outcomes of the drives that finished and the payouts for the workers they free are
        committed together: one commit (one fsync on SQLite) instead of two.
        """
        planned = self._plan_transitions(transitions)

        def work(conn: Connection) -> tuple[list[bool], ClaimResult]:
            events: list[dict[str, Any]] = []
            moved = self._transition(conn, planned, events) if planned else []
            claimed = self._claim(conn, claim, events)
            if events:
                INSERT_EVENTS.run(conn, events)
            return moved, claimed

        return write_transaction(self._engine, work)

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
        found = conn.execute(lock_payouts(), {"ids": ids})
        current = {row.id: _Brief.of(row) for row in found}
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
            return min(found) if found else None

        return read_transaction(self._engine, work)

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

    def daily_usage(self, mch_id: str, openid: str, day: date) -> StateTotal:
        """Packets and fen committed to `openid` by `mch_id` on a UTC+8 day ("" = merchant)."""
        c = daily_counters.c
        query = select(c.count, c.amount_fen).where(
            c.mch_id == mch_id, c.openid == openid, c.day == day
        )
        row = self._first(query)
        return StateTotal(int(row[0]), int(row[1])) if row is not None else StateTotal(0, 0)
