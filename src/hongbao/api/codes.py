"""The err_code tables of docs/protocol.md §5.2–5.5, as data: what each code means and what to do
about it.

`classify` finds the row for a parsed response and `error_for` turns a response into exactly one
exception (or None). Automate on `err_code` only, never on `err_code_des` (docs/protocol.md §5.1):
that is why
both `NO_AUTH` variants (risk control, IP whitelist) share one row.

An unknown code, a numeric code, or a failure without any code is an *unknown outcome*: never
switch to a new bill number for it (docs/protocol.md §5.1, §5.5).

>>> classify({"return_code": "SUCCESS", "result_code": "FAIL", "err_code": "NOTENOUGH"}).deferrable
True
>>> classify({"return_code": "SUCCESS", "result_code": "SUCCESS"}) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hongbao.errors import (
    BillConflictError,
    BillFailedError,
    FrequencyLimitError,
    HongbaoError,
    Outcome,
    ProcessingError,
    RefusedError,
    RejectedError,
    UnknownOutcomeError,
)

__all__ = [
    "ADVICE_CONNECT",
    "ADVICE_RESPONSE",
    "ADVICE_TRANSPORT",
    "QUERY_CODES",
    "SEND_CODES",
    "UNKNOWN_CODE",
    "CodeInfo",
    "classify",
    "error_for",
]

ADVICE_CONNECT = "nothing reached WeChat: resend with the same bill number"
ADVICE_TRANSPORT = (
    "it may have been issued: query the bill, or resend with the same bill number and parameters"
)
ADVICE_RESPONSE = (
    "the answer is unusable, so it may have been issued: query the bill, or resend with the same "
    "bill number and parameters"
)


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """One row of the table: an err_code, what it means and how to react."""

    code: str
    meaning: str
    outcome: Outcome
    error: type[HongbaoError] | None
    """The exception it maps to; None for a code that is a result, not an error (NOT_FOUND)."""
    retry_in_call: bool
    """Resend the identical bytes within the same call (only SYSTEMERROR)."""
    deferrable: bool
    """A limit or balance that clears with time or a top-up: the engine may defer and resend."""
    reuse_bill: bool
    """Resending this bill number can still succeed (False only once it definitively failed)."""
    advice: str

    def build(
        self, data: Mapping[str, object], *, raw: bytes | None, mch_billno: str | None
    ) -> HongbaoError:
        """The exception for response `data` (which must map to this row)."""
        if self.error is None:
            raise ValueError(f"{self.code} is a result, not an error")
        described = _text(data.get("err_code_des")) or _text(data.get("return_msg"))
        message = f"{self.meaning} (WeChat: {described})" if described else self.meaning
        return self.error(
            message,
            err_code=_text(data.get("err_code")) or None,
            err_code_des=_text(data.get("err_code_des")) or None,
            return_code=_text(data.get("return_code")) or None,
            return_msg=_text(data.get("return_msg")) or None,
            raw=raw,
            mch_billno=mch_billno,
            advice=self.advice,
        )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _row(
    code: str,
    meaning: str,
    error: type[HongbaoError],
    advice: str,
    *,
    retry_in_call: bool = False,
    deferrable: bool = False,
    reuse_bill: bool = True,
) -> CodeInfo:
    return CodeInfo(
        code, meaning, error.outcome, error, retry_in_call, deferrable, reuse_bill, advice
    )


_FIX_RESEND = "then resend with the same bill number (nothing was issued)"
_QUERY_FIRST = "query the bill before ever using a new bill number"
_TODAY = f"definitive for today: raise the limit or resend the bill another day; {_QUERY_FIRST}"

_SEND_ROWS = (
    # --- refused: WeChat will not issue it (for now) ---
    _row(
        "NO_AUTH",
        "refused by risk control, or the calling IP is not in the red packet IP whitelist",
        RefusedError,
        "query; IP variant: fix whitelist and resend the same bill",
    ),
    _row(
        "SENDNUM_LIMIT",
        "the user's number of packets from this merchant today is over the limit",
        RefusedError,
        _TODAY,
        deferrable=True,
    ),
    _row(
        "SENDAMOUNT_LIMIT",
        "the merchant's total sent today is over the limit",
        RefusedError,
        _TODAY,
        deferrable=True,
    ),
    _row(
        "RCVDAMOUNT_LIMIT",
        "the user's amount received today is over the limit",
        RefusedError,
        _TODAY,
        deferrable=True,
    ),
    _row(
        "NOTENOUGH",
        "the merchant's balance is insufficient",
        RefusedError,
        f"top up the balance, then resend the same bill; {_QUERY_FIRST}",
        deferrable=True,
    ),
    _row(
        "PAYER_ACCOUNT_ABNORMAL",
        "the merchant account is restricted or penalised",
        RefusedError,
        f"resolve the restriction in the merchant platform; {_QUERY_FIRST}",
    ),
    _row(
        "DAY_OVER_LIMITED",
        "the legacy daily packet cap of the merchant is reached",
        RefusedError,
        f"resend the same bill another day; {_QUERY_FIRST}",
        deferrable=True,
    ),
    _row(
        "SEND_FAILED",
        "this bill number already ended in failure",
        BillFailedError,
        "send again with a new bill number if the packet is still wanted",
        reuse_bill=False,
    ),
    # --- rejected before issuing: fix, then resend the same bill ---
    _row(
        "FATAL_ERROR",
        "this bill number was used before with other parameters (openid or amount)",
        BillConflictError,
        "a bug: resend only with the original parameters; a new packet needs a new bill number",
    ),
    _row(
        "FREQ_LIMIT",
        "the merchant's send rate is over its limit",
        FrequencyLimitError,
        "back off, then resend the same bill number",
        deferrable=True,
    ),
    _row(
        "SECOND_OVER_LIMITED",
        "the legacy per-minute send cap is reached",
        FrequencyLimitError,
        "back off, then resend the same bill number",
        deferrable=True,
    ),
    _row(
        "ILLEGAL_APPID",
        "the appid is a mobile-app appid",
        RejectedError,
        f"use the Official Account (or mini program) appid, {_FIX_RESEND}",
    ),
    _row(
        "MONEY_LIMIT",
        "the amount is outside the allowed range",
        RejectedError,
        f"fix the amount or pass an enabled scene_id, {_FIX_RESEND}",
    ),
    _row(
        "CA_ERROR",
        "the client certificate is missing, invalid, foreign or expired",
        RejectedError,
        f"fix the merchant API certificate, {_FIX_RESEND}",
    ),
    _row(
        "SIGN_ERROR",
        "the signature is wrong",
        RejectedError,
        "check the API key, the signed fields and, for a WeCom packet, the WeCom payment secret "
        f"(its own description: 企业微信签名校验失败), {_FIX_RESEND}",
    ),
    _row(
        "NO_COMPETENCE",
        "WeCom: the merchant is not enabled for WeCom enterprise payment or not bound to the corp",
        RejectedError,
        "bind the merchant in the WeCom admin console (企业支付 app) and confirm the binding in "
        f"the merchant platform, {_FIX_RESEND}",
    ),
    _row("XML_ERROR", "the request body is not valid XML", RejectedError, f"fix it, {_FIX_RESEND}"),
    _row(
        "API_METHOD_CLOSED",
        "API issuing is switched off in the merchant's red packet settings",
        RejectedError,
        f"enable API issuing in the merchant platform, {_FIX_RESEND}",
    ),
    _row(
        "OPENID_ERROR",
        "the openid does not belong to the appid",
        RejectedError,
        f"fix the openid/appid pairing, {_FIX_RESEND}",
    ),
    _row(
        "MSGAPPID_ERROR",
        "SP mode: msgappid is not bound to the service provider or sub-merchant",
        RejectedError,
        f"fix msgappid, {_FIX_RESEND}",
    ),
    _row(
        "ACCEPTMODE_ERROR",
        "SP mode: mch_id and sub_mch_id have no service relationship",
        RejectedError,
        f"fix the merchant numbers, {_FIX_RESEND}",
    ),
    _row(
        "PARAM_ERROR",
        "a parameter is invalid",
        RejectedError,
        f"fix the parameter named in the description, {_FIX_RESEND}",
    ),
    _row(
        "PRODUCT_AUTHORITY_UNOPEN",
        "the red packet product is not activated for the merchant",
        RejectedError,
        f"activate the product in the merchant platform, {_FIX_RESEND}",
    ),
    # --- unknown: it may have been issued ---
    _row(
        "SYSTEMERROR",
        "WeChat's system error: the outcome is unknown",
        UnknownOutcomeError,
        "retry with the same bill number and parameters, or query; never switch bill number",
        retry_in_call=True,
    ),
    _row(
        "PROCESSING",
        "accepted and still processing",
        ProcessingError,
        "query after at least 20 minutes; if still processing, resend with the same bill number",
    ),
)

_NOT_FOUND = CodeInfo(
    "NOT_FOUND",
    "no record for this bill number (yet, or past the 30-day query window)",
    Outcome.UNKNOWN,
    None,
    retry_in_call=False,
    deferrable=False,
    reuse_bill=True,
    advice=(
        "never a failure by itself: if the bill was really sent, query again in a few minutes "
        "or resend with the same bill number"
    ),
)

_QUERY_ROWS = (
    _row(
        "CA_ERROR",
        "the client certificate is missing, invalid, foreign or expired",
        RejectedError,
        "fix the merchant API certificate, then query again",
    ),
    _row(
        "SIGN_ERROR",
        "the signature is wrong",
        RejectedError,
        "check the API key and the signed fields, then query again",
    ),
    _row(
        "NO_AUTH",
        "the merchant has no permission for gethbinfo",
        RejectedError,
        "ask WeChat Pay to enable the query API, then query again",
    ),
    _NOT_FOUND,
    _row(
        "FREQ_LIMIT",
        "the query rate is over its limit",
        FrequencyLimitError,
        "back off, then query again",
        deferrable=True,
    ),
    _row("XML_ERROR", "the request body is not valid XML", RejectedError, "fix it, query again"),
    _row(
        "PARAM_ERROR",
        "a parameter is invalid",
        RejectedError,
        "fix the parameter named in the description, then query again",
    ),
    # The official sample answers a missing record with SYSTEMERROR + "指定单号数据不存在"
    # (return_code=FAIL). Only err_code may drive logic (docs/protocol.md §5.1), and reading a
    # system error as "not found" could let a caller give up on a packet that was issued, so it
    # stays unknown.
    _row(
        "SYSTEMERROR",
        "WeChat's system error: the record's state is unknown",
        UnknownOutcomeError,
        "query again later; never read it as 'not found' or as a failure",
        retry_in_call=True,
    ),
)

SEND_CODES: Mapping[str, CodeInfo] = MappingProxyType({row.code: row for row in _SEND_ROWS})
"""err_code → row for sendredpack, sendgroupredpack, sendminiprogramhb and sendworkwxredpack
(docs/protocol.md §5.2, §5.5, §15.7)."""

QUERY_CODES: Mapping[str, CodeInfo] = MappingProxyType({row.code: row for row in _QUERY_ROWS})
"""err_code → row for gethbinfo and queryworkwxredpack (docs/protocol.md §5.4, §15.7). For a
query, an error's outcome concerns the query only: it never tells anything about the packet."""

