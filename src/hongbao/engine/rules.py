"""满额送: rules that reward a customer's payment with a red packet, judged without any I/O.

A rule is one `[rules.NAME]` table of the TOML configuration (these key names are a contract):

```toml
[rules.big_spender]
merchant = "shop"                  # the [merchants.NAME] that pays
start = 2024-03-15T00:00:00        # optional; UTC+8 unless an offset is given; inclusive
end = 2024-04-01T00:00:00          # optional; exclusive (a bare date means "to the end of it")
min_total_fee = 10000              # fen: payments of at least 100.00 yuan
max_total_fee = 1000000            # optional, fen, inclusive
appids = ["wx2421b1c4370ec43b"]    # optional: only payments made under these appids
trade_types = ["JSAPI"]            # optional: JSAPI, NATIVE, APP, MWEB
first_payment_only = false         # optional: only the customer's first payment to the merchant
attach = "spring"                  # optional: the order's `attach` must equal this
amount = "1.88"                    # the reward in yuan; or `tiers`, or `random_min`/`random_max`
send_name = "Acme"                 # the red packet's texts (sendredpack §3.2)
wishing = "Thank you!"
act_name = "Spend and get"
remark = "Spring promotion"
scene_id = "PRODUCT_1"             # optional; required for rewards outside 1.00–200.00 yuan
per_customer_limit = 1             # optional: red packets per customer from this rule, ever
per_customer_daily_limit = 1       # optional: … per UTC+8 day
budget = "5000"                    # yuan: this rule never commits more than this in all
```

Rewards: a fixed `amount`; `tiers = [{min_total_fee = 10000, amount = "1.88"},
{min_total_fee = 50000, amount = "8.88"}]` (thresholds strictly ascending; the highest tier met
pays); or a random amount between `random_min` and `random_max` (yuan, inclusive) drawn from
`seed` (default: the rule's name) and the `transaction_id`, so that a redelivered notification
draws the same amount. Every possible reward must lie within 1.00–200.00 yuan, or within the
platform's 0.30–4999.00 yuan when a `scene_id` is given (docs/protocol.md §6.1).

`evaluate` judges a verified `Payment` against rules: each rule gives a `Match` (which API,
how much, and the payout's natural key `rule:<name>:<transaction_id>`) or a `Skip` with the
reason. The window and the daily limit read the payment's `time_end` (Beijing time), not the
arrival time, and the customer's past comes from a `CustomerHistory` that excludes the payment
being judged: the same notification judged again, however often and however late, gets the same
answer. The ledger judges a payment inside the transaction that records it, under its rules'
lock, so the counts cannot change before the commit; it charges the budget again atomically.

>>> rule = parse_rule("big_spender", {"merchant": "shop", "min_total_fee": 10000,
...     "amount": "1.88", "send_name": "Acme", "wishing": "Thanks", "act_name": "Promo",
...     "remark": "Spring", "budget": "100"})
>>> rule.reward, rule.budget_fen
(FixedReward(amount_fen=188), 10000)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from hongbao.api.models import (
    DEFAULT_MAX_FEN,
    DEFAULT_MIN_FEN,
    PLATFORM_MAX_FEN,
    PLATFORM_MIN_FEN,
    SCENE_IDS,
    check_text,
)
from hongbao.clock import CST, beijing_day
from hongbao.errors import ConfigurationError, ValidationError
from hongbao.ledger.records import Origin, SendApi
from hongbao.money import MoneyError, format_yuan, parse_yuan

__all__ = [
    "RULE_KEYS",
    "TRADE_TYPES",
    "AppidKind",
    "Conditions",
    "CustomerHistory",
    "FixedReward",
    "Match",
    "Payment",
    "PaymentError",
    "RandomReward",
    "Reward",
    "Rule",
    "Skip",
    "SkipReason",
    "Template",
    "Tier",
    "TieredReward",
    "evaluate",
    "natural_key",
    "parse_rule",
    "parse_rules",
    "rules_for",
]

TRADE_TYPES = frozenset({"JSAPI", "NATIVE", "APP", "MWEB"})
"""Trade types that have a payment notification (MICROPAY has none)."""

_CONDITION_KEYS = frozenset(
    {"min_total_fee", "max_total_fee", "appids", "trade_types", "first_payment_only", "attach"}
)
_REWARD_KEYS = frozenset({"amount", "tiers", "random_min", "random_max", "seed"})
_TEMPLATE_KEYS = frozenset({"send_name", "wishing", "act_name", "remark", "scene_id"})
_LIMIT_KEYS = frozenset({"per_customer_limit", "per_customer_daily_limit", "budget"})
RULE_KEYS: frozenset[str] = frozenset(
    {"merchant", "start", "end"} | _CONDITION_KEYS | _REWARD_KEYS | _TEMPLATE_KEYS | _LIMIT_KEYS
)
"""Every key a `[rules.NAME]` table may hold; any other is refused as a likely typo."""

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TEXT_LIMITS = {"send_name": 32, "wishing": 128, "act_name": 32, "remark": 256}
_TIME_END = re.compile(r"[0-9]{14}")
_INT = re.compile(r"0|[1-9][0-9]{0,15}")
_REQUIRED_PAYMENT = (
    "appid",
    "mch_id",
    "openid",
    "trade_type",
    "total_fee",
    "cash_fee",
    "transaction_id",
    "out_trade_no",
    "time_end",
    "result_code",
)


# --- the rule model ------------------------------------------------------------------------


class AppidKind(StrEnum):
    """What an appid belongs to, which decides the red packet API (docs/protocol.md §14)."""

    OFFICIAL_ACCOUNT = "official_account"
    """An Official Account: its openids are paid with sendredpack."""
    MINI_PROGRAM = "mini_program"
    """A mini program: its openids are paid with sendminiprogramhb."""
    APP = "app"
    """A mobile app: its payers cannot be given a red packet at all."""
    UNKNOWN = "unknown"
    """Not an appid of the merchant's configuration: nothing is sent."""


