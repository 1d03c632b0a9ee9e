"""The error hierarchy: what each error means for the money, and what it may show."""

from __future__ import annotations

import pytest

import hongbao
from hongbao import errors
from hongbao.engine.campaign import CampaignError
from hongbao.errors import (
    BillConflictError,
    BillFailedError,
    ConfigurationError,
    ConnectError,
    FrequencyLimitError,
    HongbaoError,
    IdempotencyConflict,
    NotSentError,
    OperationError,
    Outcome,
    ProcessingError,
    RefusedError,
    RejectedError,
    ResponseError,
    TransportError,
    UnknownOutcomeError,
    ValidationError,
)
from hongbao.ids import BillNoError
from hongbao.ledger import IllegalTransitionError, LedgerLookupError, ReissueError

OUTCOMES: dict[type[HongbaoError], Outcome] = {
    ConfigurationError: Outcome.NOT_SENT,
    OperationError: Outcome.NOT_SENT,
    NotSentError: Outcome.NOT_SENT,
    ValidationError: Outcome.NOT_SENT,
    ConnectError: Outcome.NOT_SENT,
    RejectedError: Outcome.NOT_SENT,
    FrequencyLimitError: Outcome.NOT_SENT,
    BillConflictError: Outcome.NOT_SENT,
    IdempotencyConflict: Outcome.NOT_SENT,
    RefusedError: Outcome.REFUSED,
    BillFailedError: Outcome.REFUSED,
    UnknownOutcomeError: Outcome.UNKNOWN,
    TransportError: Outcome.UNKNOWN,
    ResponseError: Outcome.UNKNOWN,
    ProcessingError: Outcome.UNKNOWN,
}

SECRET_BODY = b"<xml><sign><![CDATA[C380BEC2BFD727A4B6845133519F3AD6]]></sign></xml>"


def test_every_error_class_is_in_the_table() -> None:
    public = {
        getattr(errors, name)
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), HongbaoError)
        and getattr(errors, name) is not HongbaoError
    }

    assert public == set(OUTCOMES)


@pytest.mark.parametrize("error_class", list(OUTCOMES), ids=lambda klass: klass.__name__)
def test_each_error_says_what_happened_to_the_money(error_class: type[HongbaoError]) -> None:
    error = _make(error_class)

    assert error.outcome is OUTCOMES[error_class]
    assert isinstance(error, HongbaoError)


def test_outcome_families_follow_the_tree() -> None:
    assert issubclass(ConnectError, NotSentError)
    assert issubclass(FrequencyLimitError, RejectedError)
    assert issubclass(BillFailedError, RefusedError)
    assert issubclass(TransportError, UnknownOutcomeError)
    assert not issubclass(ConfigurationError, NotSentError)
    assert not issubclass(OperationError, ConfigurationError | NotSentError)


@pytest.mark.parametrize(
    ("error_class", "old_base"),
    [
        (LedgerLookupError, LookupError),
        (IllegalTransitionError, ValueError),
        (ReissueError, ValueError),
        (BillNoError, ValueError),
        (CampaignError, None),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_every_error_a_user_can_meet_is_a_hongbao_error(
    error_class: type[HongbaoError], old_base: type[Exception] | None
) -> None:
    error = error_class("no campaign with id 7")

    assert isinstance(error, OperationError)
    assert error.outcome is Outcome.NOT_SENT
    assert str(error) == "no campaign with id 7"
    if old_base is not None:
        assert isinstance(error, old_base)  # code catching the old base still does
    assert not isinstance(error, ConfigurationError | NotSentError)


def test_str_names_the_code_the_bill_and_the_advice() -> None:
    error = RefusedError(
        "该用户今日领取红包个数超过限制",
        err_code="SENDNUM_LIMIT",
        mch_billno="1900000109202403150000000001",
        advice="try again tomorrow",
    )

    assert str(error) == (
        "[SENDNUM_LIMIT] 该用户今日领取红包个数超过限制 "
        "(mch_billno 1900000109202403150000000001) — try again tomorrow"
    )


def test_str_does_not_repeat_a_code_the_message_already_has() -> None:
    assert str(RejectedError("SIGN_ERROR: bad signature", err_code="SIGN_ERROR")) == (
        "SIGN_ERROR: bad signature"
    )


def test_repr_shows_only_the_identifying_fields() -> None:
    error = TransportError(
        "read timeout",
        err_code="SYSTEMERROR",
        err_code_des="系统繁忙",
        return_code="SUCCESS",
        return_msg="busy",
        raw=SECRET_BODY,
        mch_billno="1900000109202403150000000001",
        advice="query it",
    )

    assert repr(error) == (
        "TransportError('read timeout', err_code='SYSTEMERROR', return_code='SUCCESS', "
        "mch_billno='1900000109202403150000000001')"
    )


@pytest.mark.parametrize("error_class", list(OUTCOMES), ids=lambda klass: klass.__name__)
def test_the_raw_body_never_shows_in_str_or_repr(error_class: type[HongbaoError]) -> None:
    error = _make(error_class, raw=SECRET_BODY)

    assert error.raw == SECRET_BODY
    for text in (str(error), repr(error)):
        assert "C380BEC2BFD727A4B6845133519F3AD6" not in text
        assert "<xml>" not in text


def test_validation_error_names_field_and_rule() -> None:
    error = ValidationError("total_amount must be 100..20000", field="total_amount", rule="range")

    assert (error.field, error.rule) == ("total_amount", "range")
    assert error.outcome is Outcome.NOT_SENT


@pytest.mark.parametrize("error_class", [ConnectError, TransportError])
def test_network_errors_carry_their_failover_category(
    error_class: type[ConnectError] | type[TransportError],
) -> None:
    assert error_class("x").failure is None
    assert error_class("x", failure="dns_error", mch_billno="b1").failure == "dns_error"
    assert error_class("x", mch_billno="b1").mch_billno == "b1"


def test_the_package_exports_every_error() -> None:
    assert set(errors.__all__) <= set(hongbao.__all__)
    for name in errors.__all__:
        assert getattr(hongbao, name) is getattr(errors, name)


def _make(error_class: type[HongbaoError], raw: bytes | None = None) -> HongbaoError:
    if error_class is ValidationError:
        return ValidationError("bad", field="f", rule="r", raw=raw)
    if error_class is IdempotencyConflict:
        return IdempotencyConflict("conflict", key="k", fields=["amount_fen"], raw=raw)
    return error_class("failed", raw=raw)
