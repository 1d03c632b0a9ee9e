"""Request and response models of the four red packet APIs, with every rule checked before sending.

Each request model's fields are exactly the parameters the spec's table lists for its API (§2.3,
§3), named as on the wire; `nonce_str` and `sign` are added when the request is signed, and
`sign_type` never is. A request is built with `create(rules, **fields)`, which raises
`hongbao.errors.ValidationError` naming the field and the rule that was broken.

>>> request = SendRedpackRequest.create(
...     AmountRules(), mch_billno="1900000109202403150000000001", mch_id="1900000109",
...     wxappid="wx2421b1c4370ec43b", send_name="Acme", re_openid="oxTWIuGaIt6gTKsQRLau2M0yL16E",
...     total_amount=100, wishing="Thanks", client_ip="10.0.0.1", act_name="Promo", remark="Hi")
>>> request.params("n0nce")["total_num"]
1
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, ClassVar, Literal, Self, cast
from urllib.parse import quote

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from hongbao.clock import CST
from hongbao.errors import ConfigurationError, ValidationError
from hongbao.ids import BillNoError, validate_bill_no

__all__ = [
    "DEFAULT_MAX_FEN",
    "DEFAULT_MIN_FEN",
    "PLATFORM_MAX_FEN",
    "PLATFORM_MIN_FEN",
    "SCENE_IDS",
    "AmountRules",
    "ApiRequest",
    "QueryRedpackRequest",
    "QueryWorkwxRedpackRequest",
    "Receipt",
    "RedpackInfo",
    "RedpackStatus",
    "SendGroupRedpackRequest",
    "SendMiniProgramRedpackRequest",
    "SendRedpackRequest",
    "SendResult",
    "SendWorkwxRedpackRequest",
    "WorkwxRedpackInfo",
    "WorkwxSendResult",
    "check_ipv4",
    "check_risk_info",
    "check_text",
    "encode_risk_info",
]

DEFAULT_MIN_FEN = 100
"""Smallest amount (per packet; fission: average per share) without a `scene_id`
(docs/protocol.md §6.1)."""
DEFAULT_MAX_FEN = 20000
"""Largest amount (per packet; fission: average per share) without a `scene_id`."""
PLATFORM_MIN_FEN = 30
"""Lowest bound a scene can be configured to in the merchant platform."""
PLATFORM_MAX_FEN = 499900
"""Highest bound a scene can be configured to in the merchant platform."""
GROUP_MIN_NUM = 3
GROUP_MAX_NUM = 20
SCENE_IDS = frozenset(f"PRODUCT_{n}" for n in range(1, 9))
"""The `scene_id` values of docs/protocol.md §3.2."""

RISK_INFO_KEYS = ("posttime", "clientversion", "mobile", "deviceid")
"""The keys of `risk_info`, in the order of the official example."""

# XML 1.0 cannot carry these at all and lone surrogates cannot be encoded as UTF-8. A carriage
# return survives only as a character reference (parsers rewrite a raw one to a line feed, CDATA
# included); whether WeChat's parser honours that is unknown, a mismatch would be a SIGN_ERROR,
# and a greeting has no use for one, so it is refused too.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\r\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# risk_info is URL-encoded as a whole: pairs split by an encoded "&", key and value by an encoded
# "="; a value holds unreserved characters and escapes other than those two.
_RISK_KEYS = "|".join(RISK_INFO_KEYS)
_RISK_PAIR = rf"(?:{_RISK_KEYS})%3[dD](?:[A-Za-z0-9._~-]|%(?!26|3[dD])[0-9A-Fa-f]{{2}})+"
_RISK_INFO = re.compile(rf"{_RISK_PAIR}(?:%26{_RISK_PAIR})*")
_RISK_KEY = re.compile(rf"(?:^|%26)({_RISK_KEYS})%3[dD]")
_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_MOBILE = re.compile(r"[0-9]{1,4}-[0-9]{4,20}")


def _invalid(field: str, problem: str, rule: str) -> ValidationError:
    return ValidationError(f"{field} {problem} (rule: {rule})", field=field, rule=rule)


# --- rules on single values ---------------------------------------------------------------


def check_text(field: str, value: str, max_len: int) -> str:
    """A String(max_len) value: non-empty, at most `max_len` characters, no surrounding
    whitespace (what is signed must be what the server reads), nothing XML cannot carry."""
    if not value:
        raise _invalid(field, "is required and must not be empty", "required")
    if len(value) > max_len:
        raise _invalid(
            field, f"has {len(value)} characters, more than the {max_len} allowed", "max_length"
        )
    if value[0].isspace() or value[-1].isspace():
        raise _invalid(field, "must not begin or end with whitespace", "whitespace")
    if _ILLEGAL.search(value):
        raise _invalid(
            field,
            "contains a control character, carriage return or lone surrogate that may not "
            "reach WeChat unchanged",
            "xml_chars",
        )
    return value


def _check_bill_no(value: str) -> str:
    try:
        return validate_bill_no(value)
    except BillNoError as exc:
        message = f"{exc} (rule: bill_no)"
        raise ValidationError(message, field="mch_billno", rule="bill_no") from None


def check_ipv4(value: str) -> str:
    """A `client_ip`: a dotted-quad IPv4 address."""
    if not _IPV4.fullmatch(value):
        raise _invalid("client_ip", f"{value!r} is not an IPv4 address such as 10.0.0.1", "ipv4")
    return value


def _check_scene(value: str) -> str:
    if value not in SCENE_IDS:
        raise _invalid("scene_id", f"{value!r} is not one of PRODUCT_1 … PRODUCT_8", "scene_id")
    return value


def check_risk_info(value: str) -> str:
    """A `risk_info` as sent: the URL-encoded `key=value&…` form of docs/protocol.md §3.2, ≤ 128
    chars."""
    check_text("risk_info", value, 128)
    if not _RISK_INFO.fullmatch(value) or _has_duplicates(_RISK_KEY.findall(value)):
        raise _invalid(
            "risk_info",
            f"must be the URL-encoded form of non-empty pairs of {', '.join(RISK_INFO_KEYS)}, "
            "each at most once (build it with encode_risk_info)",
            "risk_info",
        )
    return value


def _has_duplicates(items: list[str]) -> bool:
    return len(set(items)) != len(items)


def encode_risk_info(
    *,
    posttime: int | datetime | None = None,
    clientversion: str | None = None,
    mobile: str | None = None,
    deviceid: str | None = None,
) -> str:
    """The `risk_info` string of docs/protocol.md §3.2: `key=value` pairs joined by `&`,
    URL-encoded.

    `posttime` is when the user acted (Unix seconds or an aware datetime); `mobile` is country
    code, "-", number (no "+"). Escapes are lowercase, as in the official example.

    >>> encode_risk_info(posttime=1710489600, clientversion="8.0.47",
    ...                  mobile="86-13800138000", deviceid="IOS")
    'posttime%3d1710489600%26clientversion%3d8.0.47%26mobile%3d86-13800138000%26deviceid%3dIOS'
    """
    if isinstance(posttime, datetime):
        if posttime.tzinfo is None:
            raise _invalid("risk_info", "posttime must be an aware datetime", "risk_info")
        posttime = int(posttime.timestamp())
    if mobile is not None and not _MOBILE.fullmatch(mobile):
        problem = "mobile must be country code, '-', number (e.g. 86-13800138000)"
        raise _invalid("risk_info", problem, "risk_info")
    values = {
        "posttime": None if posttime is None else str(posttime),
        "clientversion": clientversion,
        "mobile": mobile,
        "deviceid": deviceid,
    }
    pairs = [f"{key}={quote(item, safe='')}" for key, item in values.items() if item]
    if not pairs:
        raise _invalid("risk_info", "needs at least one of its four values", "risk_info")
    encoded = _ESCAPE.sub(lambda match: match.group().lower(), quote("&".join(pairs), safe=""))
    return check_risk_info(encoded)


# --- per-merchant amount rules --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AmountRules:
    """Which amounts a merchant may send: the range without a scene, and its enabled scenes.

    `scenes` maps each scene enabled in the merchant platform to the range configured for it
    (within 30–499900 fen). For fission packets the rules apply to the average share.

    >>> rules = AmountRules(scenes={"PRODUCT_2": (30, 50000)})
    """

    min_fen: int = DEFAULT_MIN_FEN
    max_fen: int = DEFAULT_MAX_FEN
    scenes: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not DEFAULT_MIN_FEN <= self.min_fen <= self.max_fen <= DEFAULT_MAX_FEN:
            raise ConfigurationError(
                f"amount range {self.min_fen}–{self.max_fen} fen must lie within "
                f"{DEFAULT_MIN_FEN}–{DEFAULT_MAX_FEN} fen (beyond it a scene_id is needed)"
            )
        for scene, (low, high) in self.scenes.items():
            if scene not in SCENE_IDS:
                raise ConfigurationError(f"{scene!r} is not a scene (PRODUCT_1 … PRODUCT_8)")
            if not PLATFORM_MIN_FEN <= low <= high <= PLATFORM_MAX_FEN:
                raise ConfigurationError(
                    f"{scene} range {low}–{high} fen must lie within "
                    f"{PLATFORM_MIN_FEN}–{PLATFORM_MAX_FEN} fen"
                )
        object.__setattr__(self, "scenes", MappingProxyType(dict(self.scenes)))

    def check(self, total_amount: int, total_num: int, scene_id: str | None) -> None:
        """Raise ValidationError unless `total_amount` over `total_num` shares may be sent."""
        if total_num == 1:
            noun, what = "total_amount", f"total_amount ({total_amount} fen)"
        else:
            average = f"{total_amount / total_num:.2f}".rstrip("0").rstrip(".")
            noun = what = f"the average share ({total_amount} fen / {total_num} = {average} fen)"
        if not PLATFORM_MIN_FEN * total_num <= total_amount <= PLATFORM_MAX_FEN * total_num:
            # No scene_id makes such an amount valid: saying one is required would mislead.
            side = "below" if total_amount < PLATFORM_MIN_FEN * total_num else "above"
            raise _invalid(
                "total_amount",
                f"is {total_amount} fen: {noun} is {side} any amount a red packet may have "
                f"({PLATFORM_MIN_FEN}–{PLATFORM_MAX_FEN} fen with a scene_id, "
                f"{DEFAULT_MIN_FEN}–{DEFAULT_MAX_FEN} without)",
                "amount_range",
            )
        if scene_id is None:
            low, high = self.min_fen, self.max_fen
            outside_default = not (
                DEFAULT_MIN_FEN * total_num <= total_amount <= DEFAULT_MAX_FEN * total_num
            )
            if outside_default:
                raise _invalid(
                    "scene_id",
                    f"is required: {what} is outside {DEFAULT_MIN_FEN}–{DEFAULT_MAX_FEN} fen",
                    "scene_required",
                )
        else:
            if scene_id not in self.scenes:
                raise _invalid(
                    "scene_id",
                    f"{scene_id} is not enabled for this merchant (enabled: "
                    f"{', '.join(sorted(self.scenes)) or 'none'})",
                    "scene_enabled",
                )
            low, high = self.scenes[scene_id]
        if not low * total_num <= total_amount <= high * total_num:
            raise _invalid(
                "total_amount",
                f"is {total_amount} fen: {noun} must be within {low}–{high} fen",
                "amount_range",
            )
        if total_num > 1 and total_amount < DEFAULT_MIN_FEN * total_num:
            # Every share of a fission set is at least 1 yuan (docs/protocol.md §6.1, §6.7),
            # whatever the scene allows for a single packet: WeChat would answer MONEY_LIMIT.
            raise _invalid(
                "total_amount",
                f"is {total_amount} fen: each of the {total_num} shares must be at least "
                f"{DEFAULT_MIN_FEN} fen",
                "share_minimum",
            )


DEFAULT_RULES = AmountRules()


# --- request models ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """How one parameter is checked: `accept` admits the common valid value in one regex match;
    anything else goes to `check`, which raises the error naming the broken rule."""

    accept: re.Pattern[str] | None
    check: Callable[[str, object], None]


def _string_rule(max_len: int) -> _Rule:
    def check(name: str, value: object) -> None:
        check_text(name, _string(name, value), max_len)

    # Exactly what check_text admits: 1..max_len characters, no whitespace at either end (re's
    # \s and str.isspace agree), nothing from _ILLEGAL.
    accept = re.compile(rf"(?!\s)[^{_ILLEGAL.pattern[1:-1]}]{{1,{max_len}}}(?<!\s)")
    return _Rule(accept, check)


def _string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise _invalid(name, f"must be a string, not {type(value).__name__}", "type")
    return value


def _value_rule(accept: str | None, check: Callable[[str], str]) -> _Rule:
    def checked(name: str, value: object) -> None:
        check(_string(name, value))

    return _Rule(re.compile(accept) if accept else None, checked)


def _check_integer(name: str, value: object) -> None:
    if type(value) is not int:  # bool is an int subclass and must not pass
        raise _invalid(name, f"must be an integer, not {type(value).__name__}", "type")


def _check_agentid(name: str, value: object) -> None:
    _check_integer(name, value)
    if not 0 <= cast(int, value) < 2**32:
        raise _invalid(name, f"must be a WeCom app id (unsigned integer), not {value}", "agentid")


def _check_workwx_sign(value: str) -> str:
    if not re.fullmatch(r"[0-9A-F]{32}", value):
        raise _invalid(
            "workwx_sign", "must be 32 uppercase hex digits (an MD5 digest)", "workwx_sign"
        )
    return value


_TEXT32 = _string_rule(32)
_INTEGER = _Rule(None, _check_integer)

# A parameter has the same rule in every API that takes it (docs/protocol.md §3.2–3.5).
_FIELD_RULES: Mapping[str, _Rule] = MappingProxyType(
    {
        "mch_billno": _value_rule(r"[0-9A-Za-z]{1,28}", _check_bill_no),
        "mch_id": _TEXT32,
        "sub_mch_id": _TEXT32,
        "wxappid": _TEXT32,
        "msgappid": _TEXT32,
        "appid": _TEXT32,
        "send_name": _TEXT32,
        "re_openid": _TEXT32,
        "total_amount": _INTEGER,
        "total_num": _INTEGER,
        "wishing": _string_rule(128),
        "client_ip": _value_rule(_IPV4.pattern, check_ipv4),
        "act_name": _TEXT32,
        "remark": _string_rule(256),
        "scene_id": _value_rule(r"PRODUCT_[1-8]", _check_scene),
        "risk_info": _value_rule(None, check_risk_info),
        "consume_mch_id": _TEXT32,
        "amt_type": _TEXT32,
        "notify_way": _TEXT32,
        "bill_type": _TEXT32,
        # sendworkwxredpack (docs/protocol.md §15.4)
        "sender_name": _string_rule(128),
        "agentid": _Rule(None, _check_agentid),
        "sender_header_media_id": _string_rule(128),
        "workwx_sign": _value_rule(r"[0-9A-F]{32}", _check_workwx_sign),
    }
)


def _check_single(api: str, params: Mapping[str, object]) -> None:
    total_num = params.get("total_num")
    if total_num is not None and total_num != 1:
        raise _invalid("total_num", f"must be 1 for {api}, not {total_num}", "total_num")


def _check_sp_mode(params: Mapping[str, object]) -> None:
    if (params.get("sub_mch_id") is None) != (params.get("msgappid") is None):
        raise _invalid(
            "sub_mch_id", "and msgappid go together: both in SP mode, neither otherwise", "sp_mode"
        )
    if params.get("consume_mch_id") is not None and params.get("sub_mch_id") is None:
        problem = "is only meaningful in SP mode (with sub_mch_id)"
        raise _invalid("consume_mch_id", problem, "sp_mode")


def _amount(params: Mapping[str, object]) -> tuple[int, int, str | None]:
    # Types were checked field by field before the cross-field rules run.
    total_num = params.get("total_num")
    return (
        cast(int, params["total_amount"]),
        1 if total_num is None else cast(int, total_num),
        cast(str | None, params.get("scene_id")),
    )


class ApiRequest(BaseModel):
    """Base of the request models: the fields are the API's exact whitelist, named as on the
    wire (without `nonce_str` and `sign`, which signing adds)."""

    # Built on first use (defer_build): a process uses few of the models, and a campaign run
    # none of the requests (its hot path calls `check` on a dict).
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)

    api: ClassVar[str]
    """The API name, which is also the last part of its URL path."""
    _rules: ClassVar[dict[str, _Rule]]
    _required: ClassVar[frozenset[str]]
    _fixed: ClassVar[Mapping[str, str]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: object) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields
        cls._rules = {name: _FIELD_RULES[name] for name in fields}
        cls._required = frozenset(name for name, info in fields.items() if info.is_required())
        cls._fixed = MappingProxyType(
            {name: info.default for name, info in fields.items() if isinstance(info.default, str)}
        )

    @classmethod
    def check(cls, params: Mapping[str, object], rules: AmountRules = DEFAULT_RULES) -> None:
        """Check wire parameters (None = absent) against every rule of the API, before sending.

        Raises `ValidationError` naming the field and the rule. This is the whole validation of
        the model too; the client's hot path calls it on a plain dict, without a model object.
        """
        table = cls._rules
        required = cls._required
        for name, value in params.items():
            rule = table.get(name)
            if rule is None:
                raise _invalid(name, f"is not a parameter of {cls.api}", "whitelist")
            if value is not None:
                accept = rule.accept
                if accept is None or type(value) is not str or not accept.fullmatch(value):
                    rule.check(name, value)
            elif name in required:
                raise _invalid(name, f"is required by {cls.api}", "required")
        if not required <= params.keys():
            missing = sorted(required - params.keys())[0]
            raise _invalid(missing, f"is required by {cls.api}", "required")
        for name, expected in cls._fixed.items():
            value = params.get(name)
            if value is not None and value != expected:
                raise _invalid(name, f"must be {expected!r} for {cls.api}", "fixed_value")
        cls._check_together(params, rules)

    @classmethod
    def _check_together(cls, params: Mapping[str, object], rules: AmountRules) -> None:
        """The rules that involve several fields (amounts, counts, SP mode)."""

    @classmethod
    def create(cls, rules: AmountRules = DEFAULT_RULES, /, **fields: object) -> Self:
        """A checked request; raises `ValidationError` if any rule fails."""
        return cls.model_validate(fields, context=rules)

    @model_validator(mode="before")
    @classmethod
    def _check_rules(cls, data: object, info: ValidationInfo) -> object:
        if not isinstance(data, Mapping):
            raise _invalid("request", f"must be a mapping of {cls.api} parameters", "type")
        cls.check(data, info.context if isinstance(info.context, AmountRules) else DEFAULT_RULES)
        return {name: value for name, value in data.items() if value is not None}

    def params(self, nonce: str) -> dict[str, str | int]:
        """The parameters to sign and send: this request's set fields plus `nonce_str`."""
        params: dict[str, str | int] = {"nonce_str": nonce}
        for name, value in self.__dict__.items():
            if value is not None:
                params[name] = value
        return params


