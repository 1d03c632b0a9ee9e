"""The ledger store's common part: the engine, the clock, and the audit-event rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Self

from sqlalchemy import Connection, Engine, Select
from sqlalchemy.engine import URL

from hongbao.clock import Clock, SystemClock
from hongbao.ledger.bills import BillSerials
from hongbao.ledger.db import create_ledger_engine, read_transaction
from hongbao.ledger.migrate import check_schema
from hongbao.ledger.records import EventInfo
from hongbao.ledger.rows import to_json
from hongbao.ledger.statements import insert_events
from hongbao.ledger.states import PayoutState
from hongbao.wire.masking import mask

__all__ = ["StoreBase"]

_DETAIL_MAX = 512


class StoreBase:
    """What every part of `LedgerStore` shares; safe to share between threads."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock: Clock = clock or SystemClock()
        self._dialect = engine.dialect.name
        self._bills = BillSerials(self._dialect)

    @classmethod
    def open(
        cls, url: str | URL, *, clock: Clock | None = None, check: bool = True, **engine_kw: Any
    ) -> Self:
        """Connect to the ledger at `url`; refuses an out-of-date schema unless `check=False`."""
        engine = create_ledger_engine(url, **engine_kw)
        if check:
            try:
                check_schema(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine, clock=clock)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine underneath (for migrations and transactional outboxes)."""
        return self._engine

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- plumbing --------------------------------------------------------------------------

    # Rows of any shape: SQLAlchemy 2.0 and 2.1 type a row's columns differently.
    def _all(self, query: Select[Any]) -> Sequence[Any]:
        return read_transaction(self._engine, lambda conn: conn.execute(query).all())

    def _first(self, query: Select[Any]) -> Any:
        return read_transaction(self._engine, lambda conn: conn.execute(query).first())

    def _event(self, conn: Connection, **event: Any) -> None:
        """Append one event (the keywords of `_event_row`)."""
        insert_events(conn, [self._event_row(**event)])

    def _event_row(
        self,
        *,
        payout_id: int,
        attempt: int,
        kind: str,
        from_state: PayoutState | None,
        to_state: PayoutState | None,
        info: EventInfo | None = None,
        err_code: str | None = None,
        detail: str | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """An event row; `at` (default: now) is best the time its change wrote on the payout,
        one object for a whole round (its rows then bind it once)."""
        text = (info.detail if info is not None else None) or detail
        request = info.request if info is not None else None
        response = info.response if info is not None else None
        return {
            "payout_id": payout_id,
            "at": self._clock.now() if at is None else at,
            "kind": info.kind if info is not None else kind,
            "from_state": from_state,
            "to_state": to_state,
            "attempt": attempt,
            "err_code": (info.err_code if info is not None else None) or err_code,
            "detail": text[:_DETAIL_MAX] if text else None,
            "request": to_json(mask(request)) if request is not None else None,
            "response": to_json(mask(response)) if response is not None else None,
        }
