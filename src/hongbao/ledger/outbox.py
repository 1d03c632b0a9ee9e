"""The webhook outbox: which state changes are reported, as rows appended with the change itself.

Every payout transition is audited in `payout_events`; the ones a merchant's backend cares
about are also appended to `webhook_outbox` by the same statement batch, in the same
transaction (`hongbao.ledger.statements.insert_events`), so an event exists exactly when its
state change was committed: never one for a state the payout never had, never a change without
its event. Campaigns report their completion and pauses the same way. The relay
(`hongbao.service.webhook_relay`) delivers them; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from hongbao.ledger.states import CampaignState, PayoutState

__all__ = [
    "CAMPAIGN_EVENTS",
    "EVENT_TYPES",
    "PAYOUT_EVENTS",
    "campaign_outbox_row",
    "payout_outbox_rows",
]

P = PayoutState
PAYOUT_EVENTS: Final[Mapping[PayoutState, str]] = {
    P.SENT: "payout.sent",
    P.FAILED: "payout.failed",
    P.UNKNOWN: "payout.unknown",
    P.RECEIVED: "payout.received",
    P.REFUNDED: "payout.refunded",
}
"""The payout state a transition reaches → the event it reports."""

CAMPAIGN_EVENTS: Final[Mapping[CampaignState, str]] = {
    CampaignState.COMPLETED: "campaign.completed",
    CampaignState.PAUSED: "campaign.paused",
}
"""The campaign state a change reaches → the event it reports."""

EVENT_TYPES: Final[tuple[str, ...]] = (*PAYOUT_EVENTS.values(), *CAMPAIGN_EVENTS.values())
"""Every webhook event type, in the order the documentation lists them."""


def payout_outbox_rows(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The outbox rows of the audit `events` (rows of `payout_events`) that change a state into
    a reported one; an event that keeps the state (an attempt, a lease) reports nothing."""
    rows = []
    for event in events:
        to_state = event["to_state"]
        if to_state is None or to_state == event["from_state"]:
            continue
        kind = PAYOUT_EVENTS.get(PayoutState(to_state))
        if kind is not None:
            rows.append(
                {
                    "type": kind,
                    "at": event["at"],
                    "payout_id": event["payout_id"],
                    "campaign_id": None,
                    "state": PayoutState(to_state).value,
                    "err_code": event.get("err_code"),
                    "detail": event.get("detail"),
                }
            )
    return rows


def campaign_outbox_row(
    campaign_id: int, state: CampaignState, at: Any, detail: str | None
) -> dict[str, Any] | None:
    """The outbox row of a campaign reaching `state`, or None when that is not reported."""
    kind = CAMPAIGN_EVENTS.get(state)
    if kind is None:
        return None
    return {
        "type": kind,
        "at": at,
        "payout_id": None,
        "campaign_id": campaign_id,
        "state": state.value,
        "err_code": None,
        "detail": detail,
    }
