"""`AsyncClient` over a stub transport: the mirror of test_client.py for `Client`."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import pytest
import trustme

from hongbao.api import _base
from hongbao.api.client import AsyncClient
from hongbao.api.merchant import Merchant
from hongbao.api.models import RedpackStatus
from hongbao.errors import (
    ConfigurationError,
    ConnectError,
    FrequencyLimitError,
    HongbaoError,
    Outcome,
    RefusedError,
    ResponseError,
    TransportError,
    UnknownOutcomeError,
    ValidationError,
)
from hongbao.wire import xmlcodec
from hongbao.wire.certs import ClientCertificate
from hongbao.wire.sign import sign, verify
from hongbao.wire.transport import WireResponse
from tests.api.apikit import (
    APPID,
    BILL,
    KEY,
    MCH_ID,
    MINI_APPID,
    OPENID,
    SEND_ARGS,
    AsyncStubTransport,
    Sleeps,
    failure,
    gbk_success,
    merchant,
    reply,
    success,
)

PACKAGE = (
    "sendid=242e8abd163d300019b2cae74ba8e8c06e3f0e51ab84d16b3c80decd22a5b672&ver=8&sign="
    "4110d649a5aef52dd6b95654ddf91ca7d5411ac159ace4e1a766b7d3967a1c3dfe1d256811445a4abda2d9cf"
    "a4a9b377a829258bd00d90313c6c346f2349fe5d&mchid=11475856&appid=wxd27ebc41b85ce36d"
)


def make(transport: AsyncStubTransport, sleeps: Sleeps, **changes: Any) -> AsyncClient:
    return AsyncClient(merchant(**changes), transport=transport, sleep=sleeps.wait)


# --- what goes on the wire --------------------------------------------------------------------


async def test_send_redpack_sends_exactly_the_official_fields(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    await make(transport, sleeps).send_redpack(**SEND_ARGS, scene_id="PRODUCT_2")
    assert transport.requests[0].path == "/mmpaymkttransfers/sendredpack"
    sent = transport.sent()
    assert set(sent) == {
        "nonce_str",
        "mch_billno",
        "mch_id",
        "wxappid",
        "send_name",
        "re_openid",
        "total_amount",
        "total_num",
        "wishing",
        "client_ip",
        "act_name",
        "remark",
        "scene_id",
        "sign",
    }
    assert (sent["wxappid"], sent["mch_billno"], sent["total_num"]) == (APPID, BILL, "1")


async def test_send_group_redpack_sends_amt_type_and_no_client_ip(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    await make(transport, sleeps).send_group_redpack(**SEND_ARGS, total_num=5)
    assert transport.requests[0].path == "/mmpaymkttransfers/sendgroupredpack"
    sent = transport.sent()
    assert set(sent) == {
        "nonce_str",
        "mch_billno",
        "mch_id",
        "wxappid",
        "send_name",
        "re_openid",
        "total_amount",
        "total_num",
        "amt_type",
        "wishing",
        "act_name",
        "remark",
        "sign",
    }
    assert (sent["amt_type"], sent["total_num"]) == ("ALL_RAND", "5")


async def test_send_miniprogram_redpack_uses_the_mini_appid_and_notify_way(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success(wxappid=MINI_APPID, package=PACKAGE))
    result = await make(transport, sleeps).send_miniprogram_redpack(**SEND_ARGS)
    assert transport.requests[0].path == "/mmpaymkttransfers/sendminiprogramhb"
    sent = transport.sent()
    assert set(sent) == {
        "nonce_str",
        "mch_billno",
        "mch_id",
        "wxappid",
        "send_name",
        "re_openid",
        "total_amount",
        "total_num",
        "wishing",
        "act_name",
        "remark",
        "notify_way",
        "sign",
    }
    assert (sent["wxappid"], sent["notify_way"]) == (MINI_APPID, "MINI_PROGRAM_JSAPI")
    assert result.package == PACKAGE


async def test_query_redpack_sends_appid_not_wxappid_and_bill_type(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success(status="SENT", detail_id="1"))
    await make(transport, sleeps).query_redpack(BILL)
    assert transport.requests[0].path == "/mmpaymkttransfers/gethbinfo"
    sent = transport.sent()
    assert set(sent) == {"nonce_str", "mch_billno", "mch_id", "appid", "bill_type", "sign"}
    assert (sent["appid"], sent["bill_type"]) == (APPID, "MCHT")


async def test_sp_mode_fields_are_sent_only_for_an_sp_merchant(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    client = make(transport, sleeps, sub_mch_id="1900000110", msgappid="wx0000000000000001")
    await client.send_redpack(**SEND_ARGS, consume_mch_id="1900000111")
    sent = transport.sent()
    assert (sent["sub_mch_id"], sent["msgappid"], sent["consume_mch_id"]) == (
        "1900000110",
        "wx0000000000000001",
        "1900000111",
    )


async def test_the_sent_signature_verifies_and_no_sign_type_is_sent(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    await make(transport, sleeps).send_redpack(**SEND_ARGS)
    sent = transport.sent()
    assert "sign_type" not in sent
    assert verify(sent, KEY)
    assert len(str(sent["nonce_str"])) == 32


async def test_the_request_of_vector_v3_signs_as_the_spec_says(
    sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_base, "_nonce", lambda: "5K8264ILTKCH16CQ2502SI8ZNMTM67VS")
    transport = AsyncStubTransport(success())
    risk = (
        "posttime%3d1710489600%26clientversion%3d8.0.47%26mobile%3d86-13800138000%26deviceid%3dIOS"
    )
    await make(transport, sleeps).send_redpack(**SEND_ARGS, scene_id="PRODUCT_2", risk_info=risk)
    assert transport.sent()["sign"] == "B84CAAD3B6FBFAAF341AE6482694309A"


async def test_client_ip_can_be_given_per_call(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    await make(transport, sleeps).send_redpack(**SEND_ARGS, client_ip="10.1.2.3")
    assert transport.sent()["client_ip"] == "10.1.2.3"


async def test_text_that_looks_like_xml_goes_out_as_text(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    wishing = "Hi ]]><sign>x</sign><total_amount>1</total_amount>"
    await make(transport, sleeps).send_redpack(**{**SEND_ARGS, "wishing": wishing})
    sent = transport.sent()
    assert sent["wishing"] == wishing
    assert sent["total_amount"] == "1000"
    assert verify(sent, KEY)


async def test_a_rule_broken_locally_sends_nothing(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    with pytest.raises(
        ValidationError, match=r"total_amount must be within 30–50000 fen"
    ) as caught:
        await make(transport, sleeps).send_redpack(
            **{**SEND_ARGS, "total_amount": 60000}, scene_id="PRODUCT_2"
        )
    assert transport.requests == []
    assert caught.value.mch_billno == BILL


# --- retries ----------------------------------------------------------------------------------


async def test_a_retry_resends_identical_bytes_after_at_least_a_second(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(TransportError("read timeout"), success())
    result = await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert result.send_listid
    assert len(transport.requests) == 2
    assert transport.bodies[0] == transport.bodies[1]
    assert len(sleeps) == 1
    assert sleeps[0] >= 1.0


async def test_the_retry_budget_is_two_then_the_outcome_is_unknown(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(TransportError("read timeout"))
    with pytest.raises(TransportError) as caught:
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert len(transport.requests) == 3
    assert len(set(transport.bodies)) == 1
    assert len(sleeps) == 2
    assert caught.value.mch_billno == BILL
    assert caught.value.advice


async def test_connect_errors_are_retried_and_stay_not_sent(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(ConnectError("connection refused"))
    with pytest.raises(ConnectError) as caught:
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert len(transport.requests) == 3
    assert caught.value.mch_billno == BILL


async def test_http_5xx_is_retried_then_an_unknown_outcome(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(WireResponse(status=502, body=b"Bad Gateway"))
    with pytest.raises(TransportError, match="HTTP 502") as caught:
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert len(transport.requests) == 3
    assert caught.value.raw == b"Bad Gateway"


async def test_other_http_statuses_are_an_unknown_outcome_without_retry(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(WireResponse(status=404, body=b"Not Found"))
    with pytest.raises(TransportError, match="HTTP 404"):
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert len(transport.requests) == 1


async def test_systemerror_is_retried_with_the_same_bytes(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(failure("SYSTEMERROR", "系统繁忙，请再试。"), success())
    await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert len(transport.requests) == 2
    assert transport.bodies[0] == transport.bodies[1]


async def test_systemerror_after_the_budget_is_an_unknown_outcome(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(failure("SYSTEMERROR", "系统繁忙，请再试。"))
    with pytest.raises(UnknownOutcomeError) as caught:
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert len(transport.requests) == 3
    assert caught.value.err_code == "SYSTEMERROR"


async def test_business_errors_are_not_retried_and_carry_everything(sleeps: Sleeps) -> None:
    answer = failure("SENDNUM_LIMIT", "该用户今日领取红包个数超过限制")
    transport = AsyncStubTransport(answer)
    with pytest.raises(RefusedError) as caught:
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    error = caught.value
    assert len(transport.requests) == 1
    assert sleeps == []
    assert (error.mch_billno, error.err_code, error.err_code_des, error.return_code) == (
        BILL,
        "SENDNUM_LIMIT",
        "该用户今日领取红包个数超过限制",
        "SUCCESS",
    )
    assert error.raw == answer.body
    assert error.advice


async def test_a_refusal_after_an_attempt_that_may_have_arrived_is_unknown(sleeps: Sleeps) -> None:
    # FREQ_LIMIT is checked before the bill number (docs/protocol.md §6.2), so it cannot prove that
    # the timed-out first attempt issued nothing.
    transport = AsyncStubTransport(TransportError("read timeout"), failure("FREQ_LIMIT"))
    with pytest.raises(UnknownOutcomeError) as caught:
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert caught.value.err_code == "FREQ_LIMIT"
    assert isinstance(caught.value.__cause__, FrequencyLimitError)


async def test_connect_errors_after_a_timeout_do_not_claim_not_sent(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(TransportError("read timeout"), ConnectError("refused"))
    with pytest.raises(UnknownOutcomeError) as caught:
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert not isinstance(caught.value, ConnectError)
    assert len(transport.requests) == 3


# --- what comes back --------------------------------------------------------------------------


async def test_a_success_is_returned_as_a_send_result(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    result = await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert (result.mch_billno, result.mch_id, result.re_openid, result.total_amount) == (
        BILL,
        MCH_ID,
        OPENID,
        1000,
    )
    assert result.raw == success().body


async def test_a_response_sign_is_verified_when_present(sleeps: Sleeps) -> None:
    fields: dict[str, str | int] = {
        "return_code": "SUCCESS",
        "result_code": "SUCCESS",
        "mch_billno": BILL,
        "send_listid": "1",
    }
    good = reply({**fields, "sign": sign(fields, KEY)})
    result = await make(AsyncStubTransport(good), sleeps).send_redpack(**SEND_ARGS)
    assert result.send_listid == "1"
    bad = AsyncStubTransport(reply({**fields, "sign": "0" * 32}))
    with pytest.raises(ResponseError, match="signature does not match"):
        await make(bad, sleeps).send_redpack(**SEND_ARGS)
    assert len(bad.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>busy</html>",
        b"<xml><return_code>SUCCESS",
        b'<!DOCTYPE xml [<!ENTITY e "x">]><xml><return_code>&e;</return_code></xml>',
        gbk_success().body,
    ],
    ids=["empty", "not xml", "truncated", "entity", "gbk declared"],
)
async def test_an_unparseable_answer_is_an_unknown_outcome(sleeps: Sleeps, body: bytes) -> None:
    transport = AsyncStubTransport(WireResponse(status=200, body=body))
    with pytest.raises(ResponseError) as caught:
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert len(transport.requests) == 1
    assert (caught.value.raw, caught.value.mch_billno) == (body, BILL)


async def test_a_query_answer_in_an_undecodable_encoding_is_an_unknown_outcome(
    sleeps: Sleeps,
) -> None:
    transport = AsyncStubTransport(gbk_success())
    with pytest.raises(ResponseError, match="encoding") as caught:
        await make(transport, sleeps).query_redpack(BILL)
    assert caught.value.outcome is Outcome.UNKNOWN


async def test_a_success_for_another_bill_number_is_not_trusted(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success(mch_billno="1900000109202403150000000999"))
    with pytest.raises(ResponseError, match="is for bill number"):
        await make(transport, sleeps).send_redpack(**SEND_ARGS)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"total_amount": "a lot"}, "total_amount"),
        ({"total_amount": "-1000"}, "total_amount"),
        ({"total_amount": "²"}, "total_amount"),
        ({"total_amount": 999}, "total_amount"),
        ({"send_listid": ""}, "send_listid"),
        ({"re_openid": "oxTWIuGaIt6gTKsQRLau2M0yL16X"}, "re_openid"),
        ({"mch_id": "1900000110"}, "mch_id"),
        ({"wxappid": "wx0000000000000000"}, "wxappid"),
    ],
    ids=[
        "non-numeric amount",
        "negative amount",
        "superscript amount",
        "other amount",
        "empty send_listid",
        "other openid",
        "other merchant",
        "other appid",
    ],
)
async def test_a_malformed_success_is_an_unknown_outcome(
    sleeps: Sleeps, fields: dict[str, str | int], problem: str
) -> None:
    transport = AsyncStubTransport(success(**fields))
    with pytest.raises(ResponseError, match=problem) as caught:
        await make(transport, sleeps).send_redpack(**SEND_ARGS)
    assert caught.value.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"total_amount": 1000, "refund_amount": "-1"}, "refund_amount"),
        ({"total_amount": 1000, "refund_amount": 5000}, "refund_amount"),
        ({"total_amount": "99999999999"}, "total_amount"),
        ({"total_amount": 1000, "send_time": "yesterday"}, "send_time"),
        ({"mch_billno": "1900000109202403150000000999"}, "bill number"),
    ],
    ids=["negative refund", "refund over total", "absurd total", "bad time", "other bill"],
)
async def test_a_malformed_query_answer_is_an_unknown_outcome(
    sleeps: Sleeps, fields: dict[str, str | int], problem: str
) -> None:
    transport = AsyncStubTransport(success(status="RECEIVED", hb_type="NORMAL", **fields))
    with pytest.raises(ResponseError, match=problem) as caught:
        await make(transport, sleeps).query_redpack(BILL)
    assert caught.value.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(
    ("amount", "rcv_time", "problem"),
    [
        ("99999999", "2024-03-15 10:00:00", "hblist"),
        ("0", "2024-03-15 10:00:00", "amount"),
        ("1000", "not a time", "rcv_time"),
    ],
    ids=["absurd receipt", "empty receipt", "bad rcv_time"],
)
async def test_a_query_answer_with_a_malformed_receipt_is_an_unknown_outcome(
    sleeps: Sleeps, amount: str, rcv_time: str, problem: str
) -> None:
    body = success(status="RECEIVED", hb_type="NORMAL").body.replace(
        b"</xml>",
        b"<hblist><hbinfo><openid>" + OPENID.encode() + b"</openid><amount>"
        + amount.encode() + b"</amount><rcv_time>" + rcv_time.encode()
        + b"</rcv_time></hbinfo></hblist></xml>",
    )  # fmt: skip
    transport = AsyncStubTransport(WireResponse(status=200, body=body))
    with pytest.raises(ResponseError, match=problem):
        await make(transport, sleeps).query_redpack(BILL)


async def test_query_returns_the_record(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(
        success(status="RECEIVED", detail_id="1000041701", hb_type="NORMAL", total_num=1)
    )
    info = await make(transport, sleeps).query_redpack(BILL)
    assert info.found
    assert (info.status, info.detail_id) == (RedpackStatus.RECEIVED, "1000041701")


async def test_query_not_found_is_a_result(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(failure("NOT_FOUND", "指定单号数据不存在"))
    info = await make(transport, sleeps).query_redpack(BILL)
    assert (info.found, info.mch_billno, info.status) == (False, BILL, None)


async def test_query_systemerror_saying_not_found_is_retried_then_unknown(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(failure("SYSTEMERROR", "指定单号数据不存在", return_code="FAIL"))
    with pytest.raises(UnknownOutcomeError):
        await make(transport, sleeps).query_redpack(BILL)
    assert len(transport.requests) == 3


async def test_query_can_name_another_appid(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(failure("NOT_FOUND"))
    await make(transport, sleeps).query_redpack(BILL, appid=MINI_APPID)
    assert transport.sent()["appid"] == MINI_APPID


# --- jsapi, configuration, secrets --------------------------------------------------------------


async def test_jsapi_params_reproduce_vector_v7(sleeps: Sleeps) -> None:
    client = make(AsyncStubTransport(success()), sleeps)
    params = client.jsapi_params(PACKAGE, timestamp=1514363815, nonce="Ww213sdad")
    assert params == {
        "timeStamp": "1514363815",
        "nonceStr": "Ww213sdad",
        "package": quote(PACKAGE, safe=""),
        "signType": "MD5",
        "paySign": "77D706B7A2B4441283AA9F0D66216FF5",
    }


async def test_jsapi_params_default_to_now_and_a_fresh_nonce(sleeps: Sleeps) -> None:
    client = make(AsyncStubTransport(success()), sleeps)
    first, second = client.jsapi_params(PACKAGE), client.jsapi_params(PACKAGE)
    assert first["nonceStr"] != second["nonceStr"]
    assert abs(int(first["timeStamp"]) - int(client.clock.now().timestamp())) <= 5


async def test_a_missing_appid_is_a_configuration_error(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    with pytest.raises(ConfigurationError, match=r"Merchant\.mini_appid must be set"):
        await make(transport, sleeps, mini_appid=None).send_miniprogram_redpack(**SEND_ARGS)
    assert transport.requests == []


async def test_mini_program_packets_are_refused_in_sp_mode(sleeps: Sleeps) -> None:
    transport = AsyncStubTransport(success())
    client = make(transport, sleeps, sub_mch_id="1900000110", msgappid="wx0000000000000001")
    with pytest.raises(ConfigurationError, match="service-provider mode"):
        await client.send_miniprogram_redpack(**SEND_ARGS)
    assert transport.requests == []


async def test_without_a_transport_the_certificate_is_required() -> None:
    with pytest.raises(ConfigurationError, match="no API certificate"):
        AsyncClient(merchant())


async def test_without_a_transport_an_asyncio_transport_is_built_from_the_merchant() -> None:
    from hongbao.wire.http_async import AsyncioTransport

    issued = trustme.CA().issue_cert("merchant.invalid", common_name=MCH_ID)
    certificate = ClientCertificate.from_pem(
        issued.cert_chain_pems[0].bytes(), issued.private_key_pem.bytes()
    )
    async with AsyncClient(merchant(certificate=certificate)) as client:
        assert isinstance(client.transport, AsyncioTransport)
        assert client.transport.certificate is certificate


async def test_secrets_never_reach_logs_or_errors(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hongbao.api")
    transport = AsyncStubTransport(
        TransportError("read timeout"), success(), failure("SIGN_ERROR", "签名错误")
    )
    client = make(transport, sleeps)
    await client.send_redpack(**SEND_ARGS)
    with pytest.raises(HongbaoError) as caught:
        await client.send_redpack(**SEND_ARGS)
    signatures = [str(xmlcodec.loads(body)["sign"]) for body in transport.bodies]
    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text}" for record in caplog.records
    )
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    shown = [logged, str(caught.value), repr(caught.value), repr(client), repr(client.merchant)]
    for text in shown:
        assert KEY not in text
        for signature in signatures:
            assert signature not in text
    assert "***" in logged


async def test_merchant_repr_hides_the_key() -> None:
    assert KEY not in repr(merchant())
    assert KEY not in str(merchant())
    assert isinstance(merchant(), Merchant)
