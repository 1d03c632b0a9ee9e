"""The HTTP API's objects: request bodies, the payout and campaign objects, lists and problems.

The pydantic models are the contract (`/openapi.json`); `payout_object` and `campaign_object`
render ledger records into them, for the API's answers and the webhooks' events alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Header, Path
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from hongbao.api.codes import SEND_CODES, UNKNOWN_CODE
from hongbao.engine.campaign import CampaignStatus
from hongbao.engine.ondemand import KINDS, Kind, PayoutView
from hongbao.ledger import Campaign, Origin, Payout, PayoutState, SendApi
from hongbao.ledger.states import OPEN_STATES

__all__ = [
    "CampaignCreate",
    "CampaignObject",
    "PayoutCreate",
    "PayoutError",
    "PayoutList",
    "PayoutObject",
    "Problem",
    "StateTotals",
    "campaign_object",
    "payout_object",
]

_KIND_OF: dict[SendApi, Kind] = {api: kind for kind, api in KINDS.items()}
_SETTLED_OK = frozenset({PayoutState.SENT, PayoutState.RECEIVED, PayoutState.REFUNDED})
Text = Annotated[StrictStr, Field(min_length=1, max_length=256)]
MediaId = Annotated[StrictStr, Field(min_length=1, max_length=128)]
MAX_ID = 2**63 - 1
"""The largest id a ledger row can have (a signed 64-bit integer)."""
KEY_PATTERN = r"^[!-~]+$"
"""An idempotency key's characters: printable ASCII, no spaces (`check_key`)."""
IdempotencyKey = Annotated[str, Header(
    alias="Idempotency-Key", min_length=1, max_length=64, pattern=KEY_PATTERN,
    description="Your key for this object: the same key never pays twice.",
)]
PayoutId = Annotated[int, Path(ge=1, le=MAX_ID)]
CampaignId = Annotated[int, Path(ge=1, le=MAX_ID)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Packet(_Strict):
    """What a payout and a campaign's template have in common (texts as WeChat limits them)."""

    merchant: StrictStr | None = Field(
        None, description="The merchant's name in the configuration; optional when it has one."
    )
    amount_fen: Annotated[StrictInt, Field(gt=0, description="The amount in fen (1 yuan = 100).")]
    kind: Kind = "normal"
    total_num: Annotated[StrictInt, Field(ge=1, le=20)] | None = Field(
        None, description="Group (fission) packets only: the shares, 3 to 20."
    )
    send_name: Text | None = Field(None, description="Required but for `workwx`.")
    wishing: Text
    act_name: Text
    remark: Text
    sender_name: Text | None = Field(
        None, description="`workwx` only: the sender's name shown (or `agentid`)."
    )
    agentid: Annotated[StrictInt, Field(ge=0)] | None = Field(
        None, description="`workwx` only: the WeCom app paying (or `sender_name`)."
    )
    sender_header_media_id: MediaId | None = Field(
        None, description="`workwx` only, with `sender_name`: the sender's avatar."
    )
    scene_id: StrictStr | None = None
    risk_info: Annotated[StrictStr, Field(max_length=128)] | None = None


class PayoutCreate(_Packet):
    """`POST /v1/payouts`: one red packet."""

    openid: Annotated[StrictStr, Field(min_length=1, max_length=32)]
    metadata: dict[StrictStr, StrictStr] | None = Field(
        None, description="Up to 20 labels of your own; kept and returned, never sent to WeChat."
    )


class PayoutError(BaseModel):
    """Why a payout is not (yet) sent, and what that means for the money."""

    code: str
    message: str | None
    outcome: Literal["not_sent", "refused", "unknown"] = Field(
        description="not_sent: nothing was paid; refused: WeChat refused it; unknown: it may "
        "have been paid (hongbao resolves it)."
    )


class PayoutObject(BaseModel):
    """A payout: one red packet under an idempotency key, and where it stands."""

    object: Literal["payout"] = "payout"
    id: int
    key: str | None = Field(description="The Idempotency-Key it was created with.")
    merchant: str
    bill_no: str = Field(description="The mch_billno sent to WeChat (its latest, if re-issued).")
    openid: str
    amount_fen: int
    kind: Kind
    total_num: int
    state: PayoutState
    settled: bool = Field(description="Whether the outcome is final (not planned, in flight).")
    error: PayoutError | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    received_at: datetime | None
    refunded_at: datetime | None
    metadata: dict[str, str]


class PayoutList(BaseModel):
    """A page of payouts, newest first."""

    data: list[PayoutObject]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class CampaignCreate(_Packet):
    """`POST /v1/campaigns` as JSON: the template and the receivers' openids."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    openids: Annotated[
        list[Annotated[StrictStr, Field(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=100_000),
    ]
    budget_fen: Annotated[StrictInt, Field(ge=0)] | None = None


class StateTotals(BaseModel):
    """How many payouts are in a state, and their amount in fen."""

    count: int
    amount_fen: int


class CampaignObject(BaseModel):
    """A campaign and its payouts' counts and amounts by state."""

    object: Literal["campaign"] = "campaign"
    id: int
    name: str
    merchant: str
    kind: Kind
    state: str
    pause_reason: str | None
    budget_fen: int | None
    committed_fen: int
    lines_total: int
    lines_good: int
    lines_bad: int
    totals: dict[PayoutState, StateTotals]
    created_at: datetime
    updated_at: datetime


class Problem(BaseModel):
    """An error, as RFC 9457 `application/problem+json`."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = Field(
        None, description="Validation: each field (`field`), its rule (`rule`) and `message`."
    )
    fields: list[str] | None = Field(None, description="Conflict: the fields that differ.")


def _error(payout: Payout | PayoutView, state: PayoutState) -> PayoutError | None:
    code = payout.err_code or payout.reason
    if state in _SETTLED_OK or code is None:
        return None
    if state in OPEN_STATES and payout.err_code is None:
        return None  # waiting (a daily cap, its turn): nothing went wrong
    outcome = SEND_CODES.get(payout.err_code or "", UNKNOWN_CODE).outcome.value
    if state is PayoutState.FAILED and payout.err_code is None:
        outcome = "not_sent"  # hongbao gave up before anything was sent
    if state in (PayoutState.SKIPPED, PayoutState.CANCELLED):
        outcome = "not_sent"
    message = payout.err_code_des or (payout.reason if payout.err_code else None)
    return PayoutError(code=code, message=message, outcome=outcome)


def payout_object(source: Payout | PayoutView, state: PayoutState | None = None) -> PayoutObject:
    """The payout object of a ledger row or a `PayoutView`; `state` (a webhook event's)
    replaces its own."""
    view = source if isinstance(source, PayoutView) else None
    payout = source if isinstance(source, Payout) else None
    now = source.state if state is None else state
    if view is not None:
        key: str | None = view.key
        kind, bill_no, openid, amount = view.kind, view.bill_no, view.openid, view.amount_fen
    else:
        assert payout is not None
        prefix = Origin.ON_DEMAND.key_prefix
        on_demand = payout.natural_key.startswith(prefix)
        key = payout.natural_key.split(":", 2)[2] if on_demand else None
        kind, bill_no = _KIND_OF[payout.api], payout.mch_billno
        openid, amount = payout.re_openid, payout.total_amount
    return PayoutObject(
        id=source.id,
        key=key,
        merchant=source.merchant,
        bill_no=bill_no,
        openid=openid,
        amount_fen=amount,
        kind=kind,
        total_num=source.total_num,
        state=now,
        settled=now not in OPEN_STATES,
        error=_error(source, now),
        created_at=source.created_at,
        updated_at=source.updated_at,
        sent_at=source.sent_at,
        received_at=source.received_at,
        refunded_at=source.refunded_at,
        metadata=dict(source.metadata or {}),
    )


def campaign_object(campaign: Campaign, status: CampaignStatus | None = None) -> CampaignObject:
    """The campaign object of a ledger campaign and (optionally) its totals by state."""
    totals = {
        state: StateTotals(count=total.count, amount_fen=total.amount_fen)
        for state, total in (status.totals.items() if status is not None else ())
    }
    return CampaignObject(
        id=campaign.id,
        name=campaign.name,
        merchant=campaign.merchant,
        kind=_KIND_OF[campaign.api],
        state=campaign.state.value,
        pause_reason=campaign.pause_reason,
        budget_fen=campaign.budget_fen,
        committed_fen=campaign.committed_fen,
        lines_total=campaign.lines_total,
        lines_good=campaign.lines_good,
        lines_bad=campaign.lines_bad,
        totals=totals,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
    )
