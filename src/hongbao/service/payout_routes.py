"""`/v1/payouts`: create one by idempotency key, read it, list them."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BeforeValidator

from hongbao.errors import ValidationError
from hongbao.ledger import PayoutState, Scope
from hongbao.ledger.records import LedgerLookupError
from hongbao.service.models import (
    KEY_PATTERN,
    MAX_ID,
    IdempotencyKey,
    PayoutCreate,
    PayoutId,
    PayoutList,
    PayoutObject,
    Problem,
    payout_object,
)
from hongbao.service.problems import PROBLEM_JSON, problem
from hongbao.service.state import Service, service_of

__all__ = ["router"]

router = APIRouter(prefix="/v1/payouts", tags=["payouts"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": text}
    for status, text in {
        400: "Idempotency-Key missing or malformed",
        401: "No or a wrong bearer token",
        404: "No such payout",
        409: "The key was used with another body",
        422: "The body breaks a rule (each field and rule named)",
    }.items()
}
MAX_WAIT = 30.0


def _iso_8601(value: object) -> object:
    # pydantic would read "-255" as seconds since 1970: the API takes ISO 8601 only.
    if isinstance(value, str) and not re.match(r"\d{4}-\d\d-\d\dT", value):
        raise ValueError("must be an ISO 8601 date-time such as 2024-03-15T10:00:00+08:00")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_iso_8601)]


def _json(model: PayoutObject | PayoutList, status: int, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(
        model.model_dump_json(), status, headers=headers, media_type="application/json"
    )


@router.post(
    "",
    status_code=201,
    response_model=PayoutObject,
    summary="Pay one red packet under an idempotency key",
    responses={200: {"model": PayoutObject, "description": "A replay: the key's payout as it "
                     "is now (header Idempotent-Replayed: true)"}, **_PROBLEMS},
)
async def create_payout(
    body: PayoutCreate,
    service: Annotated[Service, Depends(service_of)],
    idempotency_key: IdempotencyKey,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait for the "
                                 "outcome (0: answer once recorded)")] = 0,
) -> Response:
    """Record the payout before anything is sent, then send it exactly once.

    The same key with the same body answers 200 with the payout as it is now; with another
    body, 409 naming the fields that differ.
    """
    view = await service.payouts.pay(
        idempotency_key,
        body.openid,
        body.amount_fen,
        send_name=body.send_name,
        wishing=body.wishing,
        act_name=body.act_name,
        remark=body.remark,
        scene_id=body.scene_id,
        risk_info=body.risk_info,
        kind=body.kind,
        total_num=body.total_num,
        sender_name=body.sender_name,
        agentid=body.agentid,
        sender_header_media_id=body.sender_header_media_id,
        merchant=body.merchant,
        metadata=body.metadata,
        wait=wait > 0,
        timeout=wait,
    )
    return _json(payout_object(view), 200 if view.replayed else 201, replayed=view.replayed)


@router.get(
    "/{payout_id}",
    response_model=PayoutObject,
    summary="A payout by id",
    responses={status: _PROBLEMS[status] for status in (401, 404, 422)},
)
async def get_payout(
    payout_id: PayoutId, service: Annotated[Service, Depends(service_of)]
) -> Response:
    """The payout with this id, as it is now (its latest bill if it was re-issued)."""
    try:
        row = await service.db(service.store.get_payout, payout_id)
    except LedgerLookupError:
        return problem(404, f"no payout with id {payout_id}")
    latest = await service.db(service.store.find_payout, row.natural_key)
    return _json(payout_object(latest or row), 200)


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(base64.urlsafe_b64decode(value.encode() + b"==").decode())
        if not 1 <= number <= MAX_ID:
            raise ValueError(number)
        return number
    except ValueError:
        raise ValidationError(
            "cursor is not one this API gave", field="cursor", rule="format"
        ) from None


@router.get(
    "",
    response_model=PayoutList,
    summary="Payouts on demand, newest first (or the payout of a key)",
    responses={status: _PROBLEMS[status] for status in (401, 422)},
)
async def list_payouts(
    service: Annotated[Service, Depends(service_of)],
    key: Annotated[str | None, Query(
        min_length=1, max_length=64, pattern=KEY_PATTERN,
        description="The payout of this Idempotency-Key")] = None,
    merchant: Annotated[str | None, Query()] = None,
    state: Annotated[PayoutState | None, Query()] = None,
    created_after: Annotated[Timestamp | None, Query()] = None,
    created_before: Annotated[Timestamp | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """A page of the merchant's payouts on demand; `next_cursor` fetches the next one."""
    if key is not None:
        view = await service.payouts.get(key, merchant=merchant)
        return _json(PayoutList(data=[payout_object(view)] if view else [], next_cursor=None), 200)
    profile = service.payouts.profile(merchant)
    for name, value in (("created_after", created_after), ("created_before", created_before)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(f"{name} needs a time zone (…Z or +08:00)", field=name,
                                  rule="timezone")
        try:
            if value is not None:
                value.astimezone(UTC)  # the ledger compares in UTC
        except OverflowError:
            raise ValidationError(f"{name} is out of range", field=name, rule="range") from None
    rows = await service.db(
        service.store.list_payouts,
        Scope.on_demand(profile.mch_id),
        state=state,
        since=created_after,
        until=created_before,
        before_id=_cursor(cursor),
        limit=limit + 1,
    )
    page = rows[:limit]
    following = None
    if len(rows) > limit:
        following = base64.urlsafe_b64encode(str(page[-1].id).encode()).decode().rstrip("=")
    return _json(PayoutList(data=[payout_object(row) for row in page], next_cursor=following), 200)


