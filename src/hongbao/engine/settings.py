"""What the engine needs to know about each merchant it pays from, and how a run behaves.

`MerchantProfile` pairs an API `Merchant` with the engine's own limits; its field names mirror
the configuration keys (`rate_per_minute`, `concurrency`, `per_user_daily_count`, …), so the
TOML loader builds one straight from a `[merchants.NAME]` section.

>>> profile = MerchantProfile(name="shop", merchant=merchant, rate_per_minute=600)
>>> profile.lease_seconds  # covers a whole call with its retries  # doctest: +SKIP
34.5
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hongbao.api import Merchant
from hongbao.engine.states import LimitPolicy, Policy
from hongbao.ledger import CapPolicy, DailyCaps

__all__ = ["LimitPolicy", "MerchantProfile", "RunSettings", "call_seconds"]

LEASE_MARGIN_SECONDS = 2.0
"""Added to a computed lease: the ledger commit after the answer takes time too."""


def call_seconds(merchant: Merchant) -> float:
    """The longest one send call can take: every attempt timing out, every backoff at its top."""
    timeouts, retry = merchant.timeouts, merchant.retry
    attempts = retry.max_retries + 1
    backoffs = sum(
        max(retry.min_interval, min(retry.max_delay, retry.initial_delay * 2.0 ** (n - 1)))
        for n in range(1, retry.max_retries + 1)
    )
    return attempts * (timeouts.connect + timeouts.read) + backoffs


@dataclass(frozen=True, slots=True, kw_only=True)
class MerchantProfile:
    """A merchant as the engine pays from it: API account plus pacing, caps and policy.

    `lease_seconds` is how long a claimed payout stays reserved to its sender before recovery
    may take it over; 0 (the default) computes it from the merchant's timeouts and retry policy
    so that a live sender is never overtaken.
    """

    name: str
    merchant: Merchant
    rate_per_minute: int = 1800
    """Send calls per minute (WeChat's default cap, docs/protocol.md §6.1)."""
    query_rate_per_minute: int = 1800
    """gethbinfo calls per minute (recovery, tracking, reconciliation); WeChat documents none."""
    concurrency: int = 16
    """Send calls in flight at once."""
    per_user_daily_count: int = 10
    per_user_daily_amount_fen: int = 100_000
    merchant_daily_amount_fen: int | None = None
    """The merchant's own daily total, if it configured one below WeChat's default."""
    lease_seconds: float = 0.0
    limit_policy: LimitPolicy = LimitPolicy.DEFER
    """A daily limit (ours or WeChat's): defer to the next UTC+8 day, or give the payout up."""

    def __post_init__(self) -> None:
        for name in ("rate_per_minute", "query_rate_per_minute", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.per_user_daily_count < 0 or self.per_user_daily_amount_fen < 0:
            raise ValueError("per-user daily caps must not be negative")
        if self.lease_seconds < 0:
            raise ValueError("lease_seconds must not be negative")
        if self.lease_seconds == 0:
            lease = call_seconds(self.merchant) + LEASE_MARGIN_SECONDS
            object.__setattr__(self, "lease_seconds", lease)

    @property
    def mch_id(self) -> str:
        """The merchant number."""
        return self.merchant.mch_id

    @property
    def caps(self) -> DailyCaps:
        """The daily caps a claim checks."""
        return DailyCaps(
            per_user_count=self.per_user_daily_count,
            per_user_amount_fen=self.per_user_daily_amount_fen,
            merchant_amount_fen=self.merchant_daily_amount_fen,
        )

    @property
    def cap_policy(self) -> CapPolicy:
        """What a claim does with a payout over a daily cap, following `limit_policy`."""
        return CapPolicy.DEFER if self.limit_policy is LimitPolicy.DEFER else CapPolicy.SKIP

    def policy(self, base: Policy) -> Policy:
        """`base` with this merchant's daily-limit policy."""
        return replace(base, daily_limit=self.limit_policy)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSettings:
    """How a dispatcher behaves: timings of the state machine, polling, recovery, re-issue."""

    policy: Policy = field(default_factory=Policy)
    poll_seconds: float = 1.0
    """How often an idle runner looks at the ledger again (campaign paused? work due?)."""
    recovery_every: float = 30.0
    """How often a runner looks for in-flight payouts whose lease ran out."""
    max_idle_wait: float = 300.0
    """A run returns rather than wait longer than this for deferred work (run it again later)."""
    reissue_limit: int = 2
    """New bill numbers one intent may get after definitive failures (0: never re-issue)."""
    status_every: float = 10.0
    """How often a long-running command says what it waits for (`hongbao.engine.status`)."""
    pause_after: float = 120.0
    """A campaign none of whose sends reached WeChat for this long (host unreachable) is
    paused with the reason, rather than retried forever."""

    def __post_init__(self) -> None:
        if self.poll_seconds <= 0 or self.recovery_every <= 0:
            raise ValueError("poll_seconds and recovery_every must be positive")
        if self.status_every <= 0 or self.pause_after <= 0:
            raise ValueError("status_every and pause_after must be positive")
        if self.max_idle_wait < 0 or self.reissue_limit < 0:
            raise ValueError("max_idle_wait and reissue_limit must not be negative")
