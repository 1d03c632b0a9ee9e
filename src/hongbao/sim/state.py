"""The simulated WeChat: one `Registry` owns every merchant, user, record and counter.

Pure and clock-driven: every time rule reads the injected `Clock`, and the only way out is the
injected `Store` (persistence) — the registry itself does no I/O. One re-entrant lock guards
everything, so the in-process transport may call it from many threads while the served app
calls it from its event loop.

The API actions follow the validation order of docs/protocol.md §6.2 step by step (the step numbers
below are the protocol's); their errors are `SimError`s that `hongbao.sim.responses` renders.

>>> from hongbao.clock import FrozenClock
>>> registry = Registry(FrozenClock(), seed=1)
>>> merchant, appids = registry.create_merchant(MerchantSettings(balance_fen=10_000))
>>> registry.merchant(merchant.mch_id).balance_fen
10000
"""

from __future__ import annotations

import copy
import heapq
import ipaddress
import random
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol
from urllib.parse import parse_qs, unquote

from hongbao.clock import Clock, beijing_day
from hongbao.sim import exceptions as msg
from hongbao.sim.entities import (
    ISSUED,
    QUERIES,
    Api,
    AppId,
    AppKind,
    Limits,
    Merchant,
    Record,
    Share,
    Status,
    User,
)
from hongbao.sim.exceptions import InvalidStateError, SimError, UnknownObjectError
from hongbao.sim.idgen import IdGenerator
from hongbao.sim.params import (
    RECOGNISED,
    SCENES,
    SendRequest,
    check_mch_id,
    parse_query,
    parse_send,
    parse_workwx,
)
from hongbao.sim.split import MIN_SHARE, SHARE_CAP, split_shares
from hongbao.wire.sign import verify, verify_workwx

__all__ = [
    "BOOL_SETTINGS",
    "INT_SETTINGS",
    "LIMIT_SETTINGS",
    "LIST_SETTINGS",
    "Caller",
    "CertCheck",
    "Changes",
    "LedgerRow",
    "MerchantSettings",
    "OpenResult",
    "QueryResult",
    "Registry",
    "SendResult",
    "SimConfig",
    "Snapshot",
    "Store",
]

_DEFAULT_RANGE = (100, 20_000)
_SCENE_BOUNDS = (30, 499_900)
_MINI_FORMAT_ERROR = "参数格式校验错误"
_MINI_BAD_SIGN = "签名失败"
_MINI_ALREADY = "已经绑定过红包"
_MINI_EXPIRED = "已经过期"
_MINI_FAIL = -1  # the JSAPI page documents the texts but no failure numbers
WECOM_AGENTID = 1000002
"""The app every new WeCom corp has (the first id WeCom gives a self-built app)."""
_WECOM_SECRET_LENGTH = 43

CertCheck = Callable[[bytes | None, str, datetime], str | None]
"""(certificate DER or None, mch_id, now) → None when fine, else the CA_ERROR text."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Timings of the lifecycle (docs/protocol.md §6.4) and defaults for new merchants."""

    expiry: timedelta = timedelta(hours=24)
    refund_lag: timedelta = timedelta(minutes=15)
    """SENT → RFUND_ING at expiry, then REFUND this much later (≈16 min observed live)."""
    soft_fail_after: timedelta = timedelta(hours=24)
    """A soft failure (risk, limits, balance) stays SENDING+reason this long, then FAILED."""
    processing_delay: timedelta = timedelta(minutes=10)
    """An injected PROCESSING resolves after this, unless the fault gives `seconds`."""
    query_window: timedelta = timedelta(days=30)
    default_balance_fen: int = 10_000_000


@dataclass(frozen=True, slots=True)
class Caller:
    """What the server knows of the TCP peer: its address and client certificate."""

    ip: str
    cert_der: bytes | None = None


@dataclass(slots=True)
class MerchantSettings:
    """Changes to a merchant (None = leave as is). Legacy caps: 0 switches them off."""

    balance_fen: int | None = None
    rate_per_minute: int | None = None
    query_rate_per_minute: int | None = None
    per_user_count: int | None = None
    per_user_amount: int | None = None
    merchant_amount: int | None = None
    legacy_minute_cap: int | None = None
    legacy_day_cap: int | None = None
    ip_whitelist: list[str] | None = None
    scenes: dict[str, tuple[int, int]] | None = None
    product_enabled: bool | None = None
    api_enabled: bool | None = None
    restricted: bool | None = None
    sign_responses: bool | None = None
    sub_mch_ids: list[str] | None = None


LIMIT_SETTINGS = (
    "rate_per_minute",
    "query_rate_per_minute",
    "per_user_count",
    "per_user_amount",
    "merchant_amount",
    "legacy_minute_cap",
    "legacy_day_cap",
)
"""The fields of `MerchantSettings` that set the merchant's limits."""
INT_SETTINGS = ("balance_fen", *LIMIT_SETTINGS)
"""The whole-number fields of `MerchantSettings` (never negative)."""
BOOL_SETTINGS = ("product_enabled", "api_enabled", "restricted", "sign_responses")
"""The switches of `MerchantSettings`."""
LIST_SETTINGS = ("ip_whitelist", "sub_mch_ids")
"""The list fields of `MerchantSettings`."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a successful send answers (also on every identical re-entry)."""

    mch_billno: str
    mch_id: str
    wxappid: str
    re_openid: str
    total_amount: int
    send_listid: str
    package: str | None
    sign_key: str | None = field(default=None, repr=False)
    """The merchant's key when it switched on signed responses."""
    sender_name: str | None = None
    sender_header_media_id: str | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What gethbinfo answers for a record (a copy, safe to read outside the lock)."""

    record: Record
    sign_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One record as the ground-truth ledger shows it."""

    mch_billno: str
    api: str
    re_openid: str
    total_amount: int
    total_num: int
    status: str
    detail_id: str
    send_time: datetime


