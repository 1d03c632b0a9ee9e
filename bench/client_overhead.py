"""Client overhead per call, hongbao against wechatpy 1.8.18, in one process, no network.

Three measures, each the median of several timed runs:

1. build: check + sign + serialise one sendredpack request (the work before the bytes leave);
   wechatpy: `WeChatPay.redpack.send` with its HTTP session and result handling stubbed out.
2. parse: read one success answer into a result; wechatpy: `WeChatPay._handle_result`
   (xmltodict + its return/result code checks) on a `requests.Response`.
3. send: a whole `send_redpack` over a stub transport that returns a canned success;
   wechatpy: `WeChatPay.redpack.send` through a requests session whose adapter returns it.

    .venv/bin/python bench/client_overhead.py [--calls 20000] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import requests
from pydantic import SecretStr
from requests.adapters import BaseAdapter
from wechatpy.pay import WeChatPay

from hongbao.api import AsyncClient, Client, Merchant
from hongbao.api._base import Call
from hongbao.api.models import SendRedpackRequest, SendResult
from hongbao.wire.transport import AsyncTransport, Transport, WireRequest, WireResponse

KEY = "Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J"
MCH_ID = "1900000109"
APPID = "wx2421b1c4370ec43b"
BILL = "1900000109202403150000000001"
OPENID = "oxTWIuGaIt6gTKsQRLau2M0yL16E"
CLIENT_IP = "192.168.0.1"
CONTENT = {
    "send_name": "天虹百货",
    "wishing": "感谢您参加猜灯谜活动，祝您元宵节快乐！",
    "act_name": "猜灯谜抢红包活动",
    "remark": "猜越多得越多，快来抢！",
}
SUCCESS = """<xml>
<return_code><![CDATA[SUCCESS]]></return_code>
<return_msg><![CDATA[发放成功]]></return_msg>
<result_code><![CDATA[SUCCESS]]></result_code>
<err_code><![CDATA[SUCCESS]]></err_code>
<err_code_des><![CDATA[发放成功]]></err_code_des>
<mch_billno><![CDATA[1900000109202403150000000001]]></mch_billno>
<mch_id><![CDATA[1900000109]]></mch_id>
<wxappid><![CDATA[wx2421b1c4370ec43b]]></wxappid>
<re_openid><![CDATA[oxTWIuGaIt6gTKsQRLau2M0yL16E]]></re_openid>
<total_amount>1000</total_amount>
<send_listid><![CDATA[1000041701202403153000082277434]]></send_listid>
</xml>""".encode()
CANNED = WireResponse(status=200, body=SUCCESS, url="https://stub")


class _Canned(Transport):
    def handle_request(self, request: WireRequest) -> WireResponse:
        return CANNED


class _AsyncCanned(AsyncTransport):
    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        return CANNED


class _CannedAdapter(BaseAdapter):
    """A requests adapter answering every request with the canned success."""

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        return _response(request)

    def close(self) -> None:
        pass


def _response(request: requests.PreparedRequest | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = SUCCESS
    response.request = request  # type: ignore[assignment]
    return response


def _wechatpy() -> WeChatPay:
    pay = WeChatPay(appid=APPID, api_key=KEY, mch_id=MCH_ID)
    pay._http.mount("https://", _CannedAdapter())
    return pay


def _wechatpy_send(pay: WeChatPay) -> Callable[[], object]:
    def send() -> object:
        return pay.redpack.send(OPENID, 1000, client_ip=CLIENT_IP, out_trade_no=BILL, **CONTENT)

    return send


def _rate(work: Callable[[], object], calls: int, runs: int) -> float:
    """Median calls per second over `runs` timed runs of `calls` calls."""
    work()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        rates.append(calls / (time.perf_counter() - start))
    return statistics.median(rates)


def _async_rate(client: AsyncClient, calls: int, runs: int) -> float:
    async def batch() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await client.send_redpack(
                mch_billno=BILL, re_openid=OPENID, total_amount=1000, **CONTENT
            )
        return calls / (time.perf_counter() - start)

    return statistics.median(asyncio.run(batch()) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    merchant = Merchant(mch_id=MCH_ID, api_key=SecretStr(KEY), appid=APPID, client_ip=CLIENT_IP)
    client = Client(merchant, transport=_Canned())
    send_args: dict[str, Any] = {
        "mch_billno": BILL,
        "re_openid": OPENID,
        "total_amount": 1000,
        **CONTENT,
    }
    # The private steps of Client.send_redpack, timed separately.
    def build() -> Call[SendResult]:
        params = client._redpack_params(
            **send_args, scene_id=None, risk_info=None, client_ip=None, consume_mch_id=None
        )
        return client._send_call(SendRedpackRequest, params)

    call = build()
    hongbao = {
        "build": build,
        "parse": lambda: client._read(call, CANNED),
        "send": lambda: client.send_redpack(**send_args),
    }

    build_only = _wechatpy()
    build_only._http.request = lambda *a, **k: _response()
    build_only._handle_result = lambda res: None
    parser_pay = _wechatpy()
    canned_response = _response()
    wechatpy = {
        "build": _wechatpy_send(build_only),
        "parse": lambda: parser_pay._handle_result(canned_response),
        "send": _wechatpy_send(_wechatpy()),
    }

    print(f"calls/s, median of {args.runs} runs of {args.calls} calls")
    print(f"{'measure':<8} {'hongbao':>10} {'wechatpy':>10} {'ratio':>7}")
    for name in ("build", "parse", "send"):
        ours = _rate(hongbao[name], args.calls, args.runs)
        theirs = _rate(wechatpy[name], args.calls, args.runs)
        print(f"{name:<8} {ours:>10,.0f} {theirs:>10,.0f} {ours / theirs:>6.2f}x")
    async_client = AsyncClient(merchant, transport=_AsyncCanned())
    print(f"{'send/aio':<8} {_async_rate(async_client, args.calls, args.runs):>10,.0f}")


if __name__ == "__main__":
    main()
