"""From the client's answers and errors to the categories the state machine decides on."""

from __future__ import annotations

from datetime import datetime

import pytest

from hongbao.api.codes import SEND_CODES, error_for
from hongbao.api.models import RedpackInfo
from hongbao.api.models import SendResult as SendAnswer
from hongbao.clock import CST
from hongbao.engine.outcomes import (
    CHOICES,
    DES_MAX,
    SEND_CATEGORIES,
    answer_record,
    never_issued,
    query_outcome,
    send_category,
    send_outcome,
    sent_outcome,
)
from hongbao.engine.states import BILL_ANSWERS, PayoutState, QueryStatus, SendResult
from hongbao.errors import (
    ConfigurationError,
    ConnectError,
    FrequencyLimitError,
    RefusedError,
    TransportError,
    UnknownOutcomeError,
    ValidationError,
)
from hongbao.wire import xmlcodec

R = SendResult
Q = QueryStatus


def failure(code: str, **extra: str) -> dict[str, str]:
    return {
        "return_code": "SUCCESS",
        "result_code": "FAIL",
        "err_code": code,
        "err_code_des": "描述",
        **extra,
    }


@pytest.mark.parametrize("code", sorted(SEND_CODES))
def test_every_send_code_of_the_table_has_a_category(code: str) -> None:
    error = error_for(failure(code))
    assert error is not None
    outcome = send_outcome(error)
    assert outcome.err_code == code
    if code == "SYSTEMERROR":
        assert outcome.result is R.UNKNOWN  # never a verdict about the bill
    else:
        assert outcome.result is SEND_CATEGORIES[code]


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("SEND_FAILED", R.BILL_FAILED),
        ("NOTENOUGH", R.LIMIT),
        ("SENDNUM_LIMIT", R.LIMIT),
        ("FATAL_ERROR", R.BILL_CONFLICT),
        ("FREQ_LIMIT", R.FREQUENCY_LIMITED),
        ("SIGN_ERROR", R.SETUP_ERROR),
        ("NO_AUTH", R.SETUP_ERROR),
        ("PARAM_ERROR", R.SETUP_ERROR),
        ("OPENID_ERROR", R.INVALID),
        ("PROCESSING", R.PROCESSING),
        ("268458547", R.UNKNOWN),
        ("A_CODE_FROM_NEXT_YEAR", R.UNKNOWN),
        # The rest of docs/protocol.md §5.2, so that deriving the categories from the table changes
        # none.
        ("SENDAMOUNT_LIMIT", R.LIMIT),
        ("RCVDAMOUNT_LIMIT", R.LIMIT),
        ("SECOND_OVER_LIMITED", R.FREQUENCY_LIMITED),
        ("CA_ERROR", R.SETUP_ERROR),
        ("XML_ERROR", R.SETUP_ERROR),
        ("API_METHOD_CLOSED", R.SETUP_ERROR),
        ("PRODUCT_AUTHORITY_UNOPEN", R.SETUP_ERROR),
        ("PAYER_ACCOUNT_ABNORMAL", R.SETUP_ERROR),
        ("ACCEPTMODE_ERROR", R.SETUP_ERROR),
        ("MSGAPPID_ERROR", R.SETUP_ERROR),
        ("DAY_OVER_LIMITED", R.SETUP_ERROR),
        ("MONEY_LIMIT", R.INVALID),
        ("ILLEGAL_APPID", R.INVALID),
        ("SYSTEMERROR", R.UNKNOWN),
    ],
)
def test_codes_fall_into_the_documented_categories(code: str, category: SendResult) -> None:
    error = error_for(failure(code))
    assert error is not None
    assert send_outcome(error).result is category


def test_the_categories_come_from_the_one_code_table() -> None:
    assert set(SEND_CATEGORIES) == set(SEND_CODES) - {"SYSTEMERROR"}
    assert set(CHOICES) <= set(SEND_CODES)
    for code, row in SEND_CODES.items():
        assert send_category(row) is SEND_CATEGORIES.get(code, R.UNKNOWN)


def test_errors_without_a_code_are_classified_by_what_happened() -> None:
    assert send_outcome(ConnectError("refused")).result is R.NOT_SENT
    assert send_outcome(TransportError("read timed out")).result is R.UNKNOWN
    invalid = ValidationError("bad", field="re_openid", rule="max_length")
    assert send_outcome(invalid).result is R.INVALID
    assert send_outcome(ConfigurationError("no certificate")).result is R.SETUP_ERROR


