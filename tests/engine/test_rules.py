"""满额送 rules: loading `[rules.NAME]` tables, and judging payments against them."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hongbao.clock import CST
from hongbao.engine.rules import (
    RULE_KEYS,
    AppidKind,
    FixedReward,
    Match,
    Payment,
    PaymentError,
    RandomReward,
    Rule,
    Skip,
    SkipReason,
    Template,
    Tier,
    TieredReward,
    evaluate,
    natural_key,
    parse_rule,
    parse_rules,
    rules_for,
)
from hongbao.errors import ConfigurationError
from hongbao.ledger.records import SendApi

OA = "wx2421b1c4370ec43b"
MINI = "wxd678efh567hg6787"
APP = "wx0123456789abcdef"
KINDS = {OA: AppidKind.OFFICIAL_ACCOUNT, MINI: AppidKind.MINI_PROGRAM, APP: AppidKind.APP}

BASE: dict[str, Any] = {
    "merchant": "shop",
    "min_total_fee": 10000,
    "amount": "1.88",
    "send_name": "Acme",
    "wishing": "Thank you!",
    "act_name": "Spend and get",
    "remark": "Spring promotion",
    "budget": "100",
}


def _rule(name: str = "r", **changes: Any) -> Rule:
    table = {**BASE, **changes}
    return parse_rule(name, {k: v for k, v in table.items() if v is not None})


def _kind(appid: str) -> AppidKind:
    return KINDS.get(appid, AppidKind.UNKNOWN)


def _fields(**changes: str) -> dict[str, str]:
    fields = {
        "return_code": "SUCCESS",
        "appid": OA,
        "mch_id": "1900000109",
        "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "result_code": "SUCCESS",
        "openid": "oxTWIuGaIt6gTKsQRLau2M0yL16E",
        "trade_type": "JSAPI",
        "bank_type": "CMC",
        "total_fee": "10000",
        "fee_type": "CNY",
        "cash_fee": "10000",
        "transaction_id": "42000012345202403151234567890123",
        "out_trade_no": "order-1",
        "time_end": "20240315120000",
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v != ""}


def _payment(**changes: str) -> Payment:
    return Payment.from_fields(_fields(**changes))


@dataclass
class FakeHistory:
    """A customer history held in dicts; remembers what it was asked to leave out."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    daily: dict[tuple[str, str, date], int] = field(default_factory=dict)
    earlier_payers: set[tuple[str, str]] = field(default_factory=set)
    committed: dict[str, int] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)

    def rewards(self, rule: str, openid: str, *, excluding: str) -> int:
        self.excluded.append(excluding)
        return self.counts.get((rule, openid), 0)

    def rewards_on(self, rule: str, openid: str, day: date, *, excluding: str) -> int:
        self.excluded.append(excluding)
        return self.daily.get((rule, openid, day), 0)

    def paid_before(self, mch_id: str, openid: str, *, excluding: str) -> bool:
        self.excluded.append(excluding)
        return (mch_id, openid) in self.earlier_payers

    def committed_fen(self, rule: str, *, excluding: str) -> int:
        self.excluded.append(excluding)
        return self.committed.get(rule, 0)


def _judge(payment: Payment, rule: Rule, history: FakeHistory | None = None) -> Match | Skip:
    [result] = evaluate(payment, [rule], appid_kind=_kind, history=history or FakeHistory())
    return result


def _reason(result: Match | Skip) -> SkipReason | None:
    return result.reason if isinstance(result, Skip) else None


# --- loading -------------------------------------------------------------------------------

CONFIG = """
[rules.big_spender]
merchant = "shop"
start = 2024-03-15T00:00:00
end = 2024-04-01
min_total_fee = 10000
max_total_fee = 1000000
appids = ["wx2421b1c4370ec43b"]
trade_types = ["JSAPI", "NATIVE"]
first_payment_only = true
attach = "spring"
tiers = [{min_total_fee = 10000, amount = "1.88"}, {min_total_fee = 50000, amount = "8.88"}]
send_name = "Acme"
wishing = "Thank you!"
act_name = "Spend and get"
remark = "Spring promotion"
scene_id = "PRODUCT_1"
per_customer_limit = 3
per_customer_daily_limit = 1
budget = "5000"

[rules.lucky]
merchant = "shop"
min_total_fee = 100
random_min = "1.00"
random_max = "2.50"
seed = 42
send_name = "Acme"
wishing = "Lucky you"
act_name = "Lucky draw"
remark = "Random"
budget = "10.50"
"""


