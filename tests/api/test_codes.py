"""The err_code table: every code of docs/protocol.md §5.2/§5.4 has a row, and every row
resolves."""

from __future__ import annotations

import pytest

from hongbao.api.codes import QUERY_CODES, SEND_CODES, UNKNOWN_CODE, CodeInfo, classify, error_for
from hongbao.errors import (
    BillConflictError,
    BillFailedError,
    FrequencyLimitError,
    HongbaoError,
    Outcome,
    ProcessingError,
    RefusedError,
    RejectedError,
    UnknownOutcomeError,
)

# Spec §5.2, copied from its table (SUCCESS and the numeric example are not error rows).
SPEC_SEND_CODES = [
    "NO_AUTH",
    "SENDNUM_LIMIT",
    "SENDAMOUNT_LIMIT",
    "RCVDAMOUNT_LIMIT",
    "ILLEGAL_APPID",
    "MONEY_LIMIT",
    "SEND_FAILED",
    "FATAL_ERROR",
    "CA_ERROR",
    "SIGN_ERROR",
    "SYSTEMERROR",
    "XML_ERROR",
    "FREQ_LIMIT",
    "API_METHOD_CLOSED",
    "NOTENOUGH",
    "OPENID_ERROR",
    "MSGAPPID_ERROR",
    "ACCEPTMODE_ERROR",
    "PROCESSING",
    "PARAM_ERROR",
    "PRODUCT_AUTHORITY_UNOPEN",
    "PAYER_ACCOUNT_ABNORMAL",
    "SECOND_OVER_LIMITED",
    "DAY_OVER_LIMITED",
    # docs/protocol.md §15.7: the WeCom-only code.
    "NO_COMPETENCE",
]
# Spec §5.4.
SPEC_QUERY_CODES = [
    "CA_ERROR",
    "SIGN_ERROR",
    "NO_AUTH",
    "NOT_FOUND",
    "FREQ_LIMIT",
    "XML_ERROR",
    "PARAM_ERROR",
    "SYSTEMERROR",
]
# What the brief and docs/protocol.md §5.5 fix for the send APIs.
EXPECTED_SEND_CLASS: dict[str, type[HongbaoError]] = {
    "NO_AUTH": RefusedError,
    "SENDNUM_LIMIT": RefusedError,
    "SENDAMOUNT_LIMIT": RefusedError,
    "RCVDAMOUNT_LIMIT": RefusedError,
    "NOTENOUGH": RefusedError,
    "PAYER_ACCOUNT_ABNORMAL": RefusedError,
    "DAY_OVER_LIMITED": RefusedError,
    "SEND_FAILED": BillFailedError,
    "FATAL_ERROR": BillConflictError,
    "FREQ_LIMIT": FrequencyLimitError,
    "SECOND_OVER_LIMITED": FrequencyLimitError,
    "PROCESSING": ProcessingError,
    "SYSTEMERROR": UnknownOutcomeError,
    "ILLEGAL_APPID": RejectedError,
    "MONEY_LIMIT": RejectedError,
    "CA_ERROR": RejectedError,
    "SIGN_ERROR": RejectedError,
    "XML_ERROR": RejectedError,
    "API_METHOD_CLOSED": RejectedError,
    "OPENID_ERROR": RejectedError,
    "MSGAPPID_ERROR": RejectedError,
    "ACCEPTMODE_ERROR": RejectedError,
    "PARAM_ERROR": RejectedError,
    "PRODUCT_AUTHORITY_UNOPEN": RejectedError,
    "NO_COMPETENCE": RejectedError,
}
DEFERRABLE = {
    "FREQ_LIMIT",
    "SECOND_OVER_LIMITED",
    "NOTENOUGH",
    "SENDNUM_LIMIT",
    "RCVDAMOUNT_LIMIT",
    "SENDAMOUNT_LIMIT",
    "DAY_OVER_LIMITED",
}


def _answer(code: str, *, return_code: str = "SUCCESS", des: str = "说明") -> dict[str, str]:
    return {
        "return_code": return_code,
        "return_msg": des,
        "result_code": "FAIL",
        "err_code": code,
        "err_code_des": des,
    }


@pytest.mark.parametrize("code", SPEC_SEND_CODES)
def test_every_send_code_of_the_spec_has_a_row(code: str) -> None:
    assert code in SEND_CODES


@pytest.mark.parametrize("code", SPEC_QUERY_CODES)
def test_every_query_code_of_the_spec_has_a_row(code: str) -> None:
    assert code in QUERY_CODES


