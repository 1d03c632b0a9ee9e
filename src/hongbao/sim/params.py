"""Field-level request rules (presence, length, format) of docs/protocol.md §3 and §5.3 — step 9
of §6.2.

Pure functions over the received strings; rules that need the merchant's state (scene enabled,
appid bound, openid known) live in `hongbao.sim.state`.

Lengths count characters, not bytes (docs/protocol.md §12 item 4 leaves it open; characters accept
what a careful client sends and still refuse what is clearly too long). Values are not trimmed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hongbao.sim import exceptions as msg
from hongbao.sim.entities import Api
from hongbao.sim.exceptions import SimError

__all__ = [
    "RECOGNISED",
    "QueryRequest",
    "SendRequest",
    "check_mch_id",
    "parse_query",
    "parse_send",
    "parse_workwx",
]

_SEND_FIELDS = (
    "nonce_str", "mch_billno", "mch_id", "sub_mch_id", "wxappid", "msgappid", "send_name",
    "re_openid", "total_amount", "total_num", "wishing", "act_name", "remark", "scene_id",
)  # fmt: skip
# docs/protocol.md §15.3: no send_name, total_num, client_ip, sign_type or SP mode.
_WORKWX_FIELDS = (
    "nonce_str", "mch_billno", "mch_id", "wxappid", "sender_name", "agentid",
    "sender_header_media_id", "re_openid", "total_amount", "wishing", "act_name", "remark",
    "scene_id", "workwx_sign",
)  # fmt: skip
RECOGNISED: dict[Api, frozenset[str]] = {
    Api.SEND: frozenset(_SEND_FIELDS) | {"client_ip", "risk_info", "consume_mch_id"},
    # client_ip is not in the official tables of these two but is signed by several SDKs (§2.3).
    Api.GROUP: frozenset(_SEND_FIELDS) | {"amt_type", "risk_info", "consume_mch_id", "client_ip"},
    Api.MINI: frozenset(_SEND_FIELDS) - {"sub_mch_id", "msgappid"} | {"notify_way", "client_ip"},
    Api.QUERY: frozenset({"nonce_str", "mch_billno", "mch_id", "appid", "bill_type"}),
    Api.WORKWX: frozenset(_WORKWX_FIELDS),
    Api.WORKWX_QUERY: frozenset({"nonce_str", "mch_billno", "mch_id", "appid"}),
}
"""Parameters each API signs (docs/protocol.md §2.3); anything else is ignored, and so unsigned."""

SCENES = frozenset(f"PRODUCT_{n}" for n in range(1, 9))

_DIGITS = re.compile(r"[0-9]{1,32}")
_BILLNO = re.compile(r"[0-9A-Za-z]{1,28}")
_AMOUNT = re.compile(r"[0-9]{1,10}")
# Amounts above this are "too large" to be an amount at all (PARAM_ERROR, not MONEY_LIMIT).
_MAX_AMOUNT = 10**9


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A send request whose fields passed the format rules."""

    api: Api
    mch_id: str
    mch_billno: str
    wxappid: str
    re_openid: str
    send_name: str
    wishing: str
    act_name: str
    remark: str
    total_amount: int
    total_num: int
    client_ip: str | None = None
    scene_id: str | None = None
    sub_mch_id: str | None = None
    msgappid: str | None = None
    consume_mch_id: str | None = None
    sender_name: str | None = None
    agentid: int | None = None
    sender_header_media_id: str | None = None


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """A gethbinfo request whose fields passed the format rules."""

    mch_id: str
    mch_billno: str
    appid: str


def check_mch_id(params: Mapping[str, str]) -> str:
    """Step 3: `mch_id` present and made of digits, else PARAM_ERROR 输入的商户号有误."""
    mch_id = params.get("mch_id", "")
    if not _DIGITS.fullmatch(mch_id):
        raise SimError("PARAM_ERROR", msg.P_MCH_ID)
    return mch_id


def _text(params: Mapping[str, str], name: str, limit: int, des: str) -> str:
    value = params.get(name, "")
    if not value or len(value) > limit:
        raise SimError("PARAM_ERROR", des)
    return value


def _optional(params: Mapping[str, str], name: str) -> str | None:
    return params.get(name) or None


def _common(params: Mapping[str, str]) -> tuple[str, str]:
    _text(params, "nonce_str", 32, msg.P_NONCE)
    billno = params.get("mch_billno", "")
    if not _BILLNO.fullmatch(billno):
        raise SimError("PARAM_ERROR", msg.P_BILLNO)
    return params["mch_id"], billno


def _amount(params: Mapping[str, str]) -> int:
    text = params.get("total_amount", "")
    if not _AMOUNT.fullmatch(text) or int(text) > _MAX_AMOUNT:
        raise SimError("PARAM_ERROR", msg.P_AMOUNT)
    return int(text)


def _total_num(api: Api, params: Mapping[str, str]) -> int:
    text = params.get("total_num", "")
    num = int(text) if _AMOUNT.fullmatch(text) else None
    if api is Api.GROUP:
        if num is None or not 3 <= num <= 20:
            raise SimError("PARAM_ERROR", msg.P_TOTAL_NUM_GROUP)
        return num
    if num != 1:
        raise SimError("PARAM_ERROR", msg.P_TOTAL_NUM_ONE)
    return 1