class SendRedpackRequest(ApiRequest):
    """sendredpack: one normal red packet to one user of an Official Account
    (docs/protocol.md §3.2)."""

    api: ClassVar[str] = "sendredpack"

    mch_billno: str
    mch_id: str
    sub_mch_id: str | None = None
    wxappid: str
    msgappid: str | None = None
    send_name: str
    re_openid: str
    total_amount: int
    total_num: int = 1
    wishing: str
    client_ip: str
    act_name: str
    remark: str
    scene_id: str | None = None
    risk_info: str | None = None
    consume_mch_id: str | None = None

    @classmethod
    def _check_together(cls, params: Mapping[str, object], rules: AmountRules) -> None:
        _check_single(cls.api, params)
        rules.check(*_amount(params))
        _check_sp_mode(params)


class SendGroupRedpackRequest(ApiRequest):
    """sendgroupredpack: a fission set of `total_num` shares, the first to the seed user (§3.3).

    `client_ip` is not in the official table, so it is never sent (docs/protocol.md §2.3 note).
    """

    api: ClassVar[str] = "sendgroupredpack"

    mch_billno: str
    mch_id: str
    sub_mch_id: str | None = None
    wxappid: str
    msgappid: str | None = None
    send_name: str
    re_openid: str
    total_amount: int
    total_num: int
    amt_type: Literal["ALL_RAND"] = "ALL_RAND"
    wishing: str
    act_name: str
    remark: str
    scene_id: str | None = None
    risk_info: str | None = None
    consume_mch_id: str | None = None

    @classmethod
    def _check_together(cls, params: Mapping[str, object], rules: AmountRules) -> None:
        total_amount, total_num, scene_id = _amount(params)
        if not GROUP_MIN_NUM <= total_num <= GROUP_MAX_NUM:
            raise _invalid(
                "total_num",
                f"must be between {GROUP_MIN_NUM} and {GROUP_MAX_NUM} for {cls.api}, "
                f"not {total_num}",
                "total_num",
            )
        rules.check(total_amount, total_num, scene_id)
        _check_sp_mode(params)


