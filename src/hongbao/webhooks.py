"""Signing and verifying hongbao's webhooks (`hongbao serve` sends them).

Each delivery is a POST of a JSON event `{"id": "evt_…", "type", "created", "data": {…}}` with
the header `Hongbao-Signature: t=UNIX,v1=HEX`, where
`HEX = HMAC-SHA256(secret, f"{t}.{body}")` over the body's exact bytes. A receiver checks the
signature and that `t` is recent (so a captured delivery cannot be replayed later), then acts
on the event id at most once (a delivery may come more than once):

>>> from hongbao.webhooks import verify
>>> verify(request_body, request.headers["Hongbao-Signature"], secret)  # doctest: +SKIP

The header may carry several `v1=` values (while a secret is being rotated); one matching is
enough. Pure: no I/O, no clock unless `now` is left out.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from hongbao.errors import HongbaoError

__all__ = [
    "SIGNATURE_HEADER",
    "TOLERANCE_SECONDS",
    "WebhookSignatureError",
    "sign",
    "signature_header",
    "verify",
]

SIGNATURE_HEADER = "Hongbao-Signature"
TOLERANCE_SECONDS = 300
"""How old (or how far in the future) a delivery's timestamp may be, by default."""


class WebhookSignatureError(HongbaoError):
    """A webhook delivery is not signed by the secret, or its timestamp is out of tolerance.
    Answer it with 400 and do not act on it."""


def sign(body: bytes | str, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 of `f"{timestamp}.{body}"` under `secret`."""
    payload = body.encode() if isinstance(body, str) else body
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(body: bytes | str, secrets: str | list[str], timestamp: int) -> str:
    """The `Hongbao-Signature` value of `body`: `t=…,v1=…` (one `v1` per secret)."""
    keys = [secrets] if isinstance(secrets, str) else secrets
    return ",".join([f"t={timestamp}", *(f"v1={sign(body, key, timestamp)}" for key in keys)])


def verify(
    body: bytes | str,
    header: str | None,
    secret: str,
    tolerance: int = TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> None:
    """Check a delivery: raise `WebhookSignatureError` unless `header` signs `body` with
    `secret` and its timestamp is within `tolerance` seconds of `now` (default: the clock).

    `body` must be the request's raw bytes, before any JSON parsing.
    """
    if not header:
        raise WebhookSignatureError(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    given: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookSignatureError(f"{SIGNATURE_HEADER}: t is not a number") from None
        elif name == "v1":
            given.append(value)
    if timestamp is None or not given:
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} must hold t=UNIX and v1=HEX")
    expected = sign(body, secret, timestamp)
    # Every candidate is compared, in constant time each.
    if not any([hmac.compare_digest(expected, candidate) for candidate in given]):
        raise WebhookSignatureError("the signature does not match the body and secret")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        raise WebhookSignatureError(
            f"the delivery's timestamp is {abs(int(age))} s off, more than {tolerance} s"
        )
