"""The payout state machine (docs/architecture.md §4) as data, and the pure decisions that drive it.

```
  PLANNED ──claim──► SENDING ──success──────────────────────────────────► SENT ──► RECEIVED
   │  │   (committed  │                                                     └───► REFUNDED
   │  │    before the ├─ SEND_FAILED, query FAILED, definitive refusal ──► FAILED
   │  │    request    ├─ daily limit, balance, rate, not sent ───────────► DEFERRED
   │  │    leaves)    └─ timeout, SYSTEMERROR, PROCESSING, lease lost ───► UNKNOWN
   │  └─ over budget, or a daily cap ──► SKIPPED  (a cap may defer instead: DEFERRED)
   └──── campaign cancelled ───────────► CANCELLED ◄──campaign cancelled── DEFERRED

  DEFERRED ──claim, when due──► SENDING
  UNKNOWN ──gethbinfo, or a resend with the same bill──► any state SENDING may reach
  FAILED with bill_dead ──re-issue──► a NEW linked payout, PLANNED, with a new bill number
```

Terminal: RECEIVED, REFUNDED, FAILED, CANCELLED, SKIPPED. SENT only moves on to RECEIVED or
REFUNDED. The ledger refuses any other move (`PAYOUT_TRANSITIONS`).

Names chosen here beyond docs/architecture.md §4: CANCELLED is a payout of a cancelled campaign that
was never claimed; SKIPPED is one hongbao itself refused at planning or claim (over the campaign
budget, or a daily cap under the SKIP policy), with the reason in `payout.reason`.

Decisions (`decide_send`, `decide_query`) are pure: an outcome in, the next state and the fields
to write out. Their rules, the reason each exists:

* **A new bill number only after WeChat definitively said the old one FAILED** (SEND_FAILED, or
  gethbinfo status FAILED): only then is `bill_dead` set, and only a `bill_dead` payout may be
  re-issued, as a new linked payout (`may_reissue`). Any other doubt is resolved with the *same*
  bill number, which WeChat issues at most once.
* **Never FAILED without a definitive answer**: timeouts, SYSTEMERROR, unparseable answers,
  PROCESSING and gethbinfo NOT_FOUND never fail a payout.
* **An answer about the request is not an answer about the bill.** WeChat checks certificate,
  signature, IP, rate and parameters before it looks at the bill number (docs/protocol.md §6.2), so
  when the bill may already have been issued (state UNKNOWN, or an earlier attempt of the same call
  was lost) such a rejection leaves the payout UNKNOWN. Limits, balance, risk refusals, PROCESSING
  and SEND_FAILED come after the bill check: on an issued bill WeChat replays the success
  instead (docs/protocol.md §6.5), so they do speak for the bill.
* Daily limits defer to 00:00 of the next UTC+8 day, or fail, by policy; NOTENOUGH and setup
  errors (certificate, signature, IP whitelist, product switched off) pause the campaign;
  FREQ_LIMIT backs off every worker of the merchant; PROCESSING is queried again after 20 min.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from hongbao.clock import CST, beijing_day
from hongbao.ledger.records import IllegalTransitionError
from hongbao.ledger.states import (
    CLAIMABLE,
    COMMITTING,
    PAYOUT_TRANSITIONS,
    TERMINAL,
    PayoutState,
    is_allowed,
)

__all__ = [
    "BILL_ANSWERS",
    "CLAIMABLE",
    "COMMITTING",
    "DEFINITIVE",
    "PAYOUT_TRANSITIONS",
    "TERMINAL",
    "Decision",
    "IllegalTransitionError",
    "LimitPolicy",
    "PayoutState",
    "Policy",
    "QueryOutcome",
    "QueryStatus",
    "SendOutcome",
    "SendResult",
    "decide_query",
    "decide_send",
    "is_allowed",
    "may_reissue",
    "next_beijing_midnight",
]

P = PayoutState


class SendResult(StrEnum):
    """What one send call (with its in-call retries) told us, as a category.

    Mapping of err_codes (docs/protocol.md §5.2/§5.5) to categories, for the caller:
    SUCCESS ← SUCCESS; PROCESSING ← PROCESSING; BILL_FAILED ← SEND_FAILED;
    LIMIT ← SENDNUM_LIMIT, RCVDAMOUNT_LIMIT, SENDAMOUNT_LIMIT, NOTENOUGH;
    REFUSED ← a refusal of this receiver that WeChat gives after its bill check;
    BILL_CONFLICT ← FATAL_ERROR;
    FREQUENCY_LIMITED ← FREQ_LIMIT, SECOND_OVER_LIMITED;
    SETUP_ERROR ← CA_ERROR, SIGN_ERROR, XML_ERROR, API_METHOD_CLOSED, PRODUCT_AUTHORITY_UNOPEN,
    PAYER_ACCOUNT_ABNORMAL, ACCEPTMODE_ERROR, MSGAPPID_ERROR, DAY_OVER_LIMITED, NO_COMPETENCE
    (WeCom: the merchant not bound to the corp, docs/protocol.md §15.7), PARAM_ERROR
    about the merchant (scene not enabled, appid not bound), and NO_AUTH: one code for both the
    IP whitelist (before the bill check) and risk control (after it), told apart only by
    err_code_des, which automation must not read (docs/protocol.md §5.1). As SETUP_ERROR it pauses
    the campaign and never fails a payout that may be issued; a risk-blocked receiver's payout is
    then skipped by the operator (DEFERRED → SKIPPED), the IP whitelist fixed and resumed;
    INVALID ← PARAM_ERROR about this payout, OPENID_ERROR, MONEY_LIMIT, ILLEGAL_APPID,
    a local validation error;
    NOT_SENT ← the request never reached WeChat (connect error);
    UNKNOWN ← timeout or reset after sending, HTTP error, unparseable or badly signed answer,
    SYSTEMERROR, a numeric or unknown err_code.
    """

    SUCCESS = "success"
    PROCESSING = "processing"
    BILL_FAILED = "bill_failed"
    LIMIT = "limit"
    REFUSED = "refused"
    BILL_CONFLICT = "bill_conflict"
    FREQUENCY_LIMITED = "frequency_limited"
    SETUP_ERROR = "setup_error"
    INVALID = "invalid"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"


BILL_ANSWERS = frozenset(
    {
        SendResult.SUCCESS,
        SendResult.PROCESSING,
        SendResult.BILL_FAILED,
        SendResult.LIMIT,
        SendResult.REFUSED,
        SendResult.BILL_CONFLICT,
    }
)
"""Results WeChat gives only after its bill-number check: they speak for the bill itself."""

DEFINITIVE = frozenset(
    {SendResult.BILL_FAILED, SendResult.REFUSED, SendResult.BILL_CONFLICT, SendResult.INVALID}
)
"""Results that may fail a payout (LIMIT too, under the FAIL policy)."""

_MERCHANT_DAILY_LIMIT = "SENDAMOUNT_LIMIT"
_NOT_ENOUGH = "NOTENOUGH"


class QueryStatus(StrEnum):
    """What gethbinfo said about a bill number."""

    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    RECEIVED = "RECEIVED"
    RFUND_ING = "RFUND_ING"
    REFUND = "REFUND"
    NOT_FOUND = "NOT_FOUND"
    """No record (yet): never a failure by itself (docs/protocol.md §3.5)."""
    ERROR = "ERROR"
    """The query itself failed (timeout, SYSTEMERROR, FREQ_LIMIT…): nothing learnt."""


class LimitPolicy(StrEnum):
    """What a daily-limit answer (SENDNUM_LIMIT, RCVDAMOUNT_LIMIT, SENDAMOUNT_LIMIT) does."""

    DEFER = "defer"
    """Try the same bill again from 00:00 of the next UTC+8 day."""
    FAIL = "fail"
    """Fail the payout (err_code kept); the bill is not dead, so it is never re-issued."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The timing and limit policy of the decisions."""

    daily_limit: LimitPolicy = LimitPolicy.DEFER
    processing_wait: timedelta = timedelta(minutes=20)
    """PROCESSING, or a record still SENDING: query again after this (docs/protocol.md §11: 20
    min)."""
    unknown_retry: timedelta = timedelta(minutes=1)
    """An unknown outcome: query or resend the same bill after this (≥ 1 s,
    docs/protocol.md §1.4)."""
    not_sent_retry: timedelta = timedelta(seconds=30)
    """Nothing reached WeChat: claim the payout again after this."""
    frequency_back_off: timedelta = timedelta(seconds=60)
    """FREQ_LIMIT: WeChat counts a sliding 60 s window, so a full window clears it."""
    blocked_retry: timedelta = timedelta(minutes=5)
    """NOTENOUGH or a setup error: try again after this. A campaign is paused as well, so this
    paces only payouts of no campaign (rules, single sends) until someone fixes the cause."""
    track_every: timedelta = timedelta(hours=1)
    """A SENT packet: ask gethbinfo again after this until RECEIVED or REFUNDED."""


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The category of a send call's outcome, with what WeChat said."""

    result: SendResult
    err_code: str | None = None
    err_code_des: str | None = None
    send_listid: str | None = None
    after_unknown: bool = False
    """An earlier attempt of this same call may have reached WeChat (e.g. it timed out before
    an in-call retry), so an answer about the request alone proves nothing about the bill."""


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """What gethbinfo said about a payout's bill number."""

    status: QueryStatus
    detail_id: str | None = None
    reason: str | None = None
    """gethbinfo `reason`: on a SENDING record, the send was refused (limit, risk, balance).
    WeChat's text goes to `err_code_des`; `payout.reason` holds hongbao's own reasons."""
    refund_amount: int | None = None
    received_at: datetime | None = None
    refunded_at: datetime | None = None
    err_code: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The next state, the fields to write with it, and what else the engine must do."""

    state: PayoutState
    fields: dict[str, Any] = field(default_factory=dict)
    resend: bool = False
    """Resend now with the same bill number and byte-identical parameters."""
    pause_reason: str | None = None
    """Pause the payout's campaign with this reason (fix, then resume)."""
    back_off: float | None = None
    """Hold every send of the merchant for this many seconds."""
    anomaly: str | None = None
    """WeChat said something the lifecycle does not allow; keep the state, tell a human."""


