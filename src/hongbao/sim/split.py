"""The fission (ALL_RAND) split of docs/protocol.md §6.7: seedable, every share within [min, cap].

WeChat does not publish its algorithm; this one keeps the spec's constraints. At each step the
draw is bounded so that the shares still to come can always stay within bounds, and by twice
the running average so early shares cannot swallow the set.

>>> import random
>>> shares = split_shares(900, 3, random.Random(7))
>>> sum(shares), len(shares), min(shares) >= 100
(900, 3, True)
"""

from __future__ import annotations

import random

__all__ = ["MIN_SHARE", "SHARE_CAP", "split_shares"]

MIN_SHARE = 100
"""Every share is at least 1 yuan."""
SHARE_CAP = 100_000
"""Legacy single-share cap of 1000 yuan (docs/protocol.md §6.1)."""


def split_shares(
    total: int,
    count: int,
    rng: random.Random,
    *,
    min_share: int = MIN_SHARE,
    cap: int = SHARE_CAP,
) -> list[int]:
    """Split `total` fen into `count` random shares in [min_share, cap] that sum to `total`."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if not 0 < min_share <= cap:
        raise ValueError("need 0 < min_share <= cap")
    if not min_share * count <= total <= cap * count:
        raise ValueError(
            f"{total} fen cannot be split into {count} shares of {min_share}..{cap} fen"
        )
    shares: list[int] = []
    remaining = total
    for left in range(count, 1, -1):  # `left` shares still to allocate, this one included
        low = max(min_share, remaining - cap * (left - 1))
        high = min(cap, remaining - min_share * (left - 1), 2 * remaining // left)
        share = rng.randint(low, high)
        shares.append(share)
        remaining -= share
    shares.append(remaining)
    return shares