@dataclass(frozen=True, slots=True)
class Template:
    """The red packet's texts, as sent (`scene_id` None: no scene)."""

    send_name: str
    wishing: str
    act_name: str
    remark: str
    scene_id: str | None = None


@dataclass(frozen=True, slots=True)
class Conditions:
    """What a payment must satisfy (fen; None: no condition). `end` is exclusive."""

    min_total_fee: int
    max_total_fee: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    appids: frozenset[str] | None = None
    trade_types: frozenset[str] | None = None
    first_payment_only: bool = False
    attach: str | None = None


@dataclass(frozen=True, slots=True)
class FixedReward:
    """The same amount for every matching payment."""

    amount_fen: int

    def amount_for(self, payment: Payment) -> int | None:
        """The reward in fen."""
        return self.amount_fen

    @property
    def bounds(self) -> tuple[int, int]:
        """The smallest and largest reward this can give, in fen."""
        return (self.amount_fen, self.amount_fen)


@dataclass(frozen=True, slots=True)
class Tier:
    """Payments of at least `min_total_fee` fen earn `amount_fen` (unless a higher tier is met)."""

    min_total_fee: int
    amount_fen: int


@dataclass(frozen=True, slots=True)
class TieredReward:
    """Tiers by payment amount, thresholds strictly ascending; the highest tier met pays."""

    tiers: tuple[Tier, ...]

    def amount_for(self, payment: Payment) -> int | None:
        """The amount of the highest tier `payment.total_fee` reaches (None: below them all)."""
        amount = None
        for tier in self.tiers:
            if payment.total_fee < tier.min_total_fee:
                break
            amount = tier.amount_fen
        return amount

    @property
    def bounds(self) -> tuple[int, int]:
        """The smallest and largest reward this can give, in fen."""
        amounts = [tier.amount_fen for tier in self.tiers]
        return (min(amounts), max(amounts))


