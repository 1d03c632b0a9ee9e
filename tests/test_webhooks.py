"""`hongbao.webhooks`: what a receiver relies on to trust a delivery."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from hongbao.webhooks import WebhookSignatureError, sign, signature_header, verify

SECRET = "whsec_" + "0123456789abcdef"
BODY = b'{"id":"evt_1","type":"payout.sent","created":1764900000,"data":{}}'
NOW = 1_764_900_000


def test_the_signature_is_the_hmac_of_the_timestamp_and_the_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert sign(BODY, SECRET, NOW) == expected
    assert signature_header(BODY, SECRET, NOW) == f"t={NOW},v1={expected}"


def test_a_delivery_signed_with_the_secret_verifies() -> None:
    verify(BODY, signature_header(BODY, SECRET, NOW), SECRET, now=NOW + 299)
    verify(BODY.decode(), signature_header(BODY, SECRET, NOW), SECRET, now=NOW - 299)


def test_one_of_several_signatures_is_enough_while_a_secret_rotates() -> None:
    header = signature_header(BODY, ["whsec_old_" + "9" * 16, SECRET], NOW)

    verify(BODY, header, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("body", "header", "secret", "now", "says"),
    [
        (BODY + b" ", None, SECRET, NOW, "no Hongbao-Signature"),
        (BODY.replace(b"sent", b"failed"), "good", SECRET, NOW, "does not match"),
        (BODY, "good", SECRET[:-1] + "x", NOW, "does not match"),
        (BODY, "good", SECRET, NOW + 301, "301 s off"),
        (BODY, "good", SECRET, NOW - 400, "400 s off"),
        (BODY, f"t={NOW}", SECRET, NOW, "must hold"),
        (BODY, "v1=abc", SECRET, NOW, "must hold"),
        (BODY, "t=soon,v1=abc", SECRET, NOW, "not a number"),
        (BODY, "", SECRET, NOW, "no Hongbao-Signature"),
    ],
)
def test_a_tampered_stale_or_malformed_delivery_is_refused(
    body: bytes, header: str | None, secret: str, now: int, says: str
) -> None:
    given = signature_header(BODY, SECRET, NOW) if header == "good" else header

    with pytest.raises(WebhookSignatureError, match=says):
        verify(body, given, secret, now=now)


def test_a_wider_tolerance_accepts_an_older_delivery() -> None:
    verify(BODY, signature_header(BODY, SECRET, NOW), SECRET, tolerance=900, now=NOW + 600)
