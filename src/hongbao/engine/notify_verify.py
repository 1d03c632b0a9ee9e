"""Checking a payment result notification (支付结果通知) and the answers WeChat expects.

Pure: bytes in, a `Payment` (or a `NotificationError`) out. The checks, in order: the body is
safe XML with flat fields; `return_code` is SUCCESS; `sign_type` is MD5 (or absent) or
HMAC-SHA256; the signature verifies over **every** received non-empty field except `sign`,
unknown ones included (docs/protocol.md §14.1); `mch_id` is the merchant whose key was used;
the required fields are present and `total_fee`/`cash_fee` are whole numbers of fen.
A `result_code` of FAIL is a verified notification of a failed payment: it is returned, and
`hongbao.engine.rules.evaluate` gives it nothing.

What is left to the caller: checking that `total_fee` matches the order it created under
`out_trade_no` (only the merchant's order system knows), and idempotency on `transaction_id`
(the ledger's natural keys).

>>> payment = verify_notification(body, mch_id="1900000109", api_key=key)  # doctest: +SKIP
>>> SUCCESS_REPLY
b'<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>'
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import SecretStr

from hongbao.engine.rules import Payment, PaymentError
from hongbao.errors import HongbaoError, Outcome
from hongbao.wire import xmlcodec
from hongbao.wire.sign import SignType, verify

__all__ = [
    "SUCCESS_REPLY",
    "NotificationError",
    "Rejection",
    "fail_reply",
    "notification_fields",
    "verify_notification",
]

SUCCESS_REPLY = xmlcodec.dumps({"return_code": "SUCCESS", "return_msg": "OK"})
"""The answer that stops WeChat's resends (HTTP 200)."""

_SIGN_TYPES: dict[str, SignType] = {"MD5": "MD5", "HMAC-SHA256": "HMAC-SHA256"}
_MAX_MSG = 128  # return_msg is String(128)


class Rejection(StrEnum):
    """Why a notification was refused."""

    MALFORMED = "malformed"
    """Not safe, flat `<xml>`."""
    NOT_SUCCESS = "not_success"
    """`return_code` is not SUCCESS: a communication failure carries no payment."""
    SIGN_TYPE = "sign_type"
    """A `sign_type` other than MD5 or HMAC-SHA256."""
    SIGNATURE = "signature"
    """Missing or wrong signature: forged, altered, or signed with another key."""
    MERCHANT = "merchant"
    """Signed, but for another `mch_id` than the merchant whose key checked it."""
    FIELDS = "fields"
    """A required field missing, or an amount or time malformed."""


class NotificationError(HongbaoError):
    """A notification that was refused: no payment is taken from it, so nothing is sent.

    `reply` is the FAIL answer to give WeChat (which resends it later).
    """

    outcome = Outcome.NOT_SENT

    def __init__(self, message: str, *, rejection: Rejection) -> None:
        super().__init__(message)
        self.rejection = rejection

    @property
    def reply(self) -> bytes:
        """The FAIL answer naming the problem (no secret in it)."""
        return fail_reply(self.message)


def fail_reply(message: str) -> bytes:
    """`<xml><return_code>FAIL</return_code><return_msg>message</return_msg></xml>` (CDATA).

    >>> fail_reply("bad signature").startswith(b"<xml><return_code><![CDATA[FAIL]]>")
    True
    """
    text = message[:_MAX_MSG] or "FAIL"
    return xmlcodec.dumps({"return_code": "FAIL", "return_msg": text})


def notification_fields(body: bytes) -> xmlcodec.XmlDict:
    """The fields of a notification's body, unchecked; `NotificationError` if it is no XML."""
    try:
        return xmlcodec.loads(body)
    except xmlcodec.XmlError as exc:
        raise NotificationError(
            f"not a notification: {exc}", rejection=Rejection.MALFORMED
        ) from None


def verify_notification(body: bytes, *, mch_id: str, api_key: str | SecretStr) -> Payment:
    """Check a notification received by merchant `mch_id`, whose APIv2 key is `api_key`.

    Returns the `Payment`; raises `NotificationError` (answer it with `.reply`).

    >>> try:  # doctest: +SKIP
    ...     payment = verify_notification(body, mch_id=mch_id, api_key=key)
    ... except NotificationError as exc:
    ...     return Response(exc.reply, media_type="text/xml")
    """
    fields = notification_fields(body)
    nested = sorted(name for name, value in fields.items() if not isinstance(value, str))
    if nested:
        raise NotificationError(
            f"not a notification: element {nested[0]} holds elements", rejection=Rejection.MALFORMED
        )
    if fields.get("return_code") != "SUCCESS":
        raise NotificationError(
            f"return_code is {fields.get('return_code') or 'missing'}, not SUCCESS",
            rejection=Rejection.NOT_SUCCESS,
        )
    given_type = fields.get("sign_type") or "MD5"
    sign_type = _SIGN_TYPES.get(str(given_type))
    if sign_type is None:
        raise NotificationError(
            f"sign_type {given_type!r} is neither MD5 nor HMAC-SHA256",
            rejection=Rejection.SIGN_TYPE,
        )
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    if not verify(fields, key, sign_type):
        what = "missing" if not fields.get("sign") else "does not verify"
        raise NotificationError(f"signature {what} ({sign_type})", rejection=Rejection.SIGNATURE)
    if fields.get("mch_id") != mch_id:
        raise NotificationError(
            f"mch_id {fields.get('mch_id') or 'missing'} is not this merchant ({mch_id})",
            rejection=Rejection.MERCHANT,
        )
    try:
        return Payment.from_fields(fields)
    except PaymentError as exc:
        raise NotificationError(str(exc), rejection=Rejection.FIELDS) from None
