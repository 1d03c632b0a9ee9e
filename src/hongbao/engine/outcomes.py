"""From what the API client returned or raised to what the state machine decides on (pure).

`send_outcome` sorts a send call's exception into a `SendResult` category by its err_code, as
`hongbao.engine.states.SendResult` lays out; `query_outcome` does the same for gethbinfo; and
`answer_record` keeps what WeChat said, secrets masked, for the audit trail.

The categories are derived from the one err_code table, `hongbao.api.codes.SEND_CODES` (each
row's exception, outcome and whether it is deferrable: `send_category`); the engine keeps only
the few codes it decides otherwise (`CHOICES`).

One choice beyond the table: a `PARAM_ERROR` from WeChat counts as a setup error (the campaign
pauses) rather than a fault of the payout. hongbao checks every parameter before sending, so what
WeChat still refuses is almost always the merchant's setup (a scene not enabled, an appid not
bound); telling the two apart would mean reading `err_code_des`, which automation must not do
(docs/protocol.md §5.1), and a pause loses nothing while a wrong FAILED would drop a wanted payout.

>>> send_outcome(RefusedError("…", err_code="NOTENOUGH")).result
<SendResult.LIMIT: 'limit'>
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hongbao.api.codes import SEND_CODES, CodeInfo
from hongbao.api.models import RedpackInfo
from hongbao.api.models import SendResult as SendAnswer
from hongbao.engine.states import (
    DEFINITIVE,
    PayoutState,
    QueryOutcome,
    QueryStatus,
    SendOutcome,
    SendResult,
)
from hongbao.errors import (
    BillConflictError,
    BillFailedError,
    ConfigurationError,
    ConnectError,
    FrequencyLimitError,
    HongbaoError,
    Outcome,
    ProcessingError,
    UnknownOutcomeError,
    ValidationError,
)
from hongbao.ledger.records import EventInfo
from hongbao.wire.masking import mask
from hongbao.wire.xmlcodec import XmlError, loads

__all__ = [
    "CHOICES",
    "DES_MAX",
    "SEND_CATEGORIES",
    "answer_record",
    "never_issued",
    "query_exchange",
    "query_outcome",
    "send_category",
    "send_outcome",
    "sent_outcome",
]

R = SendResult

DES_MAX = 256
"""The longest description a payout keeps (`payouts.err_code_des`)."""

CHOICES: Mapping[str, SendResult] = MappingProxyType(
    {
        # Rejections of what the packet itself carries (openid, amount, appid): the payout
        # fails, where any other rejection is the merchant's setup and pauses the campaign.
        "OPENID_ERROR": R.INVALID,
        "MONEY_LIMIT": R.INVALID,
        "ILLEGAL_APPID": R.INVALID,
        # The legacy merchant-wide daily cap: `decide_send` backs off only SENDAMOUNT_LIMIT
        # merchant-wide, so a pause keeps the campaign's other payouts from running into it.
        "DAY_OVER_LIMITED": R.SETUP_ERROR,
    }
)
"""Where the engine decides otherwise than the table's row says (see `send_category`)."""

_BY_ERROR: tuple[tuple[type[HongbaoError], SendResult], ...] = (
    (ProcessingError, R.PROCESSING),
    (BillFailedError, R.BILL_FAILED),
    (BillConflictError, R.BILL_CONFLICT),
    (FrequencyLimitError, R.FREQUENCY_LIMITED),
)


def send_category(row: CodeInfo) -> SendResult:
    """The category of a send call's err_code, from its row of `hongbao.api.codes.SEND_CODES`.

    The row's exception decides (PROCESSING, SEND_FAILED, FATAL_ERROR, the frequency limits), an
    unknown outcome stays UNKNOWN, a refusal that clears with time or a top-up (`deferrable`) is
    a LIMIT, and any other refusal or rejection needs the merchant's setup fixed (SETUP_ERROR,
    PARAM_ERROR included: see above), except for the engine's own `CHOICES`.
    """
    choice = CHOICES.get(row.code)
    if choice is not None:
        return choice
    for error, category in _BY_ERROR:
        if row.error is not None and issubclass(row.error, error):
            return category
    if row.outcome is Outcome.UNKNOWN:
        return R.UNKNOWN  # SYSTEMERROR: never a verdict about the bill
    if row.outcome is Outcome.REFUSED and row.deferrable:
        return R.LIMIT
    return R.SETUP_ERROR


SEND_CATEGORIES: Mapping[str, SendResult] = MappingProxyType(
    {
        code: category
        for code, row in SEND_CODES.items()
        if (category := send_category(row)) is not R.UNKNOWN
    }
)
"""err_code of a send call → category; any other code (SYSTEMERROR, numeric, new) is UNKNOWN."""


