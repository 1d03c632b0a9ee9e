"""The in-call retry policy: budget, transient-only, doubling backoff with jitter and a floor."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.wire.retry import NO_RETRY, RetryPolicy, backoff, should_retry

NO_FLOOR = RetryPolicy(max_retries=5, initial_delay=0.5, max_delay=5.0, min_interval=0.0)


def test_default_policy_matches_the_documented_budget_and_floor() -> None:
    policy = RetryPolicy()

    assert (policy.max_retries, policy.initial_delay, policy.max_delay) == (2, 0.5, 5.0)
    # WeChat asks for at least 1 s between two sends of one bill number (docs/protocol.md §1.4).
    assert policy.min_interval == 1.0


def test_transient_failures_are_retried_until_the_budget_is_spent() -> None:
    policy = RetryPolicy(max_retries=2)

    decisions = [should_retry(policy, done, transient=True) for done in range(4)]

    assert decisions == [True, True, False, False]


def test_definitive_failures_are_never_retried() -> None:
    assert not should_retry(RetryPolicy(max_retries=10), 0, transient=False)


def test_no_retry_policy_never_retries() -> None:
    assert not should_retry(NO_RETRY, 0, transient=True)


@pytest.mark.parametrize(
    ("retry_number", "full"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (30, 5.0)]
)
def test_backoff_doubles_up_to_the_cap(retry_number: int, full: float) -> None:
    assert backoff(NO_FLOOR, retry_number, rand=lambda: 1.0) == full
    assert backoff(NO_FLOOR, retry_number, rand=lambda: 0.0) == full / 2


def test_the_floor_wins_over_a_shorter_backoff() -> None:
    assert backoff(RetryPolicy(), 1, rand=lambda: 0.0) == 1.0
    assert backoff(RetryPolicy(), 4, rand=lambda: 1.0) == 4.0


@given(
    retry_number=st.integers(min_value=1, max_value=64),
    jitter=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_property_backoff_stays_within_its_bounds(retry_number: int, jitter: float) -> None:
    policy = RetryPolicy()

    delay = backoff(policy, retry_number, rand=lambda: jitter)

    assert policy.min_interval <= delay <= policy.max_delay


def test_retry_numbers_are_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        backoff(RetryPolicy(), 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"initial_delay": -0.1}, "initial_delay"),
        ({"initial_delay": 6.0, "max_delay": 5.0}, "max_delay"),
        ({"min_interval": -1.0}, "min_interval"),
    ],
)
def test_nonsensical_policies_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)
