"""The one secret masker: what hongbao logs, records in the ledger or shows never holds a secret.

A field is secret when its name speaks of a signature, a key, a secret or a password, in any
case: `sign`, `paySign`, `key`, `api_key`, `sandbox_signkey`, `key_password`… Its value becomes
`***`, in nested mappings and in lists of mappings too. Matching names rather than listing them
errs on the safe side: a new secret field is masked before anyone thinks of it (and so is
`sign_type`, which is harmless to hide).

It lives in the wire layer, where signatures are made, so that the client's logs, the ledger's
audit trail, the dashboard and the simulator can all use it.

>>> mask({"mch_billno": "1900000109202403150000000001", "sign": "B84C…"})
{'mch_billno': '1900000109202403150000000001', 'sign': '***'}
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret", "mask"]

MASK = "***"
"""What a secret value is replaced with."""

_SECRET_NAME = re.compile(r"sign|key|secret|password", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def is_secret(name: str) -> bool:
    """True when a field called `name` holds a secret (a signature, key, secret or password)."""
    # Cached: the same few dozen field names are masked for every request and answer.
    return _SECRET_NAME.search(name) is not None


def mask(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `data` with every secret value replaced by `***`, nested lists included."""
    masked: dict[str, Any] = {}
    for name, value in data.items():
        if is_secret(name):
            masked[name] = MASK
        elif type(value) is str or type(value) is int:
            # Nearly every value: decided without the ABC check of `Mapping`, which cost half
            # of a payout's two masks (its audited request and answer).
            masked[name] = value
        elif isinstance(value, Mapping):
            masked[name] = mask(value)
        elif isinstance(value, list):
            masked[name] = [mask(item) if isinstance(item, Mapping) else item for item in value]
        else:
            masked[name] = value
    return masked
