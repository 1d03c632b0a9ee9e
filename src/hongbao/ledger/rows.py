"""Between database rows and the ledger's records: JSON text, row conversion, dialect upserts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from importlib import import_module
from typing import Any

from sqlalchemy import ColumnElement, Row, Table

from hongbao.ledger.records import (
    Campaign,
    NewPayout,
    Payout,
    PayoutEvent,
    SendApi,
    freeze_params,
)
from hongbao.ledger.schema import payouts
from hongbao.ledger.states import CampaignState, PayoutState

__all__ = [
    "PAYOUT_COLUMNS",
    "campaign_from_row",
    "dialect_insert",
    "event_from_row",
    "payout_from_row",
    "payout_from_values",
    "payout_values",
    "to_json",
    "upsert",
]


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""One encoder for every call: `json.dumps` with options builds a new one each time."""


def to_json(data: Mapping[str, Any] | None) -> str | None:
    """Compact JSON that keeps key order and non-ASCII text as it is (None stays None)."""
    if data is None:
        return None
    return _ENCODE(data)


def payout_values(new: NewPayout, now: datetime) -> dict[str, Any]:
    """The `payouts` row of a new payout: every recorder of payouts builds its rows here.

    The bill number, receiver and amounts are read from the frozen parameters (checked by
    `freeze_params`), so the row can never disagree with what is sent.
    """
    params = freeze_params(new.params)
    return {
        "natural_key": new.natural_key,
        "generation": 0,
        "previous_payout_id": None,
        "campaign_id": new.campaign_id,
        "line_no": new.line_no,
        "merchant": new.merchant,
        "mch_id": str(params["mch_id"]),
        "api": new.api.value,
        "mch_billno": str(params["mch_billno"]),
        "params": to_json(params),
        "re_openid": str(params["re_openid"]),
        "total_amount": int(params["total_amount"]),
        "total_num": int(params.get("total_num", 1)),  # a WeCom packet sends none
        "state": new.state.value,
        "reason": new.reason,
        "bill_dead": False,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "metadata": to_json(new.metadata) if new.metadata else None,
    }


_PAYOUT_FIELDS = tuple(field.name for field in fields(Payout))
_API, _PARAMS, _STATE, _BILL_DEAD, _METADATA = (
    _PAYOUT_FIELDS.index(name) for name in ("api", "params", "state", "bill_dead", "metadata")
)


def payout_from_row(row: Row[Any]) -> Payout:
    """A `Payout` from a full row of `payouts`."""
    mapping = row._mapping
    return payout_from_values([mapping[name] for name in _PAYOUT_FIELDS])


PAYOUT_COLUMNS = tuple(payouts.c[name] for name in _PAYOUT_FIELDS)
"""The columns of `payouts` in the order `payout_from_values` takes them."""


def payout_from_values(values: list[Any]) -> Payout:
    """A `Payout` from the (processed) values of `PAYOUT_COLUMNS`, in that order."""
    # Positional: keyword construction of a 32-field frozen dataclass costs three times more,
    # and the dispatchers build one per claimed payout.
    values[_API] = SendApi(values[_API])
    values[_PARAMS] = json.loads(values[_PARAMS])
    values[_STATE] = PayoutState(values[_STATE])
    values[_BILL_DEAD] = bool(values[_BILL_DEAD])
    if values[_METADATA] is not None:
        values[_METADATA] = json.loads(values[_METADATA])
    return Payout(*values)


def campaign_from_row(row: Row[Any]) -> Campaign:
    """A `Campaign` from a full row of `campaigns`."""
    values = dict(row._mapping)
    values["api"] = SendApi(values["api"])
    values["template"] = json.loads(values["template"])
    values["state"] = CampaignState(values["state"])
    return Campaign(**values)


def event_from_row(row: Row[Any]) -> PayoutEvent:
    """A `PayoutEvent` from a full row of `payout_events`."""
    values = dict(row._mapping)
    for name in ("from_state", "to_state"):
        values[name] = PayoutState(values[name]) if values[name] else None
    for name in ("request", "response"):
        values[name] = json.loads(values[name]) if values[name] else None
    return PayoutEvent(**values)


def dialect_insert(dialect: str, table: Table) -> Any:
    """The INSERT of `dialect` ("sqlite" or "postgresql") that has ON CONFLICT.

    The dialect's module is imported here, when first needed: a SQLite ledger never loads
    PostgreSQL's (some 20 ms of every command's start-up).
    """
    module = import_module(f"sqlalchemy.dialects.{dialect}")
    return module.insert(table)


def upsert(
    dialect: str,
    table: Table,
    values: Mapping[str, Any],
    keys: list[str],
    set_: Mapping[str, Any] | None,
    where: ColumnElement[bool] | None = None,
) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET … [WHERE …], or DO NOTHING when `set_` is None.

    Both SQLite and PostgreSQL spell it the same way; only the statement class differs.
    """
    stmt = dialect_insert(dialect, table).values(**values)
    if set_ is None:
        return stmt.on_conflict_do_nothing(index_elements=keys)
    return stmt.on_conflict_do_update(index_elements=keys, set_=dict(set_), where=where)
