"""The vocabulary of the ledger's state columns, and which changes of state the ledger accepts.

The payout state machine itself (diagram, decisions) is documented in `hongbao.engine.states`;
the names and the table of allowed transitions live here, one layer down, because the ledger
enforces them on every write (a compare-and-set that would make an illegal move is refused) and
the ledger must not import the engine.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CAMPAIGN_TRANSITIONS",
    "CLAIMABLE",
    "COMMITTING",
    "OPEN_STATES",
    "PAYOUT_TRANSITIONS",
    "TERMINAL",
    "CampaignState",
    "PayoutState",
    "is_allowed",
]


class PayoutState(StrEnum):
    """Where one intended red packet stands."""

    PLANNED = "PLANNED"
    """Recorded with its bill number and frozen parameters; nothing sent yet."""
    SENDING = "SENDING"
    """Claimed and committed before the request leaves: the outcome is being decided."""
    SENT = "SENT"
    """WeChat issued it; waiting for the user to open it."""
    RECEIVED = "RECEIVED"
    """The user opened it (fission: every share was received)."""
    REFUNDED = "REFUNDED"
    """Unclaimed within 24 h; the money went back to the merchant."""
    FAILED = "FAILED"
    """WeChat gave a definitive answer that it will not issue this bill (err_code kept)."""
    DEFERRED = "DEFERRED"
    """Not issued for now (limit, balance, rate, transient): the same bill is tried again later."""
    UNKNOWN = "UNKNOWN"
    """Maybe issued: resolved only by gethbinfo or a resend with the same bill number."""
    CANCELLED = "CANCELLED"
    """Never sent: its campaign was cancelled while it was still PLANNED or DEFERRED."""
    SKIPPED = "SKIPPED"
    """Never sent: refused by hongbao itself (over the campaign budget or a daily cap)."""


class CampaignState(StrEnum):
    """Where a campaign stands."""

    DRAFT = "DRAFT"
    PLANNED = "PLANNED"
    RUNNING = "RUNNING"
    INTERRUPTED = "INTERRUPTED"
    """Its run was stopped by hand (Ctrl-C) after the packets in flight resolved; nothing
    sends it until `hongbao campaign run ID` continues it."""
    PAUSED = "PAUSED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"


P = PayoutState

PAYOUT_TRANSITIONS: dict[PayoutState, frozenset[PayoutState]] = {
    P.PLANNED: frozenset({P.SENDING, P.DEFERRED, P.CANCELLED, P.SKIPPED}),
    P.DEFERRED: frozenset({P.SENDING, P.DEFERRED, P.CANCELLED, P.SKIPPED}),
    P.SENDING: frozenset({P.SENT, P.RECEIVED, P.REFUNDED, P.FAILED, P.DEFERRED, P.UNKNOWN}),
    P.UNKNOWN: frozenset({P.SENT, P.RECEIVED, P.REFUNDED, P.FAILED, P.DEFERRED, P.UNKNOWN}),
    P.SENT: frozenset({P.SENT, P.RECEIVED, P.REFUNDED}),
    P.RECEIVED: frozenset(),
    P.REFUNDED: frozenset(),
    P.FAILED: frozenset(),
    P.CANCELLED: frozenset(),
    P.SKIPPED: frozenset(),
}
"""from-state → the states it may move to. A self-loop updates fields (next attempt, tracking)."""

TERMINAL = frozenset(state for state, targets in PAYOUT_TRANSITIONS.items() if not targets)
"""States nothing leaves."""

CLAIMABLE = frozenset({P.PLANNED, P.DEFERRED})
"""States a claim may move to SENDING once due."""

OPEN_STATES = frozenset({P.PLANNED, P.DEFERRED, P.SENDING, P.UNKNOWN})
"""States of a payout whose outcome is not settled yet."""

COMMITTING = frozenset({P.SENDING, P.UNKNOWN, P.SENT, P.RECEIVED, P.REFUNDED})
"""States whose amount counts against the campaign budget and the per-user daily counters:
everything that was, or may have been, issued. Refunded money still counts so that a budget
is a ceiling on what a campaign ever put out, never a figure that grows back."""

C = CampaignState

CAMPAIGN_TRANSITIONS: dict[CampaignState, frozenset[CampaignState]] = {
    C.DRAFT: frozenset({C.PLANNED, C.CANCELLED}),
    C.PLANNED: frozenset({C.RUNNING, C.CANCELLED}),
    C.RUNNING: frozenset({C.PAUSED, C.INTERRUPTED, C.COMPLETED, C.CANCELLED}),
    C.INTERRUPTED: frozenset({C.RUNNING, C.CANCELLED}),
    C.PAUSED: frozenset({C.RUNNING, C.CANCELLED}),
    C.CANCELLED: frozenset(),
    # `hongbao campaign retry` reopens a completed campaign for the new bills it recorded.
    C.COMPLETED: frozenset({C.RUNNING}),
}


def is_allowed(from_state: PayoutState, to_state: PayoutState) -> bool:
    """True when the ledger accepts moving a payout from `from_state` to `to_state`."""
    return to_state in PAYOUT_TRANSITIONS[from_state]
