"""`drive_payout`: the one state machine every dispatcher runs on a payout it holds
(docs/architecture.md §4).

A dispatcher leases payouts from the ledger — `LedgerStore.claim` commits them SENDING before
anything is sent, `LedgerStore.claim_stale` takes over in-flight ones whose lease ran out — and
hands each to `drive_payout`, which takes it one step toward its end:

* **SENDING** (just claimed): send the payout's *frozen* parameters — same bill number, same
  nonce, same bytes as any earlier attempt — and decide with `decide_send`.
* **UNKNOWN** (maybe issued): ask gethbinfo and decide with `decide_query`; when WeChat has no
  record, or a refused one, resend the same frozen parameters (WeChat issues a bill at most once).

Each outcome is one compare-and-set transition committed together with its audit event (the
request and answer, masked) — alone, or with a `GroupCommitter` in one transaction with the
outcomes of other drives. A pause, a back-off or a re-issue happens only *after* that commit,
so a process killed at any instant leaves the ledger in a state the next recovery resolves.
A new bill number is minted only for a bill WeChat reported definitively FAILED, as a new payout
linked to the old one (`LedgerStore.reissue`).

>>> driver = PayoutDriver(store=store, client=client, profile=profile)  # doctest: +SKIP
>>> batch = store.claim(profile.mch_id, limit=1, lease_seconds=profile.lease_seconds)
>>> result = await drive_payout(batch.claimed[0], driver)  # doctest: +SKIP
>>> result.state
<PayoutState.SENT: 'SENT'>
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import ParamSpec, TypeVar

from hongbao.api import AsyncClient, BaseClient, RedpackInfo
from hongbao.clock import Clock, SystemClock
from hongbao.engine.groupcommit import GroupCommitter
from hongbao.engine.limiter import Pacer
from hongbao.engine.outcomes import answer_record, query_exchange, send_outcome, sent_outcome
from hongbao.engine.settings import MerchantProfile
from hongbao.engine.states import Decision, Policy, SendResult, decide_query, decide_send
from hongbao.errors import ConfigurationError, ConnectError, FrequencyLimitError, HongbaoError
from hongbao.eventloop import in_thread
from hongbao.ids import new_nonce
from hongbao.ledger import (
    CampaignState,
    EventInfo,
    IllegalTransitionError,
    LedgerStore,
    Payout,
    PayoutState,
    ReissueError,
    SendApi,
    Transition,
)
from hongbao.ledger.bills import BillSerialsExhaustedError
from hongbao.printable import printable

__all__ = ["DriveResult", "PayoutDriver", "drive_payout", "new_bill_params", "resume_command"]

logger = logging.getLogger("hongbao.engine")

P = PayoutState
A = ParamSpec("A")
T = TypeVar("T")

_PAUSE_REASON_MAX = 256
_RESUME_HINT = "then resume"


def resume_command(campaign_id: int) -> str:
    """The command that resumes a paused campaign, as pause messages quote it."""
    return f"`hongbao campaign resume {campaign_id}`"


def new_bill_params(
    payout: Payout, bill: str, builder: BaseClient | None
) -> dict[str, str | int]:
    """The frozen parameters of `payout` under a new bill number (and a new nonce), for the
    new linked payout that replaces it (`LedgerStore.reissue`). A WeCom packet's `workwx_sign`
    covers both, so it is made again by `builder` (the merchant's client), which it needs."""
    changes: dict[str, str | int] = {"mch_billno": bill, "nonce_str": new_nonce()}
    if builder is None:
        if payout.api is SendApi.SENDWORKWXREDPACK:
            raise ConfigurationError(
                f"payout {payout.id} is a WeCom packet: a new bill number needs its merchant's "
                "WeCom secret (run with the merchant's configuration)"
            )
        return {**payout.params, **changes}
    return builder.changed_params(payout.api.value, payout.params, changes)


def _pause_message(reason: str, campaign_id: int) -> str:
    command = resume_command(campaign_id)
    if reason.endswith(_RESUME_HINT):
        message = f"{reason.removesuffix(_RESUME_HINT)}then {command}"
    else:
        message = f"{reason}; then {command}"
    return message[:_PAUSE_REASON_MAX]


@dataclass(frozen=True, slots=True)
class DriveResult:
    """Where one drive left a payout."""

    payout_id: int
    state: PayoutState
    """The state this drive committed (the state it found, if `lost`)."""
    lost: bool = False
    """Another holder moved the payout first (its lease ran out); this drive wrote nothing."""
    paused: str | None = None
    """The drive paused the payout's campaign, with this message."""
    reissued: Payout | None = None
    """The new payout (new bill number) that replaces a definitively failed one."""
    unreached: str | None = None
    """Nothing reached WeChat (connection refused, DNS, TLS handshake): why."""


@dataclass(slots=True, kw_only=True)
class PayoutDriver:
    """What `drive_payout` needs: the ledger, a client and pacers for one merchant, the policy.

    Store calls block, so they run on `executor` (None: the loop's default) and never stall the
    event loop; a cancelled drive leaves any commit in progress to finish, like a crash would.
    With a `committer`, outcomes are committed in rounds shared with other drives.
    """

    store: LedgerStore
    client: AsyncClient
    profile: MerchantProfile
    policy: Policy = field(default_factory=Policy)
    clock: Clock = field(default_factory=SystemClock)
    send_pacer: Pacer | None = None
    query_pacer: Pacer | None = None
    reissue_limit: int = 2
    executor: Executor | None = None
    committer: GroupCommitter | None = None
    halted: bool = False
    """`halt()` was called: nothing more is sent."""
    _at_pacer: dict[int, asyncio.Task[object]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.client.merchant.mch_id != self.profile.mch_id:
            raise ValueError("the client and the profile are for different merchants")
        self.policy = self.profile.policy(self.policy)
        if self.send_pacer is None:
            self.send_pacer = Pacer(self.profile.rate_per_minute, clock=self.clock)
        if self.query_pacer is None:
            self.query_pacer = Pacer(self.profile.query_rate_per_minute, clock=self.clock)

    async def db(self, work: Callable[A, T], *args: A.args, **kwargs: A.kwargs) -> T:
        """Run a blocking store call off the event loop."""
        return await in_thread(self.executor, work, *args, **kwargs)

    async def reissue(self, payout: Payout) -> Payout | None:
        """A new payout with a new bill number for a payout whose bill WeChat reported FAILED.

        None when the intent already had `reissue_limit` new bill numbers, someone else
        re-issued it first, or the ledger has no bill number left today (the dead bill is then
        re-issued by a later sweep).
        """
        if payout.generation >= self.reissue_limit:
            logger.warning(
                "payout %s (bill %s) failed definitively; its intent already had %d bill "
                "numbers, so it is not re-issued again",
                payout.id,
                payout.mch_billno,
                payout.generation + 1,
            )
            return None
        now = self.clock.now()
        try:
            [bill] = await self.db(self.store.reserve_bill_numbers, payout.mch_id, now, 1)
        except BillSerialsExhaustedError as exc:
            logger.warning(
                "payout %s (bill %s) not re-issued yet: %s", payout.id, payout.mch_billno, exc
            )
            return None
        try:
            params = new_bill_params(payout, bill, self.client)
            return await self.db(self.store.reissue, payout.id, params)
        except ReissueError:
            return None

    async def _send(self, payout: Payout) -> DriveResult:
        pacer = self.send_pacer
        assert pacer is not None
        # The lease is renewed before the pacer, never between the slot and the send: a ledger
        # round trip there would let sends bunch up past the merchant's cap.
        if not await self._hold_lease(payout):
            return DriveResult(payout.id, payout.state, lost=True)
        if not await self._slot(payout, pacer):
            return await self._give_back(payout)
        try:
            answer = await self.client.send_frozen(
                payout.api.value, payout.params, pace=pacer.acquire
            )
        except HongbaoError as exc:
            outcome, record = send_outcome(exc), answer_record(exc)
        else:
            outcome, record = sent_outcome(answer), answer_record(answer)
        decision = decide_send(payout.state, outcome, self.clock.now(), self.policy)
        event = EventInfo(
            kind="send",
            request=payout.params,
            response=record,
            err_code=outcome.err_code,
            detail=outcome.result.value
            + (f": {outcome.err_code_des}" if outcome.err_code_des else ""),
        )
        result = await self._apply(payout, decision, event)
        if outcome.result is SendResult.NOT_SENT and not result.lost:
            return replace(result, unreached=outcome.err_code_des)
        return result

    def halt(self) -> None:
        """Send nothing more: drives still waiting for their send slot give their payout back
        (SENDING → DEFERRED, due at once: it never left); calls under way finish."""
        self.halted = True
        for task in list(self._at_pacer.values()):
            task.cancel()

    async def _slot(self, payout: Payout, pacer: Pacer) -> bool:
        """Wait for the payout's send slot; False when `halt()` came first (a fresh claim only:
        a payout that may already be issued is resent whatever happens)."""
        if payout.state is not P.SENDING:
            await pacer.acquire()
            return True
        if self.halted:
            return False
        task = asyncio.current_task()
        assert task is not None
        self._at_pacer[payout.id] = task
        try:
            await pacer.acquire()
        except asyncio.CancelledError:
            if not self.halted:
                raise
            task.uncancel()
            return False
        finally:
            self._at_pacer.pop(payout.id, None)
        return True

    async def _give_back(self, payout: Payout) -> DriveResult:
        decision = Decision(
            P.DEFERRED, {"reason": "interrupted", "next_attempt_at": self.clock.now()}
        )
        event = EventInfo(kind="send", detail="not sent: the run stopped before its turn")
        return await self._apply(payout, decision, event)

    async def _hold_lease(self, payout: Payout) -> bool:
        # Renew the lease before waiting for the pacer, or give the payout up if recovery has
        # already taken it over. Should a long back-off outlast the lease, recovery resends the
        # same bill, which WeChat pays at most once, and this driver's compare-and-set loses.
        lease = payout.lease_until
        needed = timedelta(seconds=self.profile.lease_seconds)
        if lease is not None and self.clock.now() + needed <= lease:
            return True
        return await self.db(
            self.store.extend_lease, payout.id, payout.state, self.profile.lease_seconds
        )

    async def _resolve(self, payout: Payout) -> DriveResult:
        pacer = self.query_pacer
        assert pacer is not None
        await pacer.acquire()
        answer: RedpackInfo | HongbaoError
        try:
            # gethbinfo with the Official Account's appid (docs/protocol.md §3.5), or
            # queryworkwxredpack with the corpid for a WeCom packet (§15.5).
            answer = await self.client.query_for(
                payout.api.value, payout.mch_billno, pace=pacer.acquire
            )
        except HongbaoError as exc:
            answer = exc
            if isinstance(exc, FrequencyLimitError):
                pacer.push_back(self.policy.frequency_back_off.total_seconds())
        outcome, event = query_exchange(answer, kind="query", mch_billno=payout.mch_billno)
        decision = decide_query(payout.state, outcome, self.clock.now(), self.policy)
        if decision.resend:
            await self.db(self.store.record_event, payout.id, event)
            return await self._send(payout)
        result = await self._apply(payout, decision, event)
        if isinstance(answer, ConnectError) and not result.lost:
            return replace(result, unreached=answer.message)
        return result

    async def _commit(self, payout: Payout, decision: Decision, event: EventInfo) -> bool:
        if self.committer is not None:
            change = Transition(payout.id, payout.state, decision.state, event, decision.fields)
            return await self.committer.transition(change)
        return await self.db(
            self.store.transition,
            payout.id,
            payout.state,
            decision.state,
            event=event,
            **decision.fields,
        )

    async def _apply(self, payout: Payout, decision: Decision, event: EventInfo) -> DriveResult:
        moved = await self._commit(payout, decision, event)
        if not moved:
            logger.info("payout %s moved on without this drive (lease lost)", payout.id)
            return DriveResult(payout.id, payout.state, lost=True)
        if decision.back_off and self.send_pacer is not None:
            self.send_pacer.push_back(decision.back_off)
        if decision.anomaly:
            logger.warning(
                "payout %s (bill %s): %s", payout.id, payout.mch_billno, printable(decision.anomaly)
            )
        paused = None
        if decision.pause_reason and payout.campaign_id is not None:
            paused = await self.pause(payout.campaign_id, decision.pause_reason)
        reissued = None
        if decision.state is P.FAILED and decision.fields.get("bill_dead"):
            reissued = await self.reissue(payout)
        return DriveResult(payout.id, decision.state, paused=paused, reissued=reissued)

    async def pause(self, campaign_id: int, reason: str) -> str | None:
        """Pause a RUNNING campaign with `reason` (the resume command is added); the message,
        or None when it was not running."""
        message = _pause_message(reason, campaign_id)
        done = await self.db(
            self.store.set_campaign_state,
            campaign_id,
            CampaignState.RUNNING,
            CampaignState.PAUSED,
            pause_reason=message,
        )
        if done:
            logger.warning("campaign %s paused: %s", campaign_id, printable(message))
        return message if done else None


async def drive_payout(payout: Payout, driver: PayoutDriver) -> DriveResult:
    """Take one leased payout a step toward its end: send it, or resolve its unknown outcome.

    `payout` must be held by the caller: SENDING from `LedgerStore.claim`, or UNKNOWN from
    `LedgerStore.claim_stale`. Returns where it stands; anything else it found out is in the
    ledger, committed.

    >>> [payout] = store.claim(mch_id, limit=1, lease_seconds=60).claimed  # doctest: +SKIP
    >>> (await drive_payout(payout, driver)).state  # doctest: +SKIP
    <PayoutState.SENT: 'SENT'>
    """
    if payout.state is P.SENDING:
        return await driver._send(payout)
    if payout.state is P.UNKNOWN:
        return await driver._resolve(payout)
    raise IllegalTransitionError(
        f"drive_payout takes a SENDING or UNKNOWN payout, not {payout.state}"
    )