UNKNOWN_CODE = CodeInfo(
    "UNKNOWN",
    "an error code hongbao does not know, a numeric internal code, or no code at all",
    Outcome.UNKNOWN,
    UnknownOutcomeError,
    retry_in_call=False,
    deferrable=False,
    reuse_bill=True,
    advice="do not switch bill number: query the bill, or resend it with the same parameters",
)
"""The row for anything not in the tables (docs/protocol.md §5.5: unknown outcome)."""


def classify(data: Mapping[str, object], *, query: bool = False) -> CodeInfo | None:
    """The row for a parsed response; None when it is a success.

    Success is `return_code == result_code == "SUCCESS"`. Otherwise `err_code` decides, also when
    `return_code` is FAIL (docs/protocol.md §3.1); anything not in the table is `UNKNOWN_CODE`.
    """
    if data.get("return_code") == "SUCCESS" and data.get("result_code") == "SUCCESS":
        return None
    code = data.get("err_code")
    table = QUERY_CODES if query else SEND_CODES
    row = table.get(code) if isinstance(code, str) else None
    return row if row is not None else UNKNOWN_CODE


def error_for(
    data: Mapping[str, object],
    *,
    query: bool = False,
    raw: bytes | None = None,
    mch_billno: str | None = None,
) -> HongbaoError | None:
    """Exactly one exception for a parsed response; None for a success or a query's NOT_FOUND.

    >>> error_for({"return_code": "FAIL", "err_code": "268458547"}).outcome
    <Outcome.UNKNOWN: 'unknown'>
    """
    row = classify(data, query=query)
    if row is None or row.error is None:
        return None
    return row.build(data, raw=raw, mch_billno=mch_billno)
