"""What the dashboard's pages show, built from the ledger's aggregates: no HTTP, no templates.

Everything here reads SQL aggregates (`hongbao.ledger.views`, `LedgerStore.totals_by_state`,
`LedgerStore.problems`) and shapes them for a page or a chart: a campaign's progress and
money, its send rate against the merchant's cap, its receive and refund curves, and what went
wrong with the spec's advice for each err_code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from hongbao.api.codes import SEND_CODES, UNKNOWN_CODE
from hongbao.clock import CST
from hongbao.engine.campaign import (
    ISSUED_STATES,
    NOT_SENT_YET_STATES,
    OPEN_STATES,
    UNRESOLVED_STATES,
)
from hongbao.ledger import Campaign, CampaignState, CodeTotal, PayoutState, StateTotal
from hongbao.ledger.views import Bucket, outcome_counts, send_counts
from hongbao.money import format_yuan

__all__ = [
    "CampaignSummary",
    "Problem",
    "explain_problems",
    "outcome_chart",
    "send_chart",
    "summarise",
]

P = PayoutState
C = CampaignState

_MAX_FILLED_BUCKETS = 720
"""Up to this many buckets a chart shows empty ones too (a pause shows as a gap)."""
_OUTCOME_BUCKETS = (60, 300, 900, 3600, 3 * 3600, 24 * 3600)
_MAX_OUTCOME_POINTS = 200
_FINISHED = frozenset({C.CANCELLED, C.COMPLETED})


def _sum(totals: Mapping[PayoutState, StateTotal], states: Iterable[PayoutState]) -> StateTotal:
    chosen = [totals.get(state, StateTotal(0, 0)) for state in states]
    return StateTotal(sum(t.count for t in chosen), sum(t.amount_fen for t in chosen))


def _shown(total: StateTotal) -> str:
    return f"{total.count} · ¥{format_yuan(total.amount_fen)}"


@dataclass(frozen=True, slots=True)
class CampaignSummary:
    """A campaign's progress and money, as the campaigns page and the live updates show it."""

    campaign: Campaign
    totals: Mapping[PayoutState, StateTotal]

    @property
    def total(self) -> StateTotal:
        """Every payout of the campaign."""
        return _sum(self.totals, PayoutState)

    @property
    def sent(self) -> StateTotal:
        """Issued by WeChat (SENT, RECEIVED, REFUNDED)."""
        return _sum(self.totals, ISSUED_STATES)

    @property
    def received(self) -> StateTotal:
        return _sum(self.totals, (P.RECEIVED,))

    @property
    def refunded(self) -> StateTotal:
        return _sum(self.totals, (P.REFUNDED,))

    @property
    def failed(self) -> StateTotal:
        return _sum(self.totals, (P.FAILED,))

    @property
    def unresolved(self) -> StateTotal:
        """Money in an unknown state: in flight, maybe issued."""
        return _sum(self.totals, UNRESOLVED_STATES)

    @property
    def not_sent_yet(self) -> StateTotal:
        """Planned or deferred: nothing has left for them yet."""
        return _sum(self.totals, NOT_SENT_YET_STATES)

    @property
    def settled(self) -> int:
        """Payouts no longer open."""
        return self.total.count - _sum(self.totals, OPEN_STATES).count

    @property
    def percent(self) -> float:
        """Settled payouts in percent of all (100 for an empty campaign)."""
        total = self.total.count
        return 100.0 * self.settled / total if total else 100.0

    @property
    def budget_percent(self) -> float | None:
        """Fen committed in percent of the budget; None without a budget."""
        budget = self.campaign.budget_fen
        if budget is None:
            return None
        return 100.0 * self.campaign.committed_fen / budget if budget else 100.0

    @property
    def finished(self) -> bool:
        """Cancelled or completed: nothing will change but tracking."""
        return self.campaign.state in _FINISHED

    def fields(self) -> dict[str, str]:
        """The figures a page shows, by name, as text (what live updates replace)."""
        budget = self.campaign.budget_fen
        committed = f"¥{format_yuan(self.campaign.committed_fen)}"
        return {
            "state": self.campaign.state.value,
            "progress": f"{self.settled} / {self.total.count}",
            "sent": _shown(self.sent),
            "received": _shown(self.received),
            "refunded": _shown(self.refunded),
            "failed": _shown(self.failed),
            "unresolved": _shown(self.unresolved),
            "not_sent_yet": _shown(self.not_sent_yet),
            "budget": f"{committed} of ¥{format_yuan(budget)}" if budget is not None else committed,
        }

    def live(self) -> dict[str, Any]:
        """The JSON document of a live update."""
        return {
            "id": self.campaign.id,
            "state": self.campaign.state.value,
            "settled": self.settled,
            "total": self.total.count,
            "budget_percent": self.budget_percent,
            "finished": self.finished,
            "fields": self.fields(),
            "states": {
                state.value: {"count": t.count, "amount_fen": t.amount_fen}
                for state, t in self.totals.items()
                if t.count
            },
        }