def next_beijing_midnight(now: datetime) -> datetime:
    """00:00 of the next UTC+8 day, in UTC: when WeChat's daily counters reset."""
    tomorrow = beijing_day(now) + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), CST).astimezone(UTC)


def may_reissue(state: PayoutState, bill_dead: bool) -> bool:
    """True when the intent of a payout may get a new bill number (as a new linked payout)."""
    return state is P.FAILED and bill_dead


def _outcome_fields(outcome: SendOutcome, **fields: Any) -> dict[str, Any]:
    return {"err_code": outcome.err_code, "err_code_des": outcome.err_code_des, **fields}


def decide_send(
    state: PayoutState, outcome: SendOutcome, now: datetime, policy: Policy | None = None
) -> Decision:
    """Decide what a send (or same-bill resend) outcome does to a SENDING or UNKNOWN payout."""
    if state not in (P.SENDING, P.UNKNOWN):
        raise IllegalTransitionError(f"a send outcome does not apply to a {state} payout")
    policy = policy or Policy()
    result = outcome.result
    maybe_issued = state is P.UNKNOWN or outcome.after_unknown

    if maybe_issued and result not in BILL_ANSWERS:
        return _still_unknown(outcome, now, policy)

    if result is SendResult.SUCCESS:
        return Decision(
            P.SENT,
            {
                "send_listid": outcome.send_listid,
                "err_code": None,
                "err_code_des": None,
                "reason": None,
                "next_attempt_at": now + policy.track_every,
            },
        )
    if result is SendResult.PROCESSING:
        return Decision(
            P.UNKNOWN, _outcome_fields(outcome, next_attempt_at=now + policy.processing_wait)
        )
    if result is SendResult.BILL_FAILED:
        return Decision(P.FAILED, _outcome_fields(outcome, bill_dead=True))
    if result is SendResult.REFUSED:
        return Decision(P.FAILED, _outcome_fields(outcome))
    if result is SendResult.BILL_CONFLICT:
        return Decision(
            P.FAILED,
            _outcome_fields(outcome),
            pause_reason=f"{outcome.err_code or 'FATAL_ERROR'}: a bill number was used with "
            "other parameters; check for a second system minting the same bill numbers",
        )
    if result is SendResult.LIMIT:
        return _limit(outcome, now, policy)
    if result is SendResult.INVALID:
        return Decision(P.FAILED, _outcome_fields(outcome))
    if result is SendResult.FREQUENCY_LIMITED:
        wait = policy.frequency_back_off
        return Decision(
            P.DEFERRED,
            _outcome_fields(outcome, next_attempt_at=now + wait),
            back_off=wait.total_seconds(),
        )
    if result is SendResult.SETUP_ERROR:
        return Decision(
            P.DEFERRED,
            _outcome_fields(outcome, next_attempt_at=now + policy.blocked_retry),
            pause_reason=f"{outcome.err_code or 'setup error'}: fix the merchant setup, then "
            "resume",
        )
    if result is SendResult.NOT_SENT:
        return Decision(
            P.DEFERRED, _outcome_fields(outcome, next_attempt_at=now + policy.not_sent_retry)
        )
    return _still_unknown(outcome, now, policy)


