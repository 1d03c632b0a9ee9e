"""`Client` and `AsyncClient` bound to the simulator in either mode: in-process or served.

A `Bench` is one mode of one test: in-process (a fresh `Simulator` per test, the in-process
transport carrying the merchant's certificate as a TLS peer would) or served (the module's
`SimServer` over mutual TLS: httpx for `Client`, asyncio for `AsyncClient`, and the control API
over HTTPS for what a user or WeChat itself does). A `Shop` is a new merchant of that simulator
with users, and makes clients for it; tests stay independent because each makes its own shop.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
from pydantic import SecretStr

from hongbao.api import AsyncClient, Client, Merchant
from hongbao.ids import mint_bill_no
from hongbao.sim.app import MerchantCredentials, Simulator
from hongbao.sim.ca import SimCA
from hongbao.sim.server import SimServer
from hongbao.sim.state import LedgerRow, MerchantSettings
from hongbao.wire.certs import ClientCertificate, make_ssl_context
from hongbao.wire.http_sync import HttpxTransport
from hongbao.wire.local import AsyncLocalTransport, LocalTransport, PeerInfo
from hongbao.wire.transport import Transport, WireRequest, WireResponse

IN_PROCESS = "in-process"
SERVED = "served"
MODES = (IN_PROCESS, pytest.param(SERVED, marks=pytest.mark.served))
"""Parameters of the `bench` fixtures: every test runs once per mode."""

_serials = itertools.count(1)


def served_simulator() -> Iterator[SimServer]:
    """A fresh simulator served over mutual TLS on a free loopback port, for one module."""
    sim = Simulator(seed=5)
    with SimServer(sim) as server:
        yield server
    sim.close()


class Bench:
    """The simulator of one test in one mode, and how clients and users reach it."""

    def __init__(self, server: SimServer | None) -> None:
        self.server = server
        self.sim = server.sim if server is not None else Simulator(seed=11)
        self.sleeps: list[float] = []
        """Every delay a client of this bench waited before a retry (nothing really sleeps)."""
        self._closing: list[Client | Transport] = []
        self._control: httpx.Client | None = None

    @property
    def served(self) -> bool:
        """True when clients go over the network."""
        return self.server is not None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for item in self._closing:
            item.close()
        if self._control is not None:
            self._control.close()
        # The served simulator lives on for the module's next tests: leave no fault armed.
        self.sim.faults.clear()
        if self.server is None:
            self.sim.close()

    # --- merchants and clients ----------------------------------------------------------------

    def shop(self, users: int = 2, **settings: Any) -> Shop:
        """A new merchant (with `MerchantSettings(**settings)`) and users of both its appids."""
        creds = self.sim.create_merchant(MerchantSettings(**settings))
        return Shop(
            self,
            creds,
            self.sim.add_users(creds.appid, users),
            self.sim.add_users(creds.mini_appid, users),
        )

    def merchant(self, creds: MerchantCredentials, **changes: Any) -> Merchant:
        """The `Merchant` config of `creds` for this mode, with `changes` applied."""
        merchant = Merchant(
            mch_id=creds.mch_id,
            api_key=SecretStr(creds.api_key),
            appid=creds.appid,
            mini_appid=creds.mini_appid,
            certificate=ClientCertificate.from_pem(creds.cert_pem, creds.key_pem),
        )
        if self.server is not None:
            merchant = replace(
                merchant, base_url=self.server.url, backup_url=None, ca_bundle=self.server.ca_path
            )
        return replace(merchant, **changes)

    def transport(self, merchant: Merchant) -> Transport:
        """A bare transport presenting `merchant.certificate` (none if None), closed at the end."""
        transport: Transport
        if self.server is None:
            cert_der = merchant.certificate.der if merchant.certificate is not None else None
            transport = LocalTransport(self.sim.handle_wire, PeerInfo(cert_der=cert_der))
        else:
            transport = HttpxTransport(
                base_url=merchant.base_url,
                backup_url=None,
                certificate=merchant.certificate,
                ca_bundle=merchant.ca_bundle,
                clock=self.sim.clock,
            )
        self._closing.append(transport)
        return transport

    def client(self, merchant: Merchant) -> Client:
        """A `Client` for `merchant`: served ones build their own httpx transport, as in use."""
        if self.server is not None and merchant.certificate is not None:
            client = Client(merchant, clock=self.sim.clock, sleep=self.sleeps.append)
            self._closing.append(client)
            return client
        return Client(
            merchant,
            transport=self.transport(merchant),
            clock=self.sim.clock,
            sleep=self.sleeps.append,
        )

    def async_client(self, merchant: Merchant) -> AsyncClient:
        """An `AsyncClient` for `merchant` (mutual TLS when served); use it with `async with`."""

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        if self.server is not None:
            return AsyncClient(merchant, clock=self.sim.clock, sleep=sleep)
        assert merchant.certificate is not None
        peer = PeerInfo(cert_der=merchant.certificate.der)
        transport = AsyncLocalTransport(self.sim.handle_wire, peer)
        return AsyncClient(merchant, transport=transport, clock=self.sim.clock, sleep=sleep)

    # --- what users and WeChat do: the control API when served --------------------------------

    def _post(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        assert self.server is not None
        if self._control is None:
            self._control = httpx.Client(
                base_url=self.server.url,
                verify=make_ssl_context(None, self.server.ca_path),
                trust_env=False,
            )
        response = self._control.post(path, json=doc)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def open(self, creds: MerchantCredentials, mch_billno: str) -> str:
        """A user opens the packet (the next share of a fission set); its new status."""
        if self.server is None:
            return self.sim.state.open_packet(creds.mch_id, mch_billno).status.value
        answer = self._post("/__sim/open", {"mch_id": creds.mch_id, "mch_billno": mch_billno})
        status: str = answer["status"]
        return status

    def open_mini(self, fields: dict[str, str]) -> tuple[int, str]:
        """`wx.sendBizRedPacket` in the mini program: (retcode, retmsg)."""
        if self.server is None:
            return self.sim.state.open_mini(fields)
        answer = self._post("/__sim/miniprogram/open", fields)
        return answer["retcode"], answer["retmsg"]

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward, running what falls due."""
        if self.server is None:
            self.sim.move_clock(advance_seconds=seconds)
        else:
            self._post("/__sim/clock", {"advance_seconds": seconds})


