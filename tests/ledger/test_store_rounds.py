"""Many payouts per transaction: `transition_many`, `transition_and_claim`, and batched claims.

The dispatcher's commit rounds rest on these: each change in a batch must be the same
compare-and-set, with the same event and the same give-back of budget and counters, as when
it is committed alone; a claim of many payouts must refuse exactly the ones a cap or the budget
refuses, whichever order they come in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest

from hongbao.clock import FrozenClock
from hongbao.ledger import (
    ClaimRequest,
    DailyCaps,
    EventInfo,
    IllegalTransitionError,
    LedgerStore,
    PayoutState,
    StateTotal,
    Transition,
)
from tests.ledger.conftest import MCH_ID, PayoutFactory
from tests.ledgerkit import daily_usage

P = PayoutState
RunningCampaign = Callable[..., int]
DAY = date(2024, 3, 15)


def _claimed(store: LedgerStore, limit: int = 10) -> list[int]:
    return [p.id for p in store.claim(MCH_ID, limit=limit).claimed]


def test_each_change_of_a_batch_is_its_own_compare_and_set_with_its_event(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    store.add_payouts([make_payout(f"o{i}") for i in range(3)])
    first, second, third = _claimed(store)
    # Another worker already moved the third one.
    assert store.transition(third, P.SENDING, P.UNKNOWN, err_code="SYSTEMERROR")

    moved = store.transition_many(
        [
            Transition(first, P.SENDING, P.SENT, EventInfo(kind="send", detail="SUCCESS"),
                       {"send_listid": "1000041701"}),
            Transition(second, P.SENDING, P.FAILED, fields={"err_code": "NO_AUTH"}),
            Transition(third, P.SENDING, P.SENT, fields={"send_listid": "1000041702"}),
        ]
    )  # fmt: skip

    assert moved == [True, True, False]
    assert store.get_payout(first).send_listid == "1000041701"
    assert store.get_payout(second).state is P.FAILED
    assert store.get_payout(third).state is P.UNKNOWN  # the lost change wrote nothing
    assert [(e.kind, e.to_state, e.detail) for e in store.events(first)][-1] == (
        "send",
        P.SENT,
        "SUCCESS",
    )
    assert [e.to_state for e in store.events(third)] == [P.SENDING, P.UNKNOWN]


def test_two_moves_of_one_payout_in_one_batch_apply_in_order(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    store.add_payout(make_payout("oA"))
    [payout] = _claimed(store)

    moved = store.transition_many(
        [
            Transition(payout, P.SENDING, P.UNKNOWN, fields={"err_code": "SYSTEMERROR"}),
            Transition(payout, P.UNKNOWN, P.SENT, fields={"send_listid": "1000041701"}),
            Transition(payout, P.SENDING, P.FAILED),  # stale by then
        ]
    )

    assert moved == [True, True, False]
    assert store.get_payout(payout).state is P.SENT
    assert [e.to_state for e in store.events(payout)] == [P.SENDING, P.UNKNOWN, P.SENT]


def test_failures_in_a_batch_give_back_budget_and_counters(
    store: LedgerStore, make_payout: PayoutFactory, running_campaign: RunningCampaign
) -> None:
    campaign = running_campaign(budget_fen=1_000)
    store.add_payouts([make_payout(f"o{i}", 100, campaign_id=campaign) for i in range(4)])
    ids = _claimed(store)
    assert store.get_campaign(campaign).committed_fen == 400

    store.transition_many(
        [
            Transition(ids[0], P.SENDING, P.SENT, fields={"send_listid": "1"}),
            Transition(ids[1], P.SENDING, P.FAILED, fields={"err_code": "NO_AUTH"}),
            Transition(ids[2], P.SENDING, P.DEFERRED, fields={"err_code": "NOTENOUGH"}),
            Transition(ids[3], P.SENDING, P.UNKNOWN, fields={"err_code": "SYSTEMERROR"}),
        ]
    )

    # SENT and UNKNOWN (maybe sent) keep their money committed; FAILED and DEFERRED give it back.
    assert store.get_campaign(campaign).committed_fen == 200
    assert daily_usage(store, MCH_ID, "", DAY) == StateTotal(2, 200)
    assert daily_usage(store, MCH_ID, "o1", DAY) == StateTotal(0, 0)
    assert store.get_payout(ids[2]).counted_day is None


def test_an_illegal_change_refuses_the_whole_batch_before_writing(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    store.add_payouts([make_payout("oA"), make_payout("oB")])
    first, second = _claimed(store)
    with pytest.raises(IllegalTransitionError):
        store.transition_many(
            [
                Transition(first, P.SENDING, P.SENT, fields={"send_listid": "1"}),
                Transition(second, P.SENT, P.SENDING),
            ]
        )
    assert {store.get_payout(first).state, store.get_payout(second).state} == {P.SENDING}


def test_a_round_commits_outcomes_and_claims_the_next_payouts_together(
    store: LedgerStore, make_payout: PayoutFactory, clock: FrozenClock
) -> None:
    store.add_payouts([make_payout(f"o{i}") for i in range(5)])
    first, second = _claimed(store, limit=2)

    moved, claimed = store.transition_and_claim(
        [
            Transition(first, P.SENDING, P.SENT, fields={"send_listid": "1"}),
            Transition(second, P.SENDING, P.SENT, fields={"send_listid": "2"}),
        ],
        ClaimRequest(mch_id=MCH_ID, limit=2, lease_seconds=30),
    )

    assert moved == [True, True]
    assert [p.re_openid for p in claimed.claimed] == ["o2", "o3"]
    for payout in claimed.claimed:
        stored = store.get_payout(payout.id)
        assert (stored.state, stored.lease_until) == (
            P.SENDING,
            clock.now() + timedelta(seconds=30),
        )
    assert store.get_payout(first).state is P.SENT


def test_a_batch_claim_refuses_only_the_payouts_over_a_cap(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    caps = DailyCaps(per_user_count=2, per_user_amount_fen=None)
    store.add_payouts(
        [make_payout("oBusy", key=f"busy{i}") for i in range(3)]
        + [make_payout("oCalm"), make_payout("oQuiet")]
    )

    result = store.claim(MCH_ID, limit=10, caps=caps)

    assert sorted(p.re_openid for p in result.claimed) == ["oBusy", "oBusy", "oCalm", "oQuiet"]
    assert [store.get_payout(i).re_openid for i in result.deferred] == ["oBusy"]
    # Nothing of the refused one stays counted.
    assert daily_usage(store, MCH_ID, "oBusy", DAY) == StateTotal(2, 200)
    assert daily_usage(store, MCH_ID, "", DAY) == StateTotal(4, 400)


def test_due_deferred_payouts_take_their_turn_by_id_among_planned_ones(
    store: LedgerStore, make_payout: PayoutFactory, clock: FrozenClock
) -> None:
    store.add_payouts([make_payout(f"o{i}") for i in range(4)])
    [early] = _claimed(store, limit=1)
    assert store.transition(early, P.SENDING, P.DEFERRED, next_attempt_at=clock.now())

    # The deferred o0 comes first again, then the planned ones in their order.
    assert [store.get_payout(i).re_openid for i in _claimed(store, limit=2)] == ["o0", "o1"]
