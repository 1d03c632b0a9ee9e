"""Bill numbers (mch_billno) and nonces.

A bill number is the idempotency key of a red packet: minted once, before the first send, and
reused by every retry. Every bill number hongbao makes comes from `mint_bill_nos` (or
`mint_bill_no`, one at a time): `mch_id + yyyymmdd (UTC+8) + 10 digits`, the format WeChat
documents, 28 characters for a 10-digit mch_id. The 10 digits are

    ledger_id × SERIALS_PER_DAY + serial

where `ledger_id` is the identity of the ledger that minted it and `serial` counts that ledger's
bills of the merchant's day (0 … SERIALS_PER_DAY-1). Two ledgers with distinct identities can
therefore never mint the same bill number for one merchant, even on the same day. Ledgers take
their identity from `LEDGER_IDS` (1 … 3332); identity 0 (`NO_LEDGER`) is left to bills minted
outside any ledger (tests, benchmarks) and to those ledgers minted before identities existed,
whose serial was the whole 10 digits.

>>> len(mint_bill_no("1900000109", datetime(2024, 3, 15, tzinfo=CST)))
28
>>> mint_bill_no("1900000109", datetime(2024, 3, 15, tzinfo=CST), 7, ledger_id=42)
'1900000109202403150126000007'
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Iterator
from datetime import datetime

from hongbao.clock import CST
from hongbao.errors import OperationError

__all__ = [
    "LEDGER_IDS",
    "MAX_BILL_NO",
    "NO_LEDGER",
    "SERIALS_PER_DAY",
    "BillNoError",
    "mint_bill_no",
    "mint_bill_nos",
    "new_nonce",
    "nonces",
    "validate_bill_no",
]

_ALNUM = re.compile(r"[0-9A-Za-z]+")
# mch_id + 8-digit date + 10 digits must fit the 28 characters WeChat allows.
_MCH_ID = re.compile(r"[0-9]{1,10}")
_SUFFIX_DIGITS = 10
MAX_BILL_NO = 28

SERIALS_PER_DAY = 3_000_000
"""Bill numbers one ledger can mint per merchant and UTC+8 day: more than WeChat can send in a
day (1,800 a minute is 2,592,000)."""
_IDENTITIES = 10**_SUFFIX_DIGITS // SERIALS_PER_DAY
"""3,333 identities 0 … 3332: the largest suffix, 3332 × 3,000,000 + 2,999,999, has 10 digits."""
NO_LEDGER = 0
"""The identity of bill numbers minted outside a ledger; no ledger takes it."""
LEDGER_IDS = range(NO_LEDGER + 1, _IDENTITIES)
"""The identities a ledger may have: 1 … 3332."""


class BillNoError(OperationError, ValueError):
    """A bill number that WeChat would refuse, or a merchant number no bill number fits."""


def mint_bill_nos(
    mch_id: str, when: datetime, serials: Iterable[int], *, ledger_id: int
) -> list[str]:
    """The bill numbers of `serials` of the ledger `ledger_id`, on `when`'s UTC+8 day.

    Each is `mch_id + yyyymmdd + 10 digits`, the digits `ledger_id × SERIALS_PER_DAY + serial`.
    """
    if not _MCH_ID.fullmatch(mch_id):
        raise BillNoError(f"mch_id {mch_id!r} must be 1 to 10 digits to mint a bill number")
    if when.tzinfo is None:
        # A naive datetime would be read as the machine's local time: the wrong day off UTC+8.
        raise ValueError("mint_bill_no needs an aware datetime (tzinfo set)")
    if not 0 <= ledger_id < _IDENTITIES:
        raise BillNoError(f"ledger identity {ledger_id} must be 0 to {_IDENTITIES - 1}")
    prefix = f"{mch_id}{when.astimezone(CST):%Y%m%d}"
    base = ledger_id * SERIALS_PER_DAY
    bills = []
    for serial in serials:
        if not 0 <= serial < SERIALS_PER_DAY:
            raise BillNoError(
                f"serial {serial} must be 0 to {SERIALS_PER_DAY - 1} (bill numbers of one "
                "ledger per merchant and day)"
            )
        bills.append(f"{prefix}{base + serial:010d}")
    return bills


def mint_bill_no(
    mch_id: str, when: datetime, serial: int | None = None, *, ledger_id: int = NO_LEDGER
) -> str:
    """One bill number: `serial` of the ledger `ledger_id` (see `mint_bill_nos`).

    Without `serial` the 10 digits are random, for a packet sent outside any ledger.
    """
    if serial is None:
        if ledger_id != NO_LEDGER:
            raise ValueError("a ledger's bill numbers have serials: pass serial with ledger_id")
        drawn = secrets.randbelow(_IDENTITIES * SERIALS_PER_DAY)
        ledger_id, serial = divmod(drawn, SERIALS_PER_DAY)
    [bill] = mint_bill_nos(mch_id, when, (serial,), ledger_id=ledger_id)
    return bill


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