class SendMiniProgramRedpackRequest(ApiRequest):
    """sendminiprogramhb: a packet the user opens in a mini program via `wx.sendBizRedPacket`.

    Its official table has no `client_ip`, `risk_info` or SP-mode field (docs/protocol.md §3.4).
    """

    api: ClassVar[str] = "sendminiprogramhb"

    mch_billno: str
    mch_id: str
    wxappid: str
    send_name: str
    re_openid: str
    total_amount: int
    total_num: int = 1
    wishing: str
    act_name: str
    remark: str
    notify_way: Literal["MINI_PROGRAM_JSAPI"] = "MINI_PROGRAM_JSAPI"
    scene_id: str | None = None

    @classmethod
    def _check_together(cls, params: Mapping[str, object], rules: AmountRules) -> None:
        _check_single(cls.api, params)
        rules.check(*_amount(params))


class QueryRedpackRequest(ApiRequest):
    """gethbinfo: look a packet up by bill number. Note `appid`, not `wxappid`
    (docs/protocol.md §3.5)."""

    api: ClassVar[str] = "gethbinfo"

    mch_billno: str
    mch_id: str
    appid: str
    bill_type: Literal["MCHT"] = "MCHT"


class SendWorkwxRedpackRequest(ApiRequest):
    """sendworkwxredpack: one red packet to a member of a WeCom corp (docs/protocol.md §15.4).

    `wxappid` is the corpid. Sent in an app's name (`agentid`) or a person's (`sender_name`,
    with an optional avatar `sender_header_media_id`): exactly one of the two. There is no
    `send_name`, `total_num`, `client_ip` or SP mode: any of them is refused by name, since an
    extra signed field breaks the signature. `workwx_sign` is added when the request is signed.
    """

    api: ClassVar[str] = "sendworkwxredpack"

    mch_billno: str
    mch_id: str
    wxappid: str
    sender_name: str | None = None
    agentid: int | None = None
    sender_header_media_id: str | None = None
    re_openid: str
    total_amount: int
    wishing: str
    act_name: str
    remark: str
    scene_id: str | None = None
    workwx_sign: str | None = None

    @classmethod
    def _check_together(cls, params: Mapping[str, object], rules: AmountRules) -> None:
        has_name = params.get("sender_name") is not None
        has_agent = params.get("agentid") is not None
        if has_name == has_agent:
            problem = "and agentid are both given" if has_name else "or agentid is required"
            raise _invalid(
                "sender_name", f"{problem}: exactly one of the two (§15.4)", "sender_xor_agentid"
            )
        if params.get("sender_header_media_id") is not None and not has_name:
            raise _invalid(
                "sender_header_media_id",
                "is the avatar of a sender_name; a packet in an app's name (agentid) shows the app",
                "media_with_sender_name",
            )
        rules.check(cast(int, params["total_amount"]), 1, cast(str | None, params.get("scene_id")))