@dataclass(frozen=True, slots=True)
class RandomReward:
    """An amount in [min_fen, max_fen], fixed by (seed, transaction_id): redeliveries agree."""

    min_fen: int
    max_fen: int
    seed: str

    def amount_for(self, payment: Payment) -> int | None:
        """The amount drawn for this payment's transaction_id."""
        # A hash, not `random`: the draw must be the same in every process and Python version,
        # since a redelivered notification may be handled by another worker days later.
        digest = hashlib.sha256(f"{self.seed}\x00{payment.transaction_id}".encode()).digest()
        span = self.max_fen - self.min_fen + 1
        return self.min_fen + int.from_bytes(digest[:8], "big") % span

    @property
    def bounds(self) -> tuple[int, int]:
        """The smallest and largest reward this can give, in fen."""
        return (self.min_fen, self.max_fen)


Reward = FixedReward | TieredReward | RandomReward


@dataclass(frozen=True, slots=True)
class Rule:
    """One checked `[rules.NAME]`: conditions, reward, template, limits and budget (fen)."""

    name: str
    merchant: str
    conditions: Conditions
    reward: Reward
    template: Template
    budget_fen: int
    per_customer_limit: int | None = None
    per_customer_daily_limit: int | None = None


# --- parsing -------------------------------------------------------------------------------


class _Fields:
    """Reads one rule's table, naming `rules.NAME.FIELD` in every error."""

    def __init__(self, name: str, table: Mapping[str, object], where: str) -> None:
        self.name = name
        self.table = table
        self.prefix = f"{where} " if where else ""

    def error(self, key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self.prefix}rules.{self.name}.{key}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.table

    def text(self, key: str) -> str:
        value = self.optional_text(key)
        if value is None:
            raise self.error(key, "missing (a string)")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.table.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.error(key, f"must be a non-empty string, not {_shown(value)}")
        return value

    def fen(self, key: str, value: object | None = None) -> int:
        """A fee in fen: a whole number ≥ 1."""
        value = self.table.get(key) if value is None else value
        if type(value) is not int:
            raise self.error(
                key, f"must be a whole number of fen (100 = 1.00 yuan), not {_shown(value)}"
            )
        if value < 1:
            raise self.error(key, f"must be at least 1 fen, not {value}")
        return value

    def yuan(self, key: str, value: object | None = None) -> int:
        """An amount in yuan, as a string (a TOML number could be a float, rounded silently)."""
        value = self.table.get(key) if value is None else value
        if not isinstance(value, str):
            raise self.error(
                key, f'must be an amount in yuan as a string, e.g. "1.88", not {_shown(value)}'
            )
        try:
            fen = parse_yuan(value)
        except MoneyError as exc:
            raise self.error(key, str(exc)) from None
        if fen <= 0:
            raise self.error(key, f"{value!r} must be more than 0")
        return fen

    def count(self, key: str) -> int | None:
        value = self.table.get(key)
        if value is None:
            return None
        if type(value) is not int or value < 1:
            raise self.error(key, f"must be a whole number >= 1, not {_shown(value)}")
        return value

    def strings(self, key: str) -> frozenset[str] | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise self.error(key, f"must be a non-empty list of strings, not {_shown(value)}")
        for item in value:
            if not isinstance(item, str) or not item:
                raise self.error(key, f"must hold non-empty strings, not {_shown(item)}")
        if len(set(value)) != len(value):
            raise self.error(key, "lists a value twice")
        return frozenset(value)

    def moment(self, key: str) -> datetime | None:
        """A TOML datetime or date, or an ISO 8601 string; without an offset it is UTC+8."""
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = (
                    date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
                )
            except ValueError:
                raise self.error(
                    key, f"{value!r} is not a date-time such as 2024-03-15T00:00:00"
                ) from None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=CST)
        if isinstance(value, date):
            # `end = 2024-03-31` means "up to and including the 31st".
            day = value + timedelta(days=1) if key == "end" else value
            return datetime.combine(day, time(), tzinfo=CST)
        raise self.error(
            key, f"must be a date-time such as 2024-03-15T00:00:00, not {_shown(value)}"
        )


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def parse_rule(name: str, table: Mapping[str, object], *, where: str = "") -> Rule:
    """Check one `[rules.NAME]` table (as `tomllib` gives it) and build its `Rule`.

    Raises `ConfigurationError` naming `rules.NAME.FIELD` and the rule broken; `where` (e.g.
    the file name) prefixes every message.

    >>> table = {"merchant": "shop", "min_total_fee": 1000, "amount": "1.005"}
    >>> parse_rule("r", table)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hongbao.errors.ConfigurationError: rules.r.amount: amount '1.005' is not a valid yuan amount...
    """
    prefix = f"{where} " if where else ""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"{prefix}rules.{name}: a rule name is 1 to 64 letters, digits, '-' or '_' "
            "(it is part of every payout's key)"
        )
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{prefix}rules.{name}: must be a table ([rules.{name}])")
    f = _Fields(name, table, where)
    unknown = sorted(set(table) - RULE_KEYS)
    if unknown:
        raise f.error(unknown[0], f"unknown key (allowed: {', '.join(sorted(RULE_KEYS))})")
    merchant = f.text("merchant")
    reward = _reward(f)
    template = _template(f)
    conditions = _conditions(f, reward)
    _check_reward_amounts(f, reward, template.scene_id)
    if not f.has("budget"):
        raise f.error("budget", 'missing: the most this rule may pay in all, in yuan (e.g. "5000")')
    budget = f.yuan("budget")
    smallest = reward.bounds[0]
    if budget < smallest:
        raise f.error(
            "budget",
            f"{format_yuan(budget)} yuan is less than the smallest reward "
            f"({format_yuan(smallest)} yuan): the rule could never pay",
        )
    return Rule(
        name=name,
        merchant=merchant,
        conditions=conditions,
        reward=reward,
        template=template,
        budget_fen=budget,
        per_customer_limit=f.count("per_customer_limit"),
        per_customer_daily_limit=f.count("per_customer_daily_limit"),
    )