_NOT_ISSUING = DEFINITIVE | {R.LIMIT}
"""Answers about a bill that say WeChat did not issue it (a daily limit fails a payout only
under the FAIL policy, and never on an issued bill: WeChat replays the success instead)."""


def never_issued(state: PayoutState, err_code: str | None, *, bill_dead: bool) -> bool:
    """True when a settled payout's record proves its money never left, so that its intent may
    get a new bill number (`hongbao campaign retry`).

    SKIPPED was never sent; FAILED rests on a definitive answer — the bill reported dead, a
    refusal or rejection (`DEFINITIVE`, FATAL_ERROR included: the bill number was another
    packet's), a daily limit, or a local check (no err_code). Every other state, UNKNOWN above
    all, may have paid and is never retried.

    >>> never_issued(PayoutState.FAILED, "FATAL_ERROR", bill_dead=False)
    True
    >>> never_issued(PayoutState.UNKNOWN, "SYSTEMERROR", bill_dead=False)
    False
    """
    if state is PayoutState.SKIPPED:
        return True
    if state is not PayoutState.FAILED:
        return False
    if bill_dead or err_code is None:
        return True
    return SEND_CATEGORIES.get(err_code) in _NOT_ISSUING


def sent_outcome(answer: SendAnswer) -> SendOutcome:
    """The outcome of a send call that WeChat answered with success."""
    return SendOutcome(SendResult.SUCCESS, send_listid=answer.send_listid or None)


def send_outcome(error: HongbaoError) -> SendOutcome:
    """The outcome of a send call that raised `error`."""
    cause = error.__cause__
    if (
        isinstance(error, UnknownOutcomeError)
        and isinstance(cause, HongbaoError)
        and not isinstance(cause, UnknownOutcomeError)
    ):
        # An earlier attempt of the call may have reached WeChat; the last answer was this one.
        return SendOutcome(_category(cause), cause.err_code, _des(cause), after_unknown=True)
    return SendOutcome(_category(error), error.err_code, _des(error))


def _des(error: HongbaoError) -> str:
    # WeChat's text when there is one, else ours; the ledger column holds 256 characters.
    return (error.err_code_des or error.message)[:DES_MAX]


def _category(error: HongbaoError) -> SendResult:
    if isinstance(error, ValidationError):
        return R.INVALID
    if isinstance(error, ConfigurationError):
        return R.SETUP_ERROR
    if isinstance(error, ConnectError):
        return R.NOT_SENT
    code = error.err_code
    return SEND_CATEGORIES.get(code, R.UNKNOWN) if code else R.UNKNOWN


def query_outcome(answer: RedpackInfo | HongbaoError) -> QueryOutcome:
    """What gethbinfo's answer (or its failure) says about a bill number."""
    if isinstance(answer, HongbaoError):
        return QueryOutcome(QueryStatus.ERROR, err_code=answer.err_code)
    if not answer.found:
        return QueryOutcome(QueryStatus.NOT_FOUND)
    if answer.status is None:
        return QueryOutcome(QueryStatus.ERROR, reason="gethbinfo answered without a status")
    times = [receipt.rcv_time for receipt in answer.receipts if receipt.rcv_time is not None]
    return QueryOutcome(
        QueryStatus(answer.status.value),
        detail_id=answer.detail_id or None,
        reason=answer.reason or None,
        refund_amount=answer.refund_amount,
        received_at=max(times) if times else None,
        refunded_at=answer.refund_time,
    )


def query_exchange(
    answer: RedpackInfo | HongbaoError, *, kind: str, mch_billno: str
) -> tuple[QueryOutcome, EventInfo]:
    """gethbinfo's answer about `mch_billno` as an outcome, and the audit event that records it.

    `kind` is the event's: "query" when resolving an unknown outcome, "track" when following a
    SENT packet.
    """
    outcome = query_outcome(answer)
    event = EventInfo(
        kind=kind,
        request={"mch_billno": mch_billno},
        response=answer_record(answer),
        err_code=outcome.err_code,
        detail=f"gethbinfo: {outcome.status.value}",
    )
    return outcome, event


def answer_record(answer: SendAnswer | RedpackInfo | HongbaoError) -> dict[str, Any]:
    """What WeChat answered (or why there is no answer), masked, for the audit trail."""
    parsed = None if isinstance(answer, HongbaoError) else answer.parsed
    if parsed is not None:
        return mask(parsed)  # read once, when the answer came in
    raw = answer.raw
    if raw:
        try:
            return mask(loads(raw))
        except XmlError:
            pass
    if isinstance(answer, HongbaoError):
        record: dict[str, Any] = {"error": type(answer).__name__, "message": answer.message}
        if answer.err_code:
            record["err_code"] = answer.err_code
        return record
    return mask(answer.model_dump(exclude={"raw"}, mode="json"))
