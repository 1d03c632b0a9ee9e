"""A WeCom corp on the bench's simulator: its merchant, members, raw requests and clients.

`Corp` drives the simulator as a user would: in-process through the registry, served through
the control API over HTTPS (`/__sim/wecom/users`, `/__sim/wecom/corps/{corpid}`), so that the
same test covers both.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx

from hongbao.api import AsyncClient, Client, Merchant
from hongbao.ids import mint_bill_no
from hongbao.sim.app import MerchantCredentials
from hongbao.sim.state import MerchantSettings
from hongbao.wire import xmlcodec
from hongbao.wire.certs import make_ssl_context
from hongbao.wire.sign import sign, workwx_sign
from hongbao.wire.transport import WireRequest
from tests.api.modekit import Bench

SEND = "/mmpaymkttransfers/sendworkwxredpack"
QUERY = "/mmpaymkttransfers/queryworkwxredpack"
_serials = itertools.count(500_001)


@dataclass
class Corp:
    """A merchant bound to a WeCom corp, with members, on one bench."""

    bench: Bench
    creds: MerchantCredentials
    members: list[str]

    @classmethod
    def create(cls, bench: Bench, members: int = 2, **settings: Any) -> Corp:
        creds = bench.sim.create_merchant(MerchantSettings(**settings), wecom=True)
        corp = cls(bench, creds, [])
        corp.members = corp.add_members(members)
        return corp

    @property
    def corpid(self) -> str:
        assert self.creds.wecom_appid is not None
        return self.creds.wecom_appid

    @property
    def secret(self) -> str:
        assert self.creds.wecom_secret is not None
        return self.creds.wecom_secret

    @property
    def mch_id(self) -> str:
        return self.creds.mch_id

    # --- the control API, or the registry in-process ------------------------------------------

    def _control(self, method: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        server = self.bench.server
        assert server is not None
        with httpx.Client(
            base_url=server.url, verify=make_ssl_context(None, server.ca_path), trust_env=False
        ) as http:
            response = http.request(method, path, json=doc)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer

    def add_members(self, count: int) -> list[str]:
        """New members of the corp (openids under the corpid)."""
        if not self.bench.served:
            return self.bench.sim.state.add_users(self.corpid, count)
        answer = self._control(
            "POST", "/__sim/wecom/users", {"corpid": self.corpid, "count": count}
        )
        openids: list[str] = answer["openids"]
        return openids

    def update(self, **changes: bool) -> dict[str, Any]:
        """Change the corp's binding or whether its apps' own secrets are accepted."""
        if not self.bench.served:
            self.bench.sim.state.update_corp(self.corpid, **changes)
            corp = self.bench.sim.state.corp(self.corpid)
            return {"bound": corp.bound, "agents": {str(k): v for k, v in corp.agents.items()}}
        return self._control("PATCH", f"/__sim/wecom/corps/{self.corpid}", changes)

    def agent_secret(self) -> str:
        [secret] = self.update()["agents"].values()
        assert isinstance(secret, str)
        return secret

    # --- clients and raw requests -------------------------------------------------------------

    def merchant(self, **changes: Any) -> Merchant:
        options = {"wecom_corpid": self.corpid, "wecom_secret": self.secret, **changes}
        return self.bench.merchant(self.creds, **options)

    def client(self, **changes: Any) -> Client:
        return self.bench.client(self.merchant(**changes))

    def async_client(self, **changes: Any) -> AsyncClient:
        return self.bench.async_client(self.merchant(**changes))

    def bill(self) -> str:
        return mint_bill_no(self.mch_id, self.bench.sim.clock.now(), next(_serials))

    def args(self, **changes: Any) -> dict[str, Any]:
        """Arguments of `send_workwx_redpack`: a new bill, 1.00 yuan to the first member."""
        args: dict[str, Any] = {
            "mch_billno": self.bill(),
            "re_openid": self.members[0],
            "total_amount": 100,
            "agentid": 1000002,
            "wishing": "感谢您一年来的辛勤付出，新春快乐！",
            "act_name": "2024年会红包",
            "remark": "年会抽奖",
        }
        args.update(changes)
        return {name: value for name, value in args.items() if value is not None}

    def params(self, **changes: Any) -> dict[str, str]:
        """Wire parameters of a send (strings, unsigned) from `args`; None removes a field."""
        params = {
            "nonce_str": "7H3kQ9vLm2Xp5Rt8Wz1Yc4Nb6Df0Gs2J",
            "mch_id": self.mch_id,
            "wxappid": self.corpid,
            **{name: str(value) for name, value in self.args().items()},
        }
        for name, value in changes.items():
            if value is None:
                params.pop(name, None)
            else:
                params[name] = str(value)
        return params

    def post(
        self,
        path: str,
        params: dict[str, str],
        *,
        secret: str | None = None,
        key: str | None = None,
        workwx: bool = True,
        merchant: Merchant | None = None,
    ) -> dict[str, Any]:
        """`params` signed twice (WeCom secret, then API key) and posted; the parsed answer."""
        signed: dict[str, str] = dict(params)
        if workwx and "workwx_sign" not in signed:
            signed["workwx_sign"] = workwx_sign(signed, secret or self.secret)
        signed["sign"] = sign(signed, key or self.creds.api_key)
        return self.raw(path, xmlcodec.dumps(signed), merchant=merchant)

    def raw(self, path: str, body: bytes, *, merchant: Merchant | None = None) -> dict[str, Any]:
        transport = self.bench.transport(merchant or self.merchant())
        response = transport.handle_request(WireRequest(path, body))
        assert response.status == 200
        return xmlcodec.loads(response.body)

    def send(self, **changes: Any) -> dict[str, Any]:
        return self.post(SEND, self.params(**changes))

    def query(self, mch_billno: str, **changes: str) -> dict[str, Any]:
        params = {
            "nonce_str": "c0ffee00c0ffee00c0ffee00c0ffee00",
            "mch_billno": mch_billno,
            "mch_id": self.mch_id,
            "appid": self.corpid,
            **changes,
        }
        return self.post(QUERY, params, workwx=False)