def test_a_toml_rules_table_loads_into_rules() -> None:
    rules = parse_rules(tomllib.loads(CONFIG)["rules"], merchants={"shop"})
    big, lucky = rules["big_spender"], rules["lucky"]
    assert big.merchant == "shop"
    assert big.conditions.start == datetime(2024, 3, 15, tzinfo=CST)
    # A bare date as the end means "up to and including that day".
    assert big.conditions.end == datetime(2024, 4, 2, tzinfo=CST)
    assert big.conditions.min_total_fee == 10000
    assert big.conditions.max_total_fee == 1000000
    assert big.conditions.appids == frozenset({OA})
    assert big.conditions.trade_types == frozenset({"JSAPI", "NATIVE"})
    assert big.conditions.first_payment_only is True
    assert big.conditions.attach == "spring"
    assert big.reward == TieredReward((Tier(10000, 188), Tier(50000, 888)))
    assert big.template == Template(
        "Acme", "Thank you!", "Spend and get", "Spring promotion", "PRODUCT_1"
    )
    assert (big.per_customer_limit, big.per_customer_daily_limit) == (3, 1)
    assert big.budget_fen == 500000
    assert lucky.reward == RandomReward(100, 250, "42")
    assert lucky.budget_fen == 1050
    assert lucky.conditions.start is None
    assert lucky.conditions.end is None
    assert lucky.per_customer_limit is None


def test_minimal_rule_defaults() -> None:
    rule = _rule()
    assert rule.reward == FixedReward(188)
    assert rule.conditions.max_total_fee is None
    assert rule.conditions.appids is None
    assert rule.conditions.trade_types is None
    assert rule.conditions.first_payment_only is False
    assert rule.template.scene_id is None


def test_times_without_offset_are_beijing_time_and_offsets_are_kept() -> None:
    rule = _rule(start="2024-03-15 08:00:00", end=datetime(2024, 3, 15, 10, 0, tzinfo=CST))
    assert rule.conditions.start == datetime(2024, 3, 15, 8, tzinfo=CST)
    utc = _rule(start="2024-03-15T00:00:00+00:00")
    assert utc.conditions.start == datetime(2024, 3, 15, 8, tzinfo=CST)
    assert _rule(end="2024-03-31").conditions.end == datetime(2024, 4, 1, tzinfo=CST)
    assert _rule(start=date(2024, 3, 31)).conditions.start == datetime(2024, 3, 31, tzinfo=CST)


def test_tiers_without_min_total_fee_start_at_the_first_tier() -> None:
    rule = _rule(
        min_total_fee=None,
        amount=None,
        tiers=[{"min_total_fee": 5000, "amount": "1"}, {"min_total_fee": 9000, "amount": "2"}],
    )
    assert rule.conditions.min_total_fee == 5000


def test_random_seed_defaults_to_the_rule_name() -> None:
    rule = _rule("lucky", amount=None, random_min="1", random_max="2")
    assert rule.reward == RandomReward(100, 200, "lucky")


def test_a_scene_widens_the_reward_range_to_the_platform_bounds() -> None:
    assert _rule(amount="0.30", scene_id="PRODUCT_2").reward == FixedReward(30)
    assert _rule(amount="4999", scene_id="PRODUCT_2", budget="5000").reward == FixedReward(499900)


