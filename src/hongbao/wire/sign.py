"""WeChat Pay APIv2 signatures (docs/protocol.md §2.1).

Drop `sign` and empty values, sort the names, join `name=value` with `&`, append `&key=KEY`, then
MD5 or HMAC-SHA256 (keyed by the API key, over the string *including* `&key=`), uppercase hex.

>>> sign({"mch_id": "10000100", "nonce_str": "abc"}, "k" * 32)[:8]
'4A718690'
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Literal

__all__ = ["SignType", "sign", "string_to_sign", "verify"]

SignType = Literal["MD5", "HMAC-SHA256"]


def string_to_sign(params: Mapping[str, object], key: str) -> str:
    """The exact string that is hashed: sorted non-empty pairs (without `sign`) plus `&key=`."""
    pairs = [
        f"{name}={value}"
        for name, value in sorted(params.items())
        if name != "sign" and value is not None and value != ""
    ]
    pairs.append(f"key={key}")
    return "&".join(pairs)


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