@pytest.mark.parametrize("row", [*SEND_CODES.values()], ids=lambda row: row.code)
def test_every_send_row_resolves_to_its_exception(row: CodeInfo) -> None:
    raw = b"<xml>raw</xml>"
    assert classify(_answer(row.code)) is row
    error = error_for(_answer(row.code, des="描述"), raw=raw, mch_billno="B1")
    assert type(error) is row.error is EXPECTED_SEND_CLASS[row.code]
    assert error.outcome is row.outcome
    assert (error.err_code, error.err_code_des, error.return_code) == (row.code, "描述", "SUCCESS")
    assert (error.raw, error.mch_billno, error.advice) == (raw, "B1", row.advice)
    assert row.meaning in str(error)


@pytest.mark.parametrize("row", [*QUERY_CODES.values()], ids=lambda row: row.code)
def test_every_query_row_resolves(row: CodeInfo) -> None:
    assert classify(_answer(row.code), query=True) is row
    error = error_for(_answer(row.code), query=True)
    if row.error is None:
        assert error is None
    else:
        assert type(error) is row.error
        assert error.outcome is row.outcome


def test_only_systemerror_is_retried_within_a_call() -> None:
    retried = {
        row.code for row in [*SEND_CODES.values(), *QUERY_CODES.values()] if row.retry_in_call
    }
    assert retried == {"SYSTEMERROR"}


def test_the_engine_may_defer_exactly_the_limits_and_the_balance() -> None:
    assert {code for code, row in SEND_CODES.items() if row.deferrable} == DEFERRABLE


def test_only_send_failed_kills_the_bill_number() -> None:
    assert {code for code, row in SEND_CODES.items() if not row.reuse_bill} == {"SEND_FAILED"}


def test_every_row_has_a_meaning_and_advice() -> None:
    for row in [*SEND_CODES.values(), *QUERY_CODES.values(), UNKNOWN_CODE]:
        assert row.meaning, row.code
        assert row.advice, row.code


def test_success_maps_to_no_error() -> None:
    answer = {"return_code": "SUCCESS", "result_code": "SUCCESS", "err_code": "SUCCESS"}
    assert classify(answer) is None
    assert error_for(answer) is None


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(_answer("BRAND_NEW_CODE"), id="unknown code"),
        pytest.param(_answer("268458547", return_code="FAIL"), id="numeric code, return FAIL"),
        pytest.param({"return_code": "FAIL", "return_msg": "请使用post方法"}, id="no code"),
        pytest.param(_answer("SUCCESS"), id="result FAIL with err_code SUCCESS"),
        pytest.param(_answer("NOT_FOUND"), id="NOT_FOUND is not a send code"),
    ],
)
def test_anything_else_is_an_unknown_outcome(answer: dict[str, str]) -> None:
    assert classify(answer) is UNKNOWN_CODE
    error = error_for(answer)
    assert type(error) is UnknownOutcomeError
    assert error.outcome is Outcome.UNKNOWN


def test_both_no_auth_variants_share_one_row_because_err_code_des_is_not_for_logic() -> None:
    risk = error_for(_answer("NO_AUTH", des="发放失败，此请求可能存在风险，已被微信拦截"))
    ip = error_for(_answer("NO_AUTH", des="IP地址非你在商户平台设置的可用IP地址"))
    assert type(risk) is type(ip) is RefusedError
    assert risk.advice == ip.advice == "query; IP variant: fix whitelist and resend the same bill"


def test_a_known_code_counts_also_when_return_code_is_fail() -> None:
    error = error_for(_answer("SIGN_ERROR", return_code="FAIL"))
    assert type(error) is RejectedError
    assert error.return_code == "FAIL"


def test_a_query_not_found_is_a_result_not_an_error() -> None:
    answer = _answer("NOT_FOUND", des="指定单号数据不存在")
    assert classify(answer, query=True) is QUERY_CODES["NOT_FOUND"]
    assert error_for(answer, query=True) is None


def test_the_official_samples_systemerror_not_found_stays_unknown() -> None:
    # return_code=FAIL, err_code=SYSTEMERROR, err_code_des=指定单号数据不存在
    # (docs/protocol.md §3.5): only err_code may drive logic, so this is not read as "not found".
    answer = _answer("SYSTEMERROR", return_code="FAIL", des="指定单号数据不存在")
    error = error_for(answer, query=True)
    assert type(error) is UnknownOutcomeError
    assert QUERY_CODES["SYSTEMERROR"].retry_in_call


def test_building_an_error_from_a_result_row_is_refused() -> None:
    with pytest.raises(ValueError, match="result, not an error"):
        QUERY_CODES["NOT_FOUND"].build(_answer("NOT_FOUND"), raw=None, mch_billno=None)