BAD_RULES: list[tuple[dict[str, Any], str, str]] = [
    ({"amount": "1.005"}, "amount", "not a valid yuan amount"),
    ({"amount": 1.88}, "amount", 'as a string, e.g. "1.88"'),
    ({"amount": 2}, "amount", "as a string"),
    ({"amount": "0"}, "amount", "more than 0"),
    ({"amount": "0.99"}, "amount", "outside the red packet range 1.00–200.00 yuan"),
    ({"amount": "200.01"}, "amount", "give a scene_id"),
    ({"amount": "0.29", "scene_id": "PRODUCT_1"}, "amount", "0.30–4999.00"),
    ({"amount": "5000", "scene_id": "PRODUCT_1", "budget": "9999"}, "amount", "0.30–4999.00"),
    ({"amount": None}, "amount", "reward missing"),
    (
        {"tiers": [{"min_total_fee": 10000, "amount": "1"}]},
        "amount",
        "several ways (amount and tiers)",
    ),
    ({"random_min": "1", "random_max": "2"}, "amount", "several ways"),
    ({"seed": 1}, "seed", "only a random reward"),
    ({"amount": None, "tiers": []}, "tiers", "non-empty list"),
    ({"amount": None, "tiers": ["1.88"]}, "tiers[0]", "must be a table"),
    (
        {
            "amount": None,
            "tiers": [
                {"min_total_fee": 10000, "amount": "1"},
                {"min_total_fee": 10000, "amount": "2"},
            ],
        },
        "tiers[1].min_total_fee",
        "ascending order and may not overlap",
    ),
    (
        {
            "amount": None,
            "tiers": [
                {"min_total_fee": 20000, "amount": "1"},
                {"min_total_fee": 10000, "amount": "2"},
            ],
        },
        "tiers[1].min_total_fee",
        "must be more than the previous tier's 20000",
    ),
    (
        {"amount": None, "tiers": [{"min_total_fee": 10000, "amount": "1", "max": 5}]},
        "tiers[0].max",
        "unknown key",
    ),
    ({"amount": None, "tiers": [{"min_total_fee": 10000}]}, "tiers[0].amount", "missing"),
    (
        {"amount": None, "tiers": [{"min_total_fee": 10000, "amount": "300"}]},
        "tiers[0].amount",
        "outside the red packet range",
    ),
    (
        {"amount": None, "tiers": [{"min_total_fee": "100", "amount": "1"}]},
        "tiers[0].min_total_fee",
        "whole number of fen",
    ),
    (
        {"min_total_fee": 5000, "amount": None, "tiers": [{"min_total_fee": 10000, "amount": "1"}]},
        "min_total_fee",
        "below the first tier",
    ),
    ({"amount": None, "random_min": "2", "random_max": "2"}, "random_max", "must be more than"),
    ({"amount": None, "random_min": "2"}, "random_max", "needs both"),
    (
        {"amount": None, "random_min": "0.5", "random_max": "2"},
        "random_min",
        "outside the red packet range",
    ),
    ({"amount": None, "random_min": "1", "random_max": "2", "seed": True}, "seed", "string"),
    ({"amount": None, "random_min": "1", "random_max": "2", "seed": ""}, "seed", "non-empty"),
    ({"min_total_fee": None}, "min_total_fee", "missing"),
    ({"min_total_fee": 0}, "min_total_fee", "at least 1 fen"),
    ({"min_total_fee": "10000"}, "min_total_fee", "whole number of fen"),
    ({"min_total_fee": True}, "min_total_fee", "whole number of fen"),
    ({"min_total_fee": 100.0}, "min_total_fee", "whole number of fen"),
    ({"max_total_fee": 9999}, "max_total_fee", "less than min_total_fee 10000"),
    ({"start": "2024-03-15", "end": "2024-03-14"}, "end", "is not after start"),
    (
        {"start": datetime(2024, 3, 15, 10, tzinfo=CST), "end": "2024-03-15T10:00:00"},
        "end",
        "is not after start",
    ),
    ({"start": "next monday"}, "start", "not a date-time"),
    ({"start": 20240315}, "start", "date-time"),
    ({"trade_types": ["MICROPAY"]}, "trade_types", "have no notification"),
    ({"trade_types": ["jsapi"]}, "trade_types", "not one of APP, JSAPI, MWEB, NATIVE"),
    ({"trade_types": "JSAPI"}, "trade_types", "list of strings"),
    ({"appids": []}, "appids", "non-empty list"),
    ({"appids": [OA, OA]}, "appids", "twice"),
    ({"appids": [OA, 7]}, "appids", "non-empty strings"),
    ({"first_payment_only": "yes"}, "first_payment_only", "true or false"),
    ({"attach": "x" * 129}, "attach", "128"),
    ({"attach": ""}, "attach", "non-empty string"),
    ({"send_name": "x" * 33}, "send_name", "more than the 32 allowed"),
    ({"wishing": None}, "wishing", "missing"),
    ({"act_name": " Promo"}, "act_name", "whitespace"),
    ({"remark": 5}, "remark", "non-empty string"),
    ({"scene_id": "PRODUCT_9"}, "scene_id", "PRODUCT_1 … PRODUCT_8"),
    ({"per_customer_limit": 0}, "per_customer_limit", ">= 1"),
    ({"per_customer_daily_limit": True}, "per_customer_daily_limit", ">= 1"),
    ({"per_customer_limit": 1.0}, "per_customer_limit", ">= 1"),
    ({"budget": None}, "budget", "missing"),
    ({"budget": 100}, "budget", "as a string"),
    ({"budget": "1.87"}, "budget", "less than the smallest reward (1.88 yuan)"),
    ({"merchant": None}, "merchant", "missing"),
    ({"merchant": ""}, "merchant", "non-empty string"),
    ({"min_total_fees": 100}, "min_total_fees", "unknown key"),
]


