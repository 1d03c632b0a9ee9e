"""The control API under `/__sim/` (JSON, no client certificate): a contract other tools use.

- `POST /__sim/merchants` settings → `{mch_id, api_key, appid, mini_appid, app_appid,
  cert_pem, key_pem, p12_base64}`; `GET`/`PATCH /__sim/merchants/{mch_id}` → the merchant (no key)
- `POST /__sim/users` `{appid, count?, openids?}` → `{openids}`;
  `PATCH /__sim/users/{openid}` `{blocked, appid?}` → `{openid, blocked, appids}`
- `POST /__sim/open` `{mch_id, mch_billno, openid?}` → `{mch_billno, status, openid, amount,
  rcv_time}`; `POST /__sim/miniprogram/open` (the `wx.sendBizRedPacket` fields, `openid?`) →
  `{retcode, retmsg}`
- `GET`/`POST /__sim/clock` `{advance_seconds}` or `{now}` → `{now, transitions}`
- `GET`/`POST`/`DELETE /__sim/faults` (see `hongbao.sim.faults`)
- `GET /__sim/ledger?mch_id=` → `{balance_fen, records: [{mch_billno, api, re_openid,
  total_amount, total_num, status, detail_id, send_time}]}`
- `POST /__sim/pay` `{mch_id, appid, openid, total_fee, notify_url, duplicates?, concurrent?,
  out_trade_no?, attach?, sign_type?, schedule_scale?, wait?}` → 201 and the payment
  `{transaction_id, out_trade_no, …, done, acknowledged, deliveries}`; its notification is
  delivered in the background (see `hongbao.sim.payments`); `GET /__sim/pay/{transaction_id}`
  → the same view, deliveries so far
- `POST /__sim/reset`; `GET /__sim/ca.pem`
- WeCom (docs/protocol.md §15.8): `POST /__sim/wecom/corps` `{mch_id}` → a new corp bound to
  the merchant `{corpid, mch_id, secret, agents: {agentid: secret}, bound,
  agent_secret_accepted}`; `GET`/`PATCH /__sim/wecom/corps/{corpid}` `{bound?,
  agent_secret_accepted?}` → the same (`bound: false` makes its sends NO_COMPETENCE);
  `POST /__sim/wecom/users` `{corpid, count?, openids?}` → `{openids}` (members, by their
  openid under the corpid)

Merchant settings (all optional): `balance_fen, rate_per_minute, query_rate_per_minute,
per_user_count, per_user_amount, merchant_amount, legacy_minute_cap, legacy_day_cap` (0 = off),
`ip_whitelist` (list), `scenes` (`{"PRODUCT_1": [min_fen, max_fen]}`, replaces all),
`product_enabled, api_enabled, restricted, sign_responses` (bool), `sub_mch_ids` (list);
at creation also `mch_id`, `api_key`, `wecom` (bool: add a WeCom corp, answered as
`wecom_corpid` (also `wecom_appid`), `wecom_secret` and `wecom_agentid`).

The ledger lists every record the merchant sent or paid for, failed ones included: `status`
says which were really paid (SENT, RECEIVED, RFUND_ING, REFUND). Errors answer
`{"error": "…"}` with 400 (bad input), 404 (unknown object) or 409 (not in this state).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from hongbao.clock import CST
from hongbao.sim.exceptions import InvalidStateError, UnknownObjectError
from hongbao.sim.faults import FaultSpecError, parse_fault
from hongbao.sim.payments import PayOrder
from hongbao.sim.state import BOOL_SETTINGS, INT_SETTINGS, LIST_SETTINGS, MerchantSettings
from hongbao.wire.bodies import BodyTooLarge, read_limited

if TYPE_CHECKING:
    from hongbao.sim.app import Simulator

__all__ = ["control_routes"]

_SETTINGS = frozenset(f.name for f in fields(MerchantSettings))
_MAX_JSON = 64 * 1024

Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """The request body or query cannot be used; the message says why."""


def _time(value: datetime) -> str:
    return f"{value.astimezone(CST):%Y-%m-%d %H:%M:%S}"


async def _json(request: Request) -> dict[str, Any]:
    body = await read_limited(request, _MAX_JSON)
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    return doc


def _only(doc: dict[str, Any], allowed: frozenset[str] | set[str]) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def _int(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer, got {value!r}")
    return value


def _bool(doc: dict[str, Any], name: str) -> bool | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false, got {value!r}")
    return value


def _required(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string, got {value!r}")
    return value


def _str(doc: dict[str, Any], name: str) -> str | None:
    return None if doc.get(name) is None else _required(doc, name)


def _str_list(doc: dict[str, Any], name: str) -> list[str] | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name} must be a list of strings, got {value!r}")
    return value


def _scenes(doc: dict[str, Any]) -> dict[str, tuple[int, int]] | None:
    value = doc.get("scenes")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest('scenes must be an object such as {"PRODUCT_1": [30, 499900]}')
    scenes: dict[str, tuple[int, int]] = {}
    for name, bounds in value.items():
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        ):
            raise BadRequest(f"scenes.{name} must be [min_fen, max_fen], got {bounds!r}")
        scenes[name] = (bounds[0], bounds[1])
    return scenes


def _settings(doc: dict[str, Any]) -> MerchantSettings:
    settings = MerchantSettings(scenes=_scenes(doc))
    for name in INT_SETTINGS:
        setattr(settings, name, _int(doc, name))
    for name in BOOL_SETTINGS:
        setattr(settings, name, _bool(doc, name))
    for name in LIST_SETTINGS:
        setattr(settings, name, _str_list(doc, name))
    return settings


def _merchant_view(sim: Simulator, mch_id: str) -> dict[str, Any]:
    m = sim.state.merchant(mch_id)
    limits = m.limits
    return {
        "mch_id": m.mch_id,
        "balance_fen": m.balance_fen,
        "cert_fingerprint": m.cert_fingerprint,
        "rate_per_minute": limits.rate_per_minute,
        "query_rate_per_minute": limits.query_rate_per_minute,
        "per_user_count": limits.per_user_count,
        "per_user_amount": limits.per_user_amount,
        "merchant_amount": limits.merchant_amount,
        "legacy_minute_cap": limits.legacy_minute_cap,
        "legacy_day_cap": limits.legacy_day_cap,
        "ip_whitelist": m.ip_whitelist,
        "scenes": {name: list(bounds) for name, bounds in m.scenes.items()},
        "product_enabled": m.product_enabled,
        "api_enabled": m.api_enabled,
        "restricted": m.restricted,
        "sign_responses": m.sign_responses,
        "sub_mch_ids": m.sub_mch_ids,
        "appids": {appid: kind.value for appid, kind in sim.state.appids_of(mch_id).items()},
    }


def _corp_view(sim: Simulator, corpid: str) -> dict[str, Any]:
    corp = sim.state.corp(corpid)
    return {
        "corpid": corp.appid,
        "mch_id": corp.mch_id,
        "secret": corp.secret,
        "agents": {str(agentid): secret for agentid, secret in corp.agents.items()},
        "bound": corp.bound,
        "agent_secret_accepted": corp.agent_secret_accepted,
    }


def _guarded(handler: Handler) -> Handler:
    """Turn the model's and the parser's errors into JSON answers with a clear message."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except BodyTooLarge as exc:
            return JSONResponse({"error": str(exc)}, status_code=413)
        except UnknownObjectError as exc:
            return JSONResponse({"error": exc.args[0]}, status_code=404)
        except InvalidStateError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return guarded


