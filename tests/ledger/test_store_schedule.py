"""The ledger's scheduling queries for dispatchers: what is due when, dead bills, resume."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from hongbao.clock import FrozenClock
from hongbao.ids import mint_bill_no
from hongbao.ledger import LedgerStore, PayoutState
from tests.ledger.conftest import MCH_ID, PayoutFactory

P = PayoutState


def test_next_due_follows_each_open_state(
    store: LedgerStore,
    clock: FrozenClock,
    make_payout: PayoutFactory,
    running_campaign: Callable[..., int],
) -> None:
    cid = running_campaign()
    assert store.next_due(cid) is None  # nothing planned: nothing to wait for

    store.add_payouts([make_payout("oA", campaign_id=cid), make_payout("oB", campaign_id=cid)])
    now = clock.now()
    assert store.next_due(cid) == now  # PLANNED: now

    first, second = store.claim(MCH_ID, limit=2, lease_seconds=30).claimed
    assert store.next_due(cid) == now + timedelta(seconds=30)  # SENDING: when the lease ends

    store.transition(first.id, P.SENDING, P.DEFERRED, next_attempt_at=now + timedelta(hours=2))
    store.transition(second.id, P.SENDING, P.UNKNOWN, next_attempt_at=now + timedelta(hours=1))
    assert store.next_due(cid) == now + timedelta(hours=1)  # UNKNOWN: its next attempt

    store.transition(second.id, P.UNKNOWN, P.SENT)
    assert store.next_due(cid) == now + timedelta(hours=2)  # DEFERRED: its next attempt

    clock.advance(7200)
    [again] = store.claim(MCH_ID, lease_seconds=30).claimed
    store.transition(again.id, P.SENDING, P.SENT)
    assert store.next_due(cid) is None


def test_an_unknown_payout_is_due_at_the_later_of_lease_and_attempt(
    store: LedgerStore,
    clock: FrozenClock,
    make_payout: PayoutFactory,
    running_campaign: Callable[..., int],
) -> None:
    cid = running_campaign()
    store.add_payouts([make_payout("oA", campaign_id=cid)])
    [payout] = store.claim(MCH_ID, lease_seconds=30).claimed
    store.transition(payout.id, P.SENDING, P.UNKNOWN, next_attempt_at=clock.now())
    [leased] = store.claim_stale(MCH_ID, lease_seconds=90)

    assert store.next_due(cid) == leased.lease_until == clock.now() + timedelta(seconds=90)


def test_dead_bills_are_those_failed_for_good_and_not_yet_reissued(
    store: LedgerStore,
    clock: FrozenClock,
    make_payout: PayoutFactory,
    make_params: Callable[..., dict[str, object]],
) -> None:
    store.add_payouts([make_payout("oA"), make_payout("oB"), make_payout("oC")])
    dead, refused, replaced = store.claim(MCH_ID, limit=3, lease_seconds=30).claimed
    store.transition(dead.id, P.SENDING, P.FAILED, bill_dead=True)
    store.transition(refused.id, P.SENDING, P.FAILED, err_code="SENDNUM_LIMIT")
    store.transition(replaced.id, P.SENDING, P.FAILED, bill_dead=True)
    params = {**replaced.params, "mch_billno": mint_bill_no(MCH_ID, clock.now(), 999)}
    successor = store.reissue(replaced.id, params)

    assert [p.id for p in store.dead_bills(mch_id=MCH_ID)] == [dead.id]
    assert store.dead_bills(mch_id="1900000110") == []

    [again] = store.claim(MCH_ID, lease_seconds=30).claimed
    assert again.id == successor.id
    store.transition(again.id, P.SENDING, P.FAILED, bill_dead=True)
    assert [p.id for p in store.dead_bills(mch_id=MCH_ID)] == [dead.id, successor.id]
    assert [p.id for p in store.dead_bills(mch_id=MCH_ID, max_generation=1)] == [dead.id]


def test_make_due_brings_forward_only_what_waits_less_than_the_limit(
    store: LedgerStore,
    clock: FrozenClock,
    make_payout: PayoutFactory,
    running_campaign: Callable[..., int],
) -> None:
    cid = running_campaign()
    store.add_payouts([make_payout(o, campaign_id=cid) for o in ("oA", "oB", "oC")])
    soon, tomorrow, sent = store.claim(MCH_ID, limit=3, lease_seconds=30).claimed
    now = clock.now()
    store.transition(soon.id, P.SENDING, P.DEFERRED, next_attempt_at=now + timedelta(minutes=5))
    store.transition(tomorrow.id, P.SENDING, P.DEFERRED, next_attempt_at=now + timedelta(days=1))
    store.transition(sent.id, P.SENDING, P.SENT)

    assert store.make_due(cid, before=now + timedelta(hours=12)) == 1

    assert store.get_payout(soon.id).next_attempt_at == now
    assert store.get_payout(tomorrow.id).next_attempt_at == now + timedelta(days=1)
    assert [p.id for p in store.claim(MCH_ID, limit=3, lease_seconds=30).claimed] == [soon.id]
