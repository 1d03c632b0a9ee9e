"""The ledger's bill numbers: its identity, and the serials it reserves per merchant and day.

Every bill number the ledger records is minted here, inside the caller's transaction, by
`hongbao.ids.mint_bill_nos(mch_id, when, serials, ledger_id=…)`: the serials come from one
upsert of `bill_serials` (the next serial of the merchant's UTC+8 day), the identity from
`ledger_meta`, read once per `BillSerials` and kept (planning mints a million bills: no query per
bill). Both writers of payouts, `LedgerStore` and `RuleLedger`, reserve through a `BillSerials`.

Serials of a day are unique in one ledger whatever its identity, so changing the identity
(`set_ledger_id`) never makes a ledger repeat its own bill numbers; a process that still holds
the old identity keeps minting distinct bills too. Distinct identities are what keep two
ledgers of one merchant apart.

>>> bills = BillSerials("sqlite")
>>> bills.reserve(conn, "1900000109", now, 3)  # identity 4, first bills  # doctest: +SKIP
['1900000109202403150012000000', '1900000109202403150012000001', '1900000109202403150012000002']
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from hongbao.clock import beijing_day
from hongbao.errors import HongbaoError, Outcome
from hongbao.ids import LEDGER_IDS, SERIALS_PER_DAY, mint_bill_nos
from hongbao.ledger.rows import upsert
from hongbao.ledger.schema import bill_serials, ledger_meta

__all__ = [
    "BillSerials",
    "BillSerialsExhaustedError",
    "check_ledger_id",
    "read_ledger_id",
    "set_ledger_id",
]


class BillSerialsExhaustedError(HongbaoError):
    """The ledger has minted all its bill numbers of the day for a merchant; nothing was sent."""

    outcome = Outcome.NOT_SENT


def check_ledger_id(ledger_id: int) -> int:
    """`ledger_id` if a ledger may have it, else ValueError saying which may."""
    if ledger_id not in LEDGER_IDS:
        raise ValueError(
            f"ledger identity {ledger_id} must be {LEDGER_IDS.start} to {LEDGER_IDS.stop - 1}"
        )
    return ledger_id


def read_ledger_id(conn: Connection) -> int | None:
    """The ledger's identity; None before the schema has one (revision 0003)."""
    found = conn.execute(select(ledger_meta.c.ledger_id)).scalar_one_or_none()
    return None if found is None else int(found)


def set_ledger_id(conn: Connection, ledger_id: int, now: datetime) -> int | None:
    """Give the ledger the identity `ledger_id`; returns the one it had."""
    check_ledger_id(ledger_id)
    before = read_ledger_id(conn)
    if before is None:
        raise RuntimeError("the ledger has no identity row: migrate it first")
    if before != ledger_id:
        conn.execute(update(ledger_meta).values(ledger_id=ledger_id, chosen_at=now))
    return before


class BillSerials:
    """Reserves and mints the ledger's bill numbers; one per store, safe to share."""

    def __init__(self, dialect: str) -> None:
        self._ledger_id: int | None = None
        self._reserve: Any = upsert(
            dialect,
            bill_serials,
            {
                "mch_id": bindparam("b_mch_id"),
                "day": bindparam("b_day"),
                "next_serial": bindparam("b_count"),
            },
            ["mch_id", "day"],
            {"next_serial": bill_serials.c.next_serial + bindparam("b_more")},
        ).returning(bill_serials.c.next_serial)

    def ledger_id(self, conn: Connection) -> int:
        """The ledger's identity, read on first use."""
        found = self._ledger_id
        if found is None:
            found = read_ledger_id(conn)
            if found is None:
                raise RuntimeError("the ledger has no identity: run `hongbao db upgrade`")
            self._ledger_id = found
        return found

    def reserve(self, conn: Connection, mch_id: str, when: datetime, count: int) -> list[str]:
        """Up to `count` new bill numbers of `mch_id` dated `when`'s UTC+8 day, in serial order.

        Fewer only when the last of the day's `SERIALS_PER_DAY` run out; none left raises
        `BillSerialsExhaustedError`.
        """
        if count < 1:
            raise ValueError("count must be >= 1")
        ledger_id = self.ledger_id(conn)
        day = beijing_day(when)
        params = {"b_mch_id": mch_id, "b_day": day, "b_count": count, "b_more": count}
        end = int(conn.execute(self._reserve, params).scalar_one())
        start = end - count
        if end > SERIALS_PER_DAY:
            # Give back what is past the end, so the next reservation starts there.
            conn.execute(
                update(bill_serials)
                .where(bill_serials.c.mch_id == mch_id, bill_serials.c.day == day)
                .values(next_serial=SERIALS_PER_DAY)
            )
            end = SERIALS_PER_DAY
            if start >= end:
                raise BillSerialsExhaustedError(
                    f"this ledger has minted all its {SERIALS_PER_DAY:,} bill numbers of {day} "
                    f"(UTC+8) for merchant {mch_id}",
                    advice="the next ones can be minted after midnight UTC+8",
                )
        return mint_bill_nos(mch_id, when, range(start, end), ledger_id=ledger_id)
