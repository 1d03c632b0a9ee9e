"""A campaign's payouts as CSV rows, streamed: who, how much, what happened, and when.

Amounts are in yuan ("1.50"), times in Beijing time like WeChat's own records, so the export
can be read next to the merchant platform's — with their offset ("2024-03-15 10:00:00+08:00"),
so that a spreadsheet or a script elsewhere never takes them for its own local time.

>>> with open("report.csv", "w", newline="") as out:
...     writer = csv.DictWriter(out, EXPORT_FIELDS)
...     writer.writeheader()
...     writer.writerows(export_rows(store, campaign_id))
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from hongbao.clock import CST
from hongbao.ledger.records import Payout
from hongbao.ledger.store import LedgerStore
from hongbao.money import format_yuan

__all__ = ["EXPORT_FIELDS", "export_row", "export_rows"]

EXPORT_FIELDS = (
    "line_no",
    "openid",
    "amount",
    "state",
    "mch_billno",
    "send_listid",
    "err_code",
    "err_code_des",
    "reason",
    "attempts",
    "sent_at",
    "received_at",
    "refunded_at",
    "refund_amount",
    "payout_id",
    "previous_payout_id",
)


def _time(value: datetime | None) -> str:
    return value.astimezone(CST).isoformat(sep=" ", timespec="seconds") if value else ""


def _text(value: object) -> str:
    return "" if value is None else str(value)


def export_row(payout: Payout) -> dict[str, str]:
    """One payout as a CSV row of `EXPORT_FIELDS`."""
    return {
        "line_no": _text(payout.line_no),
        "openid": payout.re_openid,
        "amount": format_yuan(payout.total_amount),
        "state": payout.state.value,
        "mch_billno": payout.mch_billno,
        "send_listid": _text(payout.send_listid),
        "err_code": _text(payout.err_code),
        "err_code_des": _text(payout.err_code_des),
        "reason": _text(payout.reason),
        "attempts": str(payout.attempts),
        "sent_at": _time(payout.sent_at),
        "received_at": _time(payout.received_at),
        "refunded_at": _time(payout.refunded_at),
        "refund_amount": format_yuan(payout.refund_amount) if payout.refund_amount else "",
        "payout_id": str(payout.id),
        "previous_payout_id": _text(payout.previous_payout_id),
    }


def export_rows(
    store: LedgerStore, campaign_id: int, *, batch_size: int = 1000
) -> Iterator[dict[str, str]]:
    """Every payout of a campaign as CSV rows, in order, read in batches (memory stays flat)."""
    for payout in store.iter_payouts(campaign_id, batch_size=batch_size):
        yield export_row(payout)
