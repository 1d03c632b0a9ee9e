"""What a dispatcher waits for, in words: the one place a command's "why nothing moves" comes from.

Every long-running command (`campaign run`, `worker`, `rules serve`, `track --follow`) shows it
at least every `RunSettings.status_every` seconds: on a terminal in the progress bar's line, in a
pipe or a log as a plain line. `describe_wait` reads the ledger's view of a scope's open payouts
(`LedgerStore.open_groups`) and says, most pressing first:

* packets in flight from another (or an interrupted) run, and when their leases end;
* WeChat's rate limit (FREQ_LIMIT) and when the next try is;
* a host that cannot be reached, how many payouts wait for it and when the campaign pauses;
* daily caps, and the day they wait for;
* other deferred payouts (a balance, a setup error) and unknown outcomes still to be asked about.

`describe_jobs` says where the jobs of a campaign run `--distributed` are (is a worker there to
take them?). `report_every` calls a status source on a timer and hands each line to its consumer.

>>> describe_wait(store.open_groups(scope), clock.now())  # doctest: +SKIP
'WeChat answers FREQ_LIMIT; next try in 12 s'
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from hongbao.clock import CST
from hongbao.engine.job_queries import JobCounts
from hongbao.ledger import OpenGroup, PayoutState

__all__ = [
    "CAP_CODES",
    "FREQUENCY_CODES",
    "describe_jobs",
    "describe_tracking",
    "describe_wait",
    "report_every",
    "seconds_text",
]

P = PayoutState

FREQUENCY_CODES = frozenset({"FREQ_LIMIT", "SECOND_OVER_LIMITED"})
"""WeChat's rate limits (docs/protocol.md §6.1)."""
CAP_CODES = frozenset({"SENDNUM_LIMIT", "RCVDAMOUNT_LIMIT", "SENDAMOUNT_LIMIT"})
"""WeChat's daily limits; the ledger's own caps are claim refusals (`payout.reason`)."""
_CAP_REASONS = {
    "user_daily_count": "packets per user a day",
    "user_daily_amount": "amount per user a day",
    "merchant_daily_amount": "the merchant's daily total",
}
_IN_FLIGHT = frozenset({P.SENDING, P.UNKNOWN})


def seconds_text(seconds: float) -> str:
    """A wait as people read it: "now", "in 12 s", "in 3 min"."""
    if seconds <= 0.5:
        return "now"
    if seconds < 120:
        return f"in {math.ceil(seconds)} s"
    return f"in {math.ceil(seconds / 60)} min"


def _clock(when: datetime) -> str:
    return when.astimezone(CST).strftime("%H:%M:%S")


def _day(when: datetime) -> str:
    return when.astimezone(CST).strftime("%Y-%m-%d %H:%M UTC+8")


def _payouts(count: int) -> str:
    return f"{count} payout{'' if count == 1 else 's'}"


def _first(groups: Sequence[OpenGroup]) -> datetime | None:
    times = [g.next_attempt_at for g in groups if g.next_attempt_at is not None]
    return min(times) if times else None


