"""After sending: follow issued packets until opened or refunded, and check the ledger against
WeChat's own records.

* `track` asks gethbinfo about SENT payouts whose next check is due, at the merchant's query
  rate, and records what changed: RECEIVED when the user opened it, REFUNDED when it went
  unclaimed for 24 h and the money came back. `follow=True` keeps going until none is SENT.
* `reconcile` asks gethbinfo about every payout that was ever claimed (a payout never claimed
  never left) and lists every disagreement between the ledger and WeChat: money out that the
  ledger does not count, money counted that WeChat never paid, different amounts, payouts not
  resolved yet, and ledger states WeChat contradicts. gethbinfo only finds bill numbers it is
  asked about, so a packet sent under a bill number the ledger never minted cannot show up.

"gethbinfo" here means the query of the payout's own API: a WeCom packet is asked about with
queryworkwxredpack (docs/protocol.md §15.5), which reports the same statuses.

>>> summary = asyncio.run(track(store, profile, campaign_id=7))  # doctest: +SKIP
>>> report = asyncio.run(reconcile(store, profile, campaign_id=7))  # doctest: +SKIP
>>> report.mismatches
[]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from hongbao.api import AsyncClient, RedpackInfo, RedpackStatus
from hongbao.clock import Clock, SystemClock
from hongbao.engine.limiter import Pacer
from hongbao.engine.outcomes import query_exchange
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.engine.states import Policy, QueryStatus, decide_query
from hongbao.engine.status import describe_tracking, report_every
from hongbao.errors import FrequencyLimitError, HongbaoError
from hongbao.ledger import LedgerStore, Payout, PayoutState, Scope, StateTotal
from hongbao.printable import printable

__all__ = [
    "Mismatch",
    "MismatchKind",
    "ReconcileReport",
    "TrackSummary",
    "reconcile",
    "track",
]

logger = logging.getLogger("hongbao.engine")

P = PayoutState
Sleep = Callable[[float], Awaitable[None]]

_ISSUED = frozenset({P.SENT, P.RECEIVED, P.REFUNDED})
_OPEN = frozenset({P.SENDING, P.UNKNOWN})
_NEVER_ISSUED = frozenset({P.PLANNED, P.DEFERRED, P.FAILED, P.CANCELLED, P.SKIPPED})
_PAID = frozenset(
    {RedpackStatus.SENT, RedpackStatus.RECEIVED, RedpackStatus.RFUND_ING, RedpackStatus.REFUND}
)
# What the ledger's issued states may meet at WeChat without contradiction.
_AGREES = {
    P.SENT: frozenset({RedpackStatus.SENT}),
    P.RECEIVED: frozenset({RedpackStatus.RECEIVED}),
    P.REFUNDED: frozenset({RedpackStatus.REFUND}),
}
_PAGE = 200
_QUERY_ATTEMPTS = 3


@asynccontextmanager
async def _client_for(
    profile: MerchantProfile, client: AsyncClient | None, clock: Clock
) -> AsyncIterator[AsyncClient]:
    if client is not None:
        yield client
        return
    async with AsyncClient(profile.merchant, clock=clock) as owned:
        yield owned


class _Asker:
    """gethbinfo for payouts: paced, at most `concurrency` at once, FREQ_LIMIT backs off."""

    def __init__(
        self,
        client: AsyncClient,
        profile: MerchantProfile,
        back_off: float,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self.client = client
        self.pacer = Pacer(profile.query_rate_per_minute, clock=clock, sleep=sleep)
        self.back_off = back_off
        self.slots = asyncio.Semaphore(profile.concurrency)
        self.clock = clock
        self.limited_until: datetime | None = None
        """gethbinfo answered FREQ_LIMIT: queries wait until then."""

    async def ask(self, payout: Payout, attempts: int = 1) -> RedpackInfo | HongbaoError:
        """WeChat's record of the payout's bill, or the error of the last of `attempts`."""
        answer: RedpackInfo | HongbaoError = HongbaoError("not asked")
        async with self.slots:
            for _ in range(attempts):
                await self.pacer.acquire()
                try:
                    return await self.client.query_for(
                        payout.api.value, payout.mch_billno, pace=self.pacer.acquire
                    )
                except HongbaoError as exc:
                    answer = exc
                    if isinstance(exc, FrequencyLimitError):
                        self.pacer.push_back(self.back_off)
                        self.limited_until = self.clock.now() + timedelta(seconds=self.back_off)
        return answer


@dataclass(slots=True)
class TrackSummary:
    """What one `track` call checked and what changed."""

    checked: int = 0
    received: int = 0
    refunded: int = 0
    still_sent: int = 0
    errors: int = 0
    """Queries that failed (the payout is asked again later)."""
    anomalies: list[str] = field(default_factory=list)
    """Answers the lifecycle does not allow (kept SENT, for a human to look at)."""


async def track(
    store: LedgerStore,
    profile: MerchantProfile,
    *,
    campaign_id: int | None = None,
    client: AsyncClient | None = None,
    settings: RunSettings | None = None,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
    follow: bool = False,
    due_only: bool = True,
    progress: Callable[[TrackSummary], None] | None = None,
    on_status: Callable[[str | None], None] | None = None,
) -> TrackSummary:
    """Ask gethbinfo about SENT payouts and record RECEIVED / REFUNDED as WeChat reports them.

    One pass over the payouts due for a check (all SENT ones with `due_only=False`); with
    `follow`, passes repeat — sleeping until the next check is due — until none is SENT.
    Every `status_every` seconds `on_status` hears what it waits for (`describe_tracking`).

    >>> summary = asyncio.run(track(store, profile, campaign_id=7))  # doctest: +SKIP
    >>> summary.received, summary.refunded
    """
    settings = settings or RunSettings()
    clock = clock or SystemClock()
    policy = profile.policy(settings.policy)
    summary = TrackSummary()
    async with _client_for(profile, client, clock) as api:
        asker = _Asker(api, profile, policy.frequency_back_off.total_seconds(), clock, sleep)
        scope = Scope(profile.mch_id, campaign_id=campaign_id)

        async def status() -> str | None:
            groups = await asyncio.to_thread(store.open_groups, scope, [P.SENT])
            return describe_tracking(groups, clock.now(), limited_until=asker.limited_until)

        reporter = None
        if on_status is not None:
            reporter = asyncio.create_task(report_every(settings.status_every, status, on_status))
        try:
            while True:
                after = 0
                while page := await asyncio.to_thread(
                    store.find_payouts,
                    [P.SENT],
                    mch_id=profile.mch_id,
                    campaign_id=campaign_id,
                    due=due_only,
                    after_id=after,
                    limit=_PAGE,
                ):
                    after = page[-1].id
                    answers = await asyncio.gather(*(asker.ask(payout) for payout in page))
                    for payout, answer in zip(page, answers, strict=True):
                        await _record_track(store, payout, answer, clock, policy, summary)
                        if progress is not None:
                            progress(summary)
                if not follow:
                    return summary
                left = await asyncio.to_thread(
                    store.find_payouts,
                    [P.SENT],
                    mch_id=profile.mch_id,
                    campaign_id=campaign_id,
                    limit=1,
                )
                if not left:
                    return summary
                await sleep(settings.poll_seconds)
        finally:
            if reporter is not None:
                reporter.cancel()


async def _record_track(
    store: LedgerStore,
    payout: Payout,
    answer: RedpackInfo | HongbaoError,
    clock: Clock,
    policy: Policy,
    summary: TrackSummary,
) -> None:
    outcome, event = query_exchange(answer, kind="track", mch_billno=payout.mch_billno)
    decision = decide_query(P.SENT, outcome, clock.now(), policy)
    summary.checked += 1
    moved = await asyncio.to_thread(
        store.transition, payout.id, P.SENT, decision.state, event=event, **decision.fields
    )
    if outcome.status is QueryStatus.ERROR:
        summary.errors += 1
    if decision.anomaly:
        summary.anomalies.append(
            f"payout {payout.id} (bill {payout.mch_billno}): {decision.anomaly}"
        )
        logger.warning("payout %s: %s", payout.id, printable(decision.anomaly))
    if not moved:
        return
    if decision.state is P.RECEIVED:
        summary.received += 1
    elif decision.state is P.REFUNDED:
        summary.refunded += 1
    else:
        summary.still_sent += 1


class MismatchKind(StrEnum):
    """How the ledger and WeChat disagree about one payout."""

    PAID_NOT_RECORDED = "paid_not_recorded"
    """WeChat issued it, the ledger says it never was (FAILED, CANCELLED, SKIPPED, unsent)."""
    RECORDED_NOT_PAID = "recorded_not_paid"
    """The ledger counts it as issued, WeChat has it FAILED, SENDING or no record at all."""
    AMOUNT_DIFFERS = "amount_differs"
    """Both say issued, with different amounts."""
    STATE_DIFFERS = "state_differs"
    """Both say issued, but WeChat contradicts the ledger's later state (RECEIVED, REFUNDED)."""
    UNRESOLVED = "unresolved"
    """The ledger does not know yet (SENDING, UNKNOWN): run the campaign to resolve it."""
    UNCHECKED = "unchecked"
    """gethbinfo did not answer: nothing could be compared."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One payout the ledger and WeChat disagree about."""

    kind: MismatchKind
    payout_id: int
    mch_billno: str
    openid: str
    ledger_state: PayoutState
    ledger_amount: int
    wechat_status: str
    """WeChat's record status, NOT_FOUND, or ERROR (with `detail`)."""
    wechat_amount: int | None
    detail: str = ""


