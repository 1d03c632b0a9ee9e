"""Merchant profiles: the lease covers a whole call, caps and policies follow the settings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hongbao.engine.settings import MerchantProfile, RunSettings, call_seconds
from hongbao.engine.states import LimitPolicy, Policy
from hongbao.ledger import CapPolicy, DailyCaps
from hongbao.wire.retry import RetryPolicy
from hongbao.wire.transport import Timeouts
from tests.api.apikit import merchant


def test_a_call_lasts_at_most_every_attempt_timing_out_plus_every_backoff() -> None:
    slow = merchant(
        timeouts=Timeouts(connect=5, read=10),
        retry=RetryPolicy(max_retries=2, initial_delay=0.5, max_delay=5, min_interval=1),
    )
    # three attempts of 15 s, and backoffs of max(1, 0.5) and max(1, 1.0) seconds
    assert call_seconds(slow) == 3 * 15 + 1 + 1


def test_the_default_lease_outlasts_a_whole_call() -> None:
    profile = MerchantProfile(name="shop", merchant=merchant())
    assert profile.lease_seconds > call_seconds(profile.merchant)
    assert MerchantProfile(name="shop", merchant=merchant(), lease_seconds=5).lease_seconds == 5


def test_caps_and_policies_follow_the_profile() -> None:
    profile = MerchantProfile(
        name="shop",
        merchant=merchant(),
        per_user_daily_count=3,
        per_user_daily_amount_fen=500,
        merchant_daily_amount_fen=10_000,
        limit_policy=LimitPolicy.FAIL,
    )
    assert profile.caps == DailyCaps(3, 500, 10_000)
    assert profile.cap_policy is CapPolicy.SKIP
    assert profile.policy(Policy()).daily_limit is LimitPolicy.FAIL
    assert replace(profile, limit_policy=LimitPolicy.DEFER).cap_policy is CapPolicy.DEFER


@pytest.mark.parametrize(
    "bad",
    [
        {"rate_per_minute": 0},
        {"concurrency": 0},
        {"per_user_daily_count": -1},
        {"lease_seconds": -1},
    ],
)
def test_impossible_profiles_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
        MerchantProfile(name="shop", merchant=merchant(), **bad)  # type: ignore[arg-type]


def test_impossible_run_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="poll_seconds"):
        RunSettings(poll_seconds=0)
    with pytest.raises(ValueError, match="reissue_limit"):
        RunSettings(reissue_limit=-1)