def describe_wait(
    groups: Sequence[OpenGroup], now: datetime, *, pause_in: float | None = None
) -> str | None:
    """One line saying what the open payouts of a scope wait for; None when nothing waits.

    `pause_in`: seconds until a persistent failure pauses the campaign (None: it does not).
    """
    parts: list[str] = []
    foreign = [g for g in groups if g.state in _IN_FLIGHT and g.leased and not g.held_here]
    if foreign:
        count = sum(g.count for g in foreign)
        until = max(g.lease_until for g in foreign if g.lease_until is not None)
        parts.append(
            f"{count} packet{'' if count == 1 else 's'} in flight from an interrupted or other "
            f"run: resolving them at {_clock(until)}"
        )
    waiting = [g for g in groups if not g.leased and g.state in (P.DEFERRED, P.UNKNOWN)]
    frequency = [g for g in waiting if g.err_code in FREQUENCY_CODES]
    if frequency:
        code = sorted({g.err_code for g in frequency if g.err_code})[0]
        parts.append(f"WeChat answers {code}; next try {_when(_first(frequency), now)}")
    unreached = [
        g
        for g in waiting
        if g.state is P.DEFERRED and g.err_code is None and g.reason is None and g.err_code_des
    ]
    if unreached:
        text = f"{unreached[0].err_code_des}; {_payouts(sum(g.count for g in unreached))} "
        text += f"DEFERRED, retrying {_when(_first(unreached), now)}"
        if pause_in is not None:
            text += f"; the campaign pauses {seconds_text(pause_in)} unless one gets through"
        parts.append(text)
    capped = [
        g
        for g in waiting
        if g.state is P.DEFERRED and (g.err_code in CAP_CODES or g.reason in _CAP_REASONS)
    ]
    if capped:
        names = sorted({_CAP_REASONS.get(g.reason or "", g.err_code or "") for g in capped})
        first = _first(capped)
        parts.append(
            f"{_payouts(sum(g.count for g in capped))} wait for a daily cap "
            f"({', '.join(names)}) until {_day(first) if first else 'tomorrow'}"
        )
    known = {id(g) for g in (*frequency, *unreached, *capped)}
    others = [g for g in waiting if id(g) not in known and g.state is P.DEFERRED]
    for code in sorted({g.err_code or g.reason or "" for g in others}):
        same = [g for g in others if (g.err_code or g.reason or "") == code]
        label = f" ({code})" if code else ""
        parts.append(
            f"{_payouts(sum(g.count for g in same))} DEFERRED{label}: next try "
            f"{_when(_first(same), now)}"
        )
    unknown = [g for g in waiting if g.state is P.UNKNOWN and g.err_code not in FREQUENCY_CODES]
    if unknown:
        parts.append(
            f"{_payouts(sum(g.count for g in unknown))} with an unknown outcome: asking WeChat "
            f"{_when(_first(unknown), now)}"
        )
    return "; ".join(parts) or None


def describe_tracking(
    groups: Sequence[OpenGroup], now: datetime, *, limited_until: datetime | None = None
) -> str | None:
    """What `track --follow` waits for: SENT packets and their next check (None: none left).

    `limited_until`: gethbinfo answered FREQ_LIMIT; queries wait until then.
    """
    parts = []
    if limited_until is not None and limited_until > now:
        parts.append(f"WeChat answers FREQ_LIMIT; next try {_when(limited_until, now)}")
    sent = [g for g in groups if g.state is P.SENT]
    if sent:
        count = sum(g.count for g in sent)
        parts.append(
            f"{count} packet{'' if count == 1 else 's'} waiting to be opened or refunded; "
            f"next check {_when(_first(sent), now)}"
        )
    return "; ".join(parts) or None


def describe_jobs(jobs: JobCounts) -> str | None:
    """Where a distributed campaign's jobs are, and whether a worker is there to run them."""
    parts = [
        f"{count} {what}"
        for count, what in (
            (jobs.running, "running"),
            (jobs.ready, "waiting for a worker"),
            (jobs.later, "scheduled for later"),
        )
        if count
    ]
    if not parts:
        return None
    line = f"job{'' if sum((jobs.running, jobs.ready, jobs.later)) == 1 else 's'}: "
    line += ", ".join(parts)
    if not jobs.workers and (jobs.ready or jobs.running):
        line += "; no worker is running: start `hongbao worker` (docs/scale-out.md)"
    return line


def _when(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "now"
    seconds = (when - now).total_seconds()
    if seconds >= 3600:
        return f"at {_day(when)}"
    return seconds_text(seconds)


async def report_every(
    every: float,
    status: Callable[[], Awaitable[str | None]],
    show: Callable[[str | None], None],
) -> None:
    """Every `every` seconds (wall time), hand `status()` to `show`, until cancelled.

    A failing status source is shown as such, never ends the work it reports on.
    """
    while True:
        await asyncio.sleep(every)
        try:
            line = await status()
        except Exception as exc:  # the report must not stop the work it is about
            line = f"status unavailable: {type(exc).__name__}"
        show(line)
