"""The ledger: every intended red packet, recorded before it is sent.

SQLite by default, PostgreSQL by URL; the schema is migrated with `upgrade(url)` (what
`hongbao db upgrade` runs) and checked with `check_schema(url)` before any payout is touched.

>>> upgrade("sqlite:///hongbao.db")
>>> store = LedgerStore.open("sqlite:///hongbao.db")
"""

from hongbao.ledger.db import DEFAULT_LEDGER_URL, LedgerBusy, create_ledger_engine, display_url
from hongbao.ledger.export import EXPORT_FIELDS, export_row, export_rows
from hongbao.ledger.migrate import SchemaStatus, check_schema, head_revision, schema_status, upgrade
from hongbao.ledger.records import (
    AddResult,
    Campaign,
    CapPolicy,
    ClaimRequest,
    ClaimResult,
    CodeTotal,
    DailyCaps,
    EventInfo,
    FrozenParams,
    IllegalTransitionError,
    LedgerLookupError,
    NewCampaign,
    NewPayout,
    OpenGroup,
    Origin,
    Payout,
    PayoutEvent,
    ReissueError,
    Scope,
    SendApi,
    StateTotal,
    Transition,
    freeze_params,
)
from hongbao.ledger.states import CampaignState, PayoutState
from hongbao.ledger.store import LedgerStore

__all__ = [
    "DEFAULT_LEDGER_URL",
    "EXPORT_FIELDS",
    "AddResult",
    "Campaign",
    "CampaignState",
    "CapPolicy",
    "ClaimRequest",
    "ClaimResult",
    "CodeTotal",
    "DailyCaps",
    "EventInfo",
    "FrozenParams",
    "IllegalTransitionError",
    "LedgerBusy",
    "LedgerLookupError",
    "LedgerStore",
    "NewCampaign",
    "NewPayout",
    "OpenGroup",
    "Origin",
    "Payout",
    "PayoutEvent",
    "PayoutState",
    "ReissueError",
    "SchemaStatus",
    "Scope",
    "SendApi",
    "StateTotal",
    "Transition",
    "check_schema",
    "create_ledger_engine",
    "display_url",
    "export_row",
    "export_rows",
    "freeze_params",
    "head_revision",
    "schema_status",
    "upgrade",
]
