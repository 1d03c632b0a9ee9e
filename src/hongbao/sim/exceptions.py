"""The simulator's business errors and the exact texts WeChat answers with
(docs/protocol.md §5.2–§5.4).

Every rule of the model raises `SimError(err_code, err_code_des)`; `hongbao.sim.responses` is the
one place that turns it into an `<xml>` body.
"""

from __future__ import annotations

from typing import Final

from hongbao.sim.entities import QUERIES, Api

__all__ = ["InvalidStateError", "SimError", "UnknownObjectError", "injected_error"]

# §5.2 send APIs
SEND_OK: Final = "发放成功"
NO_AUTH_RISK: Final = "发放失败，此请求可能存在风险，已被微信拦截"
NO_AUTH_IP: Final = "IP地址非你在商户平台设置的可用IP地址"
SENDNUM_LIMIT: Final = "该用户今日领取红包个数超过限制"
SENDAMOUNT_LIMIT: Final = (
    "您的商户号今日发放金额超过限制，如有需要请登录微信支付商户平台更改API安全配置"
)
RCVDAMOUNT_LIMIT: Final = (
    "该用户今日领取金额超过限制，如有需要请登录微信支付商户平台更改API安全配置"
)
ILLEGAL_APPID: Final = "非法appid，请确认是否为公众号的appid，不能为APP的appid"
MONEY_LIMIT: Final = "红包金额发放限制"
MONEY_LIMIT_AVERAGE: Final = "每个红包的平均金额必须在1.00元到200.00元之间."
SEND_FAILED: Final = "红包发放失败,请更换单号再重试"
FATAL_OPENID: Final = "更换了openid，但商户单号未更新"
FATAL_AMOUNT: Final = "金额和原始单参数不一致"
FATAL_OTHER: Final = "openid和原始单参数不一致"
CA_MISSING: Final = "CA证书出错，请登录微信支付商户平台下载证书"
CA_INVALID: Final = "商户API证书校验出错"
CA_EXPIRED: Final = "证书已过期"
SIGN_ERROR: Final = "签名错误"
SYSTEMERROR_SEND: Final = "请求已受理，请稍后使用原单号查询发放结果"
SYSTEMERROR_BUSY: Final = "系统繁忙，请再试。"
XML_ERROR: Final = "输入xml参数格式错误"
FREQ_LIMIT: Final = "超过频率限制,请稍后再试"
API_METHOD_CLOSED: Final = "你的商户号API发放方式已关闭，请联系管理员在商户平台开启"
NOTENOUGH: Final = "帐号余额不足，请到商户平台充值后再重试"
OPENID_ERROR: Final = "openid和appid不匹配"
MSGAPPID_ERROR: Final = "触达消息给用户appid有误"
ACCEPTMODE_ERROR: Final = "主、子商户号关系校验失败"
PROCESSING: Final = "请求已受理，请稍后使用原单号查询发放结果"
PRODUCT_AUTHORITY_UNOPEN: Final = (
    "你的商户号未开通该产品权限，请联系管理员到产品中心开通。"
    "开通路径：产品中心-产品大全-现金红包-申请开通"
)
PAYER_ACCOUNT_ABNORMAL: Final = "商户账户付款受限"
SECOND_OVER_LIMITED: Final = "企业红包的按分钟发放受限"
DAY_OVER_LIMITED: Final = "企业红包的按天日发放受限"
GATEWAY_BUSY: Final = "系统繁忙,请稍后再试."
POST_ONLY: Final = "请使用post方法"

# §5.3 PARAM_ERROR details
P_ACT_NAME: Final = "act_name字段必填,并且少于32个字符"
P_SEND_NAME: Final = "send_name字段为必填并且少于32字符"
P_WISHING: Final = "wishing字段为必填,并且少于128个字符"
P_REMARK: Final = "remark字段为必填,并且少于256字符"
P_RE_OPENID: Final = "re_openid字段为必填并且少于32个字符"
P_NONCE: Final = "nonce_str字段必填,并且少于32字符"
P_BILLNO: Final = "订单号字段必填,最长为28个字符"
P_APPID: Final = "appid字段必填,最长为32个字符"
P_CLIENT_IP: Final = "client_ip必须是合法的IP字符串"
P_MCH_ID: Final = "输入的商户号有误"
P_MCH_UNKNOWN: Final = "找不到对应的商户号"
P_APPID_MISMATCH: Final = "商户号和wxappid不匹配"
P_TOTAL_NUM_ONE: Final = "参数错误:total_num必须等于1"
P_TOTAL_NUM_GROUP: Final = "参数错误:total_num必须介于(包括)3到20之间."
P_SCENE: Final = "参数错误:该场景未开通,请登陆商户平台:产品中心-现金红包-产品设置-使用场景 进行开通"
P_AMOUNT: Final = "红包金额参数错误"
# The spec lists no text for these three; the simulator uses the amt_type form it suggests (§5.3)
# and the same pattern for notify_way and bill_type. Clients never branch on texts anyway.
P_AMT_TYPE: Final = "参数错误:amt_type必须为ALL_RAND"
P_NOTIFY_WAY: Final = "参数错误:notify_way必须为MINI_PROGRAM_JSAPI"
P_BILL_TYPE: Final = "参数错误:bill_type必须为MCHT"