def parse_rules(
    tables: Mapping[str, object],
    *,
    merchants: Collection[str] | None = None,
    where: str = "",
) -> dict[str, Rule]:
    """Check the whole `rules` table (name → table); `merchants`, when given, are the names a
    rule's `merchant` may take.

    >>> document = tomllib.loads(text)  # doctest: +SKIP
    >>> rules = parse_rules(document.get("rules", {}), merchants={"shop"})  # doctest: +SKIP
    """
    prefix = f"{where} " if where else ""
    if not isinstance(tables, Mapping):
        raise ConfigurationError(f"{prefix}rules: must be tables ([rules.NAME])")
    rules: dict[str, Rule] = {}
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{prefix}rules.{name}: must be a table ([rules.{name}])")
        rule = parse_rule(name, table, where=where)
        if merchants is not None and rule.merchant not in merchants:
            known = ", ".join(sorted(merchants)) or "none"
            raise ConfigurationError(
                f"{prefix}rules.{name}.merchant: {rule.merchant!r} is not a merchant of this "
                f"configuration (known: {known})"
            )
        rules[name] = rule
    return rules


def _template(f: _Fields) -> Template:
    texts: dict[str, str] = {}
    for key, max_len in _TEXT_LIMITS.items():
        value = f.text(key)
        try:
            check_text(key, value, max_len)
        except ValidationError as exc:
            raise f.error(key, exc.message) from None
        texts[key] = value
    scene_id = f.optional_text("scene_id")
    if scene_id is not None and scene_id not in SCENE_IDS:
        raise f.error("scene_id", f"{scene_id!r} is not one of PRODUCT_1 … PRODUCT_8")
    return Template(scene_id=scene_id, **texts)


