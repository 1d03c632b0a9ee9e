"""`/v1/campaigns`: the CLI's campaign operations over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError as ModelError

from hongbao.engine.campaign import (
    CampaignError,
    Template,
    campaign_status,
    cancel_campaign,
    create_campaign,
    file_digest,
    pause_campaign,
    plan_campaign,
    resume_campaign,
)
from hongbao.engine.ondemand import KINDS
from hongbao.engine.runner import run_campaign
from hongbao.ledger import Campaign, CampaignState
from hongbao.service.models import (
    CampaignCreate,
    CampaignId,
    CampaignObject,
    IdempotencyKey,
    Problem,
    campaign_object,
)
from hongbao.service.problems import PROBLEM_JSON, problem
from hongbao.service.state import Service, service_of

__all__ = ["router"]

logger = logging.getLogger("hongbao.service")
router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": text}
    for status, text in {
        400: "Idempotency-Key missing or malformed",
        401: "No or a wrong bearer token",
        404: "No such campaign",
        409: "The campaign's state does not allow it, or the key was used with another body",
        415: "Neither JSON nor multipart/form-data",
        422: "The request breaks a rule (each field and rule named)",
    }.items()
}
MAX_UPLOAD = 64 * 1024 * 1024
"""The largest openid file accepted over HTTP (about 1.5 million lines)."""
_FORM_FIELDS = frozenset(CampaignCreate.model_fields) - {"openids"}


async def _object(service: Service, campaign_id: int) -> CampaignObject:
    status = await service.db(campaign_status, service.store, campaign_id)
    return campaign_object(status.campaign, status)


def _answer(model: CampaignObject, status: int = 200, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(model.model_dump_json(), status, headers=headers,
                    media_type="application/json")


async def _read_request(request: Request) -> tuple[CampaignCreate, bytes] | Response:
    """The template and the openid file's bytes, from JSON or from a multipart form."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            raw = await request.body()
            if len(raw) > MAX_UPLOAD:
                return problem(413, f"the body is over {MAX_UPLOAD} bytes")
            try:
                document = json.loads(raw)
            except ValueError:
                return problem(400, "the body is not JSON")
            body = CampaignCreate.model_validate(document)
            return body, "".join(f"{openid}\n" for openid in body.openids).encode()
        if kind == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=len(_FORM_FIELDS) + 1)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return problem(422, "the openid file is missing (form field `file`)",
                               errors=[{"field": "file", "rule": "required",
                                        "message": "upload the openid file as `file`"}])
            content = await upload.read(MAX_UPLOAD + 1)
            if len(content) > MAX_UPLOAD:
                return problem(413, f"the openid file is over {MAX_UPLOAD} bytes")
            fields: dict[str, Any] = {}
            for name, value in form.multi_items():
                if name == "file":
                    continue
                if name not in _FORM_FIELDS or not isinstance(value, str):
                    return problem(422, f"unknown form field {name!r}", errors=[
                        {"field": name, "rule": "extra_forbidden", "message": "not a field"}])
                fields[name] = int(value) if name in {"amount_fen", "total_num", "budget_fen",
                                                      "agentid"} \
                    and value.lstrip("-").isdigit() else value
            body = CampaignCreate.model_validate({**fields, "openids": ["-"]})
            return body, content
    except ModelError as exc:
        errors = [{"field": ".".join(str(part) for part in error["loc"]) or "body",
                   "rule": error["type"], "message": error["msg"]} for error in exc.errors()]
        names = ", ".join(sorted({error["field"] for error in errors}))
        return problem(422, f"the request is invalid: {names}", errors=errors)
    return problem(415, "send the campaign as application/json or multipart/form-data")


def _same(campaign: Campaign, template: Template, body: CampaignCreate, digest: str) -> list[str]:
    differ = []
    if campaign.name != body.name:
        differ.append("name")
    if campaign.source_digest != digest:
        differ.append("openids")
    if campaign.budget_fen != body.budget_fen:
        differ.append("budget_fen")
    recorded = Template.from_dict(campaign.template)
    for name in ("amount_fen", "send_name", "wishing", "act_name", "remark", "api",
                 "total_num", "scene_id", "risk_info", "sender_name", "agentid",
                 "sender_header_media_id"):
        if getattr(recorded, name) != getattr(template, name):
            differ.append("kind" if name == "api" else name)
    return differ


@router.post(
    "",
    status_code=201,
    response_model=CampaignObject,
    summary="Create a campaign from an openid file (multipart) or a JSON list",
    responses={200: {"model": CampaignObject, "description": "A replay of the key"},
               **_PROBLEMS},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": CampaignCreate.model_json_schema()},
        "multipart/form-data": {"schema": {
            "type": "object", "additionalProperties": False,
            "required": ["file", "name", "amount_fen", "send_name", "wishing", "act_name",
                         "remark"],
            "properties": {"file": {"type": "string", "format": "binary"},
                           **{name: {"type": "string"} for name in sorted(_FORM_FIELDS)}}}},
    }}},
)
async def create(
    request: Request,
    service: Annotated[Service, Depends(service_of)],
    idempotency_key: IdempotencyKey,
) -> Response:
    """Record the campaign (DRAFT) with its openid file; plan and run it next."""
    read = await _read_request(request)
    if isinstance(read, Response):
        return read
    body, content = read
    profile = service.payouts.profile(body.merchant)
    template = Template(
        amount_fen=body.amount_fen, send_name=body.send_name, wishing=body.wishing,
        act_name=body.act_name, remark=body.remark, api=KINDS[body.kind],
        total_num=body.total_num or 1, scene_id=body.scene_id, risk_info=body.risk_info,
        sender_name=body.sender_name, agentid=body.agentid,
        sender_header_media_id=body.sender_header_media_id,
    )
    # The file is named by the key: the same key finds its campaign again.
    name = hashlib.sha256(f"{profile.mch_id}:{idempotency_key}".encode()).hexdigest()[:32]
    path = service.uploads / f"{name}.txt"
    digest = hashlib.sha256(content).hexdigest()
    existing = await service.db(_by_source, service, path)
    if existing is not None:
        differ = _same(existing, template, body, digest)
        if differ:
            return problem(409, f"Idempotency-Key {idempotency_key!r} created campaign "
                           f"{existing.id} with other values: {', '.join(differ)} differ",
                           kind="idempotency-conflict", fields=differ)
        return _answer(await _object(service, existing.id), 200, replayed=True)
    if not path.exists() or file_digest(path) != digest:
        service.uploads.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(content)
        partial.replace(path)
    campaign = await service.db(create_campaign, service.store, profile, name=body.name,
                                template=template, source=path, budget_fen=body.budget_fen)
    return _answer(await _object(service, campaign.id), 201)