@dataclass(slots=True)
class ReconcileReport:
    """The ledger compared with WeChat, payout by payout."""

    checked: int = 0
    """Payouts asked about."""
    never_claimed: int = 0
    """Payouts never claimed: no request for them ever left, so they were not asked about."""
    matched: int = 0
    behind: int = 0
    """Ledger SENT while WeChat already says received or refunded: `track` catches up."""
    ledger_issued: StateTotal = field(default_factory=lambda: StateTotal(0, 0))
    """What the ledger counts as issued (SENT, RECEIVED, REFUNDED), among those checked."""
    wechat_issued: StateTotal = field(default_factory=lambda: StateTotal(0, 0))
    """What WeChat reports as issued, among those checked."""
    mismatches: list[Mismatch] = field(default_factory=list)


async def reconcile(
    store: LedgerStore,
    profile: MerchantProfile,
    *,
    campaign_id: int | None = None,
    client: AsyncClient | None = None,
    settings: RunSettings | None = None,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
    progress: Callable[[ReconcileReport], None] | None = None,
) -> ReconcileReport:
    """Compare every claimed payout of a campaign (or of the merchant) with gethbinfo.

    Read-only: the ledger is not changed (`track` and `run_campaign` do that).

    >>> report = asyncio.run(reconcile(store, profile, campaign_id=7))  # doctest: +SKIP
    >>> [(m.kind, m.mch_billno) for m in report.mismatches]
    """
    settings = settings or RunSettings()
    clock = clock or SystemClock()
    back_off = profile.policy(settings.policy).frequency_back_off.total_seconds()
    report = ReconcileReport()
    async with _client_for(profile, client, clock) as api:
        asker = _Asker(api, profile, back_off, clock, sleep)
        after = 0
        while page := await asyncio.to_thread(
            store.find_payouts,
            list(PayoutState),
            mch_id=profile.mch_id,
            campaign_id=campaign_id,
            after_id=after,
            limit=_PAGE,
        ):
            after = page[-1].id
            asked = [payout for payout in page if payout.attempts > 0]
            report.never_claimed += len(page) - len(asked)
            answers = await asyncio.gather(
                *(asker.ask(payout, _QUERY_ATTEMPTS) for payout in asked)
            )
            for payout, answer in zip(asked, answers, strict=True):
                _compare(report, payout, answer)
            if progress is not None:
                progress(report)
    return report


