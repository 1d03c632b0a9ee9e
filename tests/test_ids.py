"""Bill numbers (the idempotency key of every red packet) and nonces."""

from __future__ import annotations

import itertools
import re
import string
from datetime import UTC, datetime

import pytest

from hongbao.clock import CST
from hongbao.ids import (
    LEDGER_IDS,
    MAX_BILL_NO,
    NO_LEDGER,
    SERIALS_PER_DAY,
    BillNoError,
    mint_bill_no,
    mint_bill_nos,
    new_nonce,
    nonces,
    validate_bill_no,
)

MCH_ID = "1900000109"
WHEN = datetime(2024, 3, 15, 10, 0, tzinfo=CST)
PREFIX = MCH_ID + "20240315"


def test_bill_number_is_mch_id_date_and_ten_digits() -> None:
    bill = mint_bill_no(MCH_ID, WHEN, serial=42)

    assert bill == "1900000109" + "20240315" + "0000000042"
    assert len(bill) == MAX_BILL_NO == 28


def test_random_bill_numbers_have_the_same_shape_and_differ() -> None:
    bills = {mint_bill_no(MCH_ID, WHEN) for _ in range(200)}

    assert len(bills) == 200
    assert all(re.fullmatch(r"190000010920240315[0-9]{10}", bill) for bill in bills)


@pytest.mark.parametrize(
    ("when", "day"),
    [
        (datetime(2024, 3, 14, 17, 0, tzinfo=UTC), "20240315"),  # already the 15th in Beijing
        (datetime(2024, 3, 14, 16, 0, tzinfo=UTC), "20240315"),  # Beijing midnight exactly
        (datetime(2024, 3, 14, 15, 59, 59, tzinfo=UTC), "20240314"),
        (datetime(2024, 3, 15, 0, 0, tzinfo=CST), "20240315"),
        (datetime(2024, 12, 31, 23, 59, tzinfo=CST), "20241231"),
    ],
)
def test_the_date_is_the_beijing_calendar_day(when: datetime, day: str) -> None:
    assert mint_bill_no(MCH_ID, when, serial=1)[10:18] == day


def test_naive_datetime_is_refused_rather_than_read_as_local_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        mint_bill_no(MCH_ID, datetime(2024, 3, 15, 10, 0))


def test_shorter_mch_id_gives_a_shorter_bill_number() -> None:
    assert mint_bill_no("12345678", WHEN, serial=7) == "12345678202403150000000007"


@pytest.mark.parametrize("mch_id", ["", "19000001x9", "1900000109 ", "19000001090", "１９"])
def test_mch_id_must_be_at_most_ten_ascii_digits(mch_id: str) -> None:
    with pytest.raises(BillNoError, match="mch_id"):
        mint_bill_no(mch_id, WHEN, serial=1)


def test_the_ten_digits_are_the_ledger_identity_and_its_serial() -> None:
    assert mint_bill_no(MCH_ID, WHEN, 7, ledger_id=42) == PREFIX + "0126000007"
    assert mint_bill_nos(MCH_ID, WHEN, range(3), ledger_id=1) == [
        PREFIX + "0003000000",
        PREFIX + "0003000001",
        PREFIX + "0003000002",
    ]


@pytest.mark.parametrize(
    ("ledger_id", "serial", "digits"),
    [
        (NO_LEDGER, 0, "0000000000"),
        (NO_LEDGER, SERIALS_PER_DAY - 1, "0002999999"),
        (LEDGER_IDS[0], 0, "0003000000"),
        (LEDGER_IDS[-1], 0, "9996000000"),
        (LEDGER_IDS[-1], SERIALS_PER_DAY - 1, "9998999999"),
    ],
)
def test_every_identity_and_serial_fits_the_spec_format(
    ledger_id: int, serial: int, digits: str
) -> None:
    bill = mint_bill_no(MCH_ID, WHEN, serial, ledger_id=ledger_id)
    assert bill == PREFIX + digits
    assert len(bill) == MAX_BILL_NO
    assert bill.isdigit()
    assert validate_bill_no(bill) == bill