# §15.7 sendworkwxredpack (WeCom)
WORKWX_SIGN_ERROR: Final = "企业微信签名校验失败"
NO_COMPETENCE: Final = "商户号错误"
P_WORKWX_AMOUNT: Final = "请求参数错误，重试时请保持原单金额"
P_SENDER: Final = "参数错误:sender_name和agentid必须且只能填一个"
P_SENDER_NAME: Final = "sender_name字段最长为128个字符"
P_MEDIA_ID: Final = "sender_header_media_id字段最长为128个字符"
P_AGENTID: Final = "参数错误:agentid不是该企业的应用"

# §5.4 gethbinfo
QUERY_OK: Final = "OK"
NOT_FOUND: Final = "指定单号数据不存在"

# Known texts for codes a fault may inject, per API family.
_SEND_TEXTS: Final[dict[str, str]] = {
    "NO_AUTH": NO_AUTH_RISK,
    "SENDNUM_LIMIT": SENDNUM_LIMIT,
    "SENDAMOUNT_LIMIT": SENDAMOUNT_LIMIT,
    "RCVDAMOUNT_LIMIT": RCVDAMOUNT_LIMIT,
    "ILLEGAL_APPID": ILLEGAL_APPID,
    "MONEY_LIMIT": MONEY_LIMIT,
    "SEND_FAILED": SEND_FAILED,
    "FATAL_ERROR": FATAL_OTHER,
    "CA_ERROR": CA_MISSING,
    "SIGN_ERROR": SIGN_ERROR,
    "SYSTEMERROR": SYSTEMERROR_SEND,
    "XML_ERROR": XML_ERROR,
    "FREQ_LIMIT": FREQ_LIMIT,
    "API_METHOD_CLOSED": API_METHOD_CLOSED,
    "NOTENOUGH": NOTENOUGH,
    "OPENID_ERROR": OPENID_ERROR,
    "MSGAPPID_ERROR": MSGAPPID_ERROR,
    "ACCEPTMODE_ERROR": ACCEPTMODE_ERROR,
    "PROCESSING": PROCESSING,
    "PARAM_ERROR": "参数错误",
    "PRODUCT_AUTHORITY_UNOPEN": PRODUCT_AUTHORITY_UNOPEN,
    "PAYER_ACCOUNT_ABNORMAL": PAYER_ACCOUNT_ABNORMAL,
    "SECOND_OVER_LIMITED": SECOND_OVER_LIMITED,
    "DAY_OVER_LIMITED": DAY_OVER_LIMITED,
    "NO_COMPETENCE": NO_COMPETENCE,
}
_QUERY_TEXTS: Final[dict[str, str]] = {
    "CA_ERROR": CA_MISSING,
    "SIGN_ERROR": SIGN_ERROR,
    "NO_AUTH": NO_AUTH_IP,
    "NOT_FOUND": NOT_FOUND,
    "FREQ_LIMIT": FREQ_LIMIT,
    "XML_ERROR": XML_ERROR,
    "PARAM_ERROR": "参数错误",
    "SYSTEMERROR": SYSTEMERROR_BUSY,
}


class SimError(Exception):
    """A business error the simulated server answers with (`return_code` SUCCESS unless said)."""

    def __init__(self, err_code: str, err_code_des: str, *, return_code: str = "SUCCESS") -> None:
        super().__init__(f"{err_code}: {err_code_des}")
        self.err_code = err_code
        self.err_code_des = err_code_des
        self.return_code = return_code


def injected_error(api: Api, err_code: str) -> SimError:
    """The error a fault injects: the spec's text for `err_code` on `api`.

    Numeric codes (e.g. 268458547) are gateway failures: `return_code=FAIL` with "系统繁忙"
    (docs/protocol.md §3.1); an unknown symbolic code gets the same busy text, since WeChat may add
    codes.
    """
    if err_code.isascii() and err_code.isdigit():
        return SimError(err_code, GATEWAY_BUSY, return_code="FAIL")
    texts = _QUERY_TEXTS if api in QUERIES else _SEND_TEXTS
    des = texts.get(err_code, GATEWAY_BUSY)
    return_code = "FAIL" if err_code == "XML_ERROR" else "SUCCESS"
    return SimError(err_code, des, return_code=return_code)


class UnknownObjectError(LookupError):
    """A control request named a merchant, appid, user or record that does not exist."""


class InvalidStateError(Exception):
    """A control request that the object's current state does not allow (e.g. open twice)."""
