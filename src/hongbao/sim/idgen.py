"""Identifiers the simulated WeChat hands out, in the shapes observed live (docs/protocol.md §6.6).

With a seed every identifier is reproducible run to run; without one they are random.
API keys without a seed come from `secrets`: a simulator key is still a key.

>>> ids = IdGenerator(seed=1)
>>> len(ids.mch_id()), ids.appid().startswith("wx"), len(ids.openid())
(10, True, 28)
"""

from __future__ import annotations

import random
import secrets
import string
from datetime import datetime

from hongbao.clock import CST

__all__ = ["IdGenerator"]

_ALNUM = string.ascii_letters + string.digits
_OPENID_ALPHABET = _ALNUM + "-_"


class IdGenerator:
    """Makes merchant numbers, keys, appids, openids, send_listids and mini-program packages."""

    def __init__(self, seed: int | None = None) -> None:
        self._seeded = seed is not None
        # Seeded on purpose: reproducible ids are the point; nothing here guards money.
        self._rng = random.Random(seed)  # noqa: S311

    def _choice(self, alphabet: str, length: int) -> str:
        return "".join(self._rng.choice(alphabet) for _ in range(length))

    def _hex(self, length: int) -> str:
        return f"{self._rng.getrandbits(4 * length):0{length}x}"

    def mch_id(self) -> str:
        """A 10-digit merchant number starting with 19, like the documentation's examples."""
        return f"19{self._rng.randrange(10**8):08d}"

    def api_key(self, length: int = 32) -> str:
        """A 32-character APIv2 key (or a WeCom secret: 43 characters)."""
        if self._seeded:
            return self._choice(_ALNUM, length)
        return "".join(secrets.choice(_ALNUM) for _ in range(length))

    def appid(self, prefix: str = "wx") -> str:
        """An 18-character appid (`wx…`; WeCom corp ids use `ww…`)."""
        return prefix + self._hex(16)

    def openid(self) -> str:
        """A 28-character openid."""
        return "o" + self._choice(_OPENID_ALPHABET, 27)

    def detail_id(self, when: datetime, serial: int) -> str:
        """send_listid = detail_id: `1000041701` + yyyymmdd (UTC+8) + `3` + 12 digits (31)."""
        return f"1000041701{when.astimezone(CST):%Y%m%d}3{serial % 10**12:012d}"

    def package(self, mch_id: str, appid: str) -> str:
        """A mini-program `package`: `sendid=<64 hex>&ver=8&sign=<128 hex>&mchid=…&appid=…`."""
        return f"sendid={self._hex(64)}&ver=8&sign={self._hex(128)}&mchid={mch_id}&appid={appid}"