def _reward(f: _Fields) -> Reward:
    kinds = [
        kind
        for kind, present in (
            ("amount", f.has("amount")),
            ("tiers", f.has("tiers")),
            ("random_min/random_max", f.has("random_min") or f.has("random_max")),
        )
        if present
    ]
    if len(kinds) != 1:
        problem = "missing" if not kinds else f"given several ways ({' and '.join(kinds)})"
        raise f.error(
            "amount",
            f"reward {problem}: give exactly one of amount, tiers, or random_min + random_max",
        )
    if f.has("seed") and kinds[0] != "random_min/random_max":
        raise f.error("seed", "only a random reward (random_min/random_max) takes a seed")
    if kinds[0] == "amount":
        return FixedReward(f.yuan("amount"))
    if kinds[0] == "tiers":
        return _tiers(f)
    for key in ("random_min", "random_max"):
        if not f.has(key):
            raise f.error(key, "missing: a random reward needs both random_min and random_max")
    low, high = f.yuan("random_min"), f.yuan("random_max")
    if low >= high:
        raise f.error(
            "random_max",
            f"{format_yuan(high)} must be more than random_min {format_yuan(low)} "
            "(use amount for a fixed reward)",
        )
    seed = f.table.get("seed", f.name)
    if isinstance(seed, bool) or not isinstance(seed, str | int) or seed == "":
        raise f.error("seed", f"must be a non-empty string or a whole number, not {_shown(seed)}")
    return RandomReward(low, high, str(seed))


def _tiers(f: _Fields) -> TieredReward:
    raw = f.table["tiers"]
    example = '[{min_total_fee = 10000, amount = "1.88"}, {min_total_fee = 50000, amount = "8.88"}]'
    if not isinstance(raw, list) or not raw:
        raise f.error("tiers", f"must be a non-empty list of tables such as {example}")
    tiers: list[Tier] = []
    for index, item in enumerate(raw):
        here = f"tiers[{index}]"
        if not isinstance(item, Mapping):
            raise f.error(here, 'must be a table such as {min_total_fee = 10000, amount = "1.88"}')
        unknown = sorted(set(item) - {"min_total_fee", "amount"})
        if unknown:
            raise f.error(f"{here}.{unknown[0]}", "unknown key (a tier has min_total_fee, amount)")
        for key in ("min_total_fee", "amount"):
            if key not in item:
                raise f.error(f"{here}.{key}", "missing")
        tier = Tier(
            f.fen(f"{here}.min_total_fee", item["min_total_fee"]),
            f.yuan(f"{here}.amount", item["amount"]),
        )
        if tiers and tier.min_total_fee <= tiers[-1].min_total_fee:
            raise f.error(
                f"{here}.min_total_fee",
                f"{tier.min_total_fee} must be more than the previous tier's "
                f"{tiers[-1].min_total_fee}: tiers go in ascending order and may not overlap",
            )
        tiers.append(tier)
    return TieredReward(tuple(tiers))


def _conditions(f: _Fields, reward: Reward) -> Conditions:
    if f.has("min_total_fee"):
        minimum = f.fen("min_total_fee")
        if isinstance(reward, TieredReward) and minimum < reward.tiers[0].min_total_fee:
            raise f.error(
                "min_total_fee",
                f"{minimum} is below the first tier ({reward.tiers[0].min_total_fee}): payments "
                "between them would match but earn nothing",
            )
    elif isinstance(reward, TieredReward):
        minimum = reward.tiers[0].min_total_fee
    else:
        raise f.error("min_total_fee", "missing: the smallest payment (in fen) that earns a reward")
    maximum = f.fen("max_total_fee") if f.has("max_total_fee") else None
    if maximum is not None and maximum < minimum:
        raise f.error("max_total_fee", f"{maximum} is less than min_total_fee {minimum}")
    start, end = f.moment("start"), f.moment("end")
    if start is not None and end is not None and end <= start:
        raise f.error("end", f"{end.isoformat()} is not after start {start.isoformat()}")
    trade_types = f.strings("trade_types")
    for trade_type in sorted(trade_types or ()):
        if trade_type not in TRADE_TYPES:
            extra = " (MICROPAY payments have no notification)" if trade_type == "MICROPAY" else ""
            raise f.error(
                "trade_types",
                f"{trade_type!r} is not one of {', '.join(sorted(TRADE_TYPES))}{extra}",
            )
    first = f.table.get("first_payment_only", False)
    if not isinstance(first, bool):
        raise f.error("first_payment_only", f"must be true or false, not {_shown(first)}")
    attach = f.optional_text("attach")
    if attach is not None and len(attach) > 128:
        raise f.error("attach", f"has {len(attach)} characters; an order's attach holds 128")
    return Conditions(
        min_total_fee=minimum,
        max_total_fee=maximum,
        start=start,
        end=end,
        appids=f.strings("appids"),
        trade_types=trade_types,
        first_payment_only=first,
        attach=attach,
    )