def _by_source(service: Service, path: Path) -> Campaign | None:
    wanted = str(path.resolve())
    for campaign in service.store.list_campaigns():
        if campaign.source_name == wanted:
            return campaign
    return None


@router.get("/{campaign_id}", response_model=CampaignObject, summary="A campaign and its totals",
            responses={status: _PROBLEMS[status] for status in (401, 404, 422)})
async def get(
    campaign_id: CampaignId, service: Annotated[Service, Depends(service_of)]
) -> Response:
    """The campaign, with its payouts' counts and amounts by state."""
    return _answer(await _object(service, campaign_id))


async def _profile_of(service: Service, campaign_id: int) -> Any:
    campaign = await service.db(service.store.get_campaign, campaign_id)
    return service.payouts.profile(campaign.merchant)


@router.post("/{campaign_id}/plan", response_model=CampaignObject,
             summary="Record one payout per good line (idempotent)",
             responses={status: _PROBLEMS[status] for status in (401, 404, 409, 422)})
async def plan(
    campaign_id: CampaignId, service: Annotated[Service, Depends(service_of)]
) -> Response:
    """Plan the campaign: its bad lines are counted (`lines_bad`), its good ones recorded."""
    profile = await _profile_of(service, campaign_id)
    await service.db(plan_campaign, service.store, profile, campaign_id)
    return _answer(await _object(service, campaign_id))


@router.post("/{campaign_id}/run", status_code=202, response_model=CampaignObject,
             summary="Start sending a planned campaign",
             responses={status: _PROBLEMS[status] for status in (401, 404, 409, 422)})
async def run(
    campaign_id: CampaignId, service: Annotated[Service, Depends(service_of)]
) -> Response:
    """Start (or go on with) the campaign's run; it goes on after the answer.

    Embedded (SQLite), this process sends it; scale-out, jobs are deferred to the workers.
    """
    campaign = await service.db(service.store.get_campaign, campaign_id)
    if campaign.state is CampaignState.DRAFT:
        raise CampaignError(f"campaign {campaign_id} is not planned yet: plan it first")
    if campaign.state is CampaignState.PAUSED:
        raise CampaignError(f"campaign {campaign_id} is paused: resume it first")
    profile = service.payouts.profile(campaign.merchant)
    if service.scale_out:
        from hongbao.engine.distributed import defer_campaign

        await service.db(defer_campaign, service.store, campaign_id)
    else:
        running = service.runs.get(campaign_id)
        if running is None or running.done():
            service.runs[campaign_id] = asyncio.create_task(
                _run(service, campaign_id, profile), name=f"campaign-{campaign_id}"
            )
    await asyncio.sleep(0)
    return _answer(await _object(service, campaign_id), 202)


async def _run(service: Service, campaign_id: int, profile: Any) -> object:
    try:
        return await run_campaign(
            service.store, campaign_id, profile, pace=service.payouts.pace(profile.name),
            client=service.payouts.client(profile.name),
        )
    except Exception:
        logger.exception("campaign %s: the run failed", campaign_id)
        raise


@router.post("/{campaign_id}/pause", response_model=CampaignObject, summary="Pause a run",
             responses={status: _PROBLEMS[status] for status in (401, 404, 409, 422)})
async def pause(
    campaign_id: CampaignId, service: Annotated[Service, Depends(service_of)]
) -> Response:
    """Stop claiming; packets in flight still resolve. Pausing a paused campaign is fine."""
    campaign = await service.db(service.store.get_campaign, campaign_id)
    if campaign.state is not CampaignState.PAUSED:
        await service.db(pause_campaign, service.store, campaign_id, "paused over the API")
    return _answer(await _object(service, campaign_id))


@router.post("/{campaign_id}/resume", response_model=CampaignObject,
             summary="Resume a paused campaign (then run it)",
             responses={status: _PROBLEMS[status] for status in (401, 404, 409, 422)})
async def resume(
    campaign_id: CampaignId, service: Annotated[Service, Depends(service_of)]
) -> Response:
    """Make the paused campaign RUNNING again; `run` sends what is left."""
    await service.db(resume_campaign, service.store, campaign_id)
    return _answer(await _object(service, campaign_id))


@router.post("/{campaign_id}/cancel", response_model=CampaignObject,
             summary="Cancel a campaign's unsent payouts",
             responses={status: _PROBLEMS[status] for status in (401, 404, 409, 422)})
async def cancel(
    campaign_id: CampaignId, service: Annotated[Service, Depends(service_of)]
) -> Response:
    """Cancel: its unsent payouts are CANCELLED; those in flight still resolve."""
    await service.db(cancel_campaign, service.store, campaign_id)
    return _answer(await _object(service, campaign_id))
