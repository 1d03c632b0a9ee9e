"""The parameters a mini program passes to `wx.sendBizRedPacket` (docs/protocol.md §7).

>>> params = jsapi_params("sendid=1&ver=8", appid="wxd27ebc41b85ce36d", api_key="k" * 32,
...                       timestamp=1514363815, nonce="Ww213sdad")
>>> params["package"], params["signType"]
('sendid%3D1%26ver%3D8', 'MD5')
"""

from __future__ import annotations

from urllib.parse import quote

from hongbao.wire.sign import sign

__all__ = ["jsapi_params"]


def jsapi_params(
    package: str, *, appid: str, api_key: str, timestamp: int | str, nonce: str
) -> dict[str, str]:
    """`timeStamp`, `nonceStr`, `package` (URL-encoded), `signType` and `paySign`.

    `paySign` is the uppercase MD5 of docs/protocol.md §2.1 over exactly `appId`, `nonceStr`, the
    encoded `package` and `timeStamp`; `signType` is not signed and `appId` is not passed on.
    """
    encoded = quote(package, safe="")
    signed = {"appId": appid, "nonceStr": nonce, "package": encoded, "timeStamp": str(timestamp)}
    return {
        "timeStamp": signed["timeStamp"],
        "nonceStr": nonce,
        "package": encoded,
        "signType": "MD5",
        "paySign": sign(signed, api_key),
    }