def _still_unknown(outcome: SendOutcome, now: datetime, policy: Policy) -> Decision:
    pause = None
    back_off = None
    if outcome.result is SendResult.SETUP_ERROR:
        pause = f"{outcome.err_code or 'setup error'}: fix the merchant setup, then resume"
    elif outcome.result is SendResult.INVALID:
        # Frozen parameters are what was sent before; WeChat now refuses them, yet the earlier
        # request may have been issued. Only a human can tell what changed.
        pause = f"{outcome.err_code or 'invalid'}: parameters refused on a resend; check setup"
    elif outcome.result is SendResult.FREQUENCY_LIMITED:
        back_off = policy.frequency_back_off.total_seconds()
    wait = policy.frequency_back_off if back_off else policy.unknown_retry
    return Decision(
        P.UNKNOWN,
        _outcome_fields(outcome, next_attempt_at=now + wait),
        pause_reason=pause,
        back_off=back_off,
    )


def _limit(outcome: SendOutcome, now: datetime, policy: Policy) -> Decision:
    if outcome.err_code == _NOT_ENOUGH:
        return Decision(
            P.DEFERRED,
            _outcome_fields(outcome, next_attempt_at=now + policy.blocked_retry),
            pause_reason="NOTENOUGH: balance too low: top up the merchant account, then resume",
        )
    midnight = next_beijing_midnight(now)
    back_off = None
    if outcome.err_code == _MERCHANT_DAILY_LIMIT:
        # The merchant's own daily total: every send of the merchant fails until midnight.
        back_off = (midnight - now).total_seconds()
    if policy.daily_limit is LimitPolicy.FAIL:
        return Decision(P.FAILED, _outcome_fields(outcome), back_off=back_off)
    return Decision(
        P.DEFERRED, _outcome_fields(outcome, next_attempt_at=midnight), back_off=back_off
    )


