"""WeChat Pay APIv2 signatures (docs/protocol.md §2.1).

Drop `sign` and empty values, sort the names, join `name=value` with `&`, append `&key=KEY`, then
MD5 or HMAC-SHA256 (keyed by the API key, over the string *including* `&key=`), uppercase hex.

>>> sign({"mch_id": "10000100", "nonce_str": "abc"}, "k" * 32)[:8]
'4A718690'

A WeCom red packet is signed twice (docs/protocol.md §15.3): first `workwx_sign` over a fixed
set of seven fields with `&secret=` and the WeCom payment secret, then the usual `sign` over
every field, `workwx_sign` included.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Literal

__all__ = [
    "WORKWX_SIGNED_FIELDS",
    "SignType",
    "sign",
    "string_to_sign",
    "verify",
    "verify_workwx",
    "workwx_sign",
    "workwx_string_to_sign",
]

SignType = Literal["MD5", "HMAC-SHA256"]


WORKWX_SIGNED_FIELDS = (
    "act_name",
    "mch_billno",
    "mch_id",
    "nonce_str",
    "re_openid",
    "total_amount",
    "wxappid",
)
"""The only fields `workwx_sign` covers, in their ASCII order (docs/protocol.md §15.3)."""


def _pairs(params: Mapping[str, object]) -> list[str]:
    return [
        f"{name}={value}"
        for name, value in sorted(params.items())
        if name != "sign" and value is not None and value != ""
    ]


def string_to_sign(params: Mapping[str, object], key: str) -> str:
    """The exact string that is hashed: sorted non-empty pairs (without `sign`) plus `&key=`."""
    return "&".join([*_pairs(params), f"key={key}"])


def workwx_string_to_sign(params: Mapping[str, object], secret: str) -> str:
    """The string `workwx_sign` hashes: the seven fields of `WORKWX_SIGNED_FIELDS` that are
    non-empty, sorted, plus `&secret=` (not `&key=`) and the WeCom payment secret."""
    chosen = {name: params.get(name) for name in WORKWX_SIGNED_FIELDS}
    return "&".join([*_pairs(chosen), f"secret={secret}"])


def workwx_sign(params: Mapping[str, object], secret: str) -> str:
    """The `workwx_sign` of a sendworkwxredpack request: MD5, uppercase hex.

    Every other field (`agentid`, `sender_name`, `scene_id`, …) is left out, whatever `params`
    holds; the outer `sign` is computed afterwards over all fields including this one.

    >>> workwx_sign({"act_name": "XXX", "mch_billno": "11111234567890", "mch_id": "10000098",
    ...     "nonce_str": "qFKEgfig76DF9912fewmkp", "re_openid": "oxTWIuGaIt6gTKsQRLau2M0yL16E",
    ...     "total_amount": 100, "wxappid": "wx123456789"}, "192006250b4c09247ec02edce69f6a2d")
    '8B8D04AFC9FD08094CC5A0C2FA8BB60C'
    """
    message = workwx_string_to_sign(params, secret).encode("utf-8")
    return hashlib.md5(message, usedforsecurity=False).hexdigest().upper()


def verify_workwx(params: Mapping[str, object], secret: str) -> bool:
    """True when `params["workwx_sign"]` is the uppercase digest for `secret`.

    Compared case-sensitively: clients send uppercase, and whether WeChat accepts lowercase is
    unconfirmed (docs/protocol.md §15.3), so the simulator refuses it.
    """
    given = params.get("workwx_sign")
    if not isinstance(given, str) or not given:
        return False
    expected = workwx_sign(params, secret)
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))


def sign(params: Mapping[str, object], key: str, sign_type: SignType = "MD5") -> str:
    """Sign `params` with the merchant's APIv2 `key`; returns uppercase hex."""
    message = string_to_sign(params, key).encode("utf-8")
    if sign_type == "MD5":
        return hashlib.md5(message, usedforsecurity=False).hexdigest().upper()
    if sign_type == "HMAC-SHA256":
        return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"sign_type must be 'MD5' or 'HMAC-SHA256', not {sign_type!r}")


def verify(
    params: Mapping[str, object],
    key: str,
    sign_type: SignType = "MD5",
    *,
    signature: str | None = None,
) -> bool:
    """True when `signature` (default: `params["sign"]`) matches, compared case-insensitively.

    Every received field except `sign` takes part, unknown ones included (docs/protocol.md §2.1).
    """
    given = signature if signature is not None else params.get("sign")
    if not isinstance(given, str) or not given:
        return False
    expected = sign(params, key, sign_type)
    return hmac.compare_digest(expected.encode("ascii"), given.upper().encode("ascii", "replace"))
