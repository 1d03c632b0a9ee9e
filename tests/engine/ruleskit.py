"""Helpers for the rule-mode tests: signed notifications, rules, a simulated merchant and ledger."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hongbao.api import AsyncClient
from hongbao.engine.notify import NotifyHandler, RuleMerchant, RuleService
from hongbao.engine.rule_dispatch import RuleDispatcher
from hongbao.engine.rules import AppidKind, Rule, parse_rule
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.ledger import LedgerStore, upgrade
from hongbao.ledger.rules_store import RuleLedger
from hongbao.sim.app import MerchantCredentials, Simulator
from hongbao.sim.state import MerchantSettings
from hongbao.wire import xmlcodec
from hongbao.wire.local import AsyncLocalTransport, PeerInfo
from hongbao.wire.sign import SignType, sign
from tests.engine.enginekit import merchant_of

TIME_END = "20240315100000"
"""2024-03-15 10:00:00 Beijing time: the simulator's frozen clock, and the payments' time."""

RULE: dict[str, Any] = {
    "merchant": "shop",
    "min_total_fee": 10000,
    "amount": "1.88",
    "send_name": "Acme",
    "wishing": "Thank you!",
    "act_name": "Spend and get",
    "remark": "Spring promotion",
    "budget": "1000",
}

_serials = itertools.count(1)


def transaction_id() -> str:
    """A fresh 32-digit WeChat Pay order id."""
    return f"4200002024031500{next(_serials):016d}"


def rule(name: str = "big", **changes: Any) -> Rule:
    """A checked rule: `RULE` with `changes` (a None value removes the key)."""
    table = {**RULE, **changes}
    return parse_rule(name, {k: v for k, v in table.items() if v is not None})


def notification_fields(
    *,
    mch_id: str,
    appid: str,
    openid: str,
    total_fee: int,
    transaction_id: str,
    trade_type: str = "JSAPI",
    result_code: str = "SUCCESS",
    time_end: str = TIME_END,
    **extra: str | int,
) -> dict[str, str | int]:
    """The fields of a payment notification as WeChat Pay sends them (unsigned)."""
    return {
        "return_code": "SUCCESS",
        "appid": appid,
        "mch_id": mch_id,
        "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "result_code": result_code,
        "openid": openid,
        "trade_type": trade_type,
        "bank_type": "CMC",
        "total_fee": total_fee,
        "fee_type": "CNY",
        "cash_fee": total_fee,
        "transaction_id": transaction_id,
        "out_trade_no": f"ORDER{transaction_id[-12:]}",
        "time_end": time_end,
        **extra,
    }


def signed(fields: dict[str, str | int], key: str, sign_type: SignType = "MD5") -> bytes:
    """The notification body: `fields` signed with `key` (sign_type added for HMAC-SHA256)."""
    fields = dict(fields)
    if sign_type != "MD5":
        fields["sign_type"] = sign_type
    fields["sign"] = sign(fields, key, sign_type)
    return xmlcodec.dumps(fields)


@dataclass
class World:
    """A simulated merchant with users under each appid, a migrated ledger and its rules."""

    sim: Simulator
    creds: MerchantCredentials
    store: LedgerStore
    rules: list[Rule]
    users: list[str]
    """Users of the Official Account."""
    mini_users: list[str]
    app_users: list[str]
    clients: list[AsyncClient] = field(default_factory=list)

    @property
    def mch_id(self) -> str:
        return self.creds.mch_id

    @property
    def ledger(self) -> RuleLedger:
        return RuleLedger(self.store.engine)

    def merchant(self) -> RuleMerchant:
        """The merchant as rule mode sees it (appids as the configuration would give them)."""
        return RuleMerchant(
            name="shop",
            merchant=merchant_of(self.creds),
            rules=tuple(self.rules),
            appid_kinds={
                self.creds.appid: AppidKind.OFFICIAL_ACCOUNT,
                self.creds.mini_appid: AppidKind.MINI_PROGRAM,
                self.creds.app_appid: AppidKind.APP,
            },
        )

    def handler(self, **options: Any) -> NotifyHandler:
        """A handler recording into the world's ledger."""
        return NotifyHandler(self.ledger, [self.merchant()], **options)

    def profile(self, **options: Any) -> MerchantProfile:
        """The merchant's engine profile (short lease: tests recover quickly)."""
        options.setdefault("lease_seconds", 5.0)
        return MerchantProfile(name="shop", merchant=merchant_of(self.creds), **options)

    def client(self) -> AsyncClient:
        """An AsyncClient reaching the simulator in-process with the merchant's certificate."""
        merchant = merchant_of(self.creds)
        peer = PeerInfo(ip="10.0.0.1", cert_der=self.creds.cert_der)
        client = AsyncClient(merchant, transport=AsyncLocalTransport(self.sim.handle_wire, peer))
        self.clients.append(client)
        return client

    def pay(
        self,
        openid: str,
        total_fee: int,
        *,
        appid: str | None = None,
        tx: str | None = None,
        key: str | None = None,
        **options: Any,
    ) -> bytes:
        """A signed notification of `openid`'s payment (under the Official Account by default)."""
        fields = notification_fields(
            mch_id=self.mch_id,
            appid=appid or self.creds.appid,
            openid=openid,
            total_fee=total_fee,
            transaction_id=tx or transaction_id(),
            **options,
        )
        return signed(fields, key or self.creds.api_key)

    def issued(self) -> list[tuple[str, str, int]]:
        """What the simulator really paid: (api, openid, amount) of every record."""
        _, records = self.sim.state.ledger(self.mch_id)
        return [(r.api, r.re_openid, r.total_amount) for r in records]

    def close(self) -> None:
        self.store.close()
        self.sim.close()


def make_world(url: str, rules: list[Rule] | None = None, *, users: int = 4) -> World:
    """A fresh simulated merchant with `users` users per appid and a migrated ledger at `url`."""
    sim = Simulator(seed=5)
    creds = sim.create_merchant(MerchantSettings(rate_per_minute=60_000))
    upgrade(url)
    return World(
        sim=sim,
        creds=creds,
        store=LedgerStore.open(url),
        rules=rules if rules is not None else [rule()],
        users=sim.add_users(creds.appid, users),
        mini_users=sim.add_users(creds.mini_appid, users),
        app_users=sim.add_users(creds.app_appid, users),
    )


QUICK = RunSettings(poll_seconds=0.02, recovery_every=0.05)
"""Dispatcher settings for tests: look at the ledger often."""


def service(world: World, *, send: bool = True, **handler_options: Any) -> RuleService:
    """A rule service over the world's ledger, sending through the in-process simulator."""
    executor = ThreadPoolExecutor(1)
    dispatchers = {}
    if send:
        dispatchers["shop"] = RuleDispatcher(
            world.store, world.profile(), settings=QUICK, client=world.client(), executor=executor
        )
    return RuleService(world.handler(**handler_options), dispatchers, executor=executor)


async def until(condition: Callable[[], bool], *, seconds: float = 20.0) -> None:
    """Wait until `condition()` holds; fail after `seconds` (a hang, not a slow machine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("the condition did not come true")
        await asyncio.sleep(0.02)
