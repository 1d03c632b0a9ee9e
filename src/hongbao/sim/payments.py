"""Customers' payments in the simulated WeChat Pay, and the result notifications they owe.

Pure: a `PayOrder` (the JSON of `POST /__sim/pay`) becomes a `PaymentRecord` holding the signed
notification (docs/protocol.md §14), built once so that every delivery carries identical bytes, and
a `DeliveryPlan` says when to deliver it. The HTTP side is `hongbao.sim.notify`.

A notification has the fields WeChat sends for a successful payment: `return_code`,
`result_code`, `appid`, `mch_id`, `nonce_str`, `openid`, `trade_type` (JSAPI for an Official
Account or a mini program, APP for an app appid), `bank_type` (CMC), `total_fee`, `fee_type`
(CNY), `cash_fee` (= total_fee), `transaction_id` (32 digits), `out_trade_no`, `time_end` (the
simulator's clock, Beijing time), `attach` when given, and `sign_type` when HMAC-SHA256 is asked
for. It is signed with the merchant's APIv2 key.

>>> order = PayOrder.from_json({"mch_id": "1900000109", "appid": "wx1", "openid": "o1",
...     "total_fee": 100, "notify_url": "http://127.0.0.1:8000/notify"})
>>> [wave.delay for wave in delivery_plan(order).waves][:4]
[0.0, 15.0, 15.0, 30.0]
"""

from __future__ import annotations

import math
import random
import re
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from hongbao.clock import CST
from hongbao.ids import new_nonce
from hongbao.sim.entities import AppKind
from hongbao.sim.exceptions import UnknownObjectError
from hongbao.wire import xmlcodec
from hongbao.wire.sign import SignType, sign

__all__ = [
    "MAX_DUPLICATES",
    "RESEND_INTERVALS",
    "Delivery",
    "DeliveryPlan",
    "PayOrder",
    "PayRequestError",
    "PaymentBook",
    "PaymentRecord",
    "Wave",
    "delivery_plan",
    "is_acknowledged",
    "trade_type_of",
]

RESEND_INTERVALS: tuple[float, ...] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)  # fmt: skip
"""Seconds between deliveries while unacknowledged: 15 resends over about 24 h (spec)."""
MAX_DUPLICATES = 50
"""Most copies `duplicates` may ask for."""
MAX_ANSWER = 512
"""Characters of the merchant's answer kept per delivery."""

_FIELDS = frozenset(
    {
        "mch_id",
        "appid",
        "openid",
        "total_fee",
        "notify_url",
        "duplicates",
        "concurrent",
        "out_trade_no",
        "attach",
        "sign_type",
        "schedule_scale",
        "wait",
    }
)
_SIGN_TYPES: tuple[SignType, ...] = ("MD5", "HMAC-SHA256")
# WeChat's rule for out_trade_no: up to 32 of digits, letters and _-|*@.
_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,32}")
_TRADE_TYPES = {AppKind.OFFICIAL: "JSAPI", AppKind.MINI: "JSAPI", AppKind.APP: "APP"}
_NONCE_ALPHABET = string.ascii_letters + string.digits