class QueryWorkwxRedpackRequest(ApiRequest):
    """queryworkwxredpack: a WeCom packet by bill number; `appid` is the corpid, and there is no
    `bill_type` (docs/protocol.md §15.5)."""

    api: ClassVar[str] = "queryworkwxredpack"

    mch_billno: str
    mch_id: str
    appid: str


# --- response models --------------------------------------------------------------------------


_WIRE_DIGITS = re.compile(r"[0-9]{1,12}")
_TIME_SHAPES = ("%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S")  # the documented one, then the legacy one


def _int_or_none(value: object) -> object:
    # WeChat writes integers bare or in CDATA, and echoes them empty on some failures. Anything
    # else but plain ASCII digits ("-5", "²", "1e3") is malformed, never a number to trust.
    if value == "" or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _WIRE_DIGITS.fullmatch(text):
            raise ValueError("not a whole non-negative number")
        return int(text)
    return value


def _fen_or_none(value: object) -> object:
    amount = _int_or_none(value)
    if isinstance(amount, int) and not 0 <= amount <= PLATFORM_MAX_FEN:
        raise ValueError(f"{amount} fen is beyond any red packet ({PLATFORM_MAX_FEN} fen at most)")
    return amount


def _time_or_none(value: object) -> object:
    if value == "":
        return None
    if isinstance(value, str):
        for shape in _TIME_SHAPES:
            try:
                return datetime.strptime(value.strip(), shape).replace(tzinfo=CST)
            except ValueError:
                continue
        raise ValueError("not a time of the shape yyyy-MM-dd HH:mm:ss")
    return value


