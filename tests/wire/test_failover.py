"""Each rule of the official SDK's host failover (docs/protocol.md §1.4), driven by a frozen
clock."""

from __future__ import annotations

import pytest

from hongbao.clock import FrozenClock
from hongbao.wire.failover import (
    AUTO_BACKUP,
    SWITCH_BACK_AFTER,
    AutoBackup,
    HostOutcome,
    HostSelector,
    HostStats,
    resolve_backup_url,
)
from hongbao.wire.transport import DEFAULT_BACKUP_URL, DEFAULT_BASE_URL

PRIMARY = "https://primary.example"
BACKUP = "https://backup.example"
OK = HostOutcome.SUCCESS
CONNECT = HostOutcome.CONNECT_TIMEOUT
DNS = HostOutcome.DNS_ERROR
OTHER = HostOutcome.OTHER_ERROR


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def hosts(clock: FrozenClock) -> HostSelector:
    return HostSelector(PRIMARY, BACKUP, clock)


def report(hosts: HostSelector, url: str, *outcomes: HostOutcome) -> None:
    for outcome in outcomes:
        hosts.report(url, outcome)


def test_primary_without_statistics_is_used(hosts: HostSelector) -> None:
    assert hosts.select() == PRIMARY


@pytest.mark.parametrize("failure", [CONNECT, DNS])
def test_two_failures_are_tolerated_the_third_makes_the_primary_bad(
    hosts: HostSelector, failure: HostOutcome
) -> None:
    report(hosts, PRIMARY, failure, failure)
    assert hosts.select() == PRIMARY

    report(hosts, PRIMARY, failure)
    assert hosts.select() == BACKUP


def test_other_errors_alone_never_make_a_host_bad(hosts: HostSelector) -> None:
    report(hosts, PRIMARY, *[OTHER] * 50)

    assert hosts.select() == PRIMARY


def test_a_connect_timeout_clears_the_dns_count(hosts: HostSelector) -> None:
    report(hosts, PRIMARY, DNS, DNS, CONNECT, DNS, DNS)

    assert hosts.stats(PRIMARY) == HostStats(
        succ_count=0, connect_timeout_count=1, dns_error_count=2, other_error_count=0
    )
    assert hosts.select() == PRIMARY


def test_a_dns_error_keeps_the_connect_timeout_count(hosts: HostSelector) -> None:
    report(hosts, PRIMARY, CONNECT, CONNECT, DNS, CONNECT)

    assert hosts.select() == BACKUP


def test_two_successes_are_counted_the_third_forgets_the_errors(hosts: HostSelector) -> None:
    report(hosts, PRIMARY, CONNECT, CONNECT, OK, OK)
    assert hosts.stats(PRIMARY) == HostStats(2, 2, 0, 0)

    report(hosts, PRIMARY, OK)
    assert hosts.stats(PRIMARY) == HostStats(2, 0, 0, 0)


def test_errors_survive_fewer_than_three_successes_in_a_row(hosts: HostSelector) -> None:
    report(hosts, PRIMARY, CONNECT, CONNECT, OK, OK, CONNECT)
    assert hosts.select() == BACKUP


def test_errors_are_forgotten_after_three_successes_in_a_row(hosts: HostSelector) -> None:
    report(hosts, PRIMARY, CONNECT, CONNECT, OK, OK, OK, CONNECT)
    assert hosts.select() == PRIMARY


def test_every_failure_resets_the_success_streak(hosts: HostSelector) -> None:
    for failure in (CONNECT, DNS, OTHER):
        report(hosts, PRIMARY, OK, OK, failure)
        stats = hosts.stats(PRIMARY)
        assert stats is not None
        assert stats.succ_count == 0


def test_backup_is_kept_while_it_is_good(hosts: HostSelector, clock: FrozenClock) -> None:
    report(hosts, PRIMARY, CONNECT, CONNECT, CONNECT)
    assert hosts.select() == BACKUP

    clock.advance(60)
    report(hosts, BACKUP, OK, CONNECT, CONNECT)
    assert hosts.select() == BACKUP


