"""Helpers for the api tests: a test merchant, scripted stub transports and canned answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import SecretStr

from hongbao.api.merchant import Merchant
from hongbao.api.models import AmountRules
from hongbao.wire import xmlcodec
from hongbao.wire.transport import AsyncTransport, Transport, WireRequest, WireResponse

KEY = "Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J"
MCH_ID = "1900000109"
APPID = "wx2421b1c4370ec43b"
MINI_APPID = "wxd27ebc41b85ce36d"
BILL = "1900000109202403150000000001"
OPENID = "oxTWIuGaIt6gTKsQRLau2M0yL16E"
SEND_LISTID = "1000041701202403153000082277434"

SEND_ARGS: dict[str, Any] = {
    "mch_billno": BILL,
    "re_openid": OPENID,
    "total_amount": 1000,
    "send_name": "天虹百货",
    "wishing": "感谢您参加猜灯谜活动，祝您元宵节快乐！",
    "act_name": "猜灯谜抢红包活动",
    "remark": "猜越多得越多，快来抢！",
}
"""The arguments every send API takes (values of spec vector V3)."""

MERCHANT = Merchant(
    mch_id=MCH_ID,
    api_key=SecretStr(KEY),
    appid=APPID,
    mini_appid=MINI_APPID,
    client_ip="192.168.0.1",
    limits=AmountRules(scenes={"PRODUCT_2": (30, 50000)}),
)


def merchant(**changes: Any) -> Merchant:
    """The test merchant with `changes` applied."""
    return replace(MERCHANT, **changes)


Reply = WireResponse | Exception


def reply(fields: Mapping[str, str | int], status: int = 200) -> WireResponse:
    """An answer carrying `fields` as WeChat writes them (strings in CDATA, integers bare)."""
    return WireResponse(status=status, body=xmlcodec.dumps(fields), url="https://stub")


def success(**fields: str | int) -> WireResponse:
    """sendredpack's success answer for BILL (docs/protocol.md §3.2), with `fields` added or
    replaced."""
    base: dict[str, str | int] = {
        "return_code": "SUCCESS",
        "return_msg": "发放成功",
        "result_code": "SUCCESS",
        "err_code": "SUCCESS",
        "err_code_des": "发放成功",
        "mch_billno": BILL,
        "mch_id": MCH_ID,
        "wxappid": APPID,
        "re_openid": OPENID,
        "total_amount": 1000,
        "send_listid": SEND_LISTID,
    }
    return reply({**base, **fields})


def failure(err_code: str, des: str = "错误", *, return_code: str = "SUCCESS") -> WireResponse:
    """A business failure with `err_code` (echoing the bill, as WeChat does)."""
    return reply(
        {
            "return_code": return_code,
            "return_msg": des,
            "result_code": "FAIL",
            "err_code": err_code,
            "err_code_des": des,
            "mch_billno": BILL,
            "mch_id": MCH_ID,
        }
    )


def gbk_success() -> WireResponse:
    """A SUCCESS answer declaring GBK, an encoding expat cannot decode (it must not be trusted,
    and must not crash the caller either)."""
    body = success().body.replace(b"<xml>", b'<?xml version="1.0" encoding="GBK"?><xml>', 1)
    return WireResponse(status=200, body=body, url="https://stub")


class _Script:
    def __init__(self, replies: tuple[Reply, ...]) -> None:
        if not replies:
            raise ValueError("a stub needs at least one reply")
        self._replies = list(replies)
        self.requests: list[WireRequest] = []

    def next(self, request: WireRequest) -> WireResponse:
        self.requests.append(request)
        # The last reply repeats once the script is used up.
        answer = self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def bodies(self) -> list[bytes]:
        return [request.body for request in self.requests]

    def sent(self, index: int = -1) -> xmlcodec.XmlDict:
        """The parameters of a sent request, parsed back from its body."""
        return xmlcodec.loads(self.requests[index].body)


class StubTransport(Transport, _Script):
    """A synchronous transport answering from a script; records every request."""

    def __init__(self, *replies: Reply) -> None:
        _Script.__init__(self, replies)

    def handle_request(self, request: WireRequest) -> WireResponse:
        return self.next(request)


class AsyncStubTransport(AsyncTransport, _Script):
    """The asynchronous twin of `StubTransport`."""

    def __init__(self, *replies: Reply) -> None:
        _Script.__init__(self, replies)

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        return self.next(request)


class Sleeps(list[float]):
    """Records the delays a client waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    async def wait(self, seconds: float) -> None:
        self.append(seconds)