def _records(value: object) -> object:
    return [] if value == "" else value


WireInt = Annotated[int | None, BeforeValidator(_int_or_none)]
WireFen = Annotated[int | None, BeforeValidator(_fen_or_none)]
"""An amount in fen: plain digits, at most what one red packet can carry."""
WireTime = Annotated[datetime | None, BeforeValidator(_time_or_none)]


class _Lenient(BaseModel):
    # Unknown fields may appear at any time (docs/protocol.md §1.3): they are kept in `model_extra`.
    model_config = ConfigDict(
        frozen=True, extra="allow", hide_input_in_errors=True, defer_build=True
    )


class _Response(_Lenient):
    raw: bytes = Field(default=b"", repr=False)
    """The response body exactly as received, for audit."""
    _parsed: Mapping[str, object] | None = PrivateAttr(default=None)

    @property
    def parsed(self) -> Mapping[str, object] | None:
        """`raw` as parsed when the answer was read (None for a result built otherwise), so
        that an audit record of it need not parse it again."""
        return self._parsed


class SendResult(_Response):
    """A successful send: the packet was issued.

    `send_listid` is WeChat's packet number (gethbinfo's `detail_id`); `package` is set only for
    mini-program packets and feeds `jsapi_params`.
    """

    mch_billno: str = ""
    mch_id: str = ""
    wxappid: str = ""
    re_openid: str = ""
    total_amount: WireFen = None
    send_listid: str = ""
    package: str | None = None

    @classmethod
    def from_response(cls, data: Mapping[str, object], raw: bytes) -> SendResult:
        """From a parsed success body; raises pydantic's ValidationError on malformed fields."""
        result = cls.model_validate({**data, "raw": raw})
        result._parsed = data
        return result


