"""The wire side of the endpoints: parse the `<xml>` body, call one registry action, render.

Responses follow docs/protocol.md §3: strings in CDATA, integers bare, `return_msg` equal to
`err_code_des`, send failures echo `mch_billno, mch_id, wxappid, re_openid, total_amount`, and no
`sign` unless the merchant switched signed responses on. WeCom failures echo nothing, and a WeCom
query answers the receipt flat (docs/protocol.md §15.4, §15.5).

>>> parse_request(b"<xml><mch_id>1900000109</mch_id></xml>")
{'mch_id': '1900000109'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from hongbao.clock import CST
from hongbao.sim import exceptions as msg
from hongbao.sim.entities import Api, Record
from hongbao.sim.exceptions import SimError
from hongbao.sim.state import Caller, QueryResult, Registry, SendResult
from hongbao.wire import xmlcodec
from hongbao.wire.sign import sign

__all__ = [
    "error_body",
    "handle_api",
    "parse_request",
    "post_only_body",
    "query_body",
    "render",
    "send_body",
    "workwx_query_body",
]

Value = str | int | Sequence[Mapping[str, str | int]] | None

_SEND_ECHO = ("mch_billno", "mch_id", "wxappid", "re_openid", "total_amount")
_QUERY_ECHO = ("mch_billno", "mch_id")
_INTEGERS = frozenset({"total_amount", "total_num", "amount", "refund_amount"})


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _element(name: str, value: str | int) -> str:
    if isinstance(value, int):
        return f"<{name}>{value}</{name}>"
    return f"<{name}>{_cdata(value)}</{name}>"


def render(fields: Mapping[str, Value], sign_key: str | None = None) -> bytes:
    """An `<xml>` response; None values are left out, lists become `<name><hbinfo>…` items.

    With `sign_key`, an MD5 `sign` over the flat fields is appended (the optional switch, §2.4).
    """
    parts = ["<xml>"]
    flat: dict[str, str | int] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, str | int):
            flat[name] = value
            parts.append(_element(name, value))
            continue
        parts.append(f"<{name}>")
        for item in value:
            parts.append("<hbinfo>")
            parts.extend(_element(k, v) for k, v in item.items())
            parts.append("</hbinfo>")
        parts.append(f"</{name}>")
    if sign_key is not None:
        parts.append(_element("sign", sign(flat, sign_key)))
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def parse_request(body: bytes) -> dict[str, str]:
    """The request's parameters; XML_ERROR (return_code FAIL) for anything not a flat `<xml>`."""
    try:
        parsed = xmlcodec.loads(body)
    except xmlcodec.XmlError:
        raise SimError("XML_ERROR", msg.XML_ERROR, return_code="FAIL") from None
    params: dict[str, str] = {}
    for name, value in parsed.items():
        if not isinstance(value, str):  # requests are flat (docs/protocol.md §1.3)
            raise SimError("XML_ERROR", msg.XML_ERROR, return_code="FAIL")
        params[name] = value
    return params


def _echo(api: Api, params: Mapping[str, str] | None) -> dict[str, Value]:
    if not params or api in (Api.WORKWX, Api.WORKWX_QUERY):
        return {}  # live WeCom failures carry the five envelope fields only (§15.4)
    names = _QUERY_ECHO if api is Api.QUERY else _SEND_ECHO
    echo: dict[str, Value] = {}
    for name in names:
        value = params.get(name)
        if value:
            # isascii too: "²".isdigit() is true, and int("²") raises.
            digits = value.isascii() and value.isdigit()
            echo[name] = int(value) if name in _INTEGERS and digits else value
    return echo


def error_body(api: Api, error: SimError, params: Mapping[str, str] | None = None) -> bytes:
    """The answer to a failed call, echoing what the request said."""
    return render(
        {
            "return_code": error.return_code,
            "return_msg": error.err_code_des,
            "result_code": "FAIL",
            "err_code": error.err_code,
            "err_code_des": error.err_code_des,
            **_echo(api, params),
        }
    )


def post_only_body() -> bytes:
    """The answer to any method other than POST (docs/protocol.md §6.2 step 1)."""
    return render({"return_code": "FAIL", "return_msg": msg.POST_ONLY})