def _check_reward_amounts(f: _Fields, reward: Reward, scene_id: str | None) -> None:
    if scene_id is None:
        low, high = DEFAULT_MIN_FEN, DEFAULT_MAX_FEN
        hint = "; outside it, give a scene_id enabled for the merchant"
    else:
        low, high = PLATFORM_MIN_FEN, PLATFORM_MAX_FEN
        hint = f" (the platform's bounds for {scene_id})"
    if isinstance(reward, FixedReward):
        amounts = [("amount", reward.amount_fen)]
    elif isinstance(reward, TieredReward):
        amounts = [(f"tiers[{i}].amount", tier.amount_fen) for i, tier in enumerate(reward.tiers)]
    else:
        amounts = [("random_min", reward.min_fen), ("random_max", reward.max_fen)]
    for key, fen in amounts:
        if not low <= fen <= high:
            raise f.error(
                key,
                f"{format_yuan(fen)} yuan is outside the red packet range "
                f"{format_yuan(low)}–{format_yuan(high)} yuan{hint}",
            )


def rules_for(rules: Iterable[Rule], merchant: str) -> list[Rule]:
    """The rules paid by `merchant` (the configuration name): what `evaluate` should see for a
    notification verified with that merchant's key."""
    return [rule for rule in rules if rule.merchant == merchant]


# --- payments ------------------------------------------------------------------------------


class PaymentError(ValueError):
    """A notification's fields do not describe a payment (missing or malformed field)."""


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment from a verified notification (docs/protocol.md §14.2); amounts in fen."""

    appid: str
    mch_id: str
    openid: str
    trade_type: str
    total_fee: int
    cash_fee: int
    transaction_id: str
    out_trade_no: str
    time_end: datetime
    """Payment time, aware, UTC+8."""
    result_code: str
    attach: str | None = None
    bank_type: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Every field received except `sign`, as strings (for the audit trail)."""

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> Payment:
        """Build from a notification's fields (already verified); raises `PaymentError`.

        >>> Payment.from_fields(xmlcodec.loads(body))  # doctest: +SKIP
        """
        values: dict[str, str] = {}
        for name, value in fields.items():
            if name == "sign":
                continue
            if not isinstance(value, str):
                raise PaymentError(f"field {name} is not a plain value")
            values[name] = value
        missing = [name for name in _REQUIRED_PAYMENT if not values.get(name)]
        if missing:
            raise PaymentError(f"missing field(s) {', '.join(missing)}")
        return cls(
            appid=values["appid"],
            mch_id=values["mch_id"],
            openid=values["openid"],
            trade_type=values["trade_type"],
            total_fee=_fee(values, "total_fee"),
            cash_fee=_fee(values, "cash_fee"),
            transaction_id=values["transaction_id"],
            out_trade_no=values["out_trade_no"],
            time_end=_time_end(values["time_end"]),
            result_code=values["result_code"],
            attach=values.get("attach") or None,
            bank_type=values.get("bank_type") or None,
            fields=MappingProxyType(values),
        )

    @property
    def day(self) -> date:
        """The UTC+8 calendar day of the payment (what daily limits count by)."""
        return beijing_day(self.time_end)