@pytest.mark.parametrize(("changes", "key", "problem"), BAD_RULES)
def test_an_invalid_rule_is_refused_naming_rule_field_and_problem(
    changes: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _rule("big_spender", **changes)
    message = str(caught.value)
    assert message.startswith(f"rules.big_spender.{key}: "), message
    assert problem in message


def test_errors_carry_the_given_location() -> None:
    with pytest.raises(ConfigurationError, match=r"^hongbao.toml rules.r.amount: "):
        parse_rule("r", {**BASE, "amount": "x"}, where="hongbao.toml")


@pytest.mark.parametrize("name", ["", "a:b", "a b", "x" * 65, "规则"])
def test_a_rule_name_must_be_usable_in_a_key(name: str) -> None:
    with pytest.raises(ConfigurationError, match="1 to 64 letters"):
        parse_rule(name, BASE)


def test_parse_rules_refuses_an_unknown_merchant_and_a_non_table() -> None:
    with pytest.raises(ConfigurationError, match=r"rules.r.merchant: 'shop' is not a merchant"):
        parse_rules({"r": BASE}, merchants={"other"})
    with pytest.raises(ConfigurationError, match=r"rules.r: must be a table"):
        parse_rules({"r": "amount"})
    assert set(parse_rules({"r": BASE})) == {"r"}


def test_rule_keys_are_the_contract_of_the_issue() -> None:
    assert {
        "merchant",
        "start",
        "end",
        "min_total_fee",
        "max_total_fee",
        "appids",
        "trade_types",
        "first_payment_only",
        "attach",
        "amount",
        "tiers",
        "send_name",
        "wishing",
        "act_name",
        "remark",
        "scene_id",
        "per_customer_limit",
        "per_customer_daily_limit",
        "budget",
    } <= RULE_KEYS


# --- payments ------------------------------------------------------------------------------


def test_a_payment_is_read_from_notification_fields() -> None:
    payment = Payment.from_fields({**_fields(attach="spring", coupon_fee="100"), "sign": "S"})
    assert payment.appid == OA
    assert payment.total_fee == 10000
    assert payment.cash_fee == 10000
    assert payment.time_end == datetime(2024, 3, 15, 12, tzinfo=CST)
    assert payment.day == date(2024, 3, 15)
    assert payment.attach == "spring"
    assert payment.fields["coupon_fee"] == "100"
    assert "sign" not in payment.fields


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"openid": ""}, "missing field(s) openid"),
        ({"transaction_id": "", "time_end": ""}, "missing field(s) transaction_id, time_end"),
        ({"total_fee": "1.5"}, "total_fee '1.5' is not a whole number"),
        ({"cash_fee": "-1"}, "cash_fee '-1' is not a whole number"),
        ({"time_end": "2024-03-15 12:00"}, "not yyyyMMddHHmmss"),
        ({"time_end": "20240230120000"}, "not a real time"),
    ],
)
def test_a_malformed_payment_is_refused(changes: dict[str, str], problem: str) -> None:
    with pytest.raises(PaymentError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        _payment(**changes)


def test_a_nested_field_is_not_a_payment() -> None:
    with pytest.raises(PaymentError, match="not a plain value"):
        Payment.from_fields({**_fields(), "extra": [{"a": "b"}]})


# --- evaluation ----------------------------------------------------------------------------


def test_an_official_account_payment_matches_with_sendredpack() -> None:
    payment = _payment()
    result = _judge(payment, _rule("big_spender"))
    assert result == Match(
        rule="big_spender",
        merchant="shop",
        key="rule:big_spender:42000012345202403151234567890123",
        api=SendApi.SENDREDPACK,
        amount_fen=188,
        template=Template("Acme", "Thank you!", "Spend and get", "Spring promotion"),
        payment=payment,
    )
    assert result.key == natural_key("big_spender", payment.transaction_id)


def test_a_mini_program_payment_matches_with_sendminiprogramhb() -> None:
    result = _judge(_payment(appid=MINI), _rule())
    assert isinstance(result, Match)
    assert result.api is SendApi.SENDMINIPROGRAMHB


def test_an_app_payment_is_skipped_with_the_reason() -> None:
    result = _judge(_payment(appid=APP, trade_type="APP"), _rule())
    assert isinstance(result, Skip)
    assert result.reason is SkipReason.APP_APPID
    assert "cannot receive a red packet" in result.detail
    assert result.key == "rule:r:42000012345202403151234567890123"


def test_an_appid_the_merchant_does_not_know_is_skipped() -> None:
    assert _reason(_judge(_payment(appid="wxstranger"), _rule())) is SkipReason.UNKNOWN_APPID


@pytest.mark.parametrize(
    ("rule_changes", "payment_changes", "reason"),
    [
        ({}, {"result_code": "FAIL"}, SkipReason.PAYMENT_FAILED),
        ({}, {"total_fee": "9999"}, SkipReason.BELOW_THRESHOLD),
        ({"max_total_fee": 20000}, {"total_fee": "20001"}, SkipReason.ABOVE_MAXIMUM),
        ({"start": "2024-03-15T12:00:01"}, {}, SkipReason.OUTSIDE_WINDOW),
        ({"end": "2024-03-15T12:00:00"}, {}, SkipReason.OUTSIDE_WINDOW),
        ({"appids": [MINI]}, {}, SkipReason.APPID_NOT_LISTED),
        ({"trade_types": ["NATIVE"]}, {}, SkipReason.TRADE_TYPE),
        ({"attach": "spring"}, {}, SkipReason.ATTACH_MISMATCH),
        ({"attach": "spring"}, {"attach": "summer"}, SkipReason.ATTACH_MISMATCH),
    ],
)
def test_a_condition_not_met_is_skipped_with_its_reason(
    rule_changes: dict[str, Any], payment_changes: dict[str, str], reason: SkipReason
) -> None:
    result = _judge(_payment(**payment_changes), _rule(**rule_changes))
    assert _reason(result) is reason


@pytest.mark.parametrize(
    ("rule_changes", "payment_changes"),
    [
        ({"max_total_fee": 20000}, {"total_fee": "20000"}),
        ({"start": "2024-03-15T12:00:00"}, {}),
        ({"end": "2024-03-15T12:00:01"}, {}),
        ({"end": "2024-03-15"}, {"time_end": "20240315235959"}),
        ({"appids": [MINI, OA]}, {}),
        ({"trade_types": ["NATIVE", "JSAPI"]}, {}),
        ({"attach": "spring"}, {"attach": "spring"}),
    ],
)
def test_a_condition_met_exactly_matches(
    rule_changes: dict[str, Any], payment_changes: dict[str, str]
) -> None:
    payment = _payment(**payment_changes)
    # The payout the rule plans: its key, the API the appid needs, the amount, the texts.
    assert _judge(payment, _rule(**rule_changes)) == Match(
        rule="r",
        merchant="shop",
        key=natural_key("r", payment.transaction_id),
        api=SendApi.SENDREDPACK,
        amount_fen=188,
        template=Template("Acme", "Thank you!", "Spend and get", "Spring promotion"),
        payment=payment,
    )


def test_first_payment_only_asks_about_other_payments_than_this_one() -> None:
    rule = _rule(first_payment_only=True)
    payment = _payment()
    history = FakeHistory()
    assert isinstance(_judge(payment, rule, history), Match)
    assert payment.transaction_id in history.excluded
    history.earlier_payers.add((payment.mch_id, payment.openid))
    assert _reason(_judge(payment, rule, history)) is SkipReason.NOT_FIRST_PAYMENT
    # Without the condition, an earlier payment does not matter.
    assert isinstance(_judge(payment, _rule(), history), Match)


def test_per_customer_limit() -> None:
    rule = _rule(per_customer_limit=2)
    payment = _payment()
    history = FakeHistory(counts={("r", payment.openid): 1})
    assert isinstance(_judge(payment, rule, history), Match)
    assert natural_key("r", payment.transaction_id) in history.excluded
    history.counts[("r", payment.openid)] = 2
    result = _judge(payment, rule, history)
    assert _reason(result) is SkipReason.CUSTOMER_LIMIT
    assert isinstance(result, Skip)
    assert "2 of at most 2" in result.detail
    # Another customer, or another rule's count, is not limited.
    assert isinstance(_judge(_payment(openid="oOther"), rule, history), Match)
    assert isinstance(_judge(payment, _rule("other", per_customer_limit=2), history), Match)


def test_daily_limit_counts_the_payments_utc8_day() -> None:
    rule = _rule(per_customer_daily_limit=1)
    openid = _payment().openid
    history = FakeHistory(daily={("r", openid, date(2024, 3, 15)): 1})
    late = _payment(time_end="20240315235959")
    assert _reason(_judge(late, rule, history)) is SkipReason.DAILY_LIMIT
    next_day = _payment(time_end="20240316000000")
    assert isinstance(_judge(next_day, rule, history), Match)


def test_budget_is_respected_to_the_fen() -> None:
    rule = _rule(budget="10")  # 1000 fen, rewards of 188
    payment = _payment()
    assert isinstance(_judge(payment, rule, FakeHistory(committed={"r": 1000 - 188})), Match)
    result = _judge(payment, rule, FakeHistory(committed={"r": 1000 - 187}))
    assert _reason(result) is SkipReason.BUDGET_EXHAUSTED
    assert isinstance(result, Skip)
    assert "8.13 committed" in result.detail


def test_tiers_pay_the_highest_tier_met() -> None:
    rule = _rule(
        min_total_fee=None,
        amount=None,
        tiers=[
            {"min_total_fee": 10000, "amount": "1.88"},
            {"min_total_fee": 50000, "amount": "8.88"},
            {"min_total_fee": 100000, "amount": "18.88"},
        ],
    )
    amounts = {
        fee: _judge(_payment(total_fee=str(fee)), rule)
        for fee in (9999, 10000, 49999, 50000, 99999, 100000, 10**7)
    }
    assert _reason(amounts.pop(9999)) is SkipReason.BELOW_THRESHOLD
    assert {fee: getattr(r, "amount_fen", None) for fee, r in amounts.items()} == {
        10000: 188,
        49999: 188,
        50000: 888,
        99999: 888,
        100000: 1888,
        10**7: 1888,
    }


def test_random_amounts_are_fixed_by_seed_and_transaction() -> None:
    rule = _rule(amount=None, random_min="1", random_max="200", budget="1000")
    draws = {}
    for n in range(40):
        payment = _payment(transaction_id=f"4200{n:028d}")
        first, again = _judge(payment, rule), _judge(payment, rule)
        assert isinstance(first, Match)
        assert first == again
        draws[payment.transaction_id] = first.amount_fen
    assert all(100 <= amount <= 20000 for amount in draws.values())
    assert len(set(draws.values())) > 1
    reseeded = _rule(amount=None, random_min="1", random_max="200", budget="1000", seed="other")
    redraws = [
        getattr(_judge(_payment(transaction_id=txid), reseeded), "amount_fen", None)
        for txid in draws
    ]
    assert redraws != list(draws.values())


def test_one_result_per_rule_in_order_and_rules_for_a_merchant() -> None:
    rules = [_rule("a"), _rule("b", merchant="other"), _rule("c", min_total_fee=20000)]
    results = evaluate(_payment(), rules, appid_kind=_kind, history=FakeHistory())
    assert [r.rule for r in results] == ["a", "b", "c"]
    assert [type(r) for r in results] == [Match, Match, Skip]
    assert [r.name for r in rules_for(rules, "shop")] == ["a", "c"]


# --- properties ----------------------------------------------------------------------------

_fees = st.integers(min_value=1, max_value=10**8)
_amounts = st.integers(min_value=100, max_value=20000)


@st.composite
def _rules(draw: st.DrawFn, name: str = "r") -> Rule:
    table: dict[str, Any] = {k: v for k, v in BASE.items() if k not in ("amount", "min_total_fee")}
    kind = draw(st.sampled_from(["amount", "tiers", "random"]))
    if kind == "amount":
        table["amount"] = _yuan(draw(_amounts))
        table["min_total_fee"] = draw(_fees)
    elif kind == "tiers":
        mins = sorted(draw(st.sets(_fees, min_size=1, max_size=5)))
        table["tiers"] = [{"min_total_fee": fee, "amount": _yuan(draw(_amounts))} for fee in mins]
    else:
        low = draw(st.integers(min_value=100, max_value=19999))
        table["random_min"] = _yuan(low)
        table["random_max"] = _yuan(draw(st.integers(min_value=low + 1, max_value=20000)))
        table["seed"] = draw(st.integers(min_value=0, max_value=10**6))
        table["min_total_fee"] = draw(_fees)
    if draw(st.booleans()):
        table["max_total_fee"] = draw(_fees) + table.get("min_total_fee", 10**8)
    for key in ("per_customer_limit", "per_customer_daily_limit"):
        if draw(st.booleans()):
            table[key] = draw(st.integers(min_value=1, max_value=5))
    table["first_payment_only"] = draw(st.booleans())
    table["budget"] = _yuan(draw(st.integers(min_value=20000, max_value=10**7)))
    return parse_rule(name, table)


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _payments_paying(fees: st.SearchStrategy[int]) -> st.SearchStrategy[Payment]:
    return st.builds(
        lambda fee, appid, txid, minute, result: _payment(
            total_fee=str(fee),
            cash_fee=str(fee),
            appid=appid,
            transaction_id=txid,
            time_end=(datetime(2024, 3, 15, tzinfo=CST) + timedelta(minutes=minute)).strftime(
                "%Y%m%d%H%M%S"
            ),
            result_code=result,
        ),
        fees,
        st.sampled_from([OA, MINI, APP, "wxstranger"]),
        st.text("0123456789", min_size=28, max_size=32),
        st.integers(min_value=0, max_value=60 * 24 * 3),
        st.sampled_from(["SUCCESS", "SUCCESS", "FAIL"]),
    )


_payments = _payments_paying(_fees)


@st.composite
def _histories(draw: st.DrawFn, payment: Payment) -> FakeHistory:
    day = payment.day
    return FakeHistory(
        counts={("r", payment.openid): draw(st.integers(0, 6))},
        daily={("r", payment.openid, day): draw(st.integers(0, 6))},
        earlier_payers={(payment.mch_id, payment.openid)} if draw(st.booleans()) else set(),
        committed={"r": draw(st.integers(0, 10**7))},
    )


@given(st.data(), _payments, st.lists(_rules(), min_size=1, max_size=3))
def test_evaluation_is_deterministic(
    data: st.DataObject, payment: Payment, rules: list[Rule]
) -> None:
    history = data.draw(_histories(payment))
    first = evaluate(payment, rules, appid_kind=_kind, history=history)
    again = evaluate(payment, rules, appid_kind=_kind, history=history)
    assert first == again
    assert [r.key for r in first] == [
        natural_key(rule.name, payment.transaction_id) for rule in rules
    ]


@given(st.data(), _rules())
def test_no_match_below_min_total_fee(data: st.DataObject, rule: Rule) -> None:
    minimum = rule.conditions.min_total_fee
    assume(minimum > 1)
    payment = data.draw(_payments_paying(st.integers(min_value=1, max_value=minimum - 1)))
    paid = payment.result_code == "SUCCESS"
    assert _reason(_judge(payment, rule)) is (
        SkipReason.BELOW_THRESHOLD if paid else SkipReason.PAYMENT_FAILED
    )


@given(
    st.lists(st.tuples(_fees, _amounts), min_size=1, max_size=6, unique_by=lambda t: t[0]),
    _fees,
)
def test_tiers_pick_the_highest_tier_met(tiers: list[tuple[int, int]], fee: int) -> None:
    ordered = sorted(tiers)
    rule = _rule(
        min_total_fee=None,
        amount=None,
        budget="1000000",
        tiers=[{"min_total_fee": m, "amount": _yuan(a)} for m, a in ordered],
    )
    met = [amount for minimum, amount in tiers if minimum <= fee]
    result = _judge(_payment(total_fee=str(fee)), rule)
    if met:
        assert isinstance(result, Match)
        highest = max(minimum for minimum, _ in tiers if minimum <= fee)
        assert result.amount_fen == dict(tiers)[highest]
    else:
        assert _reason(result) is SkipReason.BELOW_THRESHOLD


@given(st.data(), _payments, _rules())
def test_limits_and_budget_are_respected_given_the_history(
    data: st.DataObject, payment: Payment, rule: Rule
) -> None:
    history = data.draw(_histories(payment))
    result = _judge(payment, rule, history)
    count = history.counts[("r", payment.openid)]
    daily = history.daily[("r", payment.openid, payment.day)]
    committed = history.committed["r"]
    if isinstance(result, Match):
        assert rule.per_customer_limit is None or count < rule.per_customer_limit
        assert rule.per_customer_daily_limit is None or daily < rule.per_customer_daily_limit
        assert committed + result.amount_fen <= rule.budget_fen
        assert not (rule.conditions.first_payment_only and history.earlier_payers)
        assert payment.result_code == "SUCCESS"
        assert _kind(payment.appid) in {AppidKind.OFFICIAL_ACCOUNT, AppidKind.MINI_PROGRAM}
        low, high = rule.reward.bounds
        assert low <= result.amount_fen <= high
    else:
        # A rule only gives nothing for a reason that the facts bear out.
        expected: Mapping[SkipReason, bool] = {
            SkipReason.CUSTOMER_LIMIT: rule.per_customer_limit is not None
            and count >= rule.per_customer_limit,
            SkipReason.DAILY_LIMIT: rule.per_customer_daily_limit is not None
            and daily >= rule.per_customer_daily_limit,
            SkipReason.NOT_FIRST_PAYMENT: rule.conditions.first_payment_only
            and bool(history.earlier_payers),
            SkipReason.PAYMENT_FAILED: payment.result_code != "SUCCESS",
            SkipReason.BELOW_THRESHOLD: payment.total_fee < rule.conditions.min_total_fee,
            SkipReason.APP_APPID: payment.appid == APP,
            SkipReason.UNKNOWN_APPID: payment.appid == "wxstranger",
        }
        assert expected.get(result.reason, True), result
    if isinstance(result, Skip) and result.reason is SkipReason.BUDGET_EXHAUSTED:
        amount = rule.reward.amount_for(payment)
        assert amount is not None
        assert committed + amount > rule.budget_fen