class WorkwxSendResult(SendResult):
    """A successful sendworkwxredpack: the packet was issued, with the sender echoed."""

    sender_name: str | None = None
    sender_header_media_id: str | None = None

    @classmethod
    def from_response(cls, data: Mapping[str, object], raw: bytes) -> WorkwxSendResult:
        """From a parsed success body; raises pydantic's ValidationError on malformed fields."""
        return cls.model_validate({**data, "raw": raw})


class RedpackStatus(StrEnum):
    """The state of a red packet record (docs/protocol.md §4.1)."""

    SENDING = "SENDING"
    """Being issued, or rejected by a limit/risk/balance check (then with a `reason`)."""
    SENT = "SENT"
    """Issued; waiting for the user to open it."""
    FAILED = "FAILED"
    """Issuing failed: the bill number is dead, nothing was paid."""
    RECEIVED = "RECEIVED"
    """Opened by the user (fission: all shares)."""
    RFUND_ING = "RFUND_ING"
    """Unclaimed money on its way back (WeChat's own spelling)."""
    REFUND = "REFUND"
    """Unclaimed money refunded to the merchant."""


class Receipt(_Lenient):
    """One received share (`hblist/hbinfo`)."""

    openid: str
    amount: Annotated[int, BeforeValidator(_fen_or_none), Field(ge=1)]
    rcv_time: WireTime = None


