"""The dashboard's SQL aggregates (`hongbao.ledger.views`) against what the ledger holds."""

from __future__ import annotations

from datetime import timedelta

from hongbao.ledger import PayoutState
from hongbao.ledger.views import (
    outcome_counts,
    search_payouts,
    send_counts,
    totals_by_campaign,
)
from tests.web.webkit import Filled

P = PayoutState


def test_totals_by_campaign_match_the_stores_totals(filled: Filled) -> None:
    store, cid = filled.bench.store, filled.campaign.id
    expected = {state: t for state, t in store.totals_by_state(cid).items() if t.count}
    assert totals_by_campaign(store.engine) == {cid: expected}


def test_send_calls_are_counted_per_minute_from_the_audit_trail(filled: Filled) -> None:
    store, cid = filled.bench.store, filled.campaign.id
    sends = [
        event.at
        for payout in store.find_payouts(list(P), campaign_id=cid)
        for event in store.events(payout.id)
        if event.kind == "send"
    ]

    buckets = send_counts(store.engine, cid, bucket_seconds=60)

    assert sum(b.count for b in buckets) == len(sends) == 4  # 3 sent, 1 failed
    for bucket in buckets:
        assert bucket.start.second == 0
        inside = [at for at in sends if bucket.start <= at < bucket.start + timedelta(minutes=1)]
        assert len(inside) == bucket.count


def test_receives_and_refunds_are_counted_per_bucket(filled: Filled) -> None:
    bench, cid = filled.bench, filled.campaign.id
    received_at = filled.received.received_at
    assert received_at is not None
    [other] = bench.store.find_payouts([P.SENT], campaign_id=cid, limit=1)
    bench.clock.advance(3 * 3600)
    bench.store.transition(other.id, P.SENT, P.REFUNDED, refunded_at=bench.clock.now())

    [opened], [refunded] = outcome_counts(bench.store.engine, cid, bucket_seconds=3600)

    assert opened.count == refunded.count == 1
    assert opened.start <= received_at < opened.start + timedelta(hours=1)
    assert refunded.start <= bench.clock.now() < refunded.start + timedelta(hours=1)
    assert refunded.start - opened.start >= timedelta(hours=2)


def test_payouts_are_found_by_openid_or_bill_number_only(filled: Filled) -> None:
    engine, payout = filled.bench.store.engine, filled.failed

    assert [p.id for p in search_payouts(engine, payout.re_openid)] == [payout.id]
    assert [p.id for p in search_payouts(engine, f" {payout.mch_billno} ")] == [payout.id]
    assert search_payouts(engine, payout.mch_billno[:-10] + "9999999999") == []
    assert search_payouts(engine, "") == []