class PayRequestError(ValueError):
    """A `POST /__sim/pay` that cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class PayOrder:
    """What `POST /__sim/pay` asks for: who pays whom how much, and how to notify."""

    mch_id: str
    appid: str
    openid: str
    total_fee: int
    notify_url: str
    duplicates: int | None = None
    """Deliver exactly this many identical copies, whatever the merchant answers."""
    concurrent: bool = False
    """Send the `duplicates` copies all at once."""
    out_trade_no: str | None = None
    attach: str | None = None
    sign_type: SignType = "MD5"
    schedule_scale: float = 1.0
    """Factor on the resend intervals (0.001: 15 s become 15 ms; 0: no waiting)."""
    wait: bool = False
    """Answer only once every delivery is done."""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PayOrder:
        """Check the request body; raises `PayRequestError` naming the field."""
        unknown = sorted(set(doc) - _FIELDS)
        if unknown:
            raise PayRequestError(f"unknown field(s) {unknown}; allowed: {sorted(_FIELDS)}")
        total_fee = _integer(doc, "total_fee")
        if total_fee is None or total_fee < 1:
            raise PayRequestError(
                f"total_fee must be a whole number of fen >= 1, got {doc.get('total_fee')!r}"
            )
        duplicates = _integer(doc, "duplicates")
        if duplicates is not None and not 1 <= duplicates <= MAX_DUPLICATES:
            raise PayRequestError(f"duplicates must be 1..{MAX_DUPLICATES}, got {duplicates}")
        concurrent = _flag(doc, "concurrent")
        if concurrent and (duplicates or 0) < 2:
            raise PayRequestError("concurrent needs duplicates >= 2 (how many copies at once)")
        out_trade_no = _text(doc, "out_trade_no", required=False)
        if out_trade_no is not None and not _OUT_TRADE_NO.fullmatch(out_trade_no):
            raise PayRequestError(
                f"out_trade_no {out_trade_no!r} must be 1..32 of digits, letters and _-|*@"
            )
        attach = _text(doc, "attach", required=False)
        if attach is not None and len(attach) > 128:
            raise PayRequestError(f"attach has {len(attach)} characters, at most 128 allowed")
        sign_type = doc.get("sign_type", "MD5")
        if sign_type not in _SIGN_TYPES:
            raise PayRequestError(f"sign_type must be MD5 or HMAC-SHA256, got {sign_type!r}")
        scale = doc.get("schedule_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise PayRequestError(f"schedule_scale must be a number, got {scale!r}")
        if not (math.isfinite(scale) and scale >= 0):
            raise PayRequestError(f"schedule_scale must be a finite number >= 0, got {scale!r}")
        return cls(
            mch_id=_text(doc, "mch_id"),
            appid=_text(doc, "appid"),
            openid=_text(doc, "openid"),
            total_fee=total_fee,
            notify_url=_url(doc),
            duplicates=duplicates,
            concurrent=concurrent,
            out_trade_no=out_trade_no,
            attach=attach,
            sign_type=sign_type,
            schedule_scale=float(scale),
            wait=_flag(doc, "wait"),
        )


def _integer(doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayRequestError(f"{name} must be a whole number, got {value!r}")
    return value


def _flag(doc: Mapping[str, Any], name: str) -> bool:
    value = doc.get(name, False)
    if not isinstance(value, bool):
        raise PayRequestError(f"{name} must be true or false, got {value!r}")
    return value


def _text(doc: Mapping[str, Any], name: str, *, required: bool = True) -> Any:
    value = doc.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise PayRequestError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _url(doc: Mapping[str, Any]) -> str:
    url: str = _text(doc, "notify_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 256:
        raise PayRequestError(
            f"notify_url {url!r} must be an http:// or https:// URL of at most 256 characters"
        )
    return url


def trade_type_of(kind: AppKind) -> str:
    """The trade type of a payment made under an appid of `kind`."""
    trade_type = _TRADE_TYPES.get(kind)
    if trade_type is None:
        raise PayRequestError(f"a {kind.value} appid cannot take payments (WeCom corp id)")
    return trade_type


@dataclass(frozen=True, slots=True)
class Wave:
    """Wait `delay` seconds, then deliver `copies` copies at once."""

    delay: float
    copies: int = 1


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """The deliveries of one notification, and whether an acknowledgement ends them."""

    waves: tuple[Wave, ...]
    stop_on_success: bool


def delivery_plan(order: PayOrder) -> DeliveryPlan:
    """Duplicates: n copies, one after another or all at once, whatever the answers.
    Otherwise WeChat's schedule (scaled), until the merchant acknowledges."""
    if order.duplicates is not None:
        if order.concurrent:
            return DeliveryPlan((Wave(0.0, order.duplicates),), stop_on_success=False)
        return DeliveryPlan((Wave(0.0),) * order.duplicates, stop_on_success=False)
    scaled = (Wave(interval * order.schedule_scale) for interval in RESEND_INTERVALS)
    return DeliveryPlan((Wave(0.0), *scaled), stop_on_success=True)


def is_acknowledged(status: int, body: bytes) -> bool:
    """Whether a merchant's answer stops the resends: HTTP 200 and `return_code` SUCCESS."""
    if status != 200:
        return False
    try:
        return xmlcodec.loads(body).get("return_code") == "SUCCESS"
    except xmlcodec.XmlError:
        return False


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of a notification and the merchant's answer."""

    attempt: int
    after_seconds: float
    """The wait before it (scaled), as planned."""
    status: int | None
    """HTTP status; None when no answer came (connection refused, timeout)."""
    acknowledged: bool
    answer: str = ""
    """The answer's body, cut at `MAX_ANSWER` characters."""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The control API's view."""
        return {
            "attempt": self.attempt,
            "after_seconds": self.after_seconds,
            "status": self.status,
            "acknowledged": self.acknowledged,
            "answer": self.answer,
            "error": self.error,
        }