@dataclass(frozen=True, slots=True)
class OpenResult:
    """The share a user just received."""

    status: Status
    openid: str
    amount: int
    rcv_time: datetime


@dataclass(slots=True)
class Snapshot:
    """Everything persisted, as loaded back."""

    merchants: list[Merchant] = field(default_factory=list)
    appids: list[AppId] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)


@dataclass(slots=True)
class Changes:
    """The rows one action changed, handed to the store in one write."""

    merchants: list[Merchant]
    appids: list[AppId]
    users: list[User]
    records: list[Record]
    now: datetime


class Store(Protocol):
    """Where the registry writes what it changed (write-through, one call per action)."""

    def save(self, changes: Changes) -> None:
        """Persist `changes` atomically."""
        ...

    def clear(self) -> None:
        """Forget everything."""
        ...


def _check_settings(settings: MerchantSettings) -> None:
    for name in INT_SETTINGS:
        value = getattr(settings, name)
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative")
    for ip in settings.ip_whitelist or []:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"ip_whitelist: {ip!r} is not an IP address") from None
    for scene, (low, high) in (settings.scenes or {}).items():
        if scene not in SCENES:
            raise ValueError(f"scenes: {scene!r} is not one of PRODUCT_1..PRODUCT_8")
        if not _SCENE_BOUNDS[0] <= low <= high <= _SCENE_BOUNDS[1]:
            raise ValueError(
                f"scenes: {scene} range must satisfy {_SCENE_BOUNDS[0]} <= min <= max <= "
                f"{_SCENE_BOUNDS[1]} fen"
            )


def _apply(merchant: Merchant, settings: MerchantSettings) -> None:
    limits = merchant.limits
    for name in LIMIT_SETTINGS:
        value = getattr(settings, name)
        if value is not None:
            setattr(limits, name, value)
    for name in ("balance_fen", *BOOL_SETTINGS):
        value = getattr(settings, name)
        if value is not None:
            setattr(merchant, name, value)
    if settings.ip_whitelist is not None:
        merchant.ip_whitelist = list(settings.ip_whitelist)
    if settings.scenes is not None:
        merchant.scenes = dict(settings.scenes)
    if settings.sub_mch_ids is not None:
        merchant.sub_mch_ids = list(settings.sub_mch_ids)


