"""`send_workwx_redpack` / `query_workwx_redpack` on `Client` and `AsyncClient`: every local rule
of docs/protocol.md §15.4 refused before anything is sent (naming the field and the rule), the
two signatures, the outcome of every answer and the retry rules — in-process and served."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from hongbao.api import AmountRules, BaseClient, Merchant, WorkwxRedpackInfo, WorkwxSendResult
from hongbao.api.models import RedpackStatus
from hongbao.errors import (
    ConfigurationError,
    HongbaoError,
    Outcome,
    RefusedError,
    RejectedError,
    UnknownOutcomeError,
    ValidationError,
)
from hongbao.sim.faults import parse_fault
from hongbao.wire import xmlcodec
from hongbao.wire.sign import verify, verify_workwx
from tests.api.workwxkit import Corp

KEY = "Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J"
SECRET = "9WcQe2rTy7uIo0pAs5dFg8hJk3lZx6cVb1nMq4wEr7t"


def _builder(**changes: Any) -> BaseClient:
    options: dict[str, Any] = {
        "mch_id": "1900000109",
        "api_key": KEY,
        "wecom_corpid": "ww8c1f9e0a3b5d7f24",
        "wecom_secret": SECRET,
        **changes,
    }
    return BaseClient(Merchant(**options))


def _args(**changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "mch_billno": "1900000109202403150000000101",
        "re_openid": "oDOGms-6yCnGrRovBj2yHij5JL6E",
        "total_amount": 8888,
        "agentid": 1000002,
        "wishing": "感谢您一年来的辛勤付出，新春快乐！",
        "act_name": "2024年会红包",
        "remark": "年会抽奖",
        "scene_id": "PRODUCT_4",
    }
    args.update(changes)
    return {name: value for name, value in args.items() if value is not None}


# --- building: the W3 request, and every rule checked before sending ---------------------------


def test_send_params_are_the_w3_request_with_its_workwx_sign_and_no_secret() -> None:
    builder = _builder(limits=AmountRules(scenes={"PRODUCT_4": (30, 499_900)}))
    params = builder.send_params(
        "sendworkwxredpack", nonce_str="7H3kQ9vLm2Xp5Rt8Wz1Yc4Nb6Df0Gs2J", **_args()
    )
    assert params["workwx_sign"] == "5D6809139B3D35A0985CBB5A9F0155B8"
    assert params["wxappid"] == "ww8c1f9e0a3b5d7f24"
    assert SECRET not in repr(params)
    assert not {"send_name", "total_num", "client_ip", "sign_type", "sign"} & set(params)
    # Re-billed (a re-issue, a campaign's next line): the workwx_sign is made again.
    moved = builder.changed_params(
        "sendworkwxredpack", params, {"mch_billno": "1900000109202403150000000102"}
    )
    assert moved["workwx_sign"] != params["workwx_sign"]
    assert verify_workwx(moved, SECRET)
    cash = {"mch_billno": "B", "nonce_str": "n", "send_name": "x"}
    assert builder.changed_params("sendredpack", cash, {"mch_billno": "C"})["mch_billno"] == "C"


SCENES = AmountRules(scenes={"PRODUCT_4": (30, 499_900)})


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"sender_name": "HR"}, "sender_name", "sender_xor_agentid"),
        ({"agentid": None}, "sender_name", "sender_xor_agentid"),
        ({"sender_header_media_id": "m"}, "sender_header_media_id", "media_with_sender_name"),
        ({"agentid": None, "sender_name": "名" * 129}, "sender_name", "max_length"),
        ({"agentid": None, "sender_name": " HR"}, "sender_name", "whitespace"),
        (
            {"agentid": None, "sender_name": "HR", "sender_header_media_id": "m" * 129},
            "sender_header_media_id",
            "max_length",
        ),
        ({"agentid": True}, "agentid", "type"),
        ({"agentid": -1}, "agentid", "agentid"),
        ({"agentid": 2**32}, "agentid", "agentid"),
        ({"mch_billno": "bill-1"}, "mch_billno", "bill_no"),
        ({"re_openid": "o" * 33}, "re_openid", "max_length"),
        ({"wishing": ""}, "wishing", "required"),
        ({"act_name": "a" * 33}, "act_name", "max_length"),
        ({"remark": "r" * 257}, "remark", "max_length"),
        ({"total_amount": "100"}, "total_amount", "type"),
        ({"scene_id": "PRODUCT_9"}, "scene_id", "scene_id"),
        ({"scene_id": "PRODUCT_2"}, "scene_id", "scene_enabled"),
        ({"scene_id": None, "total_amount": 99}, "scene_id", "scene_required"),
        ({"scene_id": None, "total_amount": 20001}, "scene_id", "scene_required"),
        ({"total_amount": 29}, "total_amount", "amount_range"),
        ({"send_name": "HR"}, "send_name", "whitelist"),
        ({"risk_info": "posttime%3d1"}, "risk_info", "whitelist"),
        ({"total_num": 2}, "total_num", "whitelist"),
    ],
)
def test_every_local_rule_is_refused_before_sending(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _builder(limits=SCENES).send_params("sendworkwxredpack", **_args(**changes))
    assert (caught.value.field, caught.value.rule) == (field, rule)
    assert field in str(caught.value)


@pytest.mark.parametrize("name", ["sender_name", "agentid", "sender_header_media_id"])
def test_wecom_fields_are_refused_on_cash_red_packets(name: str) -> None:
    value: Any = 1 if name == "agentid" else "x"
    with pytest.raises(ValidationError) as caught:
        _builder().send_params(
            "sendredpack", mch_billno="1900000109202403150000000101", re_openid="o",
            total_amount=100, send_name="A", wishing="w", act_name="a", remark="r",
            **{name: value},
        )  # fmt: skip
    assert (caught.value.field, caught.value.rule) == (name, "whitelist")


@pytest.mark.parametrize("missing", ["wecom_corpid", "wecom_secret"])
def test_a_merchant_without_its_corp_or_secret_cannot_send_wecom_packets(missing: str) -> None:
    with pytest.raises(ConfigurationError, match=missing):
        _builder(**{missing: None}).send_params("sendworkwxredpack", **_args(scene_id=None))


@pytest.mark.parametrize("secret", ["with space", "", "x" * 129, "密钥"])
def test_a_malformed_wecom_secret_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="wecom_secret") as caught:
        _builder(wecom_secret=secret)
    assert secret not in str(caught.value) or not secret


def test_the_secret_never_shows_in_a_repr() -> None:
    merchant = Merchant(mch_id="1900000109", api_key=SecretStr(KEY), wecom_secret=SecretStr(SECRET))
    assert SECRET not in repr(merchant)
    assert SECRET not in str(merchant)
    assert SECRET not in repr(BaseClient(merchant))


def test_frozen_parameters_need_their_workwx_sign() -> None:
    builder = _builder()
    params = builder.send_params("sendworkwxredpack", **_args(scene_id=None))
    del params["workwx_sign"]
    with pytest.raises(ValueError, match="workwx_sign"):
        builder._frozen_call("sendworkwxredpack", params)


# --- against the simulator -----------------------------------------------------------------------


def test_send_and_query_in_an_apps_name(corp: Corp) -> None:
    client = corp.client()
    args = corp.args()
    result = client.send_workwx_redpack(**args)
    assert isinstance(result, WorkwxSendResult)
    assert (result.mch_billno, result.total_amount, result.wxappid) == (
        args["mch_billno"], 100, corp.corpid,
    )  # fmt: skip
    info = client.query_workwx_redpack(args["mch_billno"])
    assert isinstance(info, WorkwxRedpackInfo)
    assert (info.found, info.status, info.detail_id) == (
        True,
        RedpackStatus.SENT,
        result.send_listid,
    )
    assert info.receipts == []
    assert corp.bench.open(corp.creds, args["mch_billno"]) == "RECEIVED"
    opened = client.query_for("sendworkwxredpack", args["mch_billno"])
    assert opened.status is RedpackStatus.RECEIVED
    assert [(r.openid, r.amount) for r in opened.receipts] == [(args["re_openid"], 100)]
    assert client.query_workwx_redpack(corp.bill()).found is False


async def test_the_async_client_sends_in_a_persons_name(corp: Corp) -> None:
    args = corp.args(agentid=None, sender_name="HR Team", sender_header_media_id="m1")
    async with corp.async_client() as client:
        result = await client.send_workwx_redpack(**args)
        assert (result.sender_name, result.sender_header_media_id) == ("HR Team", "m1")
        info = await client.query_for("sendworkwxredpack", args["mch_billno"])
    assert info.status is RedpackStatus.SENT
    assert isinstance(info, WorkwxRedpackInfo)
    assert info.sender_name == "HR Team"


def test_systemerror_and_a_dropped_answer_are_resent_with_the_same_bytes(corp: Corp) -> None:
    sim = corp.bench.sim
    sim.faults.add(parse_fault({"endpoint": "sendworkwxredpack", "action": "error",
                                "err_code": "SYSTEMERROR", "count": 1}))  # fmt: skip
    sim.faults.add(parse_fault({"endpoint": "sendworkwxredpack", "action": "pay_then_drop",
                                "count": 1}))  # fmt: skip
    args = corp.args()
    result = corp.client().send_workwx_redpack(**args)
    assert result.mch_billno == args["mch_billno"]
    assert len(corp.bench.sleeps) == 2
    _, records = sim.state.ledger(corp.mch_id)
    assert [(r.mch_billno, r.status) for r in records] == [(args["mch_billno"], "SENT")]


def test_a_systemerror_past_the_retries_is_an_unknown_outcome(corp: Corp) -> None:
    corp.bench.sim.faults.add(parse_fault({"endpoint": "sendworkwxredpack", "action": "error",
                                           "err_code": "SYSTEMERROR"}))  # fmt: skip
    with pytest.raises(UnknownOutcomeError) as caught:
        corp.client().send_workwx_redpack(**corp.args())
    assert caught.value.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(
    ("setup", "err_code", "des", "cls"),
    [
        ("unbound", "NO_COMPETENCE", "商户号错误", RejectedError),
        ("wrong-secret", "SIGN_ERROR", "企业微信签名校验失败", RejectedError),
        ("wrong-key", "SIGN_ERROR", "签名错误", RejectedError),
        ("follower", "OPENID_ERROR", "openid和appid不匹配", RejectedError),
        ("blocked", "NO_AUTH", "发放失败，此请求可能存在风险，已被微信拦截", RefusedError),
    ],
)
def test_each_answer_raises_the_error_of_its_outcome(
    corp: Corp, setup: str, err_code: str, des: str, cls: type[HongbaoError]
) -> None:
    changes: dict[str, Any] = {}
    args = corp.args()
    if setup == "unbound":
        corp.update(bound=False)
    elif setup == "wrong-secret":
        changes["wecom_secret"] = "x" * 43
    elif setup == "wrong-key":
        changes["api_key"] = SecretStr("0" * 32)
    elif setup == "follower":
        [args["re_openid"]] = corp.bench.sim.add_users(corp.creds.appid, 1)
    else:
        corp.bench.sim.state.set_blocked(args["re_openid"], True)
    with pytest.raises(cls) as caught:
        corp.client(**changes).send_workwx_redpack(**args)
    error = caught.value
    assert type(error) is cls
    assert (error.err_code, error.err_code_des) == (err_code, des)
    for secret in (corp.secret, corp.creds.api_key):
        assert secret not in str(error)
        assert secret not in repr(error)


def test_what_goes_on_the_wire_is_signed_twice(corp: Corp) -> None:
    recorded: list[bytes] = []
    merchant = corp.merchant()
    transport = corp.bench.transport(merchant)
    inner = transport.handle_request

    def spy(request: Any) -> Any:
        recorded.append(request.body)
        return inner(request)

    transport.handle_request = spy  # type: ignore[method-assign]
    from hongbao.api import Client

    Client(merchant, transport=transport, clock=corp.bench.sim.clock).send_workwx_redpack(
        **corp.args()
    )
    fields = xmlcodec.loads(recorded[0])
    assert verify_workwx(fields, corp.secret)
    assert verify(fields, corp.creds.api_key)
    assert "sign_type" not in fields