def summarise(campaign: Campaign, totals: Mapping[PayoutState, StateTotal]) -> CampaignSummary:
    """The summary of a campaign from its totals per state."""
    return CampaignSummary(campaign, dict(totals))


@dataclass(frozen=True, slots=True)
class Problem:
    """Payouts that share a state, err_code and reason, with what the code means and advice."""

    total: CodeTotal
    meaning: str | None
    advice: str | None


def explain_problems(problems: Iterable[CodeTotal]) -> list[Problem]:
    """Each group of troubled payouts with the err_code table's meaning and advice
    (docs/protocol.md §5)."""
    explained = []
    for total in problems:
        row = SEND_CODES.get(total.err_code, UNKNOWN_CODE) if total.err_code else None
        explained.append(Problem(total, row.meaning if row else None, row.advice if row else None))
    return explained


def _label(moment: datetime, *, with_day: bool) -> str:
    local = moment.astimezone(CST)
    return local.strftime("%m-%d %H:%M" if with_day else "%H:%M")


def _timeline(buckets: Iterable[Bucket], seconds: int) -> list[datetime]:
    """Every bucket start from the first to the last (gaps filled), or the non-empty ones."""
    starts = sorted({bucket.start for bucket in buckets})
    if not starts:
        return []
    steps = int((starts[-1] - starts[0]).total_seconds()) // seconds
    if steps >= _MAX_FILLED_BUCKETS:
        return starts
    return [starts[0] + timedelta(seconds=seconds * n) for n in range(steps + 1)]


def _labels(timeline: list[datetime]) -> list[str]:
    with_day = bool(timeline) and (
        timeline[0].astimezone(CST).date() != timeline[-1].astimezone(CST).date()
    )
    return [_label(moment, with_day=with_day) for moment in timeline]


def send_chart(engine: Engine, campaign_id: int, cap_per_minute: int | None) -> dict[str, Any]:
    """Send calls per minute (Beijing time) and the merchant's cap, as Chart.js data."""
    buckets = send_counts(engine, campaign_id, bucket_seconds=60)
    counts = {bucket.start: bucket.count for bucket in buckets}
    timeline = _timeline(buckets, 60)
    datasets: list[dict[str, Any]] = [
        {
            "type": "bar",
            "label": "send calls per minute",
            "data": [counts.get(moment, 0) for moment in timeline],
        }
    ]
    if cap_per_minute is not None:
        datasets.append(
            {
                "type": "line",
                "label": f"merchant cap ({cap_per_minute}/min)",
                "data": [cap_per_minute] * len(timeline),
            }
        )
    return {"labels": _labels(timeline), "datasets": datasets}


def _coarser(buckets: list[Bucket], seconds: int) -> list[Bucket]:
    """Minute buckets merged into buckets of `seconds` (aligned on the Unix epoch)."""
    merged: dict[datetime, int] = {}
    for bucket in buckets:
        epoch = int(bucket.start.timestamp())
        start = datetime.fromtimestamp(epoch - epoch % seconds, UTC)
        merged[start] = merged.get(start, 0) + bucket.count
    return [Bucket(start, count) for start, count in sorted(merged.items())]


def _outcome_width(buckets: list[Bucket]) -> int:
    starts = [bucket.start for bucket in buckets]
    seconds = (max(starts) - min(starts)).total_seconds() if starts else 0.0
    for width in _OUTCOME_BUCKETS:
        if seconds / width <= _MAX_OUTCOME_POINTS:
            return width
    return _OUTCOME_BUCKETS[-1]


def outcome_chart(engine: Engine, campaign_id: int) -> dict[str, Any]:
    """Packets received and refunded so far (cumulative, Beijing time), as Chart.js data."""
    received, refunded = outcome_counts(engine, campaign_id, bucket_seconds=60)
    seconds = _outcome_width([*received, *refunded])
    received, refunded = _coarser(received, seconds), _coarser(refunded, seconds)
    timeline = _timeline([*received, *refunded], seconds)

    def cumulative(buckets: list[Bucket]) -> list[int]:
        per_bucket = {bucket.start: bucket.count for bucket in buckets}
        running, points = 0, []
        for moment in timeline:
            running += per_bucket.get(moment, 0)
            points.append(running)
        return points

    return {
        "labels": _labels(timeline),
        "datasets": [
            {"type": "line", "label": "received", "data": cumulative(received)},
            {"type": "line", "label": "refunded", "data": cumulative(refunded)},
        ],
    }