def _fee(values: Mapping[str, str], name: str) -> int:
    text = values[name].strip()
    if not _INT.fullmatch(text):
        raise PaymentError(f"{name} {values[name]!r} is not a whole number of fen")
    return int(text)


def _time_end(text: str) -> datetime:
    if not _TIME_END.fullmatch(text):
        raise PaymentError(f"time_end {text!r} is not yyyyMMddHHmmss")
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=CST)
    except ValueError:
        raise PaymentError(f"time_end {text!r} is not a real time") from None


# --- evaluation ----------------------------------------------------------------------------


class CustomerHistory(Protocol):
    """What evaluation needs to know of the past; the ledger implements it.

    Every count leaves out the payout keyed `excluding` (the one being judged), so that judging
    a redelivered notification again gives the same answer as the first time.
    """

    def rewards(self, rule: str, openid: str, *, excluding: str) -> int:
        """Red packets `rule` decided for `openid` (each counts, whatever became of it)."""
        ...

    def rewards_on(self, rule: str, openid: str, day: date, *, excluding: str) -> int:
        """The same, for payments made on the UTC+8 calendar day `day`."""
        ...

    def paid_before(self, mch_id: str, openid: str, *, excluding: str) -> bool:
        """Whether `openid` made another payment to `mch_id` earlier than `excluding`
        (a transaction_id)."""
        ...

    def committed_fen(self, rule: str, *, excluding: str) -> int:
        """Fen `rule` has committed: every red packet it decided (a ceiling, never a figure that
        grows back)."""
        ...


class SkipReason(StrEnum):
    """Why a rule gives a payment nothing."""

    PAYMENT_FAILED = "payment_failed"
    OUTSIDE_WINDOW = "outside_window"
    APPID_NOT_LISTED = "appid_not_listed"
    TRADE_TYPE = "trade_type"
    BELOW_THRESHOLD = "below_threshold"
    ABOVE_MAXIMUM = "above_maximum"
    ATTACH_MISMATCH = "attach_mismatch"
    APP_APPID = "app_appid"
    UNKNOWN_APPID = "unknown_appid"
    NOT_FIRST_PAYMENT = "not_first_payment"
    CUSTOMER_LIMIT = "customer_limit"
    DAILY_LIMIT = "daily_limit"
    BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True, slots=True)
class Match:
    """A payment earns a red packet: the payout to plan, keyed `rule:<name>:<transaction_id>`."""

    rule: str
    merchant: str
    key: str
    api: SendApi
    amount_fen: int
    template: Template
    payment: Payment


@dataclass(frozen=True, slots=True)
class Skip:
    """A rule gives a payment nothing, and why (`detail` is for people)."""

    rule: str
    key: str
    reason: SkipReason
    detail: str


_API_OF = {
    AppidKind.OFFICIAL_ACCOUNT: SendApi.SENDREDPACK,
    AppidKind.MINI_PROGRAM: SendApi.SENDMINIPROGRAMHB,
}


def natural_key(rule: str, transaction_id: str) -> str:
    """The payout's natural key: one red packet per rule and payment."""
    return f"{Origin.RULE.key_prefix}{rule}:{transaction_id}"


def evaluate(
    payment: Payment,
    rules: Iterable[Rule],
    *,
    appid_kind: Callable[[str], AppidKind],
    history: CustomerHistory,
) -> list[Match | Skip]:
    """Judge `payment` against each of `rules` (in order): a `Match` or a `Skip` for each.

    `rules` are those of the merchant whose key verified the notification (`rules_for`);
    `appid_kind` tells what the payment's appid is; `history` is the customer's past.

    >>> evaluate(payment, rules_for(rules.values(), "shop"),  # doctest: +SKIP
    ...          appid_kind=kinds.get, history=ledger_history)
    [Match(rule='big_spender', …, api=<SendApi.SENDREDPACK: 'sendredpack'>, amount_fen=188, …)]
    """
    return [_judge(payment, rule, appid_kind, history) for rule in rules]


