"""What a dispatcher says it waits for (`hongbao.engine.status`): one line from the ledger's
groups of open payouts, most pressing first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hongbao.engine.job_queries import JobCounts
from hongbao.engine.status import describe_jobs, describe_tracking, describe_wait, seconds_text
from hongbao.ledger import OpenGroup, PayoutState

P = PayoutState
NOW = datetime(2024, 3, 14, 22, 26, 0, tzinfo=UTC)  # 06:26:00 in UTC+8


def group(state: PayoutState, count: int, **fields: object) -> OpenGroup:
    values: dict[str, object] = {
        "err_code": None,
        "reason": None,
        "leased": False,
        "held_here": False,
        "next_attempt_at": None,
        "lease_until": None,
        "err_code_des": None,
        **fields,
    }
    return OpenGroup(state=state, count=count, **values)  # type: ignore[arg-type]


def test_nothing_open_or_only_planned_says_nothing() -> None:
    assert describe_wait([], NOW) is None
    assert describe_wait([group(P.PLANNED, 5)], NOW) is None
    # Its own sends in flight are progress, not a wait.
    assert describe_wait([group(P.SENDING, 16, leased=True, held_here=True)], NOW) is None


def test_packets_of_an_interrupted_run_say_when_they_are_resolved() -> None:
    until = NOW + timedelta(seconds=42)
    line = describe_wait([group(P.SENDING, 16, leased=True, lease_until=until)], NOW)
    assert (
        line == "16 packets in flight from an interrupted or other run: resolving them at 06:26:42"
    )


def test_freq_limit_says_when_the_next_try_is() -> None:
    later = NOW + timedelta(seconds=12)
    line = describe_wait([group(P.DEFERRED, 3, err_code="FREQ_LIMIT", next_attempt_at=later)], NOW)
    assert line == "WeChat answers FREQ_LIMIT; next try in 12 s"


def test_an_unreachable_host_says_why_how_many_and_when_the_campaign_pauses() -> None:
    later = NOW + timedelta(seconds=30)
    des = "could not reach https://127.0.0.1:1/mmpaymkttransfers/sendredpack: connection refused"
    groups = [group(P.DEFERRED, 50, err_code_des=des, next_attempt_at=later)]
    assert describe_wait(groups, NOW, pause_in=90) == (
        f"{des}; 50 payouts DEFERRED, retrying in 30 s; the campaign pauses in 90 s unless one "
        "gets through"
    )


def test_daily_caps_name_the_cap_and_the_day() -> None:
    midnight = datetime(2024, 3, 15, 16, 0, tzinfo=UTC)  # 00:00 of 2024-03-16 in UTC+8
    groups = [
        group(P.DEFERRED, 2, reason="user_daily_count", next_attempt_at=midnight),
        group(P.DEFERRED, 1, err_code="SENDNUM_LIMIT", next_attempt_at=midnight),
    ]
    assert describe_wait(groups, NOW) == (
        "3 payouts wait for a daily cap (SENDNUM_LIMIT, packets per user a day) until "
        "2024-03-16 00:00 UTC+8"
    )


def test_several_reasons_are_said_together_most_pressing_first() -> None:
    groups = [
        group(P.UNKNOWN, 1, next_attempt_at=NOW + timedelta(minutes=1)),
        group(P.DEFERRED, 4, err_code="NOTENOUGH", next_attempt_at=NOW + timedelta(minutes=5)),
        group(P.DEFERRED, 2, err_code="FREQ_LIMIT", next_attempt_at=NOW + timedelta(seconds=5)),
    ]
    assert describe_wait(groups, NOW) == (
        "WeChat answers FREQ_LIMIT; next try in 5 s; 4 payouts DEFERRED (NOTENOUGH): next try "
        "in 5 min; 1 payout with an unknown outcome: asking WeChat in 60 s"
    )


def test_tracking_says_what_waits_to_be_opened_and_the_next_check() -> None:
    groups = [group(P.SENT, 7, next_attempt_at=NOW + timedelta(minutes=50))]
    assert describe_tracking(groups, NOW) == (
        "7 packets waiting to be opened or refunded; next check in 50 min"
    )
    limited = describe_tracking(groups, NOW, limited_until=NOW + timedelta(seconds=20))
    assert limited is not None
    assert limited.startswith("WeChat answers FREQ_LIMIT; next try in 20 s")
    assert describe_tracking([], NOW) is None


def test_waits_read_as_people_say_them() -> None:
    assert [seconds_text(s) for s in (0, 0.4, 1.2, 59, 119.5, 600)] == [
        "now", "now", "in 2 s", "in 59 s", "in 120 s", "in 10 min",
    ]  # fmt: skip


def test_jobs_without_a_live_worker_say_to_start_one() -> None:
    assert describe_jobs(JobCounts(running=0, ready=0, later=0, workers=0)) is None
    assert describe_jobs(JobCounts(running=2, ready=3, later=0, workers=1)) == (
        "jobs: 2 running, 3 waiting for a worker"
    )
    assert describe_jobs(JobCounts(running=0, ready=1, later=0, workers=0)) == (
        "job: 1 waiting for a worker; no worker is running: start `hongbao worker` "
        "(docs/scale-out.md)"
    )
    # Jobs deferred to a later day need no worker now.
    assert describe_jobs(JobCounts(running=0, ready=0, later=4, workers=0)) == (
        "jobs: 4 scheduled for later"
    )