def send_body(result: SendResult) -> bytes:
    """The success answer of a send API (the same bytes on every identical re-entry)."""
    return render(
        {
            "return_code": "SUCCESS",
            "return_msg": msg.SEND_OK,
            "result_code": "SUCCESS",
            "err_code": "SUCCESS",
            "err_code_des": msg.SEND_OK,
            "mch_billno": result.mch_billno,
            "mch_id": result.mch_id,
            "wxappid": result.wxappid,
            "re_openid": result.re_openid,
            "total_amount": result.total_amount,
            "send_listid": result.send_listid,
            "package": result.package,
            "sender_name": result.sender_name,
            "sender_header_media_id": result.sender_header_media_id,
        },
        result.sign_key,
    )


def _time(value: datetime | None) -> str | None:
    return f"{value.astimezone(CST):%Y-%m-%d %H:%M:%S}" if value is not None else None


def _hblist(record: Record) -> list[dict[str, str | int]] | None:
    items: list[dict[str, str | int]] = []
    for share in record.shares:
        if share.openid is None or share.rcv_time is None:
            continue
        item: dict[str, str | int] = {"openid": share.openid}
        if record.api is Api.GROUP:
            item["status"] = "RECEIVED"  # per-share status: in the official fission sample only
        item["amount"] = share.amount
        item["rcv_time"] = f"{share.rcv_time.astimezone(CST):%Y-%m-%d %H:%M:%S}"
        items.append(item)
    return items or None


def _query_head(r: Record) -> dict[str, Value]:
    """The fields both query answers open with (gethbinfo's and queryworkwxredpack's)."""
    return {
        "return_code": "SUCCESS",
        "return_msg": msg.QUERY_OK,
        "result_code": "SUCCESS",
        "err_code": "SUCCESS",
        "err_code_des": msg.QUERY_OK,
        "mch_billno": r.mch_billno,
        "mch_id": r.mch_id,
        "detail_id": r.detail_id,
        "status": r.status.value,
        "send_type": "API",
    }


def query_body(result: QueryResult) -> bytes:
    """The success answer of gethbinfo (docs/protocol.md §3.5)."""
    r = result.record
    return render(
        {
            **_query_head(r),
            "hb_type": r.hb_type.value,
            "total_num": r.total_num,
            "total_amount": r.total_amount,
            "reason": r.reason,
            "send_time": _time(r.send_time),
            "refund_time": _time(r.refund_time),
            "refund_amount": r.refund_amount,
            "wishing": r.wishing or None,
            "act_name": r.act_name or None,
            "remark": r.remark or None,
            "hblist": _hblist(r),
        },
        result.sign_key,
    )


def workwx_query_body(result: QueryResult) -> bytes:
    """The success answer of queryworkwxredpack: gethbinfo's fields without `hb_type` and
    `total_num`, the receipt flat once received, the sender (docs/protocol.md §15.5)."""
    r = result.record
    share = r.shares[0] if r.shares and r.shares[0].openid is not None else None
    return render(
        {
            **_query_head(r),
            "total_amount": r.total_amount,
            "reason": r.reason,
            "send_time": _time(r.send_time),
            "refund_time": _time(r.refund_time),
            "refund_amount": r.refund_amount,
            "wishing": r.wishing or None,
            "remark": r.remark or None,
            "act_name": r.act_name or None,
            "openid": share.openid if share else None,
            "amount": share.amount if share else None,
            "rcv_time": _time(share.rcv_time) if share else None,
            "sender_name": r.sender_name,
            "sender_header_media_id": r.sender_header_media_id,
        },
        result.sign_key,
    )


def handle_api(
    registry: Registry,
    api: Api,
    body: bytes,
    caller: Caller,
    *,
    processing: timedelta | None = None,
) -> bytes:
    """Run one POST to `api` through the model and return the response body."""
    try:
        params = parse_request(body)
    except SimError as error:
        return error_body(api, error)
    try:
        if api is Api.QUERY:
            return query_body(registry.query(params, caller))
        if api is Api.WORKWX_QUERY:
            return workwx_query_body(registry.query(params, caller, api=api))
        if api is Api.WORKWX:
            return send_body(registry.send_workwx(params, caller, processing=processing))
        return send_body(registry.send(api, params, caller, processing=processing))
    except SimError as error:
        return error_body(api, error, params)
