"""pytest fixtures for testing your code against the hongbao simulator (plugin `hongbao`).

A top-level integration layer: it hands out `hongbao.Client`s bound to a simulator, so it stands
above both `hongbao.api` and `hongbao.sim` (the simulator itself never imports the client).
Installed with hongbao, so the fixtures are available in every test suite:

* `hongbao_sim`: a fresh in-process `Simulator` (frozen clock), for setup and inspection;
* `hongbao_served_sim`: the same simulator served over HTTPS with client certificates, on a free
  loopback port (a `SimServer`: `.url`, `.port`, `.ca_path`);
* `hongbao_client`: makes `hongbao.Client`s (or `AsyncClient`s) for new simulated merchants,
  in-process by default or over mutual TLS with `served=True`.

>>> def test_pays(hongbao_sim, hongbao_client):  # doctest: +SKIP
...     client = hongbao_client(served=True)
...     [openid] = hongbao_sim.add_users(client.merchant.appid, 1)
...     client.send_redpack(mch_billno=..., re_openid=openid, total_amount=100, ...)
...     assert hongbao_sim.state.ledger(client.merchant.mch_id)[1][0].status == "SENT"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

# pytest imports this plugin in every session of every project that has hongbao installed, so
# the simulator (Starlette, uvicorn, cryptography) is loaded only when a fixture is used.
if TYPE_CHECKING:
    from hongbao.api import AsyncClient, Client, Merchant
    from hongbao.sim.app import MerchantCredentials, Simulator
    from hongbao.sim.server import SimServer
    from hongbao.sim.state import MerchantSettings

__all__ = ["SimClients", "hongbao_client", "hongbao_served_sim", "hongbao_sim"]


class SimClients:
    """Makes clients bound to one simulator: in-process, or served over mutual TLS.

    Each call creates a new merchant in the simulator (with `settings`), unless `credentials`
    of an existing one are given. Sync clients are closed after the test; use async ones with
    `async with`, which closes them in the test's event loop.
    """

    def __init__(self, sim: Simulator, served: Callable[[], SimServer]) -> None:
        self.sim = sim
        self._served = served
        self._clients: list[Client] = []

    def merchant(
        self,
        *,
        served: bool = False,
        credentials: MerchantCredentials | None = None,
        settings: MerchantSettings | None = None,
        wecom: bool = False,
    ) -> tuple[Merchant, MerchantCredentials]:
        """A `Merchant` config for a (new) simulated merchant, and its credentials.

        With `wecom`, a new WeCom corp is bound to the merchant and the config carries its
        corpid (`merchant.wecom_corpid`, to add members with `sim.add_users`) and its payment
        secret, for `send_workwx_redpack`.
        """
        from pydantic import SecretStr

        from hongbao.api import Merchant
        from hongbao.wire.certs import ClientCertificate

        creds = credentials if credentials is not None else self.sim.create_merchant(settings)
        options: dict[str, Any] = {
            "mch_id": creds.mch_id,
            "api_key": SecretStr(creds.api_key),
            "appid": creds.appid,
            "mini_appid": creds.mini_appid,
            "certificate": ClientCertificate.from_pem(creds.cert_pem, creds.key_pem),
        }
        if wecom:
            corp = self.sim.state.create_corp(creds.mch_id)
            options["wecom_corpid"] = corp.appid
            options["wecom_secret"] = SecretStr(corp.secret or "")
        if served:
            server = self._served()
            options.update(base_url=server.url, backup_url=None, ca_bundle=server.ca_path)
        return Merchant(**options), creds

    def __call__(
        self,
        *,
        served: bool = False,
        credentials: MerchantCredentials | None = None,
        settings: MerchantSettings | None = None,
        wecom: bool = False,
    ) -> Client:
        """A `Client`: in-process transport, or httpx over mutual TLS when `served`; with
        `wecom`, also for WeCom red packets (see `merchant`)."""
        from hongbao.api import Client
        from hongbao.wire.local import LocalTransport, PeerInfo

        merchant, creds = self.merchant(
            served=served, credentials=credentials, settings=settings, wecom=wecom
        )
        if served:
            client = Client(merchant, clock=self.sim.clock)
        else:
            peer = PeerInfo(cert_der=creds.cert_der, read_timeout=merchant.timeouts.read)
            transport = LocalTransport(self.sim.handle_wire, peer)
            client = Client(merchant, transport=transport, clock=self.sim.clock)
        self._clients.append(client)
        return client

    def async_client(
        self,
        *,
        served: bool = False,
        credentials: MerchantCredentials | None = None,
        settings: MerchantSettings | None = None,
        wecom: bool = False,
    ) -> AsyncClient:
        """An `AsyncClient`: in-process transport, or over mutual TLS when `served`; with
        `wecom`, also for WeCom red packets (see `merchant`)."""
        from hongbao.api import AsyncClient
        from hongbao.wire.local import AsyncLocalTransport, PeerInfo

        merchant, creds = self.merchant(
            served=served, credentials=credentials, settings=settings, wecom=wecom
        )
        if served:
            return AsyncClient(merchant, clock=self.sim.clock)
        peer = PeerInfo(cert_der=creds.cert_der, read_timeout=merchant.timeouts.read)
        transport = AsyncLocalTransport(self.sim.handle_wire, peer)
        return AsyncClient(merchant, transport=transport, clock=self.sim.clock)

    def close(self) -> None:
        """Close the sync clients made so far."""
        for client in self._clients:
            client.close()
        self._clients.clear()


@pytest.fixture
def hongbao_sim() -> Iterator[Simulator]:
    """A fresh in-process simulator with a frozen clock (2024-03-15 10:00 Beijing time)."""
    from hongbao.sim.app import Simulator

    sim = Simulator(seed=0)
    yield sim
    sim.close()


@pytest.fixture
def hongbao_served_sim(hongbao_sim: Simulator) -> Iterator[SimServer]:
    """`hongbao_sim` served over HTTPS + client certificates on a free 127.0.0.1 port."""
    from hongbao.sim.server import SimServer

    with SimServer(hongbao_sim) as server:
        yield server


@pytest.fixture
def hongbao_client(request: pytest.FixtureRequest, hongbao_sim: Simulator) -> Iterator[SimClients]:
    """Makes `Client`s for new merchants of `hongbao_sim`; `served=True` goes over mutual TLS.

    >>> client = hongbao_client(served=True)  # doctest: +SKIP
    """

    def served() -> SimServer:
        # Started on first use only: in-process tests never open a socket.
        server: SimServer = request.getfixturevalue("hongbao_served_sim")
        return server

    clients = SimClients(hongbao_sim, served)
    yield clients
    clients.close()