@dataclass
class Shop:
    """A merchant of the bench's simulator, with users under its Official Account and mini app."""

    bench: Bench
    creds: MerchantCredentials
    users: list[str]
    mini_users: list[str]

    @property
    def mch_id(self) -> str:
        return self.creds.mch_id

    def merchant(self, **changes: Any) -> Merchant:
        """This merchant's config for the bench's mode, with `changes`."""
        return self.bench.merchant(self.creds, **changes)

    def client(self, **changes: Any) -> Client:
        """A `Client` of this merchant (config `changes` applied)."""
        return self.bench.client(self.merchant(**changes))

    def async_client(self, **changes: Any) -> AsyncClient:
        """An `AsyncClient` of this merchant; use it with `async with`."""
        return self.bench.async_client(self.merchant(**changes))

    def bill(self) -> str:
        """A new bill number of this merchant, dated by the simulator's clock."""
        return mint_bill_no(self.mch_id, self.bench.sim.clock.now(), next(_serials))

    def args(self, **changes: Any) -> dict[str, Any]:
        """Arguments of a send API: a new bill, 1.00 yuan to the first user."""
        args: dict[str, Any] = {
            "mch_billno": self.bill(),
            "re_openid": self.users[0],
            "total_amount": 100,
            "send_name": "天虹百货",
            "wishing": "Thanks ]]> & <b>",
            "act_name": "Spring",
            "remark": "Enjoy",
        }
        args.update(changes)
        return args

    def ledger(self) -> tuple[int, list[LedgerRow]]:
        """The simulator's ground truth: this merchant's balance and records."""
        return self.bench.sim.state.ledger(self.mch_id)

    def certificate(self, kind: str) -> ClientCertificate | None:
        """A certificate that is not this merchant's valid one: none, another merchant's, one
        of a foreign CA, or its own but expired."""
        sim = self.bench.sim
        if kind == "none":
            return None
        if kind == "another merchant's":
            other = sim.create_merchant()
            return ClientCertificate.from_pem(other.cert_pem, other.key_pem)
        if kind == "foreign CA":
            return ClientCertificate.from_pem(*SimCA.create().issue_client_cert(self.mch_id))
        if kind == "expired":
            pem = sim.ca.issue_client_cert(
                self.mch_id,
                not_before=datetime(2020, 1, 1, tzinfo=UTC),
                not_after=datetime(2024, 3, 1, tzinfo=UTC),
            )
            return ClientCertificate.from_pem(*pem)
        raise ValueError(kind)

    def post(self, path: str, body: bytes) -> WireResponse:
        """Raw bytes to an API path, with this merchant's certificate: what no client sends."""
        return self.bench.transport(self.merchant()).handle_request(WireRequest(path, body))