def test_bad_backup_with_a_lower_bad_score_is_still_preferred(
    hosts: HostSelector, clock: FrozenClock
) -> None:
    report(hosts, PRIMARY, *[CONNECT] * 4)  # score 4
    assert hosts.select() == BACKUP
    report(hosts, BACKUP, *[CONNECT] * 3, *[OTHER] * 3)  # bad; score 3 + 3 // 4 = 3

    clock.advance(10)
    assert hosts.select() == BACKUP


def test_bad_backup_with_an_equal_bad_score_yields_to_the_primary(
    hosts: HostSelector, clock: FrozenClock
) -> None:
    report(hosts, PRIMARY, *[CONNECT] * 4)  # score 4
    assert hosts.select() == BACKUP
    report(hosts, BACKUP, *[CONNECT] * 3, *[OTHER] * 4)  # bad; score 3 + 4 // 4 = 4

    clock.advance(10)
    assert hosts.select() == PRIMARY


def test_dns_errors_weigh_five_in_the_bad_score() -> None:
    stats = HostStats(connect_timeout_count=1, dns_error_count=3, other_error_count=9)

    assert stats.bad_score() == 1 + 15 + 2
    assert not stats.is_good()


def test_after_three_minutes_everything_is_reset_and_the_primary_tried(
    hosts: HostSelector, clock: FrozenClock
) -> None:
    report(hosts, PRIMARY, *[CONNECT] * 3)
    assert hosts.select() == BACKUP  # the switch starts now
    report(hosts, BACKUP, OK, OTHER)

    clock.advance(SWITCH_BACK_AFTER - 0.001)
    assert hosts.select() == BACKUP
    clock.advance(0.001)
    assert hosts.select() == PRIMARY

    assert hosts.stats(PRIMARY) == HostStats()
    assert hosts.stats(BACKUP) == HostStats()


def test_a_new_switch_starts_its_own_three_minutes(hosts: HostSelector, clock: FrozenClock) -> None:
    report(hosts, PRIMARY, *[CONNECT] * 3)
    assert hosts.select() == BACKUP
    clock.advance(SWITCH_BACK_AFTER)
    assert hosts.select() == PRIMARY

    clock.advance(1000)
    report(hosts, PRIMARY, *[CONNECT] * 3)
    assert hosts.select() == BACKUP
    clock.advance(SWITCH_BACK_AFTER - 1)
    assert hosts.select() == BACKUP


def test_without_a_backup_the_primary_is_always_used(clock: FrozenClock) -> None:
    hosts = HostSelector(PRIMARY, None, clock)

    report(hosts, PRIMARY, *[DNS] * 10)

    assert hosts.select() == PRIMARY


def test_urls_are_compared_without_a_trailing_slash(clock: FrozenClock) -> None:
    hosts = HostSelector(PRIMARY + "/", BACKUP + "/", clock)

    report(hosts, PRIMARY + "/", *[CONNECT] * 3)

    assert hosts.select() == BACKUP


def test_reporting_an_unknown_url_is_a_bug(hosts: HostSelector) -> None:
    with pytest.raises(ValueError, match="neither"):
        hosts.report("https://elsewhere.example", OK)


@pytest.mark.parametrize(
    ("base_url", "backup_url", "expected"),
    [
        (DEFAULT_BASE_URL, AUTO_BACKUP, DEFAULT_BACKUP_URL),
        (DEFAULT_BASE_URL + "/", AUTO_BACKUP, DEFAULT_BACKUP_URL),
        (DEFAULT_BASE_URL, None, None),
        ("https://127.0.0.1:8443", AUTO_BACKUP, None),
        ("https://127.0.0.1:8443", "https://127.0.0.1:9443", "https://127.0.0.1:9443"),
    ],
)
def test_backup_url_resolution(
    base_url: str, backup_url: str | AutoBackup | None, expected: str | None
) -> None:
    assert resolve_backup_url(base_url, backup_url) == expected
