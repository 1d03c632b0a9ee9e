"""Every field of every decision, table-driven from the err_code tables.

`decide_send` and `decide_query` write more than a state: the err_code and WeChat's text for the
audit, when the payout is tried next, whether the campaign pauses, how long the whole merchant
backs off, and the times WeChat reported. Each table below has one row per err_code of
`hongbao.api.codes` (and per `SendResult` / `QueryStatus`), so a code added without its expected
decision fails here. Every decision is compared whole, under the default policy and under one
whose waits all differ, so a wait swapped for another one is caught too. Pause reasons are pinned
up to their first ": " (the code or cause an operator and the dashboard go by); the advice that
follows is wording.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hongbao.api.codes import QUERY_CODES, SEND_CODES, error_for
from hongbao.clock import CST
from hongbao.engine.outcomes import SEND_CATEGORIES, query_outcome, send_outcome
from hongbao.engine.states import (
    BILL_ANSWERS,
    Decision,
    LimitPolicy,
    PayoutState,
    Policy,
    QueryOutcome,
    QueryStatus,
    SendOutcome,
    SendResult,
    decide_query,
    decide_send,
)

P = PayoutState
R = SendResult
Q = QueryStatus

NOW = datetime(2024, 3, 15, 10, 0, tzinfo=CST)
MIDNIGHT = datetime(2024, 3, 16, 0, 0, tzinfo=CST)
TO_MIDNIGHT = 14 * 3600.0  # seconds from NOW until WeChat's daily counters reset
DES = "微信的描述"

DEFAULT = Policy()
ODD = Policy(
    processing_wait=timedelta(minutes=21),
    unknown_retry=timedelta(seconds=7),
    not_sent_retry=timedelta(seconds=11),
    frequency_back_off=timedelta(seconds=13),
    blocked_retry=timedelta(minutes=17),
    track_every=timedelta(minutes=19),
)
"""Every wait different from every other (the defaults share 60 s twice)."""

POLICIES = [pytest.param(DEFAULT, id="default"), pytest.param(ODD, id="odd")]


def pinned(decision: Decision) -> Decision:
    """The decision with its pause reason cut to the code or cause before the first ": "."""
    reason = decision.pause_reason
    return dataclasses.replace(
        decision, pause_reason=None if reason is None else reason.split(": ", 1)[0]
    )


def said(code: str | None, des: str | None = DES, **fields: Any) -> dict[str, Any]:
    """What WeChat said, kept on the payout, plus `fields`."""
    return {"err_code": code, "err_code_des": des, **fields}


def test_the_default_policy_is_the_one_the_spec_asks_for() -> None:
    assert dataclasses.asdict(DEFAULT) == {
        "daily_limit": LimitPolicy.DEFER,
        "processing_wait": timedelta(minutes=20),
        "unknown_retry": timedelta(minutes=1),
        "not_sent_retry": timedelta(seconds=30),
        "frequency_back_off": timedelta(seconds=60),
        "blocked_retry": timedelta(minutes=5),
        "track_every": timedelta(hours=1),
    }


# -- a fresh send: what each err_code of the send table does --------------------------------

SendRow = Callable[[str | None, Policy], Decision]


def _unknown(code: str | None, p: Policy) -> Decision:
    return Decision(P.UNKNOWN, said(code, next_attempt_at=NOW + p.unknown_retry))


def _processing(code: str | None, p: Policy) -> Decision:
    return Decision(P.UNKNOWN, said(code, next_attempt_at=NOW + p.processing_wait))


def _bill_failed(code: str | None, p: Policy) -> Decision:
    return Decision(P.FAILED, said(code, bill_dead=True))


def _user_daily_limit(code: str | None, p: Policy) -> Decision:
    if p.daily_limit is LimitPolicy.FAIL:
        return Decision(P.FAILED, said(code))
    return Decision(P.DEFERRED, said(code, next_attempt_at=MIDNIGHT))


def _merchant_daily_limit(code: str | None, p: Policy) -> Decision:
    if p.daily_limit is LimitPolicy.FAIL:
        return Decision(P.FAILED, said(code), back_off=TO_MIDNIGHT)
    return Decision(P.DEFERRED, said(code, next_attempt_at=MIDNIGHT), back_off=TO_MIDNIGHT)


def _not_enough(code: str | None, p: Policy) -> Decision:
    # Under either limit policy: a top-up clears it, so it never fails a payout.
    return Decision(
        P.DEFERRED, said(code, next_attempt_at=NOW + p.blocked_retry), pause_reason=code
    )


def _bill_conflict(code: str | None, p: Policy) -> Decision:
    return Decision(P.FAILED, said(code), pause_reason=code)


def _frequency(code: str | None, p: Policy) -> Decision:
    wait = p.frequency_back_off
    return Decision(
        P.DEFERRED, said(code, next_attempt_at=NOW + wait), back_off=wait.total_seconds()
    )


def _setup(code: str | None, p: Policy) -> Decision:
    return Decision(
        P.DEFERRED, said(code, next_attempt_at=NOW + p.blocked_retry), pause_reason=code
    )


def _invalid(code: str | None, p: Policy) -> Decision:
    return Decision(P.FAILED, said(code))


FRESH_SEND: Mapping[str, SendRow] = {
    "SYSTEMERROR": _unknown,
    "PROCESSING": _processing,
    "SEND_FAILED": _bill_failed,
    "SENDNUM_LIMIT": _user_daily_limit,
    "RCVDAMOUNT_LIMIT": _user_daily_limit,
    "SENDAMOUNT_LIMIT": _merchant_daily_limit,
    "NOTENOUGH": _not_enough,
    "FATAL_ERROR": _bill_conflict,
    "FREQ_LIMIT": _frequency,
    "SECOND_OVER_LIMITED": _frequency,
    "CA_ERROR": _setup,
    "SIGN_ERROR": _setup,
    "XML_ERROR": _setup,
    "API_METHOD_CLOSED": _setup,
    "PRODUCT_AUTHORITY_UNOPEN": _setup,
    "PAYER_ACCOUNT_ABNORMAL": _setup,
    "ACCEPTMODE_ERROR": _setup,
    "MSGAPPID_ERROR": _setup,
    "DAY_OVER_LIMITED": _setup,
    "NO_COMPETENCE": _setup,  # WeCom: the merchant is not bound to the corp
    "NO_AUTH": _setup,
    "PARAM_ERROR": _setup,
    "OPENID_ERROR": _invalid,
    "MONEY_LIMIT": _invalid,
    "ILLEGAL_APPID": _invalid,
}
"""err_code of a send → the decision on a payout whose bill was never sent before."""


def _answer(code: str) -> SendOutcome:
    """The outcome the engine builds from WeChat's answer with `code`, through the client."""
    error = error_for(
        {"return_code": "SUCCESS", "result_code": "FAIL", "err_code": code, "err_code_des": DES}
    )
    assert error is not None
    return send_outcome(error)


