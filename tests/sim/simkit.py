"""Raw signed XML against the simulator: the tests' own tiny client (not hongbao.api on purpose)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from hongbao.sim.app import MerchantCredentials, Simulator
from hongbao.wire import xmlcodec
from hongbao.wire.local import PeerInfo
from hongbao.wire.sign import SignType, sign
from hongbao.wire.transport import WireRequest, WireResponse

PATH = "/mmpaymkttransfers/"
_serials = itertools.count(1)


def signed_body(
    params: Mapping[str, str],
    key: str,
    *,
    sign_type: SignType = "MD5",
    unsigned: Mapping[str, str] | None = None,
) -> bytes:
    """`params` signed with `key`, plus `unsigned` fields added after signing."""
    body = dict(params)
    body["sign"] = sign(params, key, sign_type)
    body.update(unsigned or {})
    return xmlcodec.dumps(body)


def parse(response: WireResponse) -> dict[str, Any]:
    """The response's fields (hblist as a list of dicts)."""
    assert response.status == 200, response
    return dict(xmlcodec.loads(response.body))


@dataclass
class Shop:
    """A merchant of the simulator with users, and helpers to call the four APIs as it."""

    sim: Simulator
    creds: MerchantCredentials
    users: list[str]
    mini_users: list[str]
    peer: PeerInfo = field(default_factory=PeerInfo)

    @property
    def mch_id(self) -> str:
        return self.creds.mch_id

    def billno(self) -> str:
        return f"{self.mch_id}20240315{next(_serials):010d}"

    def send_params(self, **overrides: str) -> dict[str, str]:
        params = {
            "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            "mch_billno": self.billno(),
            "mch_id": self.mch_id,
            "wxappid": self.creds.appid,
            "send_name": "天虹百货",
            "re_openid": self.users[0],
            "total_amount": "1000",
            "total_num": "1",
            "wishing": "感谢您参加猜灯谜活动",
            "client_ip": "192.168.0.1",
            "act_name": "猜灯谜抢红包活动",
            "remark": "猜越多得越多",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v != ""}

    def group_params(self, **overrides: str) -> dict[str, str]:
        base = self.send_params(total_amount="900", total_num="3", amt_type="ALL_RAND")
        del base["client_ip"]
        base.update(overrides)
        return {k: v for k, v in base.items() if v != ""}

    def mini_params(self, **overrides: str) -> dict[str, str]:
        base = self.send_params(
            wxappid=self.creds.mini_appid,
            re_openid=self.mini_users[0],
            total_amount="100",
            notify_way="MINI_PROGRAM_JSAPI",
        )
        del base["client_ip"]
        base.update(overrides)
        return {k: v for k, v in base.items() if v != ""}

    def query_params(self, billno: str, **overrides: str) -> dict[str, str]:
        params = {
            "nonce_str": "a9f3c1e5b7d2",
            "mch_billno": billno,
            "mch_id": self.mch_id,
            "appid": self.creds.appid,
            "bill_type": "MCHT",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v != ""}

    def post(self, api: str, body: bytes, peer: PeerInfo | None = None) -> WireResponse:
        return self.sim.handle_wire(WireRequest(PATH + api, body), peer or self.peer)

    def call(
        self,
        api: str,
        params: Mapping[str, str],
        *,
        key: str | None = None,
        peer: PeerInfo | None = None,
        sign_type: SignType = "MD5",
        unsigned: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body = signed_body(
            params, key or self.creds.api_key, sign_type=sign_type, unsigned=unsigned
        )
        return parse(self.post(api, body, peer))

    def send(self, **overrides: str) -> dict[str, Any]:
        return self.call("sendredpack", self.send_params(**overrides))

    def query(self, billno: str) -> dict[str, Any]:
        return self.call("gethbinfo", self.query_params(billno))

    def ledger(self) -> tuple[int, list[Any]]:
        return self.sim.state.ledger(self.mch_id)


def make_shop(sim: Simulator, users: int = 3, **settings: Any) -> Shop:
    """A new merchant with `users` users under its Official Account and its mini program."""
    from hongbao.sim.state import MerchantSettings

    creds = sim.create_merchant(MerchantSettings(**settings))
    return Shop(
        sim=sim,
        creds=creds,
        users=sim.add_users(creds.appid, users),
        mini_users=sim.add_users(creds.mini_appid, users),
        peer=PeerInfo(ip="10.0.0.1", cert_der=creds.cert_der),
    )


def expect(
    response: Mapping[str, Any], err_code: str, des: str, *, return_code: str = "SUCCESS"
) -> None:
    """A failed call with exactly this code and text, return_msg equal to err_code_des."""
    assert (response.get("err_code"), response.get("err_code_des")) == (err_code, des), response
    assert response["return_code"] == return_code
    assert response["result_code"] == "FAIL"
    assert response["return_msg"] == des


def with_tls(
    app: ASGIApp, cert_pem: bytes | None, client: tuple[str, int] = ("10.0.0.1", 40000)
) -> ASGIApp:
    """Wrap `app` so each request carries the ASGI TLS extension and peer address uvicorn gives."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = {"client_cert_chain": [cert_pem.decode()] if cert_pem else []}
            scope = {**scope, "extensions": extensions, "client": client}
        await app(scope, receive, send)

    return wrapped
