"""`Client` and `AsyncClient` against the in-process simulator: the real wire, both sides."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from hongbao.api import AsyncClient, Client, Merchant, RedpackStatus
from hongbao.errors import BillConflictError, ValidationError
from hongbao.ids import mint_bill_no
from hongbao.sim.app import Simulator
from hongbao.sim.state import MerchantSettings
from hongbao.wire.local import AsyncLocalTransport, LocalTransport, PeerInfo


@dataclass
class World:
    sim: Simulator
    merchant: Merchant
    peer: PeerInfo
    users: list[str]
    mini_users: list[str]

    def bill(self, serial: int) -> str:
        return mint_bill_no(self.merchant.mch_id, self.sim.clock.now(), serial)

    def args(self, serial: int, **changes: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "mch_billno": self.bill(serial),
            "re_openid": self.users[0],
            "total_amount": 100,
            "send_name": "Acme",
            "wishing": "Thanks ]]> & <b>",
            "act_name": "Spring",
            "remark": "Enjoy",
        }
        args.update(changes)
        return args


@pytest.fixture
def world() -> Iterator[World]:
    sim = Simulator(seed=11)
    creds = sim.create_merchant(MerchantSettings())
    merchant = Merchant(
        mch_id=creds.mch_id,
        api_key=SecretStr(creds.api_key),
        appid=creds.appid,
        mini_appid=creds.mini_appid,
    )
    yield World(
        sim,
        merchant,
        PeerInfo(ip="10.0.0.1", cert_der=creds.cert_der),
        sim.add_users(creds.appid, 2),
        sim.add_users(creds.mini_appid, 1),
    )
    sim.close()


def test_send_resend_and_query(world: World) -> None:
    client = Client(world.merchant, transport=LocalTransport(world.sim.handle_wire, world.peer))
    sent = client.send_redpack(**world.args(1))
    again = client.send_redpack(**world.args(1))
    assert again.send_listid == sent.send_listid
    info = client.query_redpack(sent.mch_billno)
    assert (info.found, info.status, info.detail_id) == (True, RedpackStatus.SENT, sent.send_listid)
    assert not client.query_redpack(world.bill(2)).found
    with pytest.raises(BillConflictError):
        client.send_redpack(**world.args(1, re_openid=world.users[1]))


def test_group_and_mini_program_packets(world: World) -> None:
    client = Client(world.merchant, transport=LocalTransport(world.sim.handle_wire, world.peer))
    group = client.send_group_redpack(**world.args(3, total_amount=900), total_num=3)
    assert client.query_redpack(group.mch_billno).hb_type == "GROUP"
    mini = client.send_miniprogram_redpack(**world.args(4, re_openid=world.mini_users[0]))
    assert mini.package
    assert client.jsapi_params(mini.package)["package"].startswith("sendid%3D")


def test_the_simulators_amount_rule_is_caught_before_sending(world: World) -> None:
    client = Client(world.merchant, transport=LocalTransport(world.sim.handle_wire, world.peer))
    with pytest.raises(ValidationError, match="scene_required"):
        client.send_redpack(**world.args(5, total_amount=20001))


async def test_the_async_client_on_the_same_simulator(world: World) -> None:
    transport = AsyncLocalTransport(world.sim.handle_wire, world.peer)
    async with AsyncClient(world.merchant, transport=transport) as client:
        sent = await client.send_redpack(**world.args(6))
        info = await client.query_redpack(sent.mch_billno)
    assert (info.status, info.total_amount) == (RedpackStatus.SENT, 100)
