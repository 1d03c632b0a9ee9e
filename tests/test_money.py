"""Strict yuan parsing and formatting over integer fen."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.money import MoneyError, format_yuan, parse_yuan

MAX_FEN = 10**14 - 1  # twelve digits of yuan, two of fen


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0", 0),
        ("0.00", 0),
        ("0.01", 1),
        ("1", 100),
        ("1.5", 150),
        ("1.50", 150),
        ("200", 20000),
        ("4999.00", 499900),
        ("999999999999.99", MAX_FEN),
    ],
)
def test_plain_amounts_parse_to_exact_fen(text: str, fen: int) -> None:
    parsed = parse_yuan(text)

    assert parsed == fen
    assert type(parsed) is int


@pytest.mark.parametrize(
    "text",
    [
        "1.005",  # a third decimal is never rounded away
        "0.001",
        "-1",
        "+1",
        "1e2",
        "abc",
        " 1",
        "1 ",
        "1\n",
        "1.",
        ".5",
        "",
        "1,00",
        "1,000.00",
        "01",  # leading zeros are refused: they hint at a column that is not an amount
        "00.5",
        "1.0.0",
        "1_000",
        "0x10",
        "NaN",
        "inf",
        "１",  # full-width digit
        "١",  # Arabic-Indic digit
        "1000000000000",  # thirteen digits of yuan
    ],
)
def test_anything_else_is_refused_and_the_message_names_the_value(text: str) -> None:
    with pytest.raises(MoneyError) as caught:
        parse_yuan(text)

    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("value", [1, 1.5, Decimal("1.50"), None, b"1"])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(MoneyError, match="string"):
        parse_yuan(value)  # type: ignore[arg-type]


def test_money_error_is_a_value_error() -> None:
    assert issubclass(MoneyError, ValueError)


@pytest.mark.parametrize(
    ("fen", "text"),
    [(0, "0.00"), (1, "0.01"), (10, "0.10"), (150, "1.50"), (100000, "1000.00"), (-5, "-0.05")],
)
def test_format_always_has_two_decimals(fen: int, text: str) -> None:
    assert format_yuan(fen) == text


@given(st.integers(min_value=0, max_value=MAX_FEN))
def test_property_format_then_parse_is_the_identity(fen: int) -> None:
    assert parse_yuan(format_yuan(fen)) == fen


@given(st.from_regex(r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?", fullmatch=True))
def test_property_accepted_text_is_worth_exactly_its_decimal_value(text: str) -> None:
    assert parse_yuan(text) == Decimal(text) * 100
