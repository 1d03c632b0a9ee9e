"""Fixtures of the ledger contract suite: a migrated store on each backend, and payout factories."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from hongbao.clock import CST, FrozenClock
from hongbao.ids import mint_bill_no, new_nonce
from hongbao.ledger import (
    CampaignState,
    LedgerStore,
    NewCampaign,
    NewPayout,
    SendApi,
    upgrade,
)

MCH_ID = "1900000109"
START = datetime(2024, 3, 15, 10, 0, tzinfo=CST)

ParamsFactory = Callable[..., dict[str, Any]]
PayoutFactory = Callable[..., NewPayout]


@pytest.fixture
def clock() -> FrozenClock:
    """The store's clock, at 2024-03-15 10:00 UTC+8."""
    return FrozenClock(START)


@pytest.fixture
def store(ledger_url: str, clock: FrozenClock) -> Iterator[LedgerStore]:
    """A migrated ledger on the backend of `ledger_url`."""
    upgrade(ledger_url)
    with LedgerStore.open(ledger_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def make_params(clock: FrozenClock) -> ParamsFactory:
    """Send parameters as the engine freezes them, each with a fresh bill number."""
    serials = itertools.count(1)

    def make(
        openid: str, amount: int = 100, *, mch_id: str = MCH_ID, **extra: Any
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "nonce_str": new_nonce(),
            "mch_billno": mint_bill_no(mch_id, clock.now(), next(serials)),
            "mch_id": mch_id,
            "wxappid": "wx2421b1c4370ec43b",
            "send_name": "天虹百货",
            "re_openid": openid,
            "total_amount": amount,
            "total_num": 1,
            "wishing": "恭喜发财",
            "client_ip": "192.168.0.1",
            "act_name": "猜灯谜",
            "remark": "猜越多得越多",
        }
        params.update(extra)
        return params

    return make


@pytest.fixture
def make_payout(make_params: ParamsFactory) -> PayoutFactory:
    """A `NewPayout` for an openid (natural key `campaign:<id>:<openid>`)."""

    def make(
        openid: str,
        amount: int = 100,
        *,
        campaign_id: int | None = None,
        key: str | None = None,
        **extra: Any,
    ) -> NewPayout:
        scope = f"campaign:{campaign_id}" if campaign_id is not None else "test"
        return NewPayout(
            natural_key=key or f"{scope}:{openid}",
            merchant="acme",
            api=SendApi.SENDREDPACK,
            params=make_params(openid, amount, **extra),
            campaign_id=campaign_id,
        )

    return make


@pytest.fixture
def running_campaign(store: LedgerStore) -> Callable[..., int]:
    """Create a RUNNING campaign (optionally with a budget) and return its id."""
    names = itertools.count(1)

    def make(budget_fen: int | None = None) -> int:
        campaign = store.create_campaign(
            NewCampaign(
                name=f"campaign {next(names)}",
                merchant="acme",
                mch_id=MCH_ID,
                api=SendApi.SENDREDPACK,
                template={"wishing": "恭喜发财"},
                budget_fen=budget_fen,
            )
        )
        assert store.set_campaign_state(campaign.id, CampaignState.DRAFT, CampaignState.PLANNED)
        assert store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
        return campaign.id

    return make