def test_every_send_code_has_an_expected_decision() -> None:
    assert set(FRESH_SEND) == set(SEND_CODES)
    assert set(SEND_CATEGORIES) <= set(FRESH_SEND)


@pytest.mark.parametrize("limits", list(LimitPolicy))
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("code", sorted(FRESH_SEND))
def test_a_fresh_send_answered_with_a_code_decides_every_field(
    code: str, policy: Policy, limits: LimitPolicy
) -> None:
    policy = dataclasses.replace(policy, daily_limit=limits)
    decision = decide_send(P.SENDING, _answer(code), NOW, policy)
    assert pinned(decision) == FRESH_SEND[code](code, policy)


@pytest.mark.parametrize("code", sorted(FRESH_SEND))
def test_without_a_policy_a_send_decides_by_the_default_one(code: str) -> None:
    assert decide_send(P.SENDING, _answer(code), NOW) == decide_send(
        P.SENDING, _answer(code), NOW, DEFAULT
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_success_records_the_wechat_number_and_clears_earlier_errors(policy: Policy) -> None:
    outcome = SendOutcome(R.SUCCESS, send_listid="10000417012016080830956240040")
    expected = Decision(
        P.SENT,
        {
            "send_listid": "10000417012016080830956240040",
            "err_code": None,
            "err_code_des": None,
            "reason": None,
            "next_attempt_at": NOW + policy.track_every,
        },
    )
    for state, after_unknown in ((P.SENDING, False), (P.SENDING, True), (P.UNKNOWN, False)):
        again = dataclasses.replace(outcome, after_unknown=after_unknown)
        assert decide_send(state, again, NOW, policy) == expected


# -- every category, fresh and when the bill may already be issued ---------------------------

FRESH_CATEGORY: Mapping[SendResult, SendRow] = {
    R.SUCCESS: lambda code, p: Decision(
        P.SENT,
        {
            "send_listid": None,
            "err_code": None,
            "err_code_des": None,
            "reason": None,
            "next_attempt_at": NOW + p.track_every,
        },
    ),
    R.PROCESSING: _processing,
    R.BILL_FAILED: _bill_failed,
    R.LIMIT: _user_daily_limit,
    R.REFUSED: lambda code, p: Decision(P.FAILED, said(code)),
    R.BILL_CONFLICT: lambda code, p: Decision(P.FAILED, said(code), pause_reason="FATAL_ERROR"),
    R.FREQUENCY_LIMITED: _frequency,
    R.SETUP_ERROR: lambda code, p: dataclasses.replace(_setup(code, p), pause_reason="setup error"),
    R.INVALID: _invalid,
    R.NOT_SENT: lambda code, p: Decision(
        P.DEFERRED, said(code, next_attempt_at=NOW + p.not_sent_retry)
    ),
    R.UNKNOWN: _unknown,
}
"""A category without an err_code (a local error, a lost connection, a risk refusal) → the
decision on a fresh send; where a pause names its cause, the fallback name is used."""


def _maybe_issued(result: SendResult, p: Policy) -> Decision:
    """A request-level answer on a bill WeChat may have issued: stay UNKNOWN, look again."""
    pause = {R.SETUP_ERROR: "setup error", R.INVALID: "invalid"}.get(result)
    if result is R.FREQUENCY_LIMITED:
        wait = p.frequency_back_off
        return Decision(
            P.UNKNOWN, said(None, next_attempt_at=NOW + wait), back_off=wait.total_seconds()
        )
    return Decision(
        P.UNKNOWN, said(None, next_attempt_at=NOW + p.unknown_retry), pause_reason=pause
    )


def test_every_category_has_an_expected_decision() -> None:
    assert set(FRESH_CATEGORY) == set(SendResult)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("result", list(SendResult))
def test_a_category_without_a_code_decides_every_field(result: SendResult, policy: Policy) -> None:
    decision = decide_send(P.SENDING, SendOutcome(result, err_code_des=DES), NOW, policy)
    assert pinned(decision) == FRESH_CATEGORY[result](None, policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("result", list(SendResult))
def test_a_bill_that_may_be_issued_is_decided_by_bill_answers_only(
    result: SendResult, policy: Policy
) -> None:
    fresh = decide_send(P.SENDING, SendOutcome(result, err_code_des=DES), NOW, policy)
    for state, after_unknown in ((P.UNKNOWN, False), (P.SENDING, True), (P.UNKNOWN, True)):
        outcome = SendOutcome(result, err_code_des=DES, after_unknown=after_unknown)
        decision = decide_send(state, outcome, NOW, policy)
        if result in BILL_ANSWERS:
            assert decision == fresh  # it speaks for the bill: decided as on a fresh send
        else:
            assert pinned(decision) == _maybe_issued(result, policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("code", sorted(FRESH_SEND))
def test_a_code_on_a_bill_that_may_be_issued_keeps_the_code_and_names_it_in_a_pause(
    code: str, policy: Policy
) -> None:
    outcome = dataclasses.replace(_answer(code), after_unknown=True)
    decision = decide_send(P.SENDING, outcome, NOW, policy)
    if outcome.result in BILL_ANSWERS:
        assert pinned(decision) == FRESH_SEND[code](code, policy)
        return
    expected = _maybe_issued(outcome.result, policy)
    fields = {**expected.fields, "err_code": code}
    pause = code if expected.pause_reason else None
    assert pinned(decision) == dataclasses.replace(expected, fields=fields, pause_reason=pause)


# -- gethbinfo ---------------------------------------------------------------------------------

RECEIVED_AT = datetime(2024, 3, 15, 9, 30, 5, tzinfo=CST)
REFUNDED_AT = datetime(2024, 3, 16, 9, 31, tzinfo=CST)
DETAIL_ID = "10000417012016080830956240040"
ISSUED: dict[str, Any] = {
    "err_code": None,
    "err_code_des": None,
    "reason": None,
    "send_listid": DETAIL_ID,
}
"""An issued bill: WeChat's number kept, earlier errors and hongbao's reason cleared."""

QueryRow = Callable[[PayoutState, QueryOutcome, Policy], Decision]


def _query_failed(state: PayoutState, answer: QueryOutcome, p: Policy) -> Decision:
    wait = p.track_every if state is P.SENT else p.unknown_retry
    return Decision(state, {"next_attempt_at": NOW + wait})


def _still_out(state: PayoutState, answer: QueryOutcome, p: Policy) -> Decision:
    return Decision(P.SENT, {**ISSUED, "next_attempt_at": NOW + p.track_every})


def _received(state: PayoutState, answer: QueryOutcome, p: Policy) -> Decision:
    return Decision(P.RECEIVED, {**ISSUED, "received_at": RECEIVED_AT, "next_attempt_at": None})


def _refunded(state: PayoutState, answer: QueryOutcome, p: Policy) -> Decision:
    fields = {**ISSUED, "refunded_at": REFUNDED_AT, "refund_amount": 100, "next_attempt_at": None}
    return Decision(P.REFUNDED, fields)


def _never_undone(state: PayoutState, answer: QueryOutcome, p: Policy) -> Decision:
    return Decision(
        P.SENT,
        {"next_attempt_at": NOW + p.track_every},
        anomaly=f"gethbinfo says {answer.status} for a packet WeChat reported SENT",
    )


def _failed(state: PayoutState, answer: QueryOutcome, p: Policy) -> Decision:
    if state is P.SENT:
        return _never_undone(state, answer, p)
    return Decision(P.FAILED, {"bill_dead": True, "err_code_des": answer.reason})


def _sending(state: PayoutState, answer: QueryOutcome, p: Policy) -> Decision:
    if state is P.SENT:
        return _never_undone(state, answer, p)
    if answer.reason:  # refused at send time: a same-bill resend gets today's verdict
        return Decision(
            P.UNKNOWN, {"next_attempt_at": NOW, "err_code_des": answer.reason}, resend=True
        )
    return Decision(P.UNKNOWN, {"next_attempt_at": NOW + p.processing_wait})


def _not_found(state: PayoutState, answer: QueryOutcome, p: Policy) -> Decision:
    if state is P.SENT:
        return _never_undone(state, answer, p)
    return Decision(P.UNKNOWN, {"next_attempt_at": NOW}, resend=True)


QUERY: Mapping[QueryStatus, QueryRow] = {
    Q.ERROR: _query_failed,
    Q.SENT: _still_out,
    Q.RFUND_ING: _still_out,
    Q.RECEIVED: _received,
    Q.REFUND: _refunded,
    Q.FAILED: _failed,
    Q.SENDING: _sending,
    Q.NOT_FOUND: _not_found,
}
"""gethbinfo's answer → the decision, for a payout SENDING, UNKNOWN or SENT."""

ANSWERS: Mapping[QueryStatus, list[QueryOutcome]] = {
    Q.ERROR: [QueryOutcome(Q.ERROR, err_code="SYSTEMERROR")],
    Q.SENT: [QueryOutcome(Q.SENT, detail_id=DETAIL_ID)],
    Q.RFUND_ING: [QueryOutcome(Q.RFUND_ING, detail_id=DETAIL_ID, received_at=None)],
    Q.RECEIVED: [QueryOutcome(Q.RECEIVED, detail_id=DETAIL_ID, received_at=RECEIVED_AT)],
    Q.REFUND: [
        QueryOutcome(Q.REFUND, detail_id=DETAIL_ID, refund_amount=100, refunded_at=REFUNDED_AT)
    ],
    Q.FAILED: [QueryOutcome(Q.FAILED, reason="余额不足")],
    Q.SENDING: [
        QueryOutcome(Q.SENDING),
        QueryOutcome(Q.SENDING, reason="该用户今日领取红包个数超过限制"),
    ],
    Q.NOT_FOUND: [QueryOutcome(Q.NOT_FOUND)],
}
"""What gethbinfo answers, as `query_outcome` reads it, with each status."""


def test_every_query_status_has_an_expected_decision() -> None:
    assert set(QUERY) == set(QueryStatus) == set(ANSWERS)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("state", [P.SENDING, P.UNKNOWN, P.SENT])
@pytest.mark.parametrize(
    "answer",
    [answer for answers in ANSWERS.values() for answer in answers],
    ids=lambda answer: f"{answer.status}{'+reason' if answer.reason else ''}",
)
def test_a_query_answer_decides_every_field(
    answer: QueryOutcome, state: PayoutState, policy: Policy
) -> None:
    assert decide_query(state, answer, NOW, policy) == QUERY[answer.status](state, answer, policy)


@pytest.mark.parametrize("state", [P.SENDING, P.UNKNOWN, P.SENT])
def test_without_a_policy_a_query_decides_by_the_default_one(state: PayoutState) -> None:
    for answers in ANSWERS.values():
        for answer in answers:
            assert decide_query(state, answer, NOW) == decide_query(state, answer, NOW, DEFAULT)


@pytest.mark.parametrize("state", [P.SENDING, P.UNKNOWN])
def test_without_wechat_times_the_time_of_the_answer_is_kept(state: PayoutState) -> None:
    received = decide_query(state, QueryOutcome(Q.RECEIVED, detail_id=DETAIL_ID), NOW)
    refunded = decide_query(state, QueryOutcome(Q.REFUND, detail_id=DETAIL_ID), NOW)
    assert received == Decision(P.RECEIVED, {**ISSUED, "received_at": NOW, "next_attempt_at": None})
    assert refunded == Decision(
        P.REFUNDED,
        {**ISSUED, "refunded_at": NOW, "refund_amount": None, "next_attempt_at": None},
    )


@pytest.mark.parametrize("detail_id", [None, ""])
def test_without_a_wechat_number_none_is_written(detail_id: str | None) -> None:
    decision = decide_query(P.UNKNOWN, QueryOutcome(Q.SENT, detail_id=detail_id), NOW)
    assert decision.fields == {
        "err_code": None,
        "err_code_des": None,
        "reason": None,
        "next_attempt_at": NOW + DEFAULT.track_every,
    }


def test_a_failed_bill_without_a_reason_writes_no_description() -> None:
    decision = decide_query(P.UNKNOWN, QueryOutcome(Q.FAILED), NOW)
    assert decision == Decision(P.FAILED, {"bill_dead": True})


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("state", [P.SENDING, P.UNKNOWN, P.SENT])
@pytest.mark.parametrize("code", sorted(set(QUERY_CODES) - {"NOT_FOUND"}))
def test_a_query_that_fails_with_any_code_of_the_table_only_sets_the_next_query(
    code: str, state: PayoutState, policy: Policy
) -> None:
    error = error_for(
        {"return_code": "SUCCESS", "result_code": "FAIL", "err_code": code}, query=True
    )
    assert error is not None
    answer = query_outcome(error)
    assert decide_query(state, answer, NOW, policy) == _query_failed(state, answer, policy)


def test_the_daily_limit_back_off_lasts_until_beijing_midnight_from_any_time_zone() -> None:
    late = datetime(2024, 3, 15, 15, 59, 30, tzinfo=UTC)  # 23:59:30 in Beijing
    decision = decide_send(P.SENDING, _answer("SENDAMOUNT_LIMIT"), late)
    assert decision.back_off == 30.0
    assert decision.fields["next_attempt_at"] == late + timedelta(seconds=30)