def decide_query(
    state: PayoutState, outcome: QueryOutcome, now: datetime, policy: Policy | None = None
) -> Decision:
    """Decide what a gethbinfo answer does to a SENDING, UNKNOWN or SENT payout."""
    if state not in (P.SENDING, P.UNKNOWN, P.SENT):
        raise IllegalTransitionError(f"a query outcome does not apply to a {state} payout")
    policy = policy or Policy()
    status = outcome.status
    issued: dict[str, Any] = {"err_code": None, "err_code_des": None, "reason": None}
    if outcome.detail_id:
        issued["send_listid"] = outcome.detail_id

    if status is QueryStatus.ERROR:
        wait = policy.track_every if state is P.SENT else policy.unknown_retry
        return Decision(state, {"next_attempt_at": now + wait})
    if status in (QueryStatus.SENT, QueryStatus.RFUND_ING):
        return Decision(P.SENT, {**issued, "next_attempt_at": now + policy.track_every})
    if status is QueryStatus.RECEIVED:
        return Decision(
            P.RECEIVED,
            {**issued, "received_at": outcome.received_at or now, "next_attempt_at": None},
        )
    if status is QueryStatus.REFUND:
        return Decision(
            P.REFUNDED,
            {
                **issued,
                "refunded_at": outcome.refunded_at or now,
                "refund_amount": outcome.refund_amount,
                "next_attempt_at": None,
            },
        )
    if state is P.SENT:
        # An issued packet never becomes FAILED, SENDING or unknown to WeChat within the 30-day
        # query window; keep SENT and let a human look rather than act on it.
        return Decision(
            P.SENT,
            {"next_attempt_at": now + policy.track_every},
            anomaly=f"gethbinfo says {status} for a packet WeChat reported SENT",
        )
    if status is QueryStatus.FAILED:
        fields: dict[str, Any] = {"bill_dead": True}
        if outcome.reason:
            fields["err_code_des"] = outcome.reason
        return Decision(P.FAILED, fields)
    if status is QueryStatus.SENDING and not outcome.reason:
        return Decision(P.UNKNOWN, {"next_attempt_at": now + policy.processing_wait})
    # NOT_FOUND (never reached WeChat, or not yet visible) or SENDING with a reason (refused at
    # send time, limit or balance): a same-bill resend is safe and returns the current verdict.
    fields = {"next_attempt_at": now}
    if outcome.reason:
        fields["err_code_des"] = outcome.reason
    return Decision(P.UNKNOWN, fields, resend=True)
