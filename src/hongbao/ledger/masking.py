"""Masking of secrets before anything reaches the audit trail.

>>> mask({"mch_billno": "1900000109202403150000000001", "sign": "B84C…"})
{'mch_billno': '1900000109202403150000000001', 'sign': '***'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SECRET_FIELDS", "mask"]

SECRET_FIELDS = frozenset({"sign", "paySign", "key", "api_key", "password", "sandbox_signkey"})
"""Names whose values are never written anywhere: signatures and keys."""

MASK = "***"


def mask(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `data` with every secret value replaced by `***`, nested lists included."""
    masked: dict[str, Any] = {}
    for name, value in data.items():
        if name in SECRET_FIELDS:
            masked[name] = MASK
        elif isinstance(value, Mapping):
            masked[name] = mask(value)
        elif isinstance(value, list):
            masked[name] = [mask(item) if isinstance(item, Mapping) else item for item in value]
        else:
            masked[name] = value
    return masked
