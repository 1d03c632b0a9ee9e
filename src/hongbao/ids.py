"""Bill numbers (mch_billno) and nonces.

A bill number is the idempotency key of a red packet: minted once, before the first send, and
reused by every retry.

>>> len(mint_bill_no("1900000109", datetime(2024, 3, 15, tzinfo=CST)))
28
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from datetime import datetime

from hongbao.clock import CST
from hongbao.errors import OperationError

__all__ = ["BillNoError", "mint_bill_no", "new_nonce", "nonces", "validate_bill_no"]

_ALNUM = re.compile(r"[0-9A-Za-z]+")
# mch_id + 8-digit date + 10 digits must fit the 28 characters WeChat allows.
_MCH_ID = re.compile(r"[0-9]{1,10}")
MAX_BILL_NO = 28


class BillNoError(OperationError, ValueError):
    """A bill number that WeChat would refuse, or a merchant number no bill number fits."""


def mint_bill_no(mch_id: str, when: datetime, serial: int | None = None) -> str:
    """`mch_id + yyyymmdd (UTC+8) + 10 digits`: 28 characters for a 10-digit mch_id.

    `serial` fixes the 10 digits (e.g. a ledger sequence); otherwise they are random.
    """
    if not _MCH_ID.fullmatch(mch_id):
        raise BillNoError(f"mch_id {mch_id!r} must be 1 to 10 digits to mint a bill number")
    if when.tzinfo is None:
        # A naive datetime would be read as the machine's local time: the wrong day off UTC+8.
        raise ValueError("mint_bill_no needs an aware datetime (tzinfo set)")
    if serial is None:
        serial = secrets.randbelow(10**10)
    if not 0 <= serial < 10**10:
        raise BillNoError(f"serial {serial} must have at most 10 digits")
    bill = f"{mch_id}{when.astimezone(CST):%Y%m%d}{serial:010d}"
    return validate_bill_no(bill)


def validate_bill_no(bill_no: str) -> str:
    """Check a caller-supplied bill number: 1 to 28 characters, letters and digits only."""
    if not bill_no or len(bill_no) > MAX_BILL_NO:
        raise BillNoError(
            f"mch_billno {bill_no!r} must be 1 to {MAX_BILL_NO} characters (it has {len(bill_no)})"
        )
    if not _ALNUM.fullmatch(bill_no):
        raise BillNoError(f"mch_billno {bill_no!r} may contain only letters and digits (0-9a-zA-Z)")
    return bill_no


def new_nonce(length: int = 32) -> str:
    """A random nonce_str of `length` (≤ 32) lowercase hex digits from the OS CSPRNG.

    Every nonce hongbao sends comes from here (or from `nonces`, the same drawn in blocks).
    """
    if not 1 <= length <= 32:
        raise ValueError("nonce_str length must be 1..32")
    # Hex of random bytes: 128 bits in 32 characters, 50x cheaper than 32 `secrets.choice`.
    return secrets.token_hex((length + 1) // 2)[:length]


def nonces(block: int = 1024) -> Iterator[str]:
    """Endless 32-digit nonces as `new_nonce` draws them, `block` per read of the OS CSPRNG.

    For planning many payouts at once: about a quarter of the cost of `new_nonce` per nonce.
    """
    while True:
        drawn = os.urandom(16 * block).hex()
        for start in range(0, len(drawn), 32):
            yield drawn[start : start + 32]
