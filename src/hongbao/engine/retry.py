"""Paying those a campaign could not pay: a new bill number for each payout whose money never
left, exactly once, linked to the old one (`hongbao campaign retry`).

A FAILED payout (FATAL_ERROR from a bill number used elsewhere, a refusal, a daily limit under
the FAIL policy…) or a SKIPPED one is settled: nothing sends it again. `retry_payouts` records,
for each whose record proves its money never left (`hongbao.engine.outcomes.never_issued`), a
new payout of the same intent — same receiver, amount and texts, a new bill number from the
ledger's serials — linked to it (`previous_payout_id`, the next `generation`). The ledger lets a
payout be replaced once: retrying twice, or from two processes at once, replaces each payout
once. A payout whose outcome is UNKNOWN is never retried (it may have paid): gethbinfo resolves
it.

The new payouts are PLANNED in the campaign's scope, so `hongbao campaign run ID` sends them
through the one dispatch core, whose claims charge the campaign budget and the per-user daily
caps as for any other payout of the campaign. A COMPLETED campaign is reopened for them.

>>> report = retry_payouts(store, campaign.id, err_code="FATAL_ERROR")  # doctest: +SKIP
>>> report.retried, report.unsafe
(50, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

from hongbao.api import BaseClient
from hongbao.clock import Clock, SystemClock
from hongbao.engine.campaign import CampaignError
from hongbao.engine.outcomes import never_issued
from hongbao.engine.payout import new_bill_params
from hongbao.ledger import CampaignState, LedgerStore, PayoutState, ReissueError
from hongbao.ledger.states import OPEN_STATES

__all__ = ["RETRYABLE_STATES", "RetryReport", "retry_payouts"]

C = CampaignState

RETRYABLE_STATES = (PayoutState.FAILED, PayoutState.SKIPPED)
"""The states `--state` may name: settled without the money leaving (when `never_issued`)."""

_PAGE = 1000


@dataclass(slots=True)
class RetryReport:
    """What a retry recorded."""

    campaign_id: int
    state: PayoutState
    err_code: str | None
    retried: int = 0
    """New payouts recorded, each with a new bill number."""
    retried_fen: int = 0
    already: int = 0
    """Payouts another retry replaced while this one ran."""
    unsafe: int = 0
    """Payouts left alone: their record does not prove that the money never left."""
    budget_left_fen: int | None = None
    """What the campaign's budget still allows (None: no budget); retries past it are skipped."""
    reopened: bool = False
    """The campaign was COMPLETED and runs again for its new payouts."""

    @property
    def over_budget(self) -> bool:
        """True when the new payouts together cost more than the budget still allows."""
        return self.budget_left_fen is not None and self.retried_fen > self.budget_left_fen


def retry_payouts(
    store: LedgerStore,
    campaign_id: int,
    *,
    state: PayoutState = PayoutState.FAILED,
    err_code: str | None = None,
    clock: Clock | None = None,
    builder: BaseClient | None = None,
) -> RetryReport:
    """Record a new payout, with a new bill number, for each of the campaign's payouts in
    `state` (and with `err_code`) that was never issued and never replaced; nothing is sent.

    Raises `CampaignError` for a state other than FAILED or SKIPPED, or a cancelled campaign.
    `builder` (the merchant's client) makes a WeCom packet's signature under its new bill.
    """
    if state not in RETRYABLE_STATES:
        raise CampaignError(
            f"--state {state}: only FAILED or SKIPPED payouts can be retried (an UNKNOWN one "
            "may have paid: `hongbao track` resolves it)",
            field="state",
        )
    now = (clock or SystemClock()).now()
    campaign = store.get_campaign(campaign_id)
    if campaign.state is C.CANCELLED:
        raise CampaignError(f"campaign {campaign_id} is CANCELLED: nothing of it is sent again")
    report = RetryReport(campaign_id, state, err_code)
    after = 0
    while page := store.unreplaced(campaign_id, state, err_code=err_code, after_id=after):
        after = page[-1].id
        safe = [p for p in page if never_issued(p.state, p.err_code, bill_dead=p.bill_dead)]
        report.unsafe += len(page) - len(safe)
        if not safe:
            continue
        bills = store.reserve_bill_numbers(campaign.mch_id, now, len(safe))
        for payout, bill in zip(safe, bills, strict=False):
            try:
                store.reissue(payout.id, new_bill_params(payout, bill, builder), retry=True)
            except ReissueError:
                report.already += 1
                continue
            report.retried += 1
            report.retried_fen += payout.total_amount
        if len(bills) < len(safe):
            break  # the day's bill numbers ran out: retry again tomorrow for the rest
    campaign = store.get_campaign(campaign_id)
    if campaign.budget_fen is not None:
        report.budget_left_fen = max(0, campaign.budget_fen - campaign.committed_fen)
    if campaign.state is C.COMPLETED:
        totals = store.totals_by_state(campaign_id)
        if any(totals[open_state].count for open_state in OPEN_STATES):
            report.reopened = store.set_campaign_state(campaign_id, C.COMPLETED, C.RUNNING)
    return report
