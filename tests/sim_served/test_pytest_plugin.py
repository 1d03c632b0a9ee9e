"""The `hongbao` pytest plugin: clients bound to the in-process or the served simulator."""

from __future__ import annotations

import pytest

from hongbao.api import RedpackStatus
from hongbao.sim.app import Simulator
from hongbao.sim.server import SimServer
from hongbao.sim.state import MerchantSettings
from hongbao.testing import SimClients

_TEXTS = {"send_name": "天虹百货", "wishing": "恭喜发财", "act_name": "新春活动", "remark": "无"}


def _bill(mch_id: str, serial: int) -> str:
    return f"{mch_id}20240315{serial:010d}"


def _statuses(sim: Simulator, mch_id: str) -> dict[str, str]:
    return {row.mch_billno: row.status for row in sim.state.ledger(mch_id)[1]}


def test_an_in_process_client_pays_into_the_simulators_ledger(
    hongbao_sim: Simulator, hongbao_client: SimClients
) -> None:
    client = hongbao_client()
    [openid] = hongbao_sim.add_users(client.merchant.appid or "", 1)
    bill = _bill(client.merchant.mch_id, 1)
    result = client.send_redpack(mch_billno=bill, re_openid=openid, total_amount=100, **_TEXTS)
    assert result.mch_billno == bill
    assert _statuses(hongbao_sim, client.merchant.mch_id) == {bill: "SENT"}


@pytest.mark.served
def test_a_served_client_pays_over_mutual_tls(
    hongbao_sim: Simulator, hongbao_client: SimClients
) -> None:
    client = hongbao_client(served=True, settings=MerchantSettings(balance_fen=50_000))
    assert client.merchant.base_url.startswith("https://127.0.0.1:")
    [openid] = hongbao_sim.add_users(client.merchant.appid or "", 1)
    bill = _bill(client.merchant.mch_id, 2)
    client.send_redpack(mch_billno=bill, re_openid=openid, total_amount=300, **_TEXTS)
    assert client.query_redpack(bill).status is RedpackStatus.SENT
    assert hongbao_sim.state.merchant(client.merchant.mch_id).balance_fen == 50_000 - 300


@pytest.mark.served
async def test_an_async_served_client_pays_over_mutual_tls(
    hongbao_sim: Simulator, hongbao_client: SimClients
) -> None:
    async with hongbao_client.async_client(served=True) as client:
        [openid] = hongbao_sim.add_users(client.merchant.appid or "", 1)
        bill = _bill(client.merchant.mch_id, 3)
        await client.send_redpack(mch_billno=bill, re_openid=openid, total_amount=100, **_TEXTS)
    assert _statuses(hongbao_sim, client.merchant.mch_id) == {bill: "SENT"}


@pytest.mark.served
def test_both_modes_reach_the_same_simulator(
    hongbao_sim: Simulator, hongbao_client: SimClients, hongbao_served_sim: SimServer
) -> None:
    creds = hongbao_sim.create_merchant()
    local = hongbao_client(credentials=creds)
    remote = hongbao_client(served=True, credentials=creds)
    assert remote.merchant.base_url == hongbao_served_sim.url
    [openid] = hongbao_sim.add_users(creds.appid, 1)
    bill = _bill(creds.mch_id, 4)
    local.send_redpack(mch_billno=bill, re_openid=openid, total_amount=100, **_TEXTS)
    assert remote.query_redpack(bill).status is RedpackStatus.SENT


@pytest.mark.parametrize("served", [False, pytest.param(True, marks=pytest.mark.served)])
def test_a_wecom_client_pays_a_member_of_its_corp(
    hongbao_sim: Simulator, hongbao_client: SimClients, served: bool
) -> None:
    client = hongbao_client(served=served, wecom=True)
    corpid = client.merchant.wecom_corpid
    assert corpid is not None
    [member] = hongbao_sim.add_users(corpid, 1)
    bill = _bill(client.merchant.mch_id, 5 + served)
    client.send_workwx_redpack(
        mch_billno=bill,
        re_openid=member,
        total_amount=100,
        sender_name="财务部",
        wishing="新年快乐",
        act_name="年会",
        remark="无",
    )
    assert _statuses(hongbao_sim, client.merchant.mch_id) == {bill: "SENT"}
    secret = hongbao_sim.state.corp(corpid).secret
    assert secret
    assert secret not in repr(client.merchant)
    assert secret not in repr(client)
