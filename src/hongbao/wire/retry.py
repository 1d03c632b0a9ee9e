"""The in-call retry policy, as pure functions so the sync and async loops share it.

Transient failures (connection errors, read timeouts, HTTP 5xx, SYSTEMERROR) are retried at most
`max_retries` times with the **same bytes**: same bill number, same nonce, same signature.
Backoff doubles from `initial_delay` to `max_delay` with jitter in [0.5, 1], and never goes below
`min_interval`: WeChat's sendredpack page asks for at least 1 s between two sends of one bill
number (docs/protocol.md §1.4), so the floor wins over the shorter first backoff.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["NO_RETRY", "RetryPolicy", "backoff", "should_retry"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure within one call."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 5.0
    min_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 <= self.initial_delay <= self.max_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay")
        if self.min_interval < 0:
            raise ValueError("min_interval must be >= 0")


NO_RETRY = RetryPolicy(max_retries=0, initial_delay=0, max_delay=0, min_interval=0)


def should_retry(policy: RetryPolicy, retries_done: int, *, transient: bool) -> bool:
    """Retry when the failure is transient and the budget is not spent."""
    return transient and retries_done < policy.max_retries


def backoff(
    policy: RetryPolicy, retry_number: int, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number `retry_number` (1-based)."""
    if retry_number < 1:
        raise ValueError("retry_number is 1-based")
    base: float = min(policy.max_delay, policy.initial_delay * 2.0 ** (retry_number - 1))
    jittered = base * (0.5 + 0.5 * rand())
    return max(policy.min_interval, jittered)