def _judge(
    payment: Payment,
    rule: Rule,
    appid_kind: Callable[[str], AppidKind],
    history: CustomerHistory,
) -> Match | Skip:
    key = natural_key(rule.name, payment.transaction_id)

    def skip(reason: SkipReason, detail: str) -> Skip:
        return Skip(rule.name, key, reason, detail)

    cond = rule.conditions
    if payment.result_code != "SUCCESS":
        return skip(SkipReason.PAYMENT_FAILED, f"result_code is {payment.result_code}")
    if cond.start is not None and payment.time_end < cond.start:
        return skip(SkipReason.OUTSIDE_WINDOW, f"paid before the rule starts ({_at(cond.start)})")
    if cond.end is not None and payment.time_end >= cond.end:
        return skip(SkipReason.OUTSIDE_WINDOW, f"paid after the rule ended ({_at(cond.end)})")
    if cond.appids is not None and payment.appid not in cond.appids:
        return skip(SkipReason.APPID_NOT_LISTED, f"appid {payment.appid} is not in appids")
    if cond.trade_types is not None and payment.trade_type not in cond.trade_types:
        return skip(SkipReason.TRADE_TYPE, f"trade_type {payment.trade_type} is not in trade_types")
    if payment.total_fee < cond.min_total_fee:
        return skip(
            SkipReason.BELOW_THRESHOLD,
            f"total_fee {payment.total_fee} is below min_total_fee {cond.min_total_fee}",
        )
    if cond.max_total_fee is not None and payment.total_fee > cond.max_total_fee:
        return skip(
            SkipReason.ABOVE_MAXIMUM,
            f"total_fee {payment.total_fee} is above max_total_fee {cond.max_total_fee}",
        )
    if cond.attach is not None and payment.attach != cond.attach:
        return skip(SkipReason.ATTACH_MISMATCH, f"attach {payment.attach!r} is not {cond.attach!r}")
    kind = appid_kind(payment.appid)
    api = _API_OF.get(kind)
    if api is None:
        if kind is AppidKind.APP:
            return skip(
                SkipReason.APP_APPID,
                f"paid in an app (appid {payment.appid}): its openid cannot receive a red packet",
            )
        return skip(
            SkipReason.UNKNOWN_APPID,
            f"appid {payment.appid} is not configured for the merchant: which API would pay "
            "its openid is unknown",
        )
    if cond.first_payment_only and history.paid_before(
        payment.mch_id, payment.openid, excluding=payment.transaction_id
    ):
        return skip(SkipReason.NOT_FIRST_PAYMENT, "the customer has paid the merchant before")
    amount = rule.reward.amount_for(payment)
    # Parsing makes min_total_fee at least the first tier, so a tier is always met here.
    assert amount is not None
    if rule.per_customer_limit is not None:
        count = history.rewards(rule.name, payment.openid, excluding=key)
        if count >= rule.per_customer_limit:
            return skip(
                SkipReason.CUSTOMER_LIMIT,
                f"the customer already has {count} of at most {rule.per_customer_limit}",
            )
    if rule.per_customer_daily_limit is not None:
        count = history.rewards_on(rule.name, payment.openid, payment.day, excluding=key)
        if count >= rule.per_customer_daily_limit:
            return skip(
                SkipReason.DAILY_LIMIT,
                f"the customer already has {count} of at most {rule.per_customer_daily_limit} "
                f"on {payment.day.isoformat()}",
            )
    committed = history.committed_fen(rule.name, excluding=key)
    if committed + amount > rule.budget_fen:
        return skip(
            SkipReason.BUDGET_EXHAUSTED,
            f"{format_yuan(amount)} more would exceed the budget of {format_yuan(rule.budget_fen)}"
            f" yuan ({format_yuan(committed)} committed)",
        )
    return Match(rule.name, rule.merchant, key, api, amount, rule.template, payment)


def _at(moment: datetime) -> str:
    return f"{moment.astimezone(CST):%Y-%m-%d %H:%M:%S} UTC+8"