class Registry:
    """All simulator state and the rules over it."""

    def __init__(
        self,
        clock: Clock,
        *,
        config: SimConfig | None = None,
        seed: int | None = None,
        store: Store | None = None,
        cert_check: CertCheck | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.clock = clock
        self.config = config or SimConfig()
        self._store = store
        # Without a CA the model cannot judge certificates, so it does not (pure unit tests).
        self._cert_check = cert_check
        self._ids = IdGenerator(seed)
        # Fission draws get their own generator so ids and splits stay reproducible apart.
        self._split_rng = random.Random(None if seed is None else seed + 1)  # noqa: S311
        self._lock = threading.RLock()
        self._init_state()
        if snapshot is not None:
            self._load(snapshot)

    def _init_state(self) -> None:
        self._merchants: dict[str, Merchant] = {}
        self._appids: dict[str, AppId] = {}
        self._users: dict[tuple[str, str], User] = {}
        self._records: dict[tuple[str, str], Record] = {}
        self._packages: dict[str, tuple[str, str]] = {}
        self._due: list[tuple[float, int, tuple[str, str]]] = []
        self._due_seq = 0
        self._serial = 0
        self._send_calls: dict[str, deque[float]] = {}
        self._query_calls: dict[str, deque[float]] = {}
        self._minute_issues: dict[str, deque[float]] = {}
        self._user_day: dict[tuple[date, str, str], list[int]] = {}
        self._mch_day: dict[tuple[date, str], list[int]] = {}
        self._latest_day: date | None = None
        self._dirty_merchants: set[str] = set()
        self._dirty_appids: set[str] = set()
        self._dirty_users: set[tuple[str, str]] = set()
        self._dirty_records: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"Registry(merchants={len(self._merchants)}, records={len(self._records)})"

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _action(self) -> Iterator[datetime]:
        """Lock, run due transitions, yield now; then write what changed, even on errors."""
        with self._lock:
            now = self.clock.now()
            self._run_due(now)
            try:
                yield now
            finally:
                self._flush(now)

    def _flush(self, now: datetime, *, force: bool = False) -> None:
        dirty = (
            self._dirty_merchants or self._dirty_appids or self._dirty_users or self._dirty_records
        )
        if not (dirty or force):
            return
        if self._store is not None:
            self._store.save(
                Changes(
                    merchants=[self._merchants[k] for k in self._dirty_merchants],
                    appids=[self._appids[k] for k in self._dirty_appids],
                    users=[self._users[k] for k in self._dirty_users],
                    records=[self._records[k] for k in self._dirty_records],
                    now=now,
                )
            )
        self._dirty_merchants.clear()
        self._dirty_appids.clear()
        self._dirty_users.clear()
        self._dirty_records.clear()

    def _load(self, snapshot: Snapshot) -> None:
        for merchant in snapshot.merchants:
            self._merchants[merchant.mch_id] = merchant
        for app in snapshot.appids:
            self._appids[app.appid] = app
        for user in snapshot.users:
            self._users[(user.appid, user.openid)] = user
        for record in snapshot.records:
            self._records[record.key] = record
            self._serial = max(self._serial, int(record.detail_id[-12:]))
            if record.package:
                self._packages[record.package] = record.key
            if record.due_at is not None:
                self._schedule(record)
            if record.status in ISSUED and record.issued_at is not None:
                self._count_issue(record, record.issued_at)

    def _schedule(self, record: Record) -> None:
        assert record.due_at is not None
        self._due_seq += 1
        heapq.heappush(self._due, (record.due_at.timestamp(), self._due_seq, record.key))

    def _touch(self, record: Record) -> None:
        self._dirty_records.add(record.key)

    def _new_record(self, req: SendRequest, payer: str, now: datetime) -> Record:
        self._serial += 1
        record = Record(
            mch_id=req.mch_id,
            mch_billno=req.mch_billno,
            api=req.api,
            detail_id=self._ids.detail_id(now, self._serial),
            wxappid=req.wxappid,
            re_openid=req.re_openid,
            total_amount=req.total_amount,
            total_num=req.total_num,
            payer_mch_id=payer,
            send_time=now,
            sub_mch_id=req.sub_mch_id,
            msgappid=req.msgappid,
            send_name=req.send_name,
            wishing=req.wishing,
            act_name=req.act_name,
            remark=req.remark,
            sender_name=req.sender_name,
            agentid=req.agentid,
            sender_header_media_id=req.sender_header_media_id,
        )
        self._records[record.key] = record
        return record

    # ------------------------------------------------------------------ counters

    def _day_counters(self, day: date) -> None:
        if self._latest_day is not None and day <= self._latest_day:
            return
        self._latest_day = day
        # Yesterday is kept for late resolutions; older days can never be asked again.
        oldest = day - timedelta(days=1)
        self._user_day = {k: v for k, v in self._user_day.items() if k[0] >= oldest}
        self._mch_day = {k: v for k, v in self._mch_day.items() if k[0] >= oldest}

    def _count_issue(self, record: Record, at: datetime) -> None:
        day = beijing_day(at)
        self._day_counters(day)
        seed_amount = record.shares[0].amount if record.shares else record.total_amount
        user = self._user_day.setdefault((day, record.payer_mch_id, record.re_openid), [0, 0])
        user[0] += 1
        user[1] += seed_amount
        mch = self._mch_day.setdefault((day, record.payer_mch_id), [0, 0])
        mch[0] += 1
        mch[1] += record.total_amount

    @staticmethod
    def _window(calls: dict[str, deque[float]], mch_id: str, now: float) -> deque[float]:
        window = calls.setdefault(mch_id, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        return window

    # ------------------------------------------------------------------ lifecycle

    def run_due(self) -> int:
        """Run every transition whose time has come; returns how many ran."""
        with self._lock:
            now = self.clock.now()
            try:
                return self._run_due(now)
            finally:
                self._flush(now, force=True)  # the store remembers the time even if nothing ran

    def _run_due(self, now: datetime) -> int:
        ran = 0
        limit = now.timestamp()
        while self._due and self._due[0][0] <= limit:
            due, _, key = heapq.heappop(self._due)
            record = self._records.get(key)
            if record is None or record.due_at is None or record.due_at.timestamp() != due:
                continue  # rescheduled or finished since
            self._transition(record, record.due_at)
            ran += 1
        return ran

    def _transition(self, record: Record, at: datetime) -> None:
        record.due_at = None
        if record.status is Status.SENDING and record.processing:
            self._resolve_processing(record, at)
        elif record.status is Status.SENDING:
            record.status = Status.FAILED
            record.reason = None  # live records lose the reason when they turn FAILED
        elif record.status is Status.SENT:
            record.status = Status.RFUND_ING
            record.due_at = at + self.config.refund_lag
            self._schedule(record)
        elif record.status is Status.RFUND_ING:
            unclaimed = sum(share.amount for share in record.shares if share.openid is None)
            record.status = Status.REFUND
            record.refund_time = at
            record.refund_amount = unclaimed
            payer = self._merchants.get(record.payer_mch_id)
            if payer is not None:
                payer.balance_fen += unclaimed
                self._dirty_merchants.add(payer.mch_id)
        self._touch(record)

    def _resolve_processing(self, record: Record, at: datetime) -> None:
        record.processing = False
        user = self._user_of(record.wxappid, record.msgappid, record.re_openid)
        payer = self._merchants.get(record.payer_mch_id)
        if user is None or payer is None:
            record.status = Status.FAILED
            return
        shares = self._draw_shares(record.api, record.total_amount, record.total_num)
        refusal = self._refusal(payer, user, record.total_amount, shares[0], at)
        if refusal is not None:
            # PROCESSING ends FAILED without a reason (docs/protocol.md §4.2).
            record.status = Status.FAILED
            return
        self._issue(record, payer, shares, at)

    # ------------------------------------------------------------------ control

    def create_merchant(
        self,
        settings: MerchantSettings,
        *,
        mch_id: str | None = None,
        api_key: str | None = None,
        wecom: bool = False,
        certify: Callable[[str], str] | None = None,
    ) -> tuple[Merchant, dict[AppKind, str]]:
        """A new merchant with an Official Account, a mini program and a mobile-app appid.

        `certify(mch_id)` issues its API certificate and returns the fingerprint to remember.
        """
        _check_settings(settings)
        if api_key is not None and len(api_key) != 32:
            raise ValueError("api_key must be 32 characters")
        with self._action():
            if mch_id is None:
                mch_id = self._ids.mch_id()
                while mch_id in self._merchants:
                    mch_id = self._ids.mch_id()
            elif not (mch_id.isascii() and mch_id.isdigit()) or len(mch_id) > 32:
                raise ValueError("mch_id must be 1..32 digits")
            elif mch_id in self._merchants:
                raise InvalidStateError(f"merchant {mch_id} already exists")
            self._check_subs(mch_id, settings)
            merchant = Merchant(
                mch_id=mch_id,
                api_key=api_key or self._ids.api_key(),
                cert_fingerprint=certify(mch_id) if certify else "",
                balance_fen=self.config.default_balance_fen,
                limits=Limits(),
            )
            _apply(merchant, settings)
            self._merchants[mch_id] = merchant
            self._dirty_merchants.add(mch_id)
            kinds = [AppKind.OFFICIAL, AppKind.MINI, AppKind.APP]
            if wecom:
                kinds.append(AppKind.WECOM)
            appids: dict[AppKind, str] = {}
            for kind in kinds:
                appids[kind] = self._new_appid(kind, mch_id).appid
            return copy.deepcopy(merchant), appids

    def _new_appid(self, kind: AppKind, mch_id: str) -> AppId:
        prefix = "ww" if kind is AppKind.WECOM else "wx"
        appid = self._ids.appid(prefix)
        while appid in self._appids:
            appid = self._ids.appid(prefix)
        app = AppId(appid=appid, kind=kind, mch_id=mch_id)
        if kind is AppKind.WECOM:
            # A corp's 企业支付 app secret, and one app of its own with its own secret.
            app.secret = self._ids.api_key(_WECOM_SECRET_LENGTH)
            app.agents = {WECOM_AGENTID: self._ids.api_key(_WECOM_SECRET_LENGTH)}
        self._appids[appid] = app
        self._dirty_appids.add(appid)
        return app

    def create_corp(self, mch_id: str) -> AppId:
        """A new WeCom corp bound to merchant `mch_id` (its corpid, secrets and one app)."""
        with self._action():
            self._merchant_or_raise(mch_id)
            return copy.deepcopy(self._new_appid(AppKind.WECOM, mch_id))

    def update_corp(
        self,
        corpid: str,
        *,
        bound: bool | None = None,
        agent_secret_accepted: bool | None = None,
    ) -> AppId:
        """Confirm or undo the merchant's binding, or accept the apps' own secrets."""
        with self._action():
            corp = self._corp_or_raise(corpid)
            if bound is not None:
                corp.bound = bound
            if agent_secret_accepted is not None:
                corp.agent_secret_accepted = agent_secret_accepted
            self._dirty_appids.add(corpid)
            return copy.deepcopy(corp)

    def corp(self, corpid: str) -> AppId:
        """A copy of a WeCom corp, secrets included (the control API's business)."""
        with self._lock:
            return copy.deepcopy(self._corp_or_raise(corpid))

    def _corp_or_raise(self, corpid: str) -> AppId:
        corp = self._appids.get(corpid)
        if corp is None or corp.kind is not AppKind.WECOM:
            raise UnknownObjectError(f"no WeCom corp {corpid!r}")
        return corp

    def update_merchant(self, mch_id: str, settings: MerchantSettings) -> Merchant:
        """Change a merchant's balance, limits, scenes, whitelist or switches."""
        _check_settings(settings)
        with self._action():
            merchant = self._merchant_or_raise(mch_id)
            self._check_subs(mch_id, settings)
            _apply(merchant, settings)
            self._dirty_merchants.add(mch_id)
            return copy.deepcopy(merchant)

    def _check_subs(self, mch_id: str, settings: MerchantSettings) -> None:
        for sub in settings.sub_mch_ids or []:
            if sub not in self._merchants or sub == mch_id:
                raise ValueError(f"sub_mch_ids: {sub} is not another known merchant")

    def _merchant_or_raise(self, mch_id: str) -> Merchant:
        merchant = self._merchants.get(mch_id)
        if merchant is None:
            raise UnknownObjectError(f"no merchant {mch_id!r}")
        return merchant

    def merchant(self, mch_id: str) -> Merchant:
        """A copy of a merchant."""
        with self._lock:
            return copy.deepcopy(self._merchant_or_raise(mch_id))

    def appids_of(self, mch_id: str) -> dict[str, AppKind]:
        """The appids bound to a merchant."""
        with self._lock:
            self._merchant_or_raise(mch_id)
            return {a.appid: a.kind for a in self._appids.values() if a.mch_id == mch_id}

    def add_users(self, appid: str, count: int = 0, openids: list[str] | None = None) -> list[str]:
        """Register `count` new users (and/or the given `openids`) under `appid`."""
        if count < 0:
            raise ValueError("count must not be negative")
        for openid in openids or []:
            if not 1 <= len(openid) <= 32:
                raise ValueError(f"openid {openid!r} must be 1..32 characters")
        with self._action():
            if appid not in self._appids:
                raise UnknownObjectError(f"no appid {appid!r}")
            return [self._add_user(appid, o) for o in [*(openids or []), *([None] * count)]]

    def has_user(self, appid: str, openid: str) -> bool:
        """Whether `openid` is a user under `appid`."""
        with self._lock:
            return (appid, openid) in self._users

    def _add_user(self, appid: str, openid: str | None) -> str:
        if openid is None:
            openid = self._ids.openid()
            while (appid, openid) in self._users:
                openid = self._ids.openid()
        key = (appid, openid)
        if key not in self._users:
            self._users[key] = User(appid=appid, openid=openid)
            self._dirty_users.add(key)
        return openid

    def set_blocked(self, openid: str, blocked: bool, appid: str | None = None) -> list[str]:
        """Flag (or clear) a user for risk control; returns the appids where it was found."""
        with self._action():
            keys = [k for k in self._users if k[1] == openid and appid in (None, k[0])]
            if not keys:
                raise UnknownObjectError(f"no user {openid!r}")
            for key in keys:
                self._users[key].risk_blocked = blocked
                self._dirty_users.add(key)
            return [k[0] for k in keys]

    def ledger(self, mch_id: str) -> tuple[int, list[LedgerRow]]:
        """The merchant's balance and every record it sent or paid for, in sending order."""
        with self._action():
            merchant = self._merchant_or_raise(mch_id)
            rows = [
                LedgerRow(
                    mch_billno=r.mch_billno,
                    api=r.api.value,
                    re_openid=r.re_openid,
                    total_amount=r.total_amount,
                    total_num=r.total_num,
                    status=r.status.value,
                    detail_id=r.detail_id,
                    send_time=r.send_time,
                )
                for r in self._records.values()
                if mch_id in (r.mch_id, r.payer_mch_id)
            ]
            rows.sort(key=lambda row: row.detail_id[-12:])
            return merchant.balance_fen, rows

    def record(self, mch_id: str, mch_billno: str) -> Record:
        """A copy of a record."""
        with self._action():
            return copy.deepcopy(self._record_or_raise(mch_id, mch_billno))

    def _record_or_raise(self, mch_id: str, mch_billno: str) -> Record:
        record = self._records.get((mch_id, mch_billno))
        if record is None:
            raise UnknownObjectError(f"no record {mch_billno!r} of merchant {mch_id!r}")
        return record

    def open_packet(self, mch_id: str, mch_billno: str, openid: str | None = None) -> OpenResult:
        """A user opens a packet: the whole of a normal one, the next share of a fission set."""
        with self._action() as now:
            record = self._record_or_raise(mch_id, mch_billno)
            if record.status is not Status.SENT:
                raise InvalidStateError(f"packet {mch_billno} is {record.status.value}, not SENT")
            return self._claim(record, openid, now)

    def _claim(self, record: Record, openid: str | None, now: datetime) -> OpenResult:
        claimed = [s.openid for s in record.shares if s.openid is not None]
        index = len(claimed)
        if index == 0:
            if openid not in (None, record.re_openid):
                raise InvalidStateError(
                    f"the first share goes to the recipient {record.re_openid}, not {openid}"
                )
            claimant = record.re_openid
        elif openid is None:
            claimant = self._add_user(record.wxappid, None)
        elif openid in claimed:
            raise InvalidStateError(f"{openid} already claimed a share of this set")
        else:
            claimant = openid
        share = record.shares[index]
        share.openid = claimant
        share.rcv_time = now
        if index + 1 == len(record.shares):
            record.status = Status.RECEIVED
            record.due_at = None
        self._touch(record)
        return OpenResult(status=record.status, openid=claimant, amount=share.amount, rcv_time=now)

    def open_mini(self, fields: Mapping[str, object]) -> tuple[int, str]:
        """`wx.sendBizRedPacket`: check paySign and package, open the packet → (retcode, retmsg)."""
        names = ("appId", "timeStamp", "nonceStr", "package", "signType", "paySign")
        values = {n: fields.get(n) for n in names}
        strings = {n: v for n, v in values.items() if isinstance(v, str) and v}
        if len(strings) != len(names) or strings["signType"] != "MD5":
            return _MINI_FAIL, _MINI_FORMAT_ERROR
        if not (strings["timeStamp"].isascii() and strings["timeStamp"].isdigit()):
            return _MINI_FAIL, _MINI_FORMAT_ERROR
        openid = fields.get("openid")
        with self._action() as now:
            package = unquote(strings["package"])
            key = self._packages.get(package)
            record = self._records.get(key) if key else None
            if record is None or parse_qs(package).get("appid") != [strings["appId"]]:
                return _MINI_FAIL, _MINI_FORMAT_ERROR
            merchant = self._merchants[record.mch_id]
            signed = {n: strings[n] for n in ("appId", "nonceStr", "package", "timeStamp")}
            # paySign's case differs between sources; verify() compares case-insensitively (§7).
            if not verify(signed, merchant.api_key, signature=strings["paySign"]):
                return _MINI_FAIL, _MINI_BAD_SIGN
            if openid is not None and openid != record.re_openid:
                return _MINI_FAIL, _MINI_FORMAT_ERROR
            if record.status is Status.RECEIVED:
                return _MINI_FAIL, _MINI_ALREADY
            if record.status in (Status.RFUND_ING, Status.REFUND):
                return _MINI_FAIL, _MINI_EXPIRED
            if record.status is not Status.SENT:
                return _MINI_FAIL, _MINI_FORMAT_ERROR
            self._claim(record, None, now)
            return 0, "ok"

    def reset(self) -> None:
        """Forget every merchant, user and record (the persisted ones too)."""
        with self._lock:
            self._init_state()
            if self._store is not None:
                self._store.clear()

    # ------------------------------------------------------------------ API: steps 3–8

    def _authenticate(
        self, api: Api, params: Mapping[str, str], caller: Caller, now: datetime
    ) -> Merchant:
        mch_id = check_mch_id(params)  # step 3
        merchant = self._merchants.get(mch_id)
        if merchant is None:
            raise SimError("PARAM_ERROR", msg.P_MCH_UNKNOWN)
        if self._cert_check is not None:  # step 4
            problem = self._cert_check(caller.cert_der, mch_id, now)
            if problem is not None:
                raise SimError("CA_ERROR", problem)
        recognised = RECOGNISED[api]  # step 5
        signed = {name: value for name, value in params.items() if name in recognised}
        if not verify(signed, merchant.api_key, signature=params.get("sign", "")):
            raise SimError("SIGN_ERROR", msg.SIGN_ERROR)
        return merchant

    @staticmethod
    def _check_ip(merchant: Merchant, caller: Caller) -> None:
        # Step 7: the TCP peer against the whitelist; an empty whitelist allows all (§12 item 11).
        if merchant.ip_whitelist and caller.ip not in merchant.ip_whitelist:
            raise SimError("NO_AUTH", msg.NO_AUTH_IP)

    # ------------------------------------------------------------------ API: send

    def send(
        self,
        api: Api,
        params: Mapping[str, str],
        caller: Caller,
        *,
        processing: timedelta | None = None,
    ) -> SendResult:
        """sendredpack / sendgroupredpack / sendminiprogramhb, in the order of
        docs/protocol.md §6.2.

        `processing` (an injected fault): instead of issuing, leave the record SENDING and
        resolve it that much later.
        """
        if api in QUERIES or api is Api.WORKWX:
            raise ValueError("send() takes a cash red packet send API")
        with self._action() as now:
            merchant = self._authenticate(api, params, caller, now)
            stamp = now.timestamp()
            # The frequency window counts every send call past the signature (§6.1).
            calls = self._window(self._send_calls, merchant.mch_id, stamp)
            calls.append(stamp)
            if not merchant.product_enabled:  # step 6
                raise SimError("PRODUCT_AUTHORITY_UNOPEN", msg.PRODUCT_AUTHORITY_UNOPEN)
            if merchant.restricted:
                raise SimError("PAYER_ACCOUNT_ABNORMAL", msg.PAYER_ACCOUNT_ABNORMAL)
            if not merchant.api_enabled:
                raise SimError("API_METHOD_CLOSED", msg.API_METHOD_CLOSED)
            self._check_ip(merchant, caller)
            if len(calls) > merchant.limits.rate_per_minute:  # step 8
                raise SimError("FREQ_LIMIT", msg.FREQ_LIMIT)
            req = parse_send(api, params)  # step 9
            payer, user = self._check_parties(merchant, req)
            self._check_amount(merchant, req)  # step 10
            record = self._records.get((req.mch_id, req.mch_billno))  # step 11
            if record is not None and (issued := self._reentry(record, req)) is not None:
                return issued
            return self._settle(req, record, payer, user, now, processing)

    def send_workwx(
        self,
        params: Mapping[str, str],
        caller: Caller,
        *,
        processing: timedelta | None = None,
    ) -> SendResult:
        """sendworkwxredpack, in the order of docs/protocol.md §15.8 (its step numbers below)."""
        with self._action() as now:
            merchant = self._authenticate(Api.WORKWX, params, caller, now)  # steps 2–4
            corp = self._bound_corp(merchant, params.get("wxappid", ""))  # step 5
            if not self._workwx_signed(corp, params):  # step 6
                raise SimError("SIGN_ERROR", msg.WORKWX_SIGN_ERROR)
            stamp = now.timestamp()
            # One rate window with the merchant's cash red packets: same merchant, same backend.
            calls = self._window(self._send_calls, merchant.mch_id, stamp)
            calls.append(stamp)
            if not merchant.api_enabled:  # step 7
                raise SimError("API_METHOD_CLOSED", msg.API_METHOD_CLOSED)
            self._check_ip(merchant, caller)
            if len(calls) > merchant.limits.rate_per_minute:
                raise SimError("FREQ_LIMIT", msg.FREQ_LIMIT)
            req = parse_workwx(params)  # step 8
            if req.scene_id is not None and req.scene_id not in merchant.scenes:
                raise SimError("PARAM_ERROR", msg.P_SCENE)
            if req.agentid is not None and req.agentid not in corp.agents:
                raise SimError("PARAM_ERROR", msg.P_AGENTID)
            user = self._users.get((corp.appid, req.re_openid))
            if user is None:
                raise SimError("OPENID_ERROR", msg.OPENID_ERROR)
            self._check_amount(merchant, req)  # step 9
            record = self._records.get((req.mch_id, req.mch_billno))  # step 10
            if record is not None and (issued := self._reentry(record, req)) is not None:
                return issued
            return self._settle(req, record, merchant, user, now, processing)  # steps 11–12

    def _bound_corp(self, merchant: Merchant, wxappid: str) -> AppId:
        app = self._appids.get(wxappid)
        if app is not None and app.kind is AppKind.APP:
            # A mobile app has no WeCom secret to check step 6 against: answered here (§15.8).
            raise SimError("ILLEGAL_APPID", msg.ILLEGAL_APPID)
        if (
            app is None
            or app.kind is not AppKind.WECOM
            or app.mch_id != merchant.mch_id
            or not app.bound
        ):
            raise SimError("NO_COMPETENCE", msg.NO_COMPETENCE)
        return app

    @staticmethod
    def _workwx_signed(corp: AppId, params: Mapping[str, str]) -> bool:
        secrets = [corp.secret] if corp.secret else []
        agent = params.get("agentid", "")
        if corp.agent_secret_accepted and agent.isascii() and agent.isdigit():
            own = corp.agents.get(int(agent))
            if own:
                secrets.append(own)
        return any(verify_workwx(params, secret) for secret in secrets)

    def _check_parties(self, merchant: Merchant, req: SendRequest) -> tuple[Merchant, User]:
        if req.scene_id is not None and req.scene_id not in merchant.scenes:
            raise SimError("PARAM_ERROR", msg.P_SCENE)
        app = self._appids.get(req.wxappid)
        wanted = (AppKind.MINI,) if req.api is Api.MINI else (AppKind.OFFICIAL, AppKind.WECOM)
        if app is not None and app.kind not in wanted:
            raise SimError("ILLEGAL_APPID", msg.ILLEGAL_APPID)
        if app is None or app.mch_id != merchant.mch_id:
            raise SimError("PARAM_ERROR", msg.P_APPID_MISMATCH)
        payer = merchant
        msgappid = None
        if req.sub_mch_id is not None:
            sub = self._merchants.get(req.sub_mch_id)
            if sub is None or sub.mch_id not in merchant.sub_mch_ids:
                raise SimError("ACCEPTMODE_ERROR", msg.ACCEPTMODE_ERROR)
            if req.consume_mch_id not in (None, merchant.mch_id, sub.mch_id):
                raise SimError("ACCEPTMODE_ERROR", msg.ACCEPTMODE_ERROR)
            msg_app = self._appids.get(req.msgappid or "")
            if msg_app is None or msg_app.mch_id not in (merchant.mch_id, sub.mch_id):
                raise SimError("MSGAPPID_ERROR", msg.MSGAPPID_ERROR)
            msgappid = msg_app.appid
            payer = self._merchants[req.consume_mch_id or sub.mch_id]
        user = self._user_of(req.wxappid, msgappid, req.re_openid)
        if user is None:
            raise SimError("OPENID_ERROR", msg.OPENID_ERROR)
        return payer, user

    def _user_of(self, appid: str, msgappid: str | None, openid: str) -> User | None:
        user = self._users.get((appid, openid))
        if user is None and msgappid is not None:
            user = self._users.get((msgappid, openid))
        return user

    @staticmethod
    def _check_amount(merchant: Merchant, req: SendRequest) -> None:
        low, high = merchant.scenes[req.scene_id] if req.scene_id else _DEFAULT_RANGE
        if req.api is Api.GROUP:
            # The rule is on the average share (§3.3); the split needs ≥ 1 yuan per share too.
            low = max(low, MIN_SHARE)
            if not low * req.total_num <= req.total_amount <= high * req.total_num:
                raise SimError("MONEY_LIMIT", msg.MONEY_LIMIT_AVERAGE)
        elif not low <= req.total_amount <= high:
            raise SimError("MONEY_LIMIT", msg.MONEY_LIMIT)

    def _reentry(self, record: Record, req: SendRequest) -> SendResult | None:
        """A send of a bill number already recorded: the same packet's answer again, or why not.

        None when the record is a soft failure still SENDING: it is evaluated again (§6.5), as
        a top-up may fix it.
        """
        self._check_same(record, req)
        if record.status in ISSUED:
            return self._send_result(record)
        if record.status is Status.FAILED:
            raise SimError("SEND_FAILED", msg.SEND_FAILED)
        if record.processing:
            raise SimError("PROCESSING", msg.PROCESSING)
        return None

    @staticmethod
    def _check_same(record: Record, req: SendRequest) -> None:
        if record.re_openid != req.re_openid:
            raise SimError("FATAL_ERROR", msg.FATAL_OPENID)
        if record.total_amount != req.total_amount:
            if record.api is req.api is Api.WORKWX:
                # The WeCom doc's remedy: "keep the original amount when retrying" (§15.7).
                raise SimError("PARAM_ERROR", msg.P_WORKWX_AMOUNT)
            raise SimError("FATAL_ERROR", msg.FATAL_AMOUNT)
        # Another API, appid, count or sub-merchant on the same bill number is just as much a
        # different packet; the spec leaves it open (§6.5) and refusing is what keeps money safe.
        if (record.api, record.wxappid, record.total_num, record.sub_mch_id) != (
            req.api,
            req.wxappid,
            req.total_num,
            req.sub_mch_id,
        ):
            raise SimError("FATAL_ERROR", msg.FATAL_OTHER)

    def _draw_shares(self, api: Api, total: int, count: int) -> list[int]:
        if api is not Api.GROUP:
            return [total]
        # The single-share cap may not make a set impossible when a scene allows large averages.
        cap = max(SHARE_CAP, -(-total // count))
        return split_shares(total, count, self._split_rng, cap=cap)

    def _refusal(
        self, payer: Merchant, user: User, total: int, seed_amount: int, at: datetime
    ) -> SimError | None:
        """Steps 12–14 (and the legacy caps): why this packet cannot be issued now, if at all."""
        if user.risk_blocked:
            return SimError("NO_AUTH", msg.NO_AUTH_RISK)
        day = beijing_day(at)
        self._day_counters(day)
        limits = payer.limits
        count, amount = self._user_day.get((day, payer.mch_id, user.openid), (0, 0))
        if count + 1 > limits.per_user_count:
            return SimError("SENDNUM_LIMIT", msg.SENDNUM_LIMIT)
        if amount + seed_amount > limits.per_user_amount:
            return SimError("RCVDAMOUNT_LIMIT", msg.RCVDAMOUNT_LIMIT)
        mch_count, mch_amount = self._mch_day.get((day, payer.mch_id), (0, 0))
        if mch_amount + total > limits.merchant_amount:
            return SimError("SENDAMOUNT_LIMIT", msg.SENDAMOUNT_LIMIT)
        if limits.legacy_day_cap and mch_count + 1 > limits.legacy_day_cap:
            return SimError("DAY_OVER_LIMITED", msg.DAY_OVER_LIMITED)
        if limits.legacy_minute_cap:
            issued = self._window(self._minute_issues, payer.mch_id, at.timestamp())
            if len(issued) + 1 > limits.legacy_minute_cap:
                return SimError("SECOND_OVER_LIMITED", msg.SECOND_OVER_LIMITED)
        if payer.balance_fen < total:
            return SimError("NOTENOUGH", msg.NOTENOUGH)
        return None

    def _settle(
        self,
        req: SendRequest,
        record: Record | None,
        payer: Merchant,
        user: User,
        now: datetime,
        processing: timedelta | None,
    ) -> SendResult:
        shares = self._draw_shares(req.api, req.total_amount, req.total_num)
        refusal = self._refusal(payer, user, req.total_amount, shares[0], now)
        if refusal is not None:
            if refusal.err_code in ("DAY_OVER_LIMITED", "SECOND_OVER_LIMITED"):
                raise refusal  # legacy caps reject before any record exists (§5.2: "no")
            # Soft failure: a record SENDING + reason that turns FAILED later (§4.2).
            if record is None:
                record = self._new_record(req, payer.mch_id, now)
            record.reason = refusal.err_code_des
            if record.due_at is None:
                record.due_at = now + self.config.soft_fail_after
                self._schedule(record)
            self._touch(record)
            raise refusal
        if record is None:
            record = self._new_record(req, payer.mch_id, now)
        if processing is not None:
            record.processing = True
            record.reason = None
            record.due_at = now + processing
            self._schedule(record)
            self._touch(record)
            raise SimError("PROCESSING", msg.PROCESSING)
        self._issue(record, payer, shares, now)
        return self._send_result(record)

    def _issue(self, record: Record, payer: Merchant, shares: list[int], at: datetime) -> None:
        """Step 15: debit, mark SENT, count, and schedule the expiry."""
        payer.balance_fen -= record.total_amount
        self._dirty_merchants.add(payer.mch_id)
        record.status = Status.SENT
        record.reason = None
        record.processing = False
        record.issued_at = at
        record.shares = [Share(amount) for amount in shares]
        if record.api is Api.MINI and record.package is None:
            record.package = self._ids.package(record.mch_id, record.wxappid)
            self._packages[record.package] = record.key
        record.due_at = at + self.config.expiry
        self._schedule(record)
        self._count_issue(record, at)
        if payer.limits.legacy_minute_cap:
            self._window(self._minute_issues, payer.mch_id, at.timestamp()).append(at.timestamp())
        self._touch(record)

    def _send_result(self, record: Record) -> SendResult:
        merchant = self._merchants[record.mch_id]
        return SendResult(
            mch_billno=record.mch_billno,
            mch_id=record.mch_id,
            wxappid=record.wxappid,
            re_openid=record.re_openid,
            total_amount=record.total_amount,
            send_listid=record.detail_id,
            package=record.package,
            sign_key=merchant.api_key if merchant.sign_responses else None,
            sender_name=record.sender_name,
            sender_header_media_id=record.sender_header_media_id,
        )

    # ------------------------------------------------------------------ API: gethbinfo

    def query(
        self, params: Mapping[str, str], caller: Caller, *, api: Api = Api.QUERY
    ) -> QueryResult:
        """gethbinfo (or queryworkwxredpack): the record of a bill number sent in the last 30
        days. Each finds only its own family's records: a WeCom bill is NOT_FOUND by gethbinfo
        and a cash one by queryworkwxredpack (docs/protocol.md §15.8)."""
        if api not in QUERIES:
            raise ValueError("query() takes a query API")
        workwx = api is Api.WORKWX_QUERY
        with self._action() as now:
            merchant = self._authenticate(api, params, caller, now)
            self._check_ip(merchant, caller)
            stamp = now.timestamp()
            calls = self._window(self._query_calls, merchant.mch_id, stamp)
            calls.append(stamp)
            if len(calls) > merchant.limits.query_rate_per_minute:
                raise SimError("FREQ_LIMIT", msg.FREQ_LIMIT)
            req = parse_query(params, workwx=workwx)
            app = self._appids.get(req.appid)
            if app is None or app.mch_id != merchant.mch_id or app.kind is AppKind.APP:
                raise SimError("PARAM_ERROR", msg.P_APPID_MISMATCH)
            if workwx and app.kind is not AppKind.WECOM:
                raise SimError("PARAM_ERROR", msg.P_APPID_MISMATCH)
            record = self._records.get((req.mch_id, req.mch_billno))
            if record is not None and (record.api is Api.WORKWX) != workwx:
                record = None
            if record is None or now - record.send_time > self.config.query_window:
                raise SimError("NOT_FOUND", msg.NOT_FOUND)
            return QueryResult(
                record=copy.deepcopy(record),
                sign_key=merchant.api_key if merchant.sign_responses else None,
            )
