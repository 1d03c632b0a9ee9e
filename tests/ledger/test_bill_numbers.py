"""Bill numbers of a ledger: its identity keeps them apart from every other ledger's.

Each test runs on SQLite and on PostgreSQL (`ledger_url`); the second ledger of the
two-ledger tests is a SQLite file (a re-created file, or the old ledger of a move to PostgreSQL).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from hongbao.clock import CST, FrozenClock, beijing_day
from hongbao.errors import ConfigurationError
from hongbao.ids import LEDGER_IDS, NO_LEDGER, SERIALS_PER_DAY, mint_bill_no
from hongbao.ledger import LedgerStore, create_ledger_engine, schema_status, upgrade
from hongbao.ledger.bills import BillSerialsExhaustedError
from hongbao.ledger.migrate import MIGRATIONS
from hongbao.ledger.rules_store import LedgerHistory, NewPayment, RuleDecision, RuleLedger
from hongbao.ledger.schema import bill_serials, ledger_meta

MCH_ID = "1900000109"
NOW = datetime(2024, 3, 15, 10, 0, tzinfo=CST)
PREFIX = MCH_ID + "20240315"


def identity_and_serial(bill: str) -> tuple[int, int]:
    """The (ledger identity, serial) a bill number of this merchant was minted from."""
    assert bill.startswith(MCH_ID)
    assert len(bill) == 28
    return divmod(int(bill[-10:]), SERIALS_PER_DAY)


def set_next_serial(url: str, next_serial: int, day: datetime = NOW) -> None:
    engine = create_ledger_engine(url)
    try:
        with engine.begin() as conn:
            changed = conn.execute(
                update(bill_serials)
                .where(bill_serials.c.mch_id == MCH_ID, bill_serials.c.day == beijing_day(day))
                .values(next_serial=next_serial)
            )
            assert changed.rowcount == 1
    finally:
        engine.dispose()


def migrate_to(url: str, revision: str) -> None:
    """Bring the ledger to an older `revision`, as an older hongbao left it."""
    engine = create_ledger_engine(url)
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def rule_minted(url: str, count: int) -> list[str]:
    """`count` bill numbers minted by the rule-mode writer while recording one payment."""
    minted: list[str] = []

    def judge(history: LedgerHistory, mint: Callable[[], str]) -> list[RuleDecision]:
        minted.extend(mint() for _ in range(count))
        return []

    payment = NewPayment(
        transaction_id=f"4200{secrets.token_hex(8)}",
        merchant="shop",
        mch_id=MCH_ID,
        appid="wx2421b1c4370ec43b",
        openid="oPayer",
        trade_type="JSAPI",
        total_fee=10_000,
        cash_fee=10_000,
        out_trade_no="order-1",
        result_code="SUCCESS",
        time_end=NOW,
    )
    engine = create_ledger_engine(url)
    try:
        RuleLedger(engine, clock=FrozenClock(NOW)).record(payment, [], judge)
    finally:
        engine.dispose()
    return minted


@pytest.fixture
def other_url(tmp_path: Path) -> str:
    """A second ledger: a SQLite file beside the first."""
    return f"sqlite:///{tmp_path / 'other.db'}"


def test_two_fresh_ledgers_for_one_merchant_on_one_day_mint_disjoint_bill_numbers(
    ledger_url: str, other_url: str
) -> None:
    # The first draws its identity; the second is given the next one, so that they are
    # certainly distinct and their blocks of bill numbers adjoin (the tightest case).
    upgrade(ledger_url)
    first = schema_status(ledger_url).ledger_id
    assert first is not None
    assert first in LEDGER_IDS
    upgrade(other_url, ledger_id=first % len(LEDGER_IDS) + 1)
    second = schema_status(other_url).ledger_id
    assert second != first

    minted: dict[str, list[str]] = {}
    for url in (ledger_url, other_url):
        with LedgerStore.open(url) as store:
            bills = store.reserve_bill_numbers(MCH_ID, NOW, 10_000)
            bills += store.reserve_bill_numbers(MCH_ID, NOW, 10_000)
        bills += rule_minted(url, 50)
        # ... and the last bill numbers of the day.
        set_next_serial(url, SERIALS_PER_DAY - 100)
        with LedgerStore.open(url) as store:
            bills += store.reserve_bill_numbers(MCH_ID, NOW, 100)
        minted[url] = bills

    mine, theirs = minted[ledger_url], minted[other_url]
    # The same serials of the same day: without identities these would be the same bills.
    assert [identity_and_serial(b)[1] for b in mine] == [identity_and_serial(b)[1] for b in theirs]
    assert len(set(mine)) == len(mine) == 20_150
    assert len(set(theirs)) == len(theirs)
    assert not set(mine) & set(theirs)
    assert all(b.startswith(PREFIX) for b in mine + theirs)
    assert {identity_and_serial(b)[0] for b in mine} == {first}
    assert {identity_and_serial(b)[0] for b in theirs} == {second}
    assert all(len(b) == 28 and b.isdigit() for b in mine + theirs)


def test_bill_numbers_carry_the_identity_and_serials_never_repeat(store: LedgerStore) -> None:
    ledger_id = schema_status(store.engine).ledger_id
    first = store.reserve_bill_numbers(MCH_ID, NOW, 3)
    second = store.reserve_bill_numbers(MCH_ID, NOW, 2)
    other_day = store.reserve_bill_numbers(MCH_ID, NOW + timedelta(days=1), 2)
    assert [identity_and_serial(b) for b in first + second] == [(ledger_id, s) for s in range(5)]
    assert [b[len(MCH_ID) : len(PREFIX)] for b in other_day] == ["20240316"] * 2
    assert [identity_and_serial(b) for b in other_day] == [(ledger_id, 0), (ledger_id, 1)]


def test_the_identity_is_read_once_per_store_not_once_per_bill(store: LedgerStore) -> None:
    reads: list[str] = []

    def seen(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if "ledger_meta" in statement:
            reads.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        for _ in range(3):
            store.reserve_bill_numbers(MCH_ID, NOW, 1000)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert len(reads) == 1


def test_a_ledger_mints_the_last_bill_numbers_of_the_day_then_says_there_are_none(
    ledger_url: str, store: LedgerStore
) -> None:
    store.reserve_bill_numbers(MCH_ID, NOW, 1)
    set_next_serial(ledger_url, SERIALS_PER_DAY - 3)
    last = store.reserve_bill_numbers(MCH_ID, NOW, 10_000)  # what is left: 3
    assert [identity_and_serial(b)[1] for b in last] == list(
        range(SERIALS_PER_DAY - 3, SERIALS_PER_DAY)
    )
    for count in (1, 10_000):
        with pytest.raises(BillSerialsExhaustedError, match="all its 3,000,000 bill numbers") as e:
            store.reserve_bill_numbers(MCH_ID, NOW, count)
        assert "after midnight UTC+8" in str(e.value)
    with store.engine.connect() as conn:
        assert conn.execute(select(bill_serials.c.next_serial)).scalar_one() == SERIALS_PER_DAY
    [tomorrow] = store.reserve_bill_numbers(MCH_ID, NOW + timedelta(days=1), 1)
    assert tomorrow[len(MCH_ID) : len(PREFIX)] == "20240316"
    assert identity_and_serial(tomorrow)[1] == 0


def test_a_ledger_upgraded_mid_day_never_mints_a_bill_it_minted_before(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate_to(ledger_url, "0002")
    assert schema_status(ledger_url).ledger_id is None
    # Bills of the morning, as hongbao minted them before identities: the serial was the whole
    # 10 digits (identity 0).
    morning = 5_000
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(bill_serials).values(
                    mch_id=MCH_ID, day=beijing_day(NOW), next_serial=morning
                )
            )
    finally:
        engine.dispose()
    old = {mint_bill_no(MCH_ID, NOW, serial) for serial in range(morning)}
    # The identity nearest to the old bills: the upgrade draws 1 at the least.
    monkeypatch.setattr(secrets, "randbelow", lambda n: 0)

    before = upgrade(ledger_url)
    assert (before.current, before.ledger_id) == ("0002", None)
    assert schema_status(ledger_url).ledger_id == 1
    with LedgerStore.open(ledger_url) as store:
        afternoon = store.reserve_bill_numbers(MCH_ID, NOW, 10_000)
    assert not old & set(afternoon)
    # Its serials of the day go on where they were.
    assert [identity_and_serial(b) for b in afternoon] == [
        (1, s) for s in range(morning, morning + 10_000)
    ]


def test_a_new_ledger_draws_its_identity_at_random_from_the_whole_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    for name, pick, expected in (("low", 0, 1), ("high", -1, LEDGER_IDS[-1])):

        def randbelow(n: int, pick: int = pick) -> int:
            asked.append(n)
            return pick % n

        monkeypatch.setattr(secrets, "randbelow", randbelow)
        url = f"sqlite:///{tmp_path / name}.db"
        upgrade(url)
        assert schema_status(url).ledger_id == expected
    assert asked == [len(LEDGER_IDS)] * 2
    assert (LEDGER_IDS[0], LEDGER_IDS[-1]) == (1, 3332)
    assert NO_LEDGER not in LEDGER_IDS


def test_an_operator_sets_the_identity_at_creation_or_later(ledger_url: str) -> None:
    before = upgrade(ledger_url, ledger_id=7)
    assert (before.current, before.ledger_id) == (None, None)
    assert schema_status(ledger_url).ledger_id == 7
    with LedgerStore.open(ledger_url) as store:
        as_seven = store.reserve_bill_numbers(MCH_ID, NOW, 3)

    again = upgrade(ledger_url, ledger_id=9)
    assert (again.up_to_date, again.ledger_id) == (True, 7)
    upgrade(ledger_url)  # without --ledger-id the identity stays
    assert schema_status(ledger_url).ledger_id == 9
    with LedgerStore.open(ledger_url) as store:
        as_nine = store.reserve_bill_numbers(MCH_ID, NOW, 3)
    assert [identity_and_serial(b) for b in as_seven + as_nine] == [
        (7, 0),
        (7, 1),
        (7, 2),
        (9, 3),
        (9, 4),
        (9, 5),
    ]


@pytest.mark.parametrize("ledger_id", [NO_LEDGER, -1, LEDGER_IDS.stop])
def test_identities_no_ledger_may_have_are_refused(sqlite_url: str, ledger_id: int) -> None:
    with pytest.raises(ConfigurationError, match="must be 1 to 3332"):
        upgrade(sqlite_url, ledger_id=ledger_id)
    assert schema_status(sqlite_url).current is None  # nothing was created


def test_the_database_keeps_one_identity_in_range(store: LedgerStore) -> None:
    for statement in (
        update(ledger_meta).values(ledger_id=NO_LEDGER),
        insert(ledger_meta).values(one=2, ledger_id=5, chosen_at=NOW),
    ):
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(statement)
    with store.engine.connect() as conn:
        assert conn.execute(select(text("count(*)")).select_from(ledger_meta)).scalar_one() == 1
