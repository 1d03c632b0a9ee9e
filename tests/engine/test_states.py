"""The payout state machine: decisions one by one, and against a model of WeChat (hypothesis)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao.clock import CST
from hongbao.engine.states import (
    DEFINITIVE,
    PAYOUT_TRANSITIONS,
    TERMINAL,
    Decision,
    IllegalTransitionError,
    LimitPolicy,
    PayoutState,
    Policy,
    QueryOutcome,
    QueryStatus,
    SendOutcome,
    SendResult,
    decide_query,
    decide_send,
    is_allowed,
    may_reissue,
    next_beijing_midnight,
)

P = PayoutState
R = SendResult
Q = QueryStatus
NOW = datetime(2024, 3, 15, 10, 0, tzinfo=CST)
MIDNIGHT = datetime(2024, 3, 16, 0, 0, tzinfo=CST)

# -- single decisions --------------------------------------------------------------------


def test_terminal_states_are_exactly_the_final_ones() -> None:
    assert {P.RECEIVED, P.REFUNDED, P.FAILED, P.CANCELLED, P.SKIPPED} == TERMINAL
    assert PAYOUT_TRANSITIONS[P.SENT] == {P.SENT, P.RECEIVED, P.REFUNDED}


@pytest.mark.parametrize("state", sorted(TERMINAL | {P.PLANNED, P.DEFERRED}))
def test_outcomes_do_not_apply_outside_flight(state: PayoutState) -> None:
    with pytest.raises(
        IllegalTransitionError, match=f"^a send outcome does not apply to a {state} "
    ):
        decide_send(state, SendOutcome(R.SUCCESS), NOW)
    with pytest.raises(
        IllegalTransitionError, match=f"^a query outcome does not apply to a {state} "
    ):
        decide_query(state, QueryOutcome(Q.SENT), NOW)


def test_success_is_sent_with_the_wechat_number_and_a_tracking_time() -> None:
    decision = decide_send(P.SENDING, SendOutcome(R.SUCCESS, "SUCCESS", send_listid="100"), NOW)
    assert decision.state is P.SENT
    assert decision.fields["send_listid"] == "100"
    assert decision.fields["err_code"] is None
    assert decision.fields["next_attempt_at"] == NOW + Policy().track_every


def test_processing_is_queried_again_after_twenty_minutes() -> None:
    decision = decide_send(P.SENDING, SendOutcome(R.PROCESSING, "PROCESSING"), NOW)
    assert decision.state is P.UNKNOWN
    assert decision.fields["next_attempt_at"] == NOW + timedelta(minutes=20)
    assert decision.fields["err_code"] == "PROCESSING"


@pytest.mark.parametrize("code", ["SENDNUM_LIMIT", "RCVDAMOUNT_LIMIT"])
def test_user_daily_limits_defer_to_beijing_midnight_or_fail_by_policy(code: str) -> None:
    deferred = decide_send(P.SENDING, SendOutcome(R.LIMIT, code), NOW)
    assert deferred.state is P.DEFERRED
    assert deferred.fields["next_attempt_at"] == MIDNIGHT
    assert deferred.back_off is None
    failed = decide_send(P.SENDING, SendOutcome(R.LIMIT, code), NOW, Policy(LimitPolicy.FAIL))
    assert failed.state is P.FAILED
    assert failed.fields["err_code"] == code
    assert not failed.fields.get("bill_dead")


def test_the_merchant_daily_limit_holds_every_send_until_midnight() -> None:
    decision = decide_send(P.SENDING, SendOutcome(R.LIMIT, "SENDAMOUNT_LIMIT"), NOW)
    assert decision.state is P.DEFERRED
    assert decision.back_off == (MIDNIGHT - NOW).total_seconds()


def test_notenough_pauses_the_campaign_and_keeps_the_payout() -> None:
    decision = decide_send(P.SENDING, SendOutcome(R.LIMIT, "NOTENOUGH"), NOW)
    assert decision.state is P.DEFERRED
    assert decision.fields["next_attempt_at"] == NOW + Policy().blocked_retry
    assert decision.pause_reason is not None
    assert "NOTENOUGH" in decision.pause_reason


def test_frequency_limit_backs_everyone_off_and_retries_the_same_bill() -> None:
    decision = decide_send(P.SENDING, SendOutcome(R.FREQUENCY_LIMITED, "FREQ_LIMIT"), NOW)
    assert decision.state is P.DEFERRED
    assert decision.back_off == 60
    assert decision.fields["next_attempt_at"] == NOW + timedelta(seconds=60)


def test_setup_errors_pause_without_failing() -> None:
    decision = decide_send(P.SENDING, SendOutcome(R.SETUP_ERROR, "CA_ERROR"), NOW)
    assert decision.state is P.DEFERRED
    assert decision.fields["next_attempt_at"] == NOW + Policy().blocked_retry
    assert decision.pause_reason is not None
    assert "CA_ERROR" in decision.pause_reason


def test_only_send_failed_kills_the_bill() -> None:
    dead = decide_send(P.SENDING, SendOutcome(R.BILL_FAILED, "SEND_FAILED"), NOW)
    refused = decide_send(P.SENDING, SendOutcome(R.REFUSED, "NO_AUTH"), NOW)
    invalid = decide_send(P.SENDING, SendOutcome(R.INVALID, "OPENID_ERROR"), NOW)
    assert (dead.state, dead.fields["bill_dead"]) == (P.FAILED, True)
    assert (refused.state, refused.fields.get("bill_dead", False)) == (P.FAILED, False)
    assert (invalid.state, invalid.fields.get("bill_dead", False)) == (P.FAILED, False)
    assert may_reissue(P.FAILED, True)
    assert not may_reissue(P.FAILED, False)
    assert not may_reissue(P.UNKNOWN, True)


def test_a_bill_conflict_fails_without_reissue_and_pauses() -> None:
    decision = decide_send(P.SENDING, SendOutcome(R.BILL_CONFLICT, "FATAL_ERROR"), NOW)
    assert decision.state is P.FAILED
    assert not decision.fields.get("bill_dead", False)
    assert decision.pause_reason is not None


@pytest.mark.parametrize(
    "result", [R.NOT_SENT, R.SETUP_ERROR, R.FREQUENCY_LIMITED, R.INVALID, R.UNKNOWN]
)
def test_a_request_level_answer_leaves_a_maybe_issued_bill_unknown(result: SendResult) -> None:
    # Same bill, looked at again soon; a setup or parameter refusal also pauses for a human,
    # a rate refusal also holds the whole merchant.
    wait = timedelta(seconds=60) if result is R.FREQUENCY_LIMITED else timedelta(minutes=1)
    for state, after_unknown in ((P.UNKNOWN, False), (P.SENDING, True)):
        outcome = SendOutcome(result, "CODE", "描述", after_unknown=after_unknown)
        decision = decide_send(state, outcome, NOW)
        assert decision.state is P.UNKNOWN
        assert decision.fields == {
            "err_code": "CODE",
            "err_code_des": "描述",
            "next_attempt_at": NOW + wait,
        }
        assert not decision.resend
        if result in (R.SETUP_ERROR, R.INVALID):
            assert decision.pause_reason is not None
            assert decision.pause_reason.startswith("CODE: ")
        else:
            assert decision.pause_reason is None
        assert decision.back_off == (60.0 if result is R.FREQUENCY_LIMITED else None)


def test_not_sent_from_a_fresh_send_is_retried_soon() -> None:
    decision = decide_send(P.SENDING, SendOutcome(R.NOT_SENT), NOW)
    assert decision.state is P.DEFERRED
    assert decision.fields["next_attempt_at"] == NOW + Policy().not_sent_retry


@pytest.mark.parametrize(
    ("status", "state"),
    [(Q.SENT, P.SENT), (Q.RFUND_ING, P.SENT), (Q.RECEIVED, P.RECEIVED), (Q.REFUND, P.REFUNDED)],
)
def test_query_finds_an_issued_packet(status: QueryStatus, state: PayoutState) -> None:
    outcome = QueryOutcome(status, detail_id="100", refund_amount=100)
    decision = decide_query(P.UNKNOWN, outcome, NOW)
    assert decision.state is state
    assert decision.fields["send_listid"] == "100"
    assert not decision.resend


def test_query_failed_is_definitive_and_kills_the_bill() -> None:
    decision = decide_query(P.UNKNOWN, QueryOutcome(Q.FAILED, reason="余额不足"), NOW)
    assert (decision.state, decision.fields["bill_dead"]) == (P.FAILED, True)
    assert decision.fields["err_code_des"] == "余额不足"


@pytest.mark.parametrize(
    "outcome", [QueryOutcome(Q.NOT_FOUND), QueryOutcome(Q.SENDING, reason="x")]
)
def test_not_found_or_refused_record_is_resolved_by_a_same_bill_resend(
    outcome: QueryOutcome,
) -> None:
    decision = decide_query(P.UNKNOWN, outcome, NOW)
    assert decision.state is P.UNKNOWN
    assert decision.resend


def test_a_record_still_sending_is_queried_later() -> None:
    decision = decide_query(P.UNKNOWN, QueryOutcome(Q.SENDING), NOW)
    assert (decision.state, decision.resend) == (P.UNKNOWN, False)
    assert decision.fields["next_attempt_at"] == NOW + timedelta(minutes=20)


def test_a_failed_query_changes_nothing_but_when_to_ask_again() -> None:
    # An unknown bill is asked about again soon, a SENT one at the tracking pace; what WeChat
    # said before (err_code, send_listid) is left as it was.
    for state, wait in ((P.UNKNOWN, timedelta(minutes=1)), (P.SENT, timedelta(hours=1))):
        decision = decide_query(state, QueryOutcome(Q.ERROR, err_code="SYSTEMERROR"), NOW)
        assert decision == Decision(state, {"next_attempt_at": NOW + wait})


@pytest.mark.parametrize("status", [Q.FAILED, Q.NOT_FOUND, Q.SENDING])
def test_a_sent_packet_is_never_undone_by_a_query(status: QueryStatus) -> None:
    decision = decide_query(P.SENT, QueryOutcome(status), NOW)
    assert decision.state is P.SENT
    assert decision.anomaly is not None
    assert "bill_dead" not in decision.fields


@pytest.mark.parametrize(
    ("now", "midnight"),
    [
        (datetime(2024, 3, 15, 23, 59, 59, tzinfo=CST), datetime(2024, 3, 16, tzinfo=CST)),
        (datetime(2024, 3, 16, 0, 0, 0, tzinfo=CST), datetime(2024, 3, 17, tzinfo=CST)),
        # 17:00 UTC is already the 16th in Beijing.
        (datetime(2024, 3, 15, 17, 0, tzinfo=UTC), datetime(2024, 3, 17, tzinfo=CST)),
    ],
)
def test_next_beijing_midnight(now: datetime, midnight: datetime) -> None:
    assert next_beijing_midnight(now) == midnight
    assert next_beijing_midnight(now).tzinfo is UTC  # as documented, whatever the machine's zone


# -- a model of WeChat: what really happened to each bill --------------------------------


class Truth(enum.Enum):
    ABSENT = "no record"
    SOFT_FAILED = "SENDING + reason: refused, not issued"
    PROCESSING = "SENDING: still being decided"
    ISSUED = "SENT"
    RECEIVED = "RECEIVED"
    REFUNDED = "REFUND"
    FAILED = "FAILED"


ISSUED = {Truth.ISSUED, Truth.RECEIVED, Truth.REFUNDED}
REQUEST_LEVEL = [R.NOT_SENT, R.SETUP_ERROR, R.FREQUENCY_LIMITED, R.INVALID, R.UNKNOWN]
LIMIT_CODES = ["SENDNUM_LIMIT", "RCVDAMOUNT_LIMIT", "SENDAMOUNT_LIMIT", "NOTENOUGH"]


@dataclass
class Ours:
    """One payout of the intent as the ledger sees it, and its bill as WeChat does."""

    state: PayoutState = P.PLANNED
    bill_dead: bool = False
    truth: Truth = Truth.ABSENT


@dataclass
class Intent:
    chain: list[Ours] = field(default_factory=lambda: [Ours()])

    @property
    def live(self) -> Ours:
        return self.chain[-1]


def _wechat_send(data: st.DataObject, bill: Ours) -> SendOutcome:
    """An answer WeChat could give to a send of this bill, updating what really happened."""
    after_unknown = False
    if bill.truth in (Truth.ABSENT, Truth.SOFT_FAILED) and data.draw(st.booleans()):
        # An earlier attempt of this call timed out; it may have been issued meanwhile.
        after_unknown = True
        if data.draw(st.booleans()):
            bill.truth = Truth.ISSUED
    if data.draw(st.integers(0, 3)) == 0:
        # Rejected before the bill check, or lost on the way back: says nothing of the bill.
        result = data.draw(st.sampled_from(REQUEST_LEVEL))
        if result is R.UNKNOWN and bill.truth is Truth.ABSENT and data.draw(st.booleans()):
            bill.truth = Truth.ISSUED  # pay, then drop the response
        return SendOutcome(result, after_unknown=after_unknown)
    if bill.truth is Truth.PROCESSING:
        bill.truth = data.draw(st.sampled_from([Truth.PROCESSING, Truth.ISSUED, Truth.FAILED]))
    if bill.truth in ISSUED:
        return SendOutcome(R.SUCCESS, "SUCCESS", send_listid="1", after_unknown=after_unknown)
    if bill.truth is Truth.FAILED:
        return SendOutcome(R.BILL_FAILED, "SEND_FAILED", after_unknown=after_unknown)
    # No record, or a refused one that WeChat evaluates again.
    verdict = data.draw(st.sampled_from([R.SUCCESS, R.LIMIT, R.REFUSED, R.PROCESSING]))
    code = data.draw(st.sampled_from(LIMIT_CODES)) if verdict is R.LIMIT else verdict.name
    bill.truth = {
        R.SUCCESS: Truth.ISSUED,
        R.LIMIT: Truth.SOFT_FAILED,
        R.REFUSED: Truth.SOFT_FAILED,
        R.PROCESSING: Truth.PROCESSING,
    }[verdict]
    return SendOutcome(verdict, code, after_unknown=after_unknown)


def _wechat_query(data: st.DataObject, bill: Ours) -> QueryOutcome:
    if data.draw(st.integers(0, 5)) == 0:
        return QueryOutcome(Q.ERROR, err_code="SYSTEMERROR")
    if bill.truth in ISSUED and data.draw(st.integers(0, 5)) == 0:
        return QueryOutcome(Q.NOT_FOUND)  # a fresh record may not be visible yet
    status = {
        Truth.ABSENT: QueryOutcome(Q.NOT_FOUND),
        Truth.SOFT_FAILED: QueryOutcome(Q.SENDING, reason="该用户今日领取红包个数超过限制"),
        Truth.PROCESSING: QueryOutcome(Q.SENDING),
        Truth.ISSUED: QueryOutcome(data.draw(st.sampled_from([Q.SENT, Q.RFUND_ING]))),
        Truth.RECEIVED: QueryOutcome(Q.RECEIVED),
        Truth.REFUNDED: QueryOutcome(Q.REFUND, refund_amount=100),
        Truth.FAILED: QueryOutcome(Q.FAILED),
    }
    return status[bill.truth]


def _wechat_time_passes(data: st.DataObject, bill: Ours) -> None:
    """What WeChat does on its own: soft failures expire, processing ends, users open."""
    moves = {
        Truth.SOFT_FAILED: [Truth.FAILED],
        Truth.PROCESSING: [Truth.ISSUED, Truth.FAILED],
        Truth.ISSUED: [Truth.RECEIVED, Truth.REFUNDED],
    }
    if bill.truth in moves:
        bill.truth = data.draw(st.sampled_from(moves[bill.truth]))


def _apply(bill: Ours, decision: Decision, definitive: bool) -> None:
    assert is_allowed(bill.state, decision.state), (bill.state, decision.state)
    if decision.state is P.FAILED and bill.state is not P.FAILED:
        assert definitive, "FAILED without a definitive answer"
    if decision.fields.get("bill_dead"):
        assert bill.truth is Truth.FAILED, "a bill declared dead that WeChat did not fail"
        bill.bill_dead = True
    bill.state = decision.state


def _send(data: st.DataObject, bill: Ours, policy: Policy) -> None:
    outcome = _wechat_send(data, bill)
    definitive = outcome.result in DEFINITIVE or (
        outcome.result is R.LIMIT and policy.daily_limit is LimitPolicy.FAIL
    )
    _apply(bill, decide_send(bill.state, outcome, NOW, policy), definitive)


def _query(data: st.DataObject, bill: Ours, policy: Policy) -> None:
    outcome = _wechat_query(data, bill)
    decision = decide_query(bill.state, outcome, NOW, policy)
    _apply(bill, decision, outcome.status is Q.FAILED)
    if decision.resend:
        _send(data, bill, policy)


def _step(data: st.DataObject, intent: Intent, policy: Policy) -> None:
    bill = intent.live
    actions = ["wechat_time"]
    if bill.state in (P.PLANNED, P.DEFERRED):
        actions += ["claim", "cancel"]
    if bill.state is P.SENDING:
        actions += ["send", "lose_lease"]
    if bill.state is P.UNKNOWN:
        actions += ["send", "query"]
    if bill.state is P.SENT:
        actions += ["query"]
    if may_reissue(bill.state, bill.bill_dead):
        actions += ["reissue"]
    action = data.draw(st.sampled_from(actions))
    if action == "wechat_time":
        for each in intent.chain:
            _wechat_time_passes(data, each)
    elif action == "claim":
        bill.state = P.SENDING
    elif action == "cancel":
        bill.state = P.CANCELLED
    elif action == "lose_lease":  # what LedgerStore.claim_stale does
        bill.state = P.UNKNOWN
    elif action == "send":
        _send(data, bill, policy)
    elif action == "query":
        _query(data, bill, policy)
    elif action == "reissue":
        intent.chain.append(Ours())


@settings(max_examples=400, deadline=None)
@given(st.data(), st.sampled_from(LimitPolicy))
def test_against_any_wechat_behaviour_one_intent_is_paid_at_most_once(
    data: st.DataObject, limit_policy: LimitPolicy
) -> None:
    policy = Policy(daily_limit=limit_policy)
    intent = Intent()
    for _ in range(data.draw(st.integers(1, 40))):
        _step(data, intent, policy)
        issued = [bill for bill in intent.chain if bill.truth in ISSUED]
        assert len(issued) <= 1, "two bills issued for one intent"
        for earlier in intent.chain[:-1]:
            assert earlier.state is P.FAILED
            assert earlier.bill_dead, "a new bill while the old one could still pay"
        for bill in intent.chain:
            if bill.state in (P.SENT, P.RECEIVED, P.REFUNDED):
                assert bill.truth in ISSUED, "recorded as paid but never issued"
            if bill.state in (P.FAILED, P.CANCELLED, P.SKIPPED):
                assert bill.truth not in ISSUED, "recorded as unpaid but issued"
