"""Money as integer fen, with strict yuan parsing and formatting.

>>> parse_yuan("1.5")
150
>>> format_yuan(150)
'1.50'
"""

from __future__ import annotations

import re
from typing import NewType

__all__ = ["Fen", "MoneyError", "format_yuan", "parse_yuan"]

Fen = NewType("Fen", int)
"""An amount in fen (1/100 CNY). Never a float."""

_YUAN = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?")


class MoneyError(ValueError):
    """A yuan string that is not a plain non-negative amount with at most two decimals."""


def parse_yuan(text: str) -> Fen:
    """Parse yuan ("1", "1.5", "1.50") into fen; anything else is an error, never rounded."""
    if not isinstance(text, str):
        raise MoneyError(f"amount {text!r} must be a string of yuan such as '1.50'")
    match = _YUAN.fullmatch(text)
    if match is None:
        raise MoneyError(
            f"amount {text!r} is not a valid yuan amount: use digits with at most two decimals, "
            "e.g. '1', '1.5' or '1.50' (no sign, exponent or separators)"
        )
    whole, frac = match.group(1), match.group(2) or ""
    return Fen(int(whole) * 100 + int(frac.ljust(2, "0")))


def format_yuan(fen: int) -> str:
    """Format fen as yuan with two decimals: 150 -> '1.50', -5 -> '-0.05'."""
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), 100)
    return f"{sign}{whole}.{frac:02d}"