@dataclass(slots=True)
class PaymentRecord:
    """A payment taken: its signed notification and the deliveries so far."""

    order: PayOrder
    transaction_id: str
    out_trade_no: str
    fields: Mapping[str, str | int] = field(repr=False)
    """The notification's fields, `sign` included."""
    body: bytes = field(repr=False)
    """The notification as delivered, every time."""
    plan: DeliveryPlan
    deliveries: list[Delivery] = field(default_factory=list)
    done: bool = False

    @property
    def acknowledged(self) -> bool:
        """Whether the merchant acknowledged any delivery."""
        return any(delivery.acknowledged for delivery in self.deliveries)

    def to_json(self) -> dict[str, Any]:
        """The control API's view (the signature left out)."""
        return {
            "transaction_id": self.transaction_id,
            "out_trade_no": self.out_trade_no,
            "mch_id": self.order.mch_id,
            "appid": self.order.appid,
            "openid": self.order.openid,
            "total_fee": self.order.total_fee,
            "trade_type": self.fields["trade_type"],
            "time_end": self.fields["time_end"],
            "notify_url": self.order.notify_url,
            "done": self.done,
            "acknowledged": self.acknowledged,
            "deliveries": [delivery.to_json() for delivery in self.deliveries],
        }


class PaymentBook:
    """The payments taken, in memory, with identifiers reproducible under a seed."""

    def __init__(self, seed: int | None = None) -> None:
        self._seeded = seed is not None
        # Seeded on purpose: reproducible ids; nothing here guards money.
        self._rng = random.Random(seed)  # noqa: S311
        self._lock = threading.Lock()
        self._serial = 0
        self._records: dict[str, PaymentRecord] = {}

    def __repr__(self) -> str:
        return f"PaymentBook(payments={len(self._records)})"

    def take(self, order: PayOrder, *, api_key: str, kind: AppKind, now: datetime) -> PaymentRecord:
        """Record a payment made now and sign its notification with the merchant's key."""
        trade_type = trade_type_of(kind)
        day = f"{now.astimezone(CST):%Y%m%d}"
        with self._lock:
            self._serial += 1
            serial = self._serial
            transaction_id = f"4200{day}{serial:010d}{self._rng.randrange(10**10):010d}"
            nonce = self._nonce()
        out_trade_no = order.out_trade_no or f"SIM{day}{serial:010d}"
        fields: dict[str, str | int] = {
            "return_code": "SUCCESS",
            "appid": order.appid,
            "mch_id": order.mch_id,
            "nonce_str": nonce,
            "result_code": "SUCCESS",
            "openid": order.openid,
            "trade_type": trade_type,
            "bank_type": "CMC",
            "total_fee": order.total_fee,
            "fee_type": "CNY",
            "cash_fee": order.total_fee,
            "transaction_id": transaction_id,
            "out_trade_no": out_trade_no,
            "time_end": f"{now.astimezone(CST):%Y%m%d%H%M%S}",
        }
        if order.attach is not None:
            fields["attach"] = order.attach
        if order.sign_type != "MD5":
            fields["sign_type"] = order.sign_type
        fields["sign"] = sign(fields, api_key, order.sign_type)
        record = PaymentRecord(
            order=order,
            transaction_id=transaction_id,
            out_trade_no=out_trade_no,
            fields=fields,
            body=xmlcodec.dumps(fields),
            plan=delivery_plan(order),
        )
        with self._lock:
            self._records[transaction_id] = record
        return record

    def _nonce(self) -> str:
        if self._seeded:
            # Reproducible run to run, like every identifier of a seeded book: not a real nonce.
            return "".join(self._rng.choice(_NONCE_ALPHABET) for _ in range(32))
        return new_nonce()

    def get(self, transaction_id: str) -> PaymentRecord:
        """The payment `transaction_id`; `UnknownObjectError` if there is none."""
        with self._lock:
            record = self._records.get(transaction_id)
        if record is None:
            raise UnknownObjectError(f"no payment {transaction_id!r}")
        return record

    def reset(self) -> None:
        """Forget every payment."""
        with self._lock:
            self._records.clear()