def test_an_answer_after_an_attempt_that_may_have_left_is_marked_so() -> None:
    refused = FrequencyLimitError("too fast", err_code="FREQ_LIMIT")
    wrapped = UnknownOutcomeError("an earlier attempt may have reached WeChat")
    wrapped.__cause__ = refused

    outcome = send_outcome(wrapped)

    assert (outcome.result, outcome.err_code, outcome.after_unknown) == (
        R.FREQUENCY_LIMITED,
        "FREQ_LIMIT",
        True,
    )
    limit = UnknownOutcomeError("…")
    limit.__cause__ = RefusedError("poor", err_code="NOTENOUGH")
    assert send_outcome(limit).result in BILL_ANSWERS


def test_a_long_description_is_cut_to_what_the_ledger_keeps() -> None:
    outcome = send_outcome(TransportError("x" * 1000))
    assert outcome.err_code_des is not None
    assert len(outcome.err_code_des) == DES_MAX


def test_a_success_carries_the_wechat_packet_number() -> None:
    outcome = sent_outcome(SendAnswer(send_listid="1000041701202403153000082277434"))
    assert (outcome.result, outcome.send_listid) == (R.SUCCESS, "1000041701202403153000082277434")


def test_query_answers_become_query_outcomes() -> None:
    early = datetime(2024, 3, 15, 10, 1, tzinfo=CST)
    late = datetime(2024, 3, 15, 10, 5, tzinfo=CST)
    info = RedpackInfo.model_validate(
        {
            "mch_billno": "b",
            "detail_id": "100",
            "status": "RECEIVED",
            "hblist": [
                {"openid": "a", "amount": 1, "rcv_time": late},
                {"openid": "b", "amount": 2, "rcv_time": early},
            ],
        }
    )

    outcome = query_outcome(info)

    assert (outcome.status, outcome.detail_id, outcome.received_at) == (Q.RECEIVED, "100", late)
    assert query_outcome(RedpackInfo.not_found("b", b"")).status is Q.NOT_FOUND
    failed = query_outcome(FrequencyLimitError("slow down", err_code="FREQ_LIMIT"))
    assert (failed.status, failed.err_code) == (Q.ERROR, "FREQ_LIMIT")
    assert query_outcome(RedpackInfo(mch_billno="b")).status is Q.ERROR  # no status: no answer


def test_the_recorded_answer_is_what_wechat_said_without_its_signature() -> None:
    raw = xmlcodec.dumps({**failure("NOTENOUGH"), "sign": "ABCDEF"})
    error = error_for(xmlcodec.loads(raw), raw=raw)
    assert error is not None

    record = answer_record(error)

    assert record["err_code"] == "NOTENOUGH"
    assert record["sign"] == "***"
    assert answer_record(TransportError("read timed out")) == {
        "error": "TransportError",
        "message": "read timed out",
    }


@pytest.mark.parametrize(
    ("state", "err_code", "bill_dead", "retryable"),
    [
        (PayoutState.FAILED, "FATAL_ERROR", False, True),  # the bill was another packet's
        (PayoutState.FAILED, "OPENID_ERROR", False, True),
        (PayoutState.FAILED, "SENDNUM_LIMIT", False, True),  # the FAIL policy of daily limits
        (PayoutState.FAILED, "SEND_FAILED", True, True),
        (PayoutState.FAILED, "SYSTEMERROR", True, True),  # gethbinfo said FAILED afterwards
        (PayoutState.FAILED, None, False, True),  # refused by a local check, never sent
        (PayoutState.SKIPPED, "over_budget", False, True),
        (PayoutState.FAILED, "SYSTEMERROR", False, False),  # no definitive answer
        (PayoutState.FAILED, "NEW_CODE_2031", False, False),
        (PayoutState.FAILED, "CA_ERROR", False, False),  # about the request, not the bill
        (PayoutState.UNKNOWN, "SYSTEMERROR", False, False),
        (PayoutState.UNKNOWN, None, False, False),
        (PayoutState.DEFERRED, "NOTENOUGH", False, False),  # still goes under its own bill
        (PayoutState.SENT, None, False, False),
        (PayoutState.CANCELLED, None, False, False),
    ],
)
def test_only_a_payout_whose_money_never_left_may_be_retried(
    state: PayoutState, err_code: str | None, bill_dead: bool, retryable: bool
) -> None:
    assert never_issued(state, err_code, bill_dead=bill_dead) is retryable