class RedpackInfo(_Response):
    """What gethbinfo knows about a bill number; `found` is False when there is no record (yet).

    "Not found" is never a failure by itself (docs/protocol.md §3.5): the send may still be
    processing.
    """

    found: bool = True
    mch_billno: str = ""
    mch_id: str | None = None
    detail_id: str | None = None
    status: RedpackStatus | None = None
    send_type: str | None = None
    hb_type: str | None = None
    total_num: WireInt = None
    total_amount: WireFen = None
    reason: str | None = None
    send_time: WireTime = None
    refund_time: WireTime = None
    refund_amount: WireFen = None
    receipts: Annotated[list[Receipt], BeforeValidator(_records)] = Field(
        default_factory=list, validation_alias="hblist"
    )

    @model_validator(mode="after")
    def _amounts_add_up(self) -> Self:
        # Receipts and refunds are parts of the packet: more than its total is not a record.
        total = self.total_amount
        if total is None:
            return self
        received = sum(receipt.amount for receipt in self.receipts)
        if received > total:
            raise ValueError(f"hblist: receipts of {received} fen exceed total_amount {total}")
        if self.refund_amount is not None and self.refund_amount > total:
            raise ValueError(f"refund_amount {self.refund_amount} exceeds total_amount {total}")
        return self

    @classmethod
    def from_response(cls, data: Mapping[str, object], raw: bytes) -> RedpackInfo:
        """From a parsed success body; raises pydantic's ValidationError on malformed fields."""
        result = cls.model_validate({**data, "raw": raw})
        result._parsed = data
        return result

    @classmethod
    def not_found(cls, mch_billno: str, raw: bytes) -> RedpackInfo:
        """The answer for a bill number WeChat has no record of."""
        return cls(found=False, mch_billno=mch_billno, raw=raw)


