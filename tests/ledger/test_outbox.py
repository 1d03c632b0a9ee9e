"""The webhook outbox: an event exactly when its state change commits, never otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from hongbao.ledger import CampaignState, LedgerStore, PayoutState
from hongbao.ledger.outbox import PAYOUT_EVENTS, campaign_outbox_row, payout_outbox_rows
from hongbao.ledger.schema import webhook_outbox
from tests.ledger.conftest import MCH_ID, PayoutFactory

P = PayoutState
AT = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def _event(from_state: P | None, to_state: P | None, **extra: object) -> dict[str, object]:
    return {"payout_id": 7, "at": AT, "from_state": from_state, "to_state": to_state, **extra}


@pytest.mark.parametrize("to_state", list(PayoutState))
def test_a_change_into_a_reported_state_is_one_event(to_state: PayoutState) -> None:
    before = P.SENDING if to_state is not P.SENDING else P.PLANNED
    rows = payout_outbox_rows([_event(before, to_state, err_code="X", detail="d")])

    if to_state in PAYOUT_EVENTS:
        assert rows == [
            {
                "type": PAYOUT_EVENTS[to_state],
                "at": AT,
                "payout_id": 7,
                "campaign_id": None,
                "state": to_state.value,
                "err_code": "X",
                "detail": "d",
            }
        ]
    else:
        assert rows == []


def test_an_event_that_keeps_the_state_or_has_none_reports_nothing() -> None:
    assert payout_outbox_rows([_event(P.UNKNOWN, P.UNKNOWN), _event(None, None)]) == []


def test_campaigns_report_completion_and_pauses_only() -> None:
    reported = {
        state: campaign_outbox_row(3, state, AT, "why") for state in CampaignState
    }
    assert {state for state, row in reported.items() if row is not None} == {
        CampaignState.COMPLETED,
        CampaignState.PAUSED,
    }
    assert reported[CampaignState.PAUSED] == {
        "type": "campaign.paused",
        "at": AT,
        "payout_id": None,
        "campaign_id": 3,
        "state": "PAUSED",
        "err_code": None,
        "detail": "why",
    }


def test_a_transition_writes_its_event_in_its_own_transaction(
    store: LedgerStore, make_payout: PayoutFactory
) -> None:
    store.add_payout(make_payout("oOutbox"))
    [claimed] = store.claim(MCH_ID, limit=1).claimed
    store.transition(claimed.id, P.SENDING, P.SENT)
    # A transition that loses its compare-and-set writes neither the change nor an event.
    assert not store.transition(claimed.id, P.SENDING, P.FAILED)

    with store.engine.connect() as conn:
        rows = conn.execute(select(webhook_outbox.c.type, webhook_outbox.c.payout_id)).all()
    assert [tuple(row) for row in rows] == [("payout.sent", claimed.id)]