def _client_ip(api: Api, params: Mapping[str, str]) -> str | None:
    value = params.get("client_ip", "")
    if not value:
        # Required by sendredpack only; the other two APIs merely tolerate it (docs/protocol.md §2.3
        # note).
        if api is Api.SEND:
            raise SimError("PARAM_ERROR", msg.P_CLIENT_IP)
        return None
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise SimError("PARAM_ERROR", msg.P_CLIENT_IP) from None
    return value


def parse_send(api: Api, params: Mapping[str, str]) -> SendRequest:
    """Check the format rules of a send API in a fixed order; the first broken one is answered."""
    mch_id, billno = _common(params)
    wxappid = _text(params, "wxappid", 32, msg.P_APPID)
    send_name = _text(params, "send_name", 32, msg.P_SEND_NAME)
    re_openid = _text(params, "re_openid", 32, msg.P_RE_OPENID)
    total_amount = _amount(params)
    total_num = _total_num(api, params)
    wishing = _text(params, "wishing", 128, msg.P_WISHING)
    act_name = _text(params, "act_name", 32, msg.P_ACT_NAME)
    remark = _text(params, "remark", 256, msg.P_REMARK)
    client_ip = _client_ip(api, params)
    if api is Api.GROUP and params.get("amt_type") != "ALL_RAND":
        raise SimError("PARAM_ERROR", msg.P_AMT_TYPE)
    if api is Api.MINI and params.get("notify_way") != "MINI_PROGRAM_JSAPI":
        raise SimError("PARAM_ERROR", msg.P_NOTIFY_WAY)
    scene_id = _optional(params, "scene_id")
    if scene_id is not None and scene_id not in SCENES:
        raise SimError("PARAM_ERROR", msg.P_SCENE)
    sp = api is not Api.MINI  # sendminiprogramhb has no SP-mode fields (docs/protocol.md §3.4)
    return SendRequest(
        api=api,
        mch_id=mch_id,
        mch_billno=billno,
        wxappid=wxappid,
        re_openid=re_openid,
        send_name=send_name,
        wishing=wishing,
        act_name=act_name,
        remark=remark,
        total_amount=total_amount,
        total_num=total_num,
        client_ip=client_ip,
        scene_id=scene_id,
        sub_mch_id=_optional(params, "sub_mch_id") if sp else None,
        msgappid=_optional(params, "msgappid") if sp else None,
        consume_mch_id=_optional(params, "consume_mch_id") if sp else None,
    )


def parse_query(params: Mapping[str, str], *, workwx: bool = False) -> QueryRequest:
    """Check the format rules of gethbinfo (queryworkwxredpack: no `bill_type`)."""
    mch_id, billno = _common(params)
    appid = _text(params, "appid", 32, msg.P_APPID)
    if not workwx and params.get("bill_type") != "MCHT":
        raise SimError("PARAM_ERROR", msg.P_BILL_TYPE)
    return QueryRequest(mch_id=mch_id, mch_billno=billno, appid=appid)


def parse_workwx(params: Mapping[str, str]) -> SendRequest:
    """The format rules of sendworkwxredpack (docs/protocol.md §15.8 step 8), in a fixed order.

    Exactly one of `sender_name` and `agentid` (both or neither: PARAM_ERROR, the strict reading
    of an unconfirmed rule); whether `agentid` is an app of the corp is the registry's check.
    """
    mch_id, billno = _common(params)
    wxappid = _text(params, "wxappid", 32, msg.P_APPID)
    sender_name = _optional(params, "sender_name")
    agent_text = _optional(params, "agentid")
    if (sender_name is None) == (agent_text is None):
        raise SimError("PARAM_ERROR", msg.P_SENDER)
    if sender_name is not None and len(sender_name) > 128:
        raise SimError("PARAM_ERROR", msg.P_SENDER_NAME)
    if agent_text is not None and not _AMOUNT.fullmatch(agent_text):
        raise SimError("PARAM_ERROR", msg.P_AGENTID)
    media = _optional(params, "sender_header_media_id")
    if media is not None and len(media) > 128:
        raise SimError("PARAM_ERROR", msg.P_MEDIA_ID)
    re_openid = _text(params, "re_openid", 32, msg.P_RE_OPENID)
    total_amount = _amount(params)
    wishing = _text(params, "wishing", 128, msg.P_WISHING)
    act_name = _text(params, "act_name", 32, msg.P_ACT_NAME)
    remark = _text(params, "remark", 256, msg.P_REMARK)
    scene_id = _optional(params, "scene_id")
    if scene_id is not None and scene_id not in SCENES:
        raise SimError("PARAM_ERROR", msg.P_SCENE)
    return SendRequest(
        api=Api.WORKWX,
        mch_id=mch_id,
        mch_billno=billno,
        wxappid=wxappid,
        re_openid=re_openid,
        send_name="",
        wishing=wishing,
        act_name=act_name,
        remark=remark,
        total_amount=total_amount,
        total_num=1,
        scene_id=scene_id,
        sender_name=sender_name,
        agentid=None if agent_text is None else int(agent_text),
        sender_header_media_id=media,
    )
