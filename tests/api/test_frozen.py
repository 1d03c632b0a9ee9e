"""Recorded send parameters: `send_params` builds them without sending, `send_frozen` sends them
unchanged, so a resend after a crash is byte-identical to the first attempt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hongbao.api import AsyncClient, Client
from hongbao.errors import ConfigurationError, ValidationError
from hongbao.testing import SimClients
from tests.api.apikit import (
    APPID,
    BILL,
    MINI_APPID,
    OPENID,
    SEND_ARGS,
    AsyncStubTransport,
    StubTransport,
    merchant,
    success,
)


def test_two_sends_of_the_same_parameters_are_the_same_bytes() -> None:
    transport = StubTransport(success())
    client = Client(merchant(), transport=transport)
    params = client.send_params("sendredpack", **SEND_ARGS)

    client.send_frozen("sendredpack", params)
    client.send_frozen("sendredpack", dict(params))

    first, second = transport.bodies
    assert first == second
    sent = transport.sent()
    assert sent["nonce_str"] == params["nonce_str"]
    assert sent["mch_billno"] == BILL
    assert "sign" in sent
    assert "sign" not in params


async def test_async_twin_sends_the_same_bytes_as_the_sync_client() -> None:
    sync_transport = StubTransport(success())
    async_transport = AsyncStubTransport(success())
    params = Client(merchant(), transport=sync_transport).send_params("sendredpack", **SEND_ARGS)

    Client(merchant(), transport=sync_transport).send_frozen("sendredpack", params)
    await AsyncClient(merchant(), transport=async_transport).send_frozen("sendredpack", params)

    assert sync_transport.bodies == async_transport.bodies


@pytest.mark.parametrize(
    ("api", "extra"),
    [
        ("sendredpack", {}),
        ("sendgroupredpack", {"total_num": 3}),
        ("sendminiprogramhb", {}),
    ],
)
def test_params_are_what_the_send_method_would_send(api: str, extra: dict[str, Any]) -> None:
    # The answer echoes the appid the call used: the mini program's for sendminiprogramhb.
    transport = StubTransport(success(wxappid=MINI_APPID if api == "sendminiprogramhb" else APPID))
    client = Client(merchant(), transport=transport)
    methods: dict[str, Callable[..., object]] = {
        "sendredpack": client.send_redpack,
        "sendgroupredpack": client.send_group_redpack,
        "sendminiprogramhb": client.send_miniprogram_redpack,
    }
    methods[api](**SEND_ARGS, **extra)
    sent = dict(transport.sent())
    del sent["sign"]

    params = client.send_params(api, **SEND_ARGS, **extra, nonce_str=str(sent["nonce_str"]))

    assert {name: str(value) for name, value in params.items()} == sent


@pytest.mark.parametrize(
    ("api", "changes", "field"),
    [
        ("sendredpack", {"send_name": "x" * 33}, "send_name"),
        ("sendredpack", {"total_num": 3}, "total_num"),
        ("sendgroupredpack", {"total_num": 2}, "total_num"),
        ("sendminiprogramhb", {"risk_info": "posttime%3d1"}, "risk_info"),
        ("sendredpack", {"nonce_str": "n" * 33}, "nonce_str"),
    ],
)
def test_params_are_checked_before_anything_is_recorded(
    api: str, changes: dict[str, Any], field: str
) -> None:
    client = Client(merchant(), transport=StubTransport(success()))
    with pytest.raises(ValidationError) as caught:
        client.send_params(api, **{**SEND_ARGS, **changes})
    assert caught.value.field == field


def test_unknown_api_is_refused() -> None:
    client = Client(merchant(), transport=StubTransport(success()))
    with pytest.raises(ValueError, match="not a send API"):
        client.send_params("gethbinfo", **SEND_ARGS)


def test_parameters_of_another_merchant_are_refused_unsent() -> None:
    transport = StubTransport(success())
    params = Client(merchant(), transport=transport).send_params("sendredpack", **SEND_ARGS)
    other = Client(merchant(mch_id="1900000110"), transport=transport)

    with pytest.raises(ConfigurationError, match="1900000109"):
        other.send_frozen("sendredpack", params)
    assert transport.requests == []


def test_signed_or_nonceless_parameters_are_refused_unsent() -> None:
    transport = StubTransport(success())
    client = Client(merchant(), transport=transport)
    params = client.send_params("sendredpack", **SEND_ARGS)

    with pytest.raises(ValueError, match="unsigned"):
        client.send_frozen("sendredpack", {**params, "sign": "0" * 32})
    without_nonce = {name: value for name, value in params.items() if name != "nonce_str"}
    with pytest.raises(ValidationError) as caught:
        client.send_frozen("sendredpack", without_nonce)
    assert caught.value.field == "nonce_str"
    assert transport.requests == []


def test_a_frozen_resend_pays_once_on_the_simulator(hongbao_client: SimClients) -> None:
    client = hongbao_client()
    sim = hongbao_client.sim
    [openid] = sim.add_users(client.merchant.appid or "", 1)
    bill = f"{client.merchant.mch_id}202403150000000001"
    params = client.send_params(
        "sendredpack", **{**SEND_ARGS, "mch_billno": bill, "re_openid": openid}
    )

    first = client.send_frozen("sendredpack", params)
    again = client.send_frozen("sendredpack", params)

    assert again.send_listid == first.send_listid
    _, records = sim.state.ledger(client.merchant.mch_id)
    assert [(r.mch_billno, r.status) for r in records] == [(bill, "SENT")]
    assert OPENID not in {r.re_openid for r in records}