class WorkwxRedpackInfo(RedpackInfo):
    """What queryworkwxredpack knows about a bill number (docs/protocol.md §15.5).

    The documented answer carries the receipt flat (`openid`, `amount`, `rcv_time` at the top
    level); a `hblist` as gethbinfo has it is accepted too. Either way it lands in `receipts`, so
    tracking reads both APIs alike. `hb_type` and `total_num` are absent: a WeCom packet is
    always one NORMAL packet.
    """

    sender_name: str | None = None
    sender_header_media_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat_receipt(cls, data: object) -> object:
        if not isinstance(data, Mapping) or data.get("hblist") not in (None, ""):
            return data
        fields = dict(data)
        receipt = {name: fields.pop(name, None) for name in ("openid", "amount", "rcv_time")}
        # An unopened packet may still show empty receipt fields [U]: only a whole one counts.
        if receipt["openid"] and receipt["amount"] not in (None, ""):
            fields["hblist"] = [receipt]
        return fields

    @classmethod
    def from_response(cls, data: Mapping[str, object], raw: bytes) -> WorkwxRedpackInfo:
        """From a parsed success body; raises pydantic's ValidationError on malformed fields."""
        return cls.model_validate({**data, "raw": raw})

    @classmethod
    def not_found(cls, mch_billno: str, raw: bytes) -> WorkwxRedpackInfo:
        """The answer for a bill number WeChat has no WeCom record of."""
        return cls(found=False, mch_billno=mch_billno, raw=raw)