def test_a_day_of_one_ledger_is_more_than_wechat_can_send() -> None:
    assert SERIALS_PER_DAY >= 1800 * 60 * 24
    assert LEDGER_IDS.stop * SERIALS_PER_DAY <= 10**10
    assert len(LEDGER_IDS) == 3332


def test_adjacent_identities_never_share_a_bill_number() -> None:
    last_of_one = mint_bill_no(MCH_ID, WHEN, SERIALS_PER_DAY - 1, ledger_id=5)
    first_of_next = mint_bill_no(MCH_ID, WHEN, 0, ledger_id=6)
    assert int(last_of_one[-10:]) + 1 == int(first_of_next[-10:])


@pytest.mark.parametrize("serial", [-1, SERIALS_PER_DAY, 10**10])
def test_serial_must_be_within_a_ledgers_day(serial: int) -> None:
    # The message names the range an operator may use, to the last serial.
    expected = f"serial {serial} must be 0 to 2999999 "
    with pytest.raises(BillNoError, match=expected):
        mint_bill_no(MCH_ID, WHEN, serial=serial)
    with pytest.raises(BillNoError, match=expected):
        mint_bill_nos(MCH_ID, WHEN, [0, serial], ledger_id=3)


@pytest.mark.parametrize("ledger_id", [-1, LEDGER_IDS.stop])
def test_the_identity_must_leave_ten_digits(ledger_id: int) -> None:
    with pytest.raises(BillNoError, match=f"^ledger identity {ledger_id} must be 0 to 3332$"):
        mint_bill_no(MCH_ID, WHEN, 0, ledger_id=ledger_id)


def test_a_ledgers_bill_numbers_are_never_random() -> None:
    with pytest.raises(ValueError, match="serial"):
        mint_bill_no(MCH_ID, WHEN, ledger_id=3)


@pytest.mark.parametrize(
    "bill",
    [
        "1",
        "88888888",
        "2019100921WTCZP",
        "z1641319818986520576",
        "A" * 28,
        "1900000109202403150000000001",
    ],
)
def test_caller_supplied_bill_numbers_of_live_shapes_are_accepted(bill: str) -> None:
    assert validate_bill_no(bill) == bill


@pytest.mark.parametrize("bill", ["", "A" * 29, "ab-c", "a b", "a_b", "订单1", "１２３", "abc\n"])
def test_bill_numbers_wechat_would_refuse_are_refused_by_name(bill: str) -> None:
    with pytest.raises(BillNoError) as caught:
        validate_bill_no(bill)

    assert repr(bill) in str(caught.value)


def test_nonce_is_32_alphanumerics_by_default() -> None:
    nonce = new_nonce()

    assert len(nonce) == 32
    assert set(nonce) <= set(string.ascii_letters + string.digits)


def test_nonces_do_not_repeat() -> None:
    assert len({new_nonce() for _ in range(1000)}) == 1000


def test_nonces_are_lowercase_hex_digits() -> None:
    drawn = "".join(new_nonce() for _ in range(200))

    assert set(drawn) == set(string.hexdigits.lower())


def test_nonces_drawn_in_blocks_are_nonces_like_the_others() -> None:
    stream = nonces(block=4)
    drawn = [next(stream) for _ in range(1000)]

    assert len(set(drawn)) == 1000
    assert all(len(nonce) == 32 for nonce in drawn)
    assert set("".join(drawn)) == set(string.hexdigits.lower())
    # Each nonce is its own 128 bits: none is a neighbour's digits shifted along the block.
    assert not any(a[1:] == b[:-1] for a, b in itertools.pairwise(drawn))


@pytest.mark.parametrize("length", [1, 16, 32])
def test_nonce_length_can_be_chosen(length: int) -> None:
    assert len(new_nonce(length)) == length


@pytest.mark.parametrize("length", [0, 33])
def test_nonce_length_stays_within_what_wechat_accepts(length: int) -> None:
    with pytest.raises(ValueError, match="32"):
        new_nonce(length)
