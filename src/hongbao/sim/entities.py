"""The simulated WeChat's objects: merchants, appids, users and red packet records
(docs/protocol.md §9).

Plain mutable dataclasses; the rules that change them live in `hongbao.sim.state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "ISSUED",
    "QUERIES",
    "Api",
    "AppId",
    "AppKind",
    "HbType",
    "Limits",
    "Merchant",
    "Record",
    "Share",
    "Status",
    "User",
]


class Api(StrEnum):
    """The endpoints under `/mmpaymkttransfers/`."""

    SEND = "sendredpack"
    GROUP = "sendgroupredpack"
    MINI = "sendminiprogramhb"
    QUERY = "gethbinfo"
    WORKWX = "sendworkwxredpack"
    """WeCom red packets (docs/protocol.md §15)."""
    WORKWX_QUERY = "queryworkwxredpack"


QUERIES = frozenset({Api.QUERY, Api.WORKWX_QUERY})
"""The endpoints that look a record up rather than send one."""


class AppKind(StrEnum):
    """What an appid belongs to; decides which APIs accept it (docs/protocol.md §6.1)."""

    OFFICIAL = "MP"
    MINI = "MINI"
    APP = "APP"
    WECOM = "WECOM"


class Status(StrEnum):
    """Record status as gethbinfo reports it (docs/protocol.md §4.1, including the official
    misspelling)."""

    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    RECEIVED = "RECEIVED"
    RFUND_ING = "RFUND_ING"
    REFUND = "REFUND"


ISSUED = frozenset({Status.SENT, Status.RECEIVED, Status.RFUND_ING, Status.REFUND})
"""Statuses of a packet that was really issued (its amount left the merchant's balance)."""


class HbType(StrEnum):
    """`hb_type` of a record: fission sets are GROUP, everything else NORMAL."""

    NORMAL = "NORMAL"
    GROUP = "GROUP"


@dataclass(slots=True)
class Limits:
    """A merchant's limits (docs/protocol.md §6.1 defaults); a legacy cap of 0 is switched off."""

    rate_per_minute: int = 1800
    query_rate_per_minute: int = 1800
    per_user_count: int = 10
    per_user_amount: int = 100_000
    merchant_amount: int = 100_000_000
    legacy_minute_cap: int = 0
    """Legacy (2016) cap of packets issued per minute → SECOND_OVER_LIMITED; off by default."""
    legacy_day_cap: int = 0
    """Legacy (2016) cap of packets issued per day → DAY_OVER_LIMITED; off by default."""


@dataclass(slots=True)
class Merchant:
    """A merchant account as WeChat Pay sees it."""

    mch_id: str
    api_key: str = field(repr=False)
    cert_fingerprint: str
    balance_fen: int
    limits: Limits = field(default_factory=Limits)
    ip_whitelist: list[str] = field(default_factory=list)
    scenes: dict[str, tuple[int, int]] = field(default_factory=dict)
    product_enabled: bool = True
    api_enabled: bool = True
    restricted: bool = False
    sign_responses: bool = False
    sub_mch_ids: list[str] = field(default_factory=list)
    """Sub-merchants this merchant may send for as a service provider (SP mode)."""


@dataclass(slots=True)
class AppId:
    """An appid and the merchant it is bound to.

    A WeCom corp (kind WECOM, its corpid) also holds what sendworkwxredpack checks
    (docs/protocol.md §15.8): the secret of its 企业支付 app, its apps (`agentid` → the app's
    own secret), whether the merchant's binding is confirmed, and whether an app's own secret
    is accepted for `workwx_sign` when that `agentid` is sent (unconfirmed: off by default).
    """

    appid: str
    kind: AppKind
    mch_id: str
    secret: str | None = field(default=None, repr=False)
    agents: dict[int, str] = field(default_factory=dict, repr=False)
    bound: bool = True
    agent_secret_accepted: bool = False


@dataclass(slots=True)
class User:
    """A WeChat user as seen under one appid (an openid is valid only under its appid)."""

    appid: str
    openid: str
    risk_blocked: bool = False


@dataclass(slots=True)
class Share:
    """One share of a packet: the whole amount of a normal packet, or one fission share."""

    amount: int
    openid: str | None = None
    rcv_time: datetime | None = None


@dataclass(slots=True)
class Record:
    """A red packet record, from the first accepted request to REFUND or FAILED."""

    mch_id: str
    mch_billno: str
    api: Api
    detail_id: str
    wxappid: str
    re_openid: str
    total_amount: int
    total_num: int
    payer_mch_id: str
    send_time: datetime
    status: Status = Status.SENDING
    sub_mch_id: str | None = None
    msgappid: str | None = None
    send_name: str = ""
    wishing: str = ""
    act_name: str = ""
    remark: str = ""
    reason: str | None = None
    processing: bool = False
    """SENDING because of an injected PROCESSING, not because of a soft failure."""
    issued_at: datetime | None = None
    due_at: datetime | None = None
    """When the next timed transition happens (None: nothing scheduled)."""
    refund_time: datetime | None = None
    refund_amount: int | None = None
    shares: list[Share] = field(default_factory=list)
    package: str | None = None
    sender_name: str | None = None
    """WeCom packets: the person it is sent in the name of, or `agentid` (the app)."""
    agentid: int | None = None
    sender_header_media_id: str | None = None

    @property
    def hb_type(self) -> HbType:
        """GROUP for fission sets, NORMAL otherwise (mini-program packets too,
        docs/protocol.md §4.2)."""
        return HbType.GROUP if self.api is Api.GROUP else HbType.NORMAL

    @property
    def key(self) -> tuple[str, str]:
        """The record's identity: merchant and bill number."""
        return (self.mch_id, self.mch_billno)