def _compare(report: ReconcileReport, payout: Payout, answer: RedpackInfo | HongbaoError) -> None:
    report.checked += 1
    state, amount = payout.state, payout.total_amount
    if state in _ISSUED:
        report.ledger_issued = _plus(report.ledger_issued, amount)

    def mismatch(kind: MismatchKind, status: str, paid: int | None, detail: str = "") -> None:
        report.mismatches.append(
            Mismatch(
                kind,
                payout.id,
                payout.mch_billno,
                payout.re_openid,
                state,
                amount,
                status,
                paid,
                detail,
            )
        )

    if isinstance(answer, HongbaoError):
        mismatch(MismatchKind.UNCHECKED, "ERROR", None, str(answer))
        return
    status = answer.status if answer.found else None
    shown = status.value if status is not None else "NOT_FOUND"
    paid = status in _PAID
    if paid:
        report.wechat_issued = _plus(report.wechat_issued, answer.total_amount or 0)
    if state in _OPEN:
        mismatch(MismatchKind.UNRESOLVED, shown, answer.total_amount)
    elif state in _NEVER_ISSUED:
        if paid:
            mismatch(MismatchKind.PAID_NOT_RECORDED, shown, answer.total_amount)
        else:
            report.matched += 1
    elif not paid:
        mismatch(MismatchKind.RECORDED_NOT_PAID, shown, answer.total_amount, answer.reason or "")
    elif answer.total_amount != amount:
        mismatch(MismatchKind.AMOUNT_DIFFERS, shown, answer.total_amount)
    elif status in _AGREES[state]:
        report.matched += 1
    elif state is P.SENT:
        report.behind += 1
    else:
        mismatch(MismatchKind.STATE_DIFFERS, shown, answer.total_amount)


def _plus(total: StateTotal, amount: int) -> StateTotal:
    return StateTotal(total.count + 1, total.amount_fen + amount)