def control_routes(sim: Simulator) -> list[BaseRoute]:
    """The `/__sim/` routes over `sim`."""

    async def ca_pem(request: Request) -> Response:
        return Response(sim.ca.ca_pem, media_type="application/x-pem-file")

    async def create_merchant(request: Request) -> Response:
        doc = await _json(request)
        _only(doc, _SETTINGS | {"mch_id", "api_key", "wecom"})
        creds = sim.create_merchant(
            _settings(doc),
            mch_id=_str(doc, "mch_id"),
            api_key=_str(doc, "api_key"),
            wecom=bool(_bool(doc, "wecom")),
        )
        return JSONResponse(creds.to_json(), status_code=201)

    async def merchant(request: Request) -> Response:
        mch_id = request.path_params["mch_id"]
        if request.method == "PATCH":
            doc = await _json(request)
            _only(doc, _SETTINGS)
            sim.state.update_merchant(mch_id, _settings(doc))
        return JSONResponse(_merchant_view(sim, mch_id))

    async def users(request: Request) -> Response:
        doc = await _json(request)
        _only(doc, {"appid", "count", "openids"})
        appid = _required(doc, "appid")
        count = _int(doc, "count") or 0
        if count > 100_000:
            raise BadRequest("count must be at most 100000 per call")
        openids = sim.state.add_users(appid, count, _str_list(doc, "openids"))
        return JSONResponse({"openids": openids}, status_code=201)

    async def user(request: Request) -> Response:
        doc = await _json(request)
        _only(doc, {"blocked", "appid"})
        blocked = _bool(doc, "blocked")
        if blocked is None:
            raise BadRequest("blocked (true or false) is required")
        openid = request.path_params["openid"]
        appids = sim.state.set_blocked(openid, blocked, _str(doc, "appid"))
        return JSONResponse({"openid": openid, "blocked": blocked, "appids": appids})

    async def open_packet(request: Request) -> Response:
        doc = await _json(request)
        _only(doc, {"mch_id", "mch_billno", "openid"})
        mch_id = _required(doc, "mch_id")
        billno = _required(doc, "mch_billno")
        result = sim.state.open_packet(mch_id, billno, _str(doc, "openid"))
        return JSONResponse(
            {
                "mch_billno": billno,
                "status": result.status.value,
                "openid": result.openid,
                "amount": result.amount,
                "rcv_time": _time(result.rcv_time),
            }
        )

    async def open_mini(request: Request) -> Response:
        retcode, retmsg = sim.state.open_mini(await _json(request))
        return JSONResponse({"retcode": retcode, "retmsg": retmsg})

    async def clock(request: Request) -> Response:
        transitions = 0
        if request.method == "POST":
            doc = await _json(request)
            _only(doc, {"advance_seconds", "now"})
            advance = doc.get("advance_seconds")
            when = _str(doc, "now")
            if (advance is None) == (when is None):
                raise BadRequest("give exactly one of advance_seconds or now")
            if advance is not None:
                if isinstance(advance, bool) or not isinstance(advance, int | float):
                    raise BadRequest(f"advance_seconds must be a number, got {advance!r}")
                if advance < 0:
                    raise BadRequest("advance_seconds must not be negative")
                transitions = sim.move_clock(advance_seconds=float(advance))
            elif when is not None:
                try:
                    moment = datetime.fromisoformat(when)
                except ValueError:
                    raise BadRequest(f"now must be an ISO 8601 time, got {when!r}") from None
                # A time without offset is Beijing time, like every WeChat Pay time string.
                moment = moment if moment.tzinfo else moment.replace(tzinfo=CST)
                if moment < sim.clock.now():
                    raise BadRequest("the clock cannot move backwards")
                transitions = sim.move_clock(now=moment)
        return JSONResponse(
            {"now": sim.clock.now().astimezone(CST).isoformat(), "transitions": transitions}
        )

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            doc = await _json(request)
            _only(
                doc,
                {
                    "endpoint",
                    "action",
                    "err_code",
                    "status",
                    "seconds",
                    "count",
                    "probability",
                    "seed",
                },
            )
            try:
                fault = sim.faults.add(parse_fault(doc))
            except FaultSpecError as exc:
                raise BadRequest(str(exc)) from None
            return JSONResponse(fault.to_json(), status_code=201)
        if request.method == "DELETE":
            cleared = len(sim.faults.list())
            sim.faults.clear()
            return JSONResponse({"cleared": cleared})
        return JSONResponse({"faults": [f.to_json() for f in sim.faults.list()]})

    async def ledger(request: Request) -> Response:
        mch_id = request.query_params.get("mch_id")
        if not mch_id:
            raise BadRequest("mch_id query parameter is required")
        balance, rows = sim.state.ledger(mch_id)
        return JSONResponse(
            {
                "balance_fen": balance,
                "records": [
                    {
                        "mch_billno": row.mch_billno,
                        "api": row.api,
                        "re_openid": row.re_openid,
                        "total_amount": row.total_amount,
                        "total_num": row.total_num,
                        "status": row.status,
                        "detail_id": row.detail_id,
                        "send_time": _time(row.send_time),
                    }
                    for row in rows
                ],
            }
        )

    async def pay(request: Request) -> Response:
        order = PayOrder.from_json(await _json(request))
        record = await sim.payments.pay(order)
        if order.wait:
            await sim.payments.wait(record.transaction_id)
        return JSONResponse(record.to_json(), status_code=201)

    async def payment(request: Request) -> Response:
        return JSONResponse(sim.payments.get(request.path_params["transaction_id"]).to_json())

    async def wecom_corps(request: Request) -> Response:
        doc = await _json(request)
        _only(doc, {"mch_id"})
        corp = sim.state.create_corp(_required(doc, "mch_id"))
        return JSONResponse(_corp_view(sim, corp.appid), status_code=201)

    async def wecom_corp(request: Request) -> Response:
        corpid = request.path_params["corpid"]
        if request.method == "PATCH":
            doc = await _json(request)
            _only(doc, {"bound", "agent_secret_accepted"})
            sim.state.update_corp(
                corpid,
                bound=_bool(doc, "bound"),
                agent_secret_accepted=_bool(doc, "agent_secret_accepted"),
            )
        return JSONResponse(_corp_view(sim, corpid))

    async def wecom_users(request: Request) -> Response:
        doc = await _json(request)
        _only(doc, {"corpid", "count", "openids"})
        corpid = _required(doc, "corpid")
        sim.state.corp(corpid)  # 404 unless it is a WeCom corp
        count = _int(doc, "count") or 0
        if count > 100_000:
            raise BadRequest("count must be at most 100000 per call")
        openids = sim.state.add_users(corpid, count, _str_list(doc, "openids"))
        return JSONResponse({"openids": openids}, status_code=201)

    async def reset(request: Request) -> Response:
        sim.reset()
        return JSONResponse({"ok": True})

    table: list[tuple[str, Handler, list[str]]] = [
        ("/__sim/ca.pem", ca_pem, ["GET"]),
        ("/__sim/merchants", create_merchant, ["POST"]),
        ("/__sim/merchants/{mch_id}", merchant, ["GET", "PATCH"]),
        ("/__sim/users", users, ["POST"]),
        ("/__sim/users/{openid}", user, ["PATCH"]),
        ("/__sim/open", open_packet, ["POST"]),
        ("/__sim/miniprogram/open", open_mini, ["POST"]),
        ("/__sim/clock", clock, ["GET", "POST"]),
        ("/__sim/faults", faults, ["GET", "POST", "DELETE"]),
        ("/__sim/ledger", ledger, ["GET"]),
        ("/__sim/pay", pay, ["POST"]),
        ("/__sim/pay/{transaction_id}", payment, ["GET"]),
        ("/__sim/reset", reset, ["POST"]),
        ("/__sim/wecom/corps", wecom_corps, ["POST"]),
        ("/__sim/wecom/corps/{corpid}", wecom_corp, ["GET", "PATCH"]),
        ("/__sim/wecom/users", wecom_users, ["POST"]),
    ]
    return [Route(path, _guarded(handler), methods=methods) for path, handler, methods in table]
