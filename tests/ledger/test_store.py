"""The ledger store's contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from hongbao.clock import CST, FrozenClock
from hongbao.ledger import (
    EXPORT_FIELDS,
    CampaignState,
    CapPolicy,
    DailyCaps,
    EventInfo,
    IllegalTransitionError,
    LedgerLookupError,
    LedgerStore,
    NewCampaign,
    NewPayout,
    PayoutState,
    ReissueError,
    SendApi,
    StateTotal,
    Transition,
    export_rows,
    upgrade,
)
from hongbao.ledger.holders import this_holder
from hongbao.ledger.schema import UTCDateTime, payouts
from hongbao.ledger.states import COMMITTING
from hongbao.wire.xmlcodec import dumps
from tests.ledgerkit import daily_usage

from .conftest import MCH_ID, ParamsFactory, PayoutFactory

P = PayoutState
RunningCampaign = Callable[..., int]


def _claim_one(store: LedgerStore, **kwargs: object) -> int:
    result = store.claim(MCH_ID, **kwargs)  # type: ignore[arg-type]
    assert len(result.claimed) == 1, result
    return result.claimed[0].id


# -- recording ---------------------------------------------------------------------------


def test_planning_twice_records_each_intent_once(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    first = [make_payout(f"o{i}") for i in range(5)]
    assert store.add_payouts(first, batch_size=2).inserted == 5
    # Re-planning mints fresh bill numbers, but the natural keys decide: nothing is doubled.
    again = [make_payout(f"o{i}") for i in range(7)]
    result = store.add_payouts(again, batch_size=3)
    assert (result.inserted, result.existing) == (2, 5)
    assert len(store.find_payouts([P.PLANNED], limit=100)) == 7
    kept = store.find_payout("test:o0")
    assert kept is not None
    assert kept.mch_billno == first[0].params["mch_billno"]


def test_frozen_parameters_come_back_identical_for_a_byte_identical_resend(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    new = make_payout("oFrozen", 1000, scene_id="PRODUCT_2")
    payout, created = store.add_payout(new)
    assert created
    assert payout.params == new.params
    assert list(payout.params) == list(new.params)  # wire order too
    assert dumps(payout.params) == dumps(new.params)
    assert (payout.mch_billno, payout.re_openid, payout.total_amount) == (
        new.params["mch_billno"],
        "oFrozen",
        1000,
    )


@pytest.mark.parametrize("secret", ["sign", "key"])
def test_a_signature_or_key_is_never_stored(
    store: LedgerStore, make_payout: PayoutFactory, make_params: ParamsFactory, secret: str
) -> None:
    params = make_params("oS")
    params[secret] = "B84CAAD3B6FBFAAF341AE6482694309A"
    with pytest.raises(ValueError, match=secret):
        store.add_payout(
            NewPayout(natural_key="k", merchant="acme", api=SendApi.SENDREDPACK, params=params)
        )
    assert store.find_payout("k") is None


def test_a_bill_number_belongs_to_one_payout_per_merchant(
    store: LedgerStore, make_params: ParamsFactory
) -> None:
    params = make_params("oA")
    store.add_payout(NewPayout("one", "acme", SendApi.SENDREDPACK, params))
    with pytest.raises(IntegrityError):
        store.add_payout(
            NewPayout("two", "acme", SendApi.SENDREDPACK, {**params, "re_openid": "oB"})
        )


def test_times_come_back_aware_in_utc(store: LedgerStore, make_payout: PayoutFactory) -> None:
    payout, _ = store.add_payout(make_payout("oT"))
    assert payout.created_at == datetime(2024, 3, 15, 2, 0, tzinfo=UTC)
    assert payout.created_at.tzinfo is not None


@pytest.mark.parametrize(
    "when",
    [
        datetime(2024, 3, 15, 10, 0, tzinfo=CST),  # whole seconds: microseconds still written
        datetime(2024, 3, 15, 2, 0, 0, 5, tzinfo=UTC),
        datetime(999, 1, 1, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_sqlite_times_are_the_text_sqlalchemy_writes_in_utc(when: datetime) -> None:
    # Claims compare these texts (`next_attempt_at <= :now`): one format, UTC, sorts in time.
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = sqlite.DATETIME().bind_processor(dialect)  # type: ignore[no-untyped-call]
    assert ours is not None
    assert theirs is not None
    assert ours(when) == theirs(when.astimezone(UTC).replace(tzinfo=None))
    with pytest.raises(ValueError, match="aware"):
        ours(when.replace(tzinfo=None))
    # And read back as SQLAlchemy's DATETIME reads them, aware in UTC.
    read = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    their_read = sqlite.DATETIME().result_processor(dialect, None)  # type: ignore[no-untyped-call]
    assert read is not None
    assert their_read is not None
    theirs_back = their_read(ours(when))
    assert theirs_back is not None
    assert read(ours(when)) == theirs_back.replace(tzinfo=UTC) == when
    assert read(None) is None


class TickingClock(FrozenClock):
    """A frozen clock that moves one millisecond each time it is read."""

    def now(self) -> datetime:
        self.advance(0.001)
        return super().now()


def test_an_events_time_is_the_time_its_change_wrote_on_the_payout(
    ledger_url: str, make_payout: PayoutFactory
) -> None:
    upgrade(ledger_url)
    with LedgerStore.open(ledger_url, clock=TickingClock()) as store:
        store.add_payout(make_payout("oA"))
        store.add_payout(make_payout("oB"))
        first, second = store.claim(MCH_ID, limit=2).claimed
        store.transition_many(
            [
                Transition(first.id, P.SENDING, P.SENT, fields={"send_listid": "1"}),
                Transition(second.id, P.SENDING, P.UNKNOWN),
            ]
        )
        for payout in (first, second):
            stored = store.get_payout(payout.id)
            claim, outcome = store.events(payout.id)
            assert claim.at == stored.claimed_at
            assert outcome.at == stored.updated_at
            assert claim.at < outcome.at


# -- claiming ----------------------------------------------------------------------------


def test_claim_commits_sending_under_a_lease_exactly_once(
    store: LedgerStore, make_payout: PayoutFactory, clock: FrozenClock
) -> None:
    store.add_payout(make_payout("oA"))
    first = store.claim(MCH_ID, limit=5, lease_seconds=90)
    assert [p.re_openid for p in first.claimed] == ["oA"]
    claimed = store.get_payout(first.claimed[0].id)
    assert claimed.state is P.SENDING
    assert claimed.attempts == 1
    assert claimed.lease_until == clock.now() + timedelta(seconds=90)
    assert store.claim(MCH_ID, limit=5).claimed == []
    assert [(e.kind, e.from_state, e.to_state) for e in store.events(claimed.id)] == [
        ("claim", P.PLANNED, P.SENDING)
    ]


def test_claim_takes_only_the_merchants_running_and_due_payouts(
    store: LedgerStore,
    make_payout: PayoutFactory,
    running_campaign: RunningCampaign,
    clock: FrozenClock,
) -> None:
    draft = store.create_campaign(NewCampaign("draft", "acme", MCH_ID, SendApi.SENDREDPACK))
    running = running_campaign()
    store.add_payouts(
        [
            make_payout("oDraft", campaign_id=draft.id),
            make_payout("oOther", mch_id="1900000999"),
            make_payout("oRun", campaign_id=running),
        ]
    )
    assert [p.re_openid for p in store.claim(MCH_ID, limit=10).claimed] == ["oRun"]
    deferred = store.find_payout(f"campaign:{running}:oRun")
    assert deferred is not None
    later = clock.now() + timedelta(minutes=5)
    assert store.transition(deferred.id, P.SENDING, P.DEFERRED, next_attempt_at=later)
    assert store.claim(MCH_ID).claimed == []
    clock.advance(300)
    assert _claim_one(store) == deferred.id


def test_a_dispatcher_claims_its_own_chunk_by_id(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    store.add_payouts([make_payout(f"o{i}") for i in range(4)])
    ids = [p.id for p in store.find_payouts([P.PLANNED])]
    chunk = store.claim(payout_ids=ids[2:], limit=10)
    assert [p.id for p in chunk.claimed] == ids[2:]
    assert store.claim(payout_ids=ids[2:], limit=10).claimed == []
    assert [p.id for p in store.claim(MCH_ID, limit=10).claimed] == ids[:2]
    with pytest.raises(ValueError, match="merchant or payout ids"):
        store.claim()


def test_budget_is_never_exceeded_and_comes_back_when_a_send_fails(
    store: LedgerStore, make_payout: PayoutFactory, running_campaign: RunningCampaign
) -> None:
    campaign = running_campaign(budget_fen=250)
    store.add_payouts([make_payout(f"o{i}", 100, campaign_id=campaign) for i in range(3)])
    result = store.claim(MCH_ID, limit=10)
    assert len(result.claimed) == 2
    assert len(result.skipped) == 1
    skipped = store.get_payout(result.skipped[0])
    assert (skipped.state, skipped.reason) == (P.SKIPPED, "over_budget")
    assert store.get_campaign(campaign).committed_fen == 200
    # A definitive failure returns its amount: the budget has room again.
    assert store.transition(result.claimed[0].id, P.SENDING, P.FAILED, err_code="SEND_FAILED")
    assert store.get_campaign(campaign).committed_fen == 100
    store.add_payout(make_payout("oLate", 150, campaign_id=campaign))
    assert store.claim(MCH_ID).claimed[0].re_openid == "oLate"
    assert store.get_campaign(campaign).committed_fen == 250


def test_per_user_daily_count_defers_to_the_next_beijing_day(
    store: LedgerStore, make_payout: PayoutFactory, clock: FrozenClock
) -> None:
    caps = DailyCaps(per_user_count=2, per_user_amount_fen=None)
    store.add_payouts([make_payout("oSame", key=f"k{i}") for i in range(3)])
    result = store.claim(MCH_ID, limit=10, caps=caps)
    assert (len(result.claimed), len(result.deferred)) == (2, 1)
    deferred = store.get_payout(result.deferred[0])
    assert deferred.reason == "user_daily_count"
    assert deferred.next_attempt_at == datetime(2024, 3, 16, 0, 0, tzinfo=CST)
    clock.set(datetime(2024, 3, 15, 23, 59, 59, tzinfo=CST))
    assert store.claim(MCH_ID, caps=caps).claimed == []
    clock.set(datetime(2024, 3, 16, 0, 0, 0, tzinfo=CST))
    assert _claim_one(store, caps=caps) == deferred.id
    assert store.get_payout(deferred.id).reason is None
    day2 = datetime(2024, 3, 16).date()
    assert daily_usage(store, MCH_ID, "oSame", day2) == StateTotal(1, 100)


def test_per_user_daily_amount_can_skip_instead(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    caps = DailyCaps(per_user_count=None, per_user_amount_fen=250)
    store.add_payouts([make_payout("oRich", 100, key=f"k{i}") for i in range(3)])
    result = store.claim(MCH_ID, limit=10, caps=caps, on_cap=CapPolicy.SKIP)
    assert (len(result.claimed), len(result.skipped)) == (2, 1)
    assert store.get_payout(result.skipped[0]).reason == "user_daily_amount"


def test_merchant_daily_amount_cap_spans_all_users(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    caps = DailyCaps(merchant_amount_fen=300)
    store.add_payouts([make_payout(f"o{i}", 100) for i in range(4)])
    result = store.claim(MCH_ID, limit=10, caps=caps)
    assert (len(result.claimed), len(result.deferred)) == (3, 1)
    assert store.get_payout(result.deferred[0]).reason == "merchant_daily_amount"
    # A refused claim leaves no trace in the user's counter.
    day = datetime(2024, 3, 15).date()
    refused = store.get_payout(result.deferred[0])
    assert daily_usage(store, MCH_ID, refused.re_openid, day) == StateTotal(0, 0)
    assert daily_usage(store, MCH_ID, "", day) == StateTotal(3, 300)


def test_a_failed_send_gives_its_daily_count_back(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    caps = DailyCaps(per_user_count=1)
    store.add_payouts([make_payout("oOne", key=f"k{i}") for i in range(2)])
    first = _claim_one(store, caps=caps)
    assert store.claim(MCH_ID, caps=caps).claimed == []  # the second is deferred
    assert store.transition(first, P.SENDING, P.DEFERRED, err_code="NOTENOUGH")
    day = datetime(2024, 3, 15).date()
    assert daily_usage(store, MCH_ID, "oOne", day) == StateTotal(0, 0)
    assert store.get_payout(first).counted_day is None


# -- transitions -------------------------------------------------------------------------


def test_transition_is_compare_and_set(store: LedgerStore, make_payout: PayoutFactory) -> None:
    store.add_payout(make_payout("oA"))
    payout_id = _claim_one(store)
    assert store.transition(payout_id, P.SENDING, P.UNKNOWN, err_code="SYSTEMERROR")
    # A second worker that still believes SENDING loses, and writes nothing.
    assert not store.transition(payout_id, P.SENDING, P.SENT, send_listid="100")
    assert store.transition(payout_id, P.UNKNOWN, P.SENT, send_listid="100")
    payout = store.get_payout(payout_id)
    assert (payout.state, payout.send_listid, payout.lease_until) == (P.SENT, "100", None)
    assert payout.sent_at is not None
    assert [e.to_state for e in store.events(payout_id)] == [P.SENDING, P.UNKNOWN, P.SENT]


def test_illegal_transitions_are_refused(store: LedgerStore, make_payout: PayoutFactory) -> None:
    payout, _ = store.add_payout(make_payout("oA"))
    with pytest.raises(IllegalTransitionError, match="claim"):
        store.transition(payout.id, P.PLANNED, P.SENDING)
    with pytest.raises(IllegalTransitionError):
        store.transition(payout.id, P.PLANNED, P.SENT)
    with pytest.raises(IllegalTransitionError):
        store.transition(payout.id, P.FAILED, P.SENT)
    with pytest.raises(TypeError, match="total_amount"):
        store.transition(payout.id, P.PLANNED, P.SKIPPED, total_amount=1)
    assert store.get_payout(payout.id).state is P.PLANNED


def test_events_keep_the_exchange_with_secrets_masked(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    new = make_payout("oA")
    store.add_payout(new)
    payout_id = _claim_one(store)
    request = {**new.params, "sign": "B84CAAD3B6FBFAAF341AE6482694309A"}
    response = {"return_code": "SUCCESS", "result_code": "SUCCESS", "send_listid": "100"}
    event = EventInfo(kind="send", request=request, response=response)
    assert store.transition(payout_id, P.SENDING, P.SENT, event=event, send_listid="100")
    last = store.events(payout_id)[-1]
    assert (last.kind, last.from_state, last.to_state) == ("send", P.SENDING, P.SENT)
    assert last.request is not None
    assert last.request["sign"] == "***"
    assert last.request["mch_billno"] == new.params["mch_billno"]
    assert last.response == response


def test_stale_sending_comes_back_unknown_for_recovery(
    store: LedgerStore, make_payout: PayoutFactory, clock: FrozenClock
) -> None:
    store.add_payout(make_payout("oA"))
    payout_id = store.claim(MCH_ID, lease_seconds=60).claimed[0].id
    assert store.claim_stale(MCH_ID) == []  # its sender still holds the lease
    clock.advance(61)
    [stale] = store.claim_stale(MCH_ID, lease_seconds=30)
    assert (stale.id, stale.state, stale.attempts) == (payout_id, P.UNKNOWN, 2)
    assert store.claim_stale(MCH_ID) == []  # leased to this recoverer now
    # Still unknown after the query: due again only when its next attempt time comes.
    later = clock.now() + timedelta(minutes=20)
    assert store.transition(payout_id, P.UNKNOWN, P.UNKNOWN, next_attempt_at=later)
    clock.advance(60)
    assert store.claim_stale(MCH_ID) == []
    clock.advance(20 * 60)
    assert [p.id for p in store.claim_stale(MCH_ID)] == [payout_id]
    # Unknown money stays committed throughout.
    assert store.get_payout(payout_id).counted_day is not None


def test_a_lease_is_extended_only_while_its_payout_is_in_flight(
    store: LedgerStore, make_payout: PayoutFactory, clock: FrozenClock
) -> None:
    store.add_payout(make_payout("oA"))
    payout_id = store.claim(MCH_ID, lease_seconds=60).claimed[0].id
    clock.advance(50)
    assert store.extend_lease(payout_id, P.SENDING, 60)
    clock.advance(50)
    assert store.claim_stale(payout_ids=[payout_id]) == []  # renewed: still its sender's
    clock.advance(11)
    assert [p.id for p in store.claim_stale(payout_ids=[payout_id])] == [payout_id]
    # The first sender lost the lease: it can neither renew it nor move the payout.
    assert not store.extend_lease(payout_id, P.SENDING, 60)
    assert not store.transition(payout_id, P.SENDING, P.SENT)


def test_only_a_definitively_failed_bill_is_reissued_once(
    store: LedgerStore, make_payout: PayoutFactory, make_params: ParamsFactory
) -> None:
    store.add_payout(make_payout("oA", 300))
    payout_id = _claim_one(store)
    new_params = make_params("oA", 300)
    assert store.transition(payout_id, P.SENDING, P.FAILED, err_code="NO_AUTH")
    with pytest.raises(ReissueError, match="definitive"):
        store.reissue(payout_id, new_params)
    store.add_payout(make_payout("oA", 300, key="test:oA:dead"))
    payout_id = _claim_one(store)
    assert store.transition(payout_id, P.SENDING, P.FAILED, err_code="SEND_FAILED", bill_dead=True)
    with pytest.raises(ReissueError, match="re_openid"):
        store.reissue(payout_id, make_params("oB", 300))
    second = store.reissue(payout_id, new_params)
    assert (second.generation, second.previous_payout_id, second.state) == (1, payout_id, P.PLANNED)
    assert second.mch_billno != store.get_payout(payout_id).mch_billno
    with pytest.raises(ReissueError):
        store.reissue(payout_id, make_params("oA", 300))
    latest = store.find_payout("test:oA:dead")
    assert latest is not None
    assert latest.id == second.id


def test_cancelling_a_campaign_cancels_only_unsent_payouts(
    store: LedgerStore, make_payout: PayoutFactory, running_campaign: RunningCampaign
) -> None:
    campaign = running_campaign()
    store.add_payouts([make_payout(f"o{i}", campaign_id=campaign) for i in range(3)])
    in_flight = _claim_one(store)
    assert store.cancel_campaign(campaign) == 2
    assert store.get_campaign(campaign).state is CampaignState.CANCELLED
    assert store.get_payout(in_flight).state is P.SENDING
    totals = store.totals_by_state(campaign)
    assert totals[P.CANCELLED] == StateTotal(2, 200)
    cancelled = store.find_payouts([P.CANCELLED], campaign_id=campaign)
    assert [e.kind for e in store.events(cancelled[0].id)] == ["cancel"]
    with pytest.raises(IllegalTransitionError):
        store.cancel_campaign(campaign)


def test_campaign_state_is_compare_and_set(
    store: LedgerStore, running_campaign: RunningCampaign
) -> None:
    campaign = running_campaign()
    assert store.set_campaign_state(
        campaign, CampaignState.RUNNING, CampaignState.PAUSED, pause_reason="NOTENOUGH"
    )
    assert store.get_campaign(campaign).pause_reason == "NOTENOUGH"
    assert not store.set_campaign_state(campaign, CampaignState.RUNNING, CampaignState.PAUSED)
    assert store.set_campaign_state(campaign, CampaignState.PAUSED, CampaignState.RUNNING)
    assert store.get_campaign(campaign).pause_reason is None
    with pytest.raises(IllegalTransitionError):
        store.set_campaign_state(campaign, CampaignState.RUNNING, CampaignState.DRAFT)
    with pytest.raises(ValueError, match="already exists"):
        store.create_campaign(NewCampaign("campaign 1", "acme", MCH_ID, SendApi.SENDREDPACK))
    with pytest.raises(LedgerLookupError):
        store.get_campaign(10_000)


# -- reports -----------------------------------------------------------------------------


def test_totals_and_problems_are_aggregated_per_state(
    store: LedgerStore, make_payout: PayoutFactory, running_campaign: RunningCampaign
) -> None:
    campaign = running_campaign(budget_fen=10_000)
    store.add_payouts([make_payout(f"o{i}", 100 * (i + 1), campaign_id=campaign) for i in range(4)])
    ids = [p.id for p in store.claim(MCH_ID, limit=4).claimed]
    store.transition(ids[0], P.SENDING, P.SENT, send_listid="1")
    store.transition(ids[1], P.SENDING, P.FAILED, err_code="NO_AUTH")
    store.transition(ids[2], P.SENDING, P.FAILED, err_code="NO_AUTH")
    totals = store.totals_by_state(campaign)
    assert totals[P.SENT] == StateTotal(1, 100)
    assert totals[P.FAILED] == StateTotal(2, 500)
    assert totals[P.SENDING] == StateTotal(1, 400)
    assert totals[P.PLANNED] == StateTotal(0, 0)
    committed = sum(totals[state].amount_fen for state in COMMITTING)
    assert store.get_campaign(campaign).committed_fen == committed == 500
    [problem] = store.problems(campaign)
    assert (problem.state, problem.err_code, problem.count, problem.amount_fen) == (
        P.FAILED,
        "NO_AUTH",
        2,
        500,
    )


def test_export_streams_every_payout_in_order_as_csv(
    store: LedgerStore, make_payout: PayoutFactory, running_campaign: RunningCampaign
) -> None:
    campaign = running_campaign()
    store.add_payouts([make_payout(f"o{i}", 150, campaign_id=campaign) for i in range(5)])
    first = _claim_one(store)
    store.transition(first, P.SENDING, P.SENT, send_listid="1000041701")
    out = io.StringIO()
    writer = csv.DictWriter(out, EXPORT_FIELDS)
    writer.writeheader()
    writer.writerows(export_rows(store, campaign, batch_size=2))
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [row["openid"] for row in rows] == [f"o{i}" for i in range(5)]
    assert {row["amount"] for row in rows} == {"1.50"}
    assert (rows[0]["state"], rows[0]["send_listid"]) == ("SENT", "1000041701")
    assert rows[0]["sent_at"] == "2024-03-15 10:00:00+08:00"  # Beijing time, with its offset
    assert rows[1]["state"] == "PLANNED"


def test_a_live_lease_of_a_process_that_is_gone_is_taken_over_at_once(
    store: LedgerStore, make_payout: PayoutFactory, clock: FrozenClock
) -> None:
    store.add_payout(make_payout("oA"))
    store.add_payout(make_payout("oB"))
    first, second = store.claim(MCH_ID, limit=2, lease_seconds=600).claimed
    assert first.lease_holder == this_holder()
    # The first was claimed by a process of this host that has ended (kill -9, a second
    # Ctrl-C); the second by a process elsewhere, which may well be alive.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    gone = this_holder().rpartition(":")[0] + ":" + dead
    with store.engine.begin() as conn:
        conn.execute(update(payouts).where(payouts.c.id == first.id).values(lease_holder=gone))
        conn.execute(
            update(payouts).where(payouts.c.id == second.id).values(lease_holder="elsewhere:1")
        )
    assert store.claim_stale(MCH_ID) == []  # not within a second of its send
    clock.advance(1)
    [taken] = store.claim_stale(MCH_ID)
    assert (taken.id, taken.state, taken.lease_holder) == (first.id, P.UNKNOWN, this_holder())
    assert store.claim_stale(MCH_ID) == []  # the other's lease runs for 10 minutes
