"""Every err_code of docs/protocol.md §5.2 (send APIs) and §5.4 (gethbinfo), end to end through
`Client`.

The simulator is set up so that it produces each code naturally — limits, switches, users,
certificates, keys — and faults are injected only for SYSTEMERROR, the numeric 268458547 and
PROCESSING. Each test checks the exception the client raises: its class, `err_code`, the spec's
exact `err_code_des`, its outcome for the money, and that neither str nor repr shows the API key.
Every test runs in-process and served over mutual TLS (`tests.api.modekit`).

Codes the client refuses before sending need a client whose local rules are looser than the
simulator's: each such test says how. XML_ERROR cannot come from a correct client at all; it is
produced by a raw request and classified with the client's code table.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from hongbao.api import AmountRules, SendResult
from hongbao.api.codes import error_for
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
from hongbao.sim.faults import parse_fault
from hongbao.sim.state import MerchantSettings
from hongbao.wire import xmlcodec
from tests.api.modekit import Bench

SEND = "/mmpaymkttransfers/sendredpack"
QUERY = "/mmpaymkttransfers/gethbinfo"
DAY = 24 * 3600
WRONG_KEY = "0123456789abcdefABCDEF0123456789"

# The spec's texts (§5.2–§5.4), byte for byte.
NO_AUTH_RISK = "发放失败，此请求可能存在风险，已被微信拦截"
NO_AUTH_IP = "IP地址非你在商户平台设置的可用IP地址"
CA_MISSING = "CA证书出错，请登录微信支付商户平台下载证书"
CA_INVALID = "商户API证书校验出错"
CA_EXPIRED = "证书已过期"
SIGN_ERROR = "签名错误"
FREQ_LIMIT = "超过频率限制,请稍后再试"
XML_ERROR = "输入xml参数格式错误"
PARAM_APPID = "商户号和wxappid不匹配"
ACCEPTED = "请求已受理，请稍后使用原单号查询发放结果"

CERTIFICATES = [
    pytest.param("none", CA_MISSING, id="no-certificate"),
    pytest.param("another merchant's", CA_INVALID, id="another-merchants"),
    pytest.param("foreign CA", CA_INVALID, id="foreign-ca"),
    pytest.param("expired", CA_EXPIRED, id="expired"),
]


def check(
    error: HongbaoError,
    cls: type[HongbaoError],
    err_code: str,
    des: str,
    outcome: Outcome,
    *keys: str,
    return_code: str = "SUCCESS",
) -> None:
    """`error` is exactly `cls` for this code and text, and shows none of `keys`."""
    assert type(error) is cls, repr(error)
    assert (error.err_code, error.err_code_des) == (err_code, des)
    assert error.return_code == return_code
    assert error.outcome is outcome
    for key in keys:
        assert key not in str(error)
        assert key not in repr(error)


# --- §5.2: switches and settings of the merchant ----------------------------------------------


@pytest.mark.parametrize(
    ("settings", "err_code", "cls", "outcome", "des"),
    [
        pytest.param(
            {"product_enabled": False},
            "PRODUCT_AUTHORITY_UNOPEN",
            RejectedError,
            Outcome.NOT_SENT,
            "你的商户号未开通该产品权限，请联系管理员到产品中心开通。"
            "开通路径：产品中心-产品大全-现金红包-申请开通",
            id="PRODUCT_AUTHORITY_UNOPEN",
        ),
        pytest.param(
            {"restricted": True},
            "PAYER_ACCOUNT_ABNORMAL",
            RefusedError,
            Outcome.REFUSED,
            "商户账户付款受限",
            id="PAYER_ACCOUNT_ABNORMAL",
        ),
        pytest.param(
            {"api_enabled": False},
            "API_METHOD_CLOSED",
            RejectedError,
            Outcome.NOT_SENT,
            "你的商户号API发放方式已关闭，请联系管理员在商户平台开启",
            id="API_METHOD_CLOSED",
        ),
        pytest.param(
            # Both modes call from 127.0.0.1.
            {"ip_whitelist": ["10.9.9.9"]},
            "NO_AUTH",
            RefusedError,
            Outcome.REFUSED,
            NO_AUTH_IP,
            id="NO_AUTH-ip-whitelist",
        ),
        pytest.param(
            {"balance_fen": 99},
            "NOTENOUGH",
            RefusedError,
            Outcome.REFUSED,
            "帐号余额不足，请到商户平台充值后再重试",
            id="NOTENOUGH",
        ),
    ],
)
def test_a_merchant_setting_refuses_the_send(
    bench: Bench,
    settings: dict[str, Any],
    err_code: str,
    cls: type[HongbaoError],
    outcome: Outcome,
    des: str,
) -> None:
    shop = bench.shop(**settings)
    with pytest.raises(cls) as raised:
        shop.client().send_redpack(**shop.args(total_amount=100))
    check(raised.value, cls, err_code, des, outcome, shop.creds.api_key)


# --- §5.2: limits reached by an earlier packet ------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "same_user", "err_code", "cls", "outcome", "des"),
    [
        pytest.param(
            {"per_user_count": 1},
            True,
            "SENDNUM_LIMIT",
            RefusedError,
            Outcome.REFUSED,
            "该用户今日领取红包个数超过限制",
            id="SENDNUM_LIMIT",
        ),
        pytest.param(
            {"per_user_amount": 150},
            True,
            "RCVDAMOUNT_LIMIT",
            RefusedError,
            Outcome.REFUSED,
            "该用户今日领取金额超过限制，如有需要请登录微信支付商户平台更改API安全配置",
            id="RCVDAMOUNT_LIMIT",
        ),
        pytest.param(
            {"merchant_amount": 150},
            False,
            "SENDAMOUNT_LIMIT",
            RefusedError,
            Outcome.REFUSED,
            "您的商户号今日发放金额超过限制，如有需要请登录微信支付商户平台更改API安全配置",
            id="SENDAMOUNT_LIMIT",
        ),
        pytest.param(
            {"rate_per_minute": 1},
            False,
            "FREQ_LIMIT",
            FrequencyLimitError,
            Outcome.NOT_SENT,
            FREQ_LIMIT,
            id="FREQ_LIMIT",
        ),
        pytest.param(
            {"legacy_minute_cap": 1},
            False,
            "SECOND_OVER_LIMITED",
            FrequencyLimitError,
            Outcome.NOT_SENT,
            "企业红包的按分钟发放受限",
            id="SECOND_OVER_LIMITED",
        ),
        pytest.param(
            {"legacy_day_cap": 1},
            False,
            "DAY_OVER_LIMITED",
            RefusedError,
            Outcome.REFUSED,
            "企业红包的按天日发放受限",
            id="DAY_OVER_LIMITED",
        ),
    ],
)
def test_a_limit_refuses_the_next_send(
    bench: Bench,
    settings: dict[str, Any],
    same_user: bool,
    err_code: str,
    cls: type[HongbaoError],
    outcome: Outcome,
    des: str,
) -> None:
    shop = bench.shop(**settings)
    client = shop.client()
    client.send_redpack(**shop.args(total_amount=100))
    user = shop.users[0] if same_user else shop.users[1]
    with pytest.raises(cls) as raised:
        client.send_redpack(**shop.args(re_openid=user, total_amount=100))
    check(raised.value, cls, err_code, des, outcome, shop.creds.api_key)
    assert [row.status for row in shop.ledger()[1]].count("SENT") == 1


# --- §5.2: users, appids and amounts ----------------------------------------------------------


def test_no_auth_for_a_user_flagged_by_risk_control_leaves_a_sending_record(bench: Bench) -> None:
    shop = bench.shop()
    bench.sim.state.set_blocked(shop.users[0], True)
    client = shop.client()
    args = shop.args()
    with pytest.raises(RefusedError) as raised:
        client.send_redpack(**args)
    check(raised.value, RefusedError, "NO_AUTH", NO_AUTH_RISK, Outcome.REFUSED, shop.creds.api_key)
    info = client.query_redpack(args["mch_billno"])
    assert (info.status, info.reason) == ("SENDING", NO_AUTH_RISK)


def test_illegal_appid_for_a_mobile_app_appid(bench: Bench) -> None:
    # The client cannot tell an app's appid from an Official Account's; the simulator can.
    shop = bench.shop()
    with pytest.raises(RejectedError) as raised:
        shop.client(appid=shop.creds.app_appid).send_redpack(**shop.args())
    check(
        raised.value,
        RejectedError,
        "ILLEGAL_APPID",
        "非法appid，请确认是否为公众号的appid，不能为APP的appid",
        Outcome.NOT_SENT,
        shop.creds.api_key,
    )


def test_openid_error_for_an_openid_of_another_appid(bench: Bench) -> None:
    # An openid of the merchant's mini program, sent as if it were an Official Account user.
    shop = bench.shop()
    with pytest.raises(RejectedError) as raised:
        shop.client().send_redpack(**shop.args(re_openid=shop.mini_users[0]))
    check(
        raised.value,
        RejectedError,
        "OPENID_ERROR",
        "openid和appid不匹配",
        Outcome.NOT_SENT,
        shop.creds.api_key,
    )


@pytest.mark.parametrize(
    ("api", "des"),
    [
        pytest.param("sendredpack", "红包金额发放限制", id="sendredpack"),
        pytest.param(
            "sendgroupredpack", "每个红包的平均金额必须在1.00元到200.00元之间.", id="group-average"
        ),
    ],
)
def test_money_limit_outside_the_scene_range_the_simulator_has(
    bench: Bench, api: str, des: str
) -> None:
    # The client believes PRODUCT_1 allows 0.30-4999 yuan; the simulator has it at 1-200 yuan.
    shop = bench.shop(scenes={"PRODUCT_1": (100, 20_000)})
    client = shop.client(limits=AmountRules(scenes={"PRODUCT_1": (30, 499_900)}))
    send: Callable[[], SendResult]
    if api == "sendredpack":
        send = partial(client.send_redpack, **shop.args(total_amount=50), scene_id="PRODUCT_1")
    else:
        args = shop.args(total_amount=90_000)  # 300 yuan on average over 3 shares
        send = partial(client.send_group_redpack, **args, total_num=3, scene_id="PRODUCT_1")
    with pytest.raises(RejectedError) as raised:
        send()
    check(raised.value, RejectedError, "MONEY_LIMIT", des, Outcome.NOT_SENT, shop.creds.api_key)


@pytest.mark.parametrize(
    "variant", ["scene not enabled", "appid of another merchant", "unknown merchant"]
)
def test_param_error(bench: Bench, variant: str) -> None:
    shop = bench.shop()
    args = shop.args()
    if variant == "scene not enabled":
        # The client believes PRODUCT_2 is enabled; the simulator's merchant has no scene.
        client = shop.client(limits=AmountRules(scenes={"PRODUCT_2": (100, 20_000)}))
        args["scene_id"] = "PRODUCT_2"
        des = "参数错误:该场景未开通,请登陆商户平台:产品中心-现金红包-产品设置-使用场景 进行开通"
    elif variant == "appid of another merchant":
        client = shop.client(appid=bench.shop().creds.appid)
        des = PARAM_APPID
    else:
        client = shop.client(mch_id="1" * 10)
        args["mch_billno"] = "1" * 10 + args["mch_billno"][10:]
        des = "找不到对应的商户号"
    with pytest.raises(RejectedError) as raised:
        client.send_redpack(**args)
    check(raised.value, RejectedError, "PARAM_ERROR", des, Outcome.NOT_SENT, shop.creds.api_key)


# --- §5.2: service-provider mode --------------------------------------------------------------


def test_msgappid_error_for_a_msgappid_bound_to_neither_merchant(bench: Bench) -> None:
    provider, sub, stranger = bench.shop(), bench.shop(), bench.shop()
    bench.sim.state.update_merchant(provider.mch_id, MerchantSettings(sub_mch_ids=[sub.mch_id]))
    client = provider.client(sub_mch_id=sub.mch_id, msgappid=stranger.creds.appid)
    with pytest.raises(RejectedError) as raised:
        client.send_redpack(**provider.args(re_openid=sub.users[0]))
    check(
        raised.value,
        RejectedError,
        "MSGAPPID_ERROR",
        "触达消息给用户appid有误",
        Outcome.NOT_SENT,
        provider.creds.api_key,
    )


def test_acceptmode_error_without_a_service_relationship(bench: Bench) -> None:
    provider, stranger = bench.shop(), bench.shop()
    client = provider.client(sub_mch_id=stranger.mch_id, msgappid=stranger.creds.appid)
    with pytest.raises(RejectedError) as raised:
        client.send_redpack(**provider.args(re_openid=stranger.users[0]))
    check(
        raised.value,
        RejectedError,
        "ACCEPTMODE_ERROR",
        "主、子商户号关系校验失败",
        Outcome.NOT_SENT,
        provider.creds.api_key,
    )


# --- §5.2: the bill number ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "des"),
    [
        pytest.param("re_openid", "更换了openid，但商户单号未更新", id="openid"),
        pytest.param("total_amount", "金额和原始单参数不一致", id="amount"),
    ],
)
def test_fatal_error_when_a_bill_is_reused_with_other_parameters(
    bench: Bench, change: str, des: str
) -> None:
    shop = bench.shop()
    client = shop.client()
    args = shop.args()
    client.send_redpack(**args)
    args[change] = shop.users[1] if change == "re_openid" else 101
    with pytest.raises(BillConflictError) as raised:
        client.send_redpack(**args)
    check(raised.value, BillConflictError, "FATAL_ERROR", des, Outcome.NOT_SENT, shop.creds.api_key)


def test_send_failed_once_the_bill_ended_failed(bench: Bench) -> None:
    shop = bench.shop()
    client = shop.client()
    args = shop.args()
    bench.sim.state.set_blocked(shop.users[0], True)
    with pytest.raises(RefusedError):
        client.send_redpack(**args)
    bench.advance(DAY)  # the refused record turns FAILED a day later
    assert client.query_redpack(args["mch_billno"]).status == "FAILED"
    bench.sim.state.set_blocked(shop.users[0], False)
    with pytest.raises(BillFailedError) as raised:
        client.send_redpack(**args)
    check(
        raised.value,
        BillFailedError,
        "SEND_FAILED",
        "红包发放失败,请更换单号再重试",
        Outcome.REFUSED,
        shop.creds.api_key,
    )


# --- §5.2: certificate, signature, XML ---------------------------------------------------------


@pytest.mark.parametrize(("certificate", "des"), CERTIFICATES)
def test_ca_error_without_the_merchants_valid_certificate(
    bench: Bench, certificate: str, des: str
) -> None:
    shop = bench.shop()
    client = bench.client(shop.merchant(certificate=shop.certificate(certificate)))
    with pytest.raises(RejectedError) as raised:
        client.send_redpack(**shop.args())
    check(raised.value, RejectedError, "CA_ERROR", des, Outcome.NOT_SENT, shop.creds.api_key)
    assert shop.ledger()[1] == []


def test_sign_error_with_another_key(bench: Bench) -> None:
    shop = bench.shop()
    with pytest.raises(RejectedError) as raised:
        shop.client(api_key=WRONG_KEY).send_redpack(**shop.args())
    check(
        raised.value,
        RejectedError,
        "SIGN_ERROR",
        SIGN_ERROR,
        Outcome.NOT_SENT,
        shop.creds.api_key,
        WRONG_KEY,
    )


@pytest.mark.parametrize(("path", "query"), [(SEND, False), (QUERY, True)])
def test_xml_error_for_a_body_that_is_not_xml(bench: Bench, path: str, query: bool) -> None:
    # No correct client sends this: the raw bytes go through the wire layer, and the answer is
    # classified with the client's code table.
    shop = bench.shop()
    answer = shop.post(path, b"")
    assert answer.status == 200
    error = error_for(xmlcodec.loads(answer.body), query=query, raw=answer.body)
    assert error is not None
    check(
        error,
        RejectedError,
        "XML_ERROR",
        XML_ERROR,
        Outcome.NOT_SENT,
        shop.creds.api_key,
        return_code="FAIL",
    )


# --- §5.2: injected faults ---------------------------------------------------------------------


def test_systemerror_is_retried_with_the_same_bill_and_stays_unknown(bench: Bench) -> None:
    shop = bench.shop()
    client = shop.client()
    args = shop.args()
    bench.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "error", "err_code": "SYSTEMERROR"})
    )
    with pytest.raises(UnknownOutcomeError) as raised:
        client.send_redpack(**args)
    check(
        raised.value,
        UnknownOutcomeError,
        "SYSTEMERROR",
        ACCEPTED,
        Outcome.UNKNOWN,
        shop.creds.api_key,
    )
    assert len(bench.sleeps) == client.merchant.retry.max_retries
    bench.sim.faults.clear()
    client.send_redpack(**args)  # the same bill goes through once WeChat recovers
    assert [row.status for row in shop.ledger()[1]] == ["SENT"]


def test_numeric_268458547_is_an_unknown_outcome(bench: Bench) -> None:
    shop = bench.shop()
    bench.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "error", "err_code": "268458547"})
    )
    with pytest.raises(UnknownOutcomeError) as raised:
        shop.client().send_redpack(**shop.args())
    check(
        raised.value,
        UnknownOutcomeError,
        "268458547",
        "系统繁忙,请稍后再试.",
        Outcome.UNKNOWN,
        shop.creds.api_key,
        return_code="FAIL",
    )


def test_processing_leaves_the_bill_pending_until_it_resolves(bench: Bench) -> None:
    shop = bench.shop()
    client = shop.client()
    args = shop.args()
    bench.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "processing", "count": 1})
    )
    with pytest.raises(ProcessingError) as raised:
        client.send_redpack(**args)
    check(
        raised.value, ProcessingError, "PROCESSING", ACCEPTED, Outcome.UNKNOWN, shop.creds.api_key
    )
    assert client.query_redpack(args["mch_billno"]).status == "SENDING"
    with pytest.raises(ProcessingError):
        client.send_redpack(**args)  # still processing: the same answer, nothing new issued
    bench.advance(20 * 60)  # docs/protocol.md §5.2: query again after 20 minutes
    assert client.query_redpack(args["mch_billno"]).status == "SENT"
    assert client.send_redpack(**args).mch_billno == args["mch_billno"]
    assert [row.status for row in shop.ledger()[1]] == ["SENT"]


# --- §5.4: gethbinfo ---------------------------------------------------------------------------


@pytest.mark.parametrize(("certificate", "des"), CERTIFICATES)
def test_query_ca_error(bench: Bench, certificate: str, des: str) -> None:
    shop = bench.shop()
    client = bench.client(shop.merchant(certificate=shop.certificate(certificate)))
    with pytest.raises(RejectedError) as raised:
        client.query_redpack(shop.bill())
    check(raised.value, RejectedError, "CA_ERROR", des, Outcome.NOT_SENT, shop.creds.api_key)


def test_query_sign_error(bench: Bench) -> None:
    shop = bench.shop()
    with pytest.raises(RejectedError) as raised:
        shop.client(api_key=WRONG_KEY).query_redpack(shop.bill())
    check(
        raised.value,
        RejectedError,
        "SIGN_ERROR",
        SIGN_ERROR,
        Outcome.NOT_SENT,
        shop.creds.api_key,
        WRONG_KEY,
    )


def test_query_no_auth_from_outside_the_ip_whitelist(bench: Bench) -> None:
    # §5.4 gives no text for gethbinfo's NO_AUTH; the simulator answers the whitelist text of
    # §5.2, its one reason to deny a merchant the query.
    shop = bench.shop(ip_whitelist=["10.9.9.9"])
    with pytest.raises(RejectedError) as raised:
        shop.client().query_redpack(shop.bill())
    check(raised.value, RejectedError, "NO_AUTH", NO_AUTH_IP, Outcome.NOT_SENT, shop.creds.api_key)


def test_query_not_found_is_an_answer_not_an_error(bench: Bench) -> None:
    shop = bench.shop()
    info = shop.client().query_redpack(shop.bill())
    assert not info.found
    answer = xmlcodec.loads(info.raw)
    assert (answer["err_code"], answer["err_code_des"]) == ("NOT_FOUND", "指定单号数据不存在")


def test_query_freq_limit(bench: Bench) -> None:
    shop = bench.shop(query_rate_per_minute=1)
    client = shop.client()
    client.query_redpack(shop.bill())
    with pytest.raises(FrequencyLimitError) as raised:
        client.query_redpack(shop.bill())
    check(
        raised.value,
        FrequencyLimitError,
        "FREQ_LIMIT",
        FREQ_LIMIT,
        Outcome.NOT_SENT,
        shop.creds.api_key,
    )


def test_query_param_error_for_the_appid_of_another_merchant(bench: Bench) -> None:
    shop = bench.shop()
    other = bench.shop()
    with pytest.raises(RejectedError) as raised:
        shop.client().query_redpack(shop.bill(), appid=other.creds.appid)
    check(
        raised.value,
        RejectedError,
        "PARAM_ERROR",
        PARAM_APPID,
        Outcome.NOT_SENT,
        shop.creds.api_key,
    )


def test_query_systemerror_is_retried_and_stays_unknown(bench: Bench) -> None:
    shop = bench.shop()
    client = shop.client()
    bench.sim.faults.add(
        parse_fault({"endpoint": "gethbinfo", "action": "error", "err_code": "SYSTEMERROR"})
    )
    with pytest.raises(UnknownOutcomeError) as raised:
        client.query_redpack(shop.bill())
    check(
        raised.value,
        UnknownOutcomeError,
        "SYSTEMERROR",
        "系统繁忙，请再试。",
        Outcome.UNKNOWN,
        shop.creds.api_key,
    )
    assert len(bench.sleeps) == client.merchant.retry.max_retries
