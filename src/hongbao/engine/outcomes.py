"""From what the API client returned or raised to what the state machine decides on (pure).

`send_outcome` sorts a send call's exception into a `SendResult` category by its err_code, as
`hongbao.engine.states.SendResult` lays out; `query_outcome` does the same for gethbinfo; and
`answer_record` keeps what WeChat said, secrets masked, for the audit trail.

One choice beyond the table: a `PARAM_ERROR` from WeChat counts as a setup error (the campaign
pauses) rather than a fault of the payout. hongbao checks every parameter before sending, so what
WeChat still refuses is almost always the merchant's setup (a scene not enabled, an appid not
bound); telling the two apart would mean reading `err_code_des`, which automation must not do
(spec §5.1), and a pause loses nothing while a wrong FAILED would drop a wanted payout.

>>> send_outcome(RefusedError("…", err_code="NOTENOUGH")).result
<SendResult.LIMIT: 'limit'>
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hongbao.api.models import RedpackInfo
from hongbao.api.models import SendResult as SendAnswer
from hongbao.engine.states import QueryOutcome, QueryStatus, SendOutcome, SendResult
from hongbao.errors import (
    ConfigurationError,
    ConnectError,
    HongbaoError,
    UnknownOutcomeError,
    ValidationError,
)
from hongbao.wire.masking import mask
from hongbao.wire.xmlcodec import XmlError, loads

__all__ = [
    "DES_MAX",
    "SEND_CATEGORIES",
    "answer_record",
    "query_outcome",
    "send_outcome",
    "sent_outcome",
]

R = SendResult

DES_MAX = 256
"""The longest description a payout keeps (`payouts.err_code_des`)."""

SEND_CATEGORIES: Mapping[str, SendResult] = MappingProxyType(
    {
        "PROCESSING": R.PROCESSING,
        "SEND_FAILED": R.BILL_FAILED,
        "SENDNUM_LIMIT": R.LIMIT,
        "RCVDAMOUNT_LIMIT": R.LIMIT,
        "SENDAMOUNT_LIMIT": R.LIMIT,
        "NOTENOUGH": R.LIMIT,
        "FATAL_ERROR": R.BILL_CONFLICT,
        "FREQ_LIMIT": R.FREQUENCY_LIMITED,
        "SECOND_OVER_LIMITED": R.FREQUENCY_LIMITED,
        "CA_ERROR": R.SETUP_ERROR,
        "SIGN_ERROR": R.SETUP_ERROR,
        "XML_ERROR": R.SETUP_ERROR,
        "API_METHOD_CLOSED": R.SETUP_ERROR,
        "PRODUCT_AUTHORITY_UNOPEN": R.SETUP_ERROR,
        "PAYER_ACCOUNT_ABNORMAL": R.SETUP_ERROR,
        "ACCEPTMODE_ERROR": R.SETUP_ERROR,
        "MSGAPPID_ERROR": R.SETUP_ERROR,
        "DAY_OVER_LIMITED": R.SETUP_ERROR,
        "NO_AUTH": R.SETUP_ERROR,
        "PARAM_ERROR": R.SETUP_ERROR,
        "OPENID_ERROR": R.INVALID,
        "MONEY_LIMIT": R.INVALID,
        "ILLEGAL_APPID": R.INVALID,
    }
)
"""err_code of a send call → category; any other code (SYSTEMERROR, numeric, new) is UNKNOWN."""


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


def answer_record(answer: SendAnswer | RedpackInfo | HongbaoError) -> dict[str, Any]:
    """What WeChat answered (or why there is no answer), masked, for the audit trail."""
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
