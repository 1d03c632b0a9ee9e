"""Helpers for the engine tests: a simulated merchant, its profile, a migrated ledger, files."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hongbao.api import AsyncClient, BaseClient, Merchant
from hongbao.clock import CST, FrozenClock
from hongbao.engine.campaign import Template, create_campaign, plan_campaign
from hongbao.engine.limiter import Pacer
from hongbao.engine.payout import PayoutDriver
from hongbao.engine.runner import RunSummary, run_campaign
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.engine.states import Policy
from hongbao.ledger import (
    Campaign,
    LedgerStore,
    NewPayout,
    Payout,
    PayoutState,
    SendApi,
    upgrade,
)
from hongbao.sim.app import MerchantCredentials, Simulator
from hongbao.sim.entities import ISSUED
from hongbao.sim.state import MerchantSettings
from hongbao.wire.certs import ClientCertificate
from hongbao.wire.local import AsyncLocalTransport, PeerInfo
from hongbao.wire.retry import RetryPolicy
from hongbao.wire.transport import AsyncTransport, Timeouts, WireRequest, WireResponse

START = datetime(2024, 3, 15, 10, 0, tzinfo=CST)

FAST_RETRY = RetryPolicy(max_retries=1, initial_delay=0.0, max_delay=0.0, min_interval=0.0)
"""One in-call retry without waiting: tests never sleep on a backoff."""

QUICK_POLICY = Policy(
    processing_wait=timedelta(seconds=60),
    unknown_retry=timedelta(seconds=0),
    not_sent_retry=timedelta(seconds=0),
    frequency_back_off=timedelta(seconds=60),
    blocked_retry=timedelta(seconds=300),
)

QUICK_RUN = RunSettings(
    policy=QUICK_POLICY, poll_seconds=0.01, recovery_every=0.05, max_idle_wait=0.0
)
"""Settings for in-process runs on a frozen clock: never wait for anything in the future."""

TEMPLATE = Template(
    amount_fen=100,
    send_name="天虹百货",
    wishing="感谢您参加猜灯谜活动",
    act_name="猜灯谜抢红包活动",
    remark="猜越多得越多",
)


class Recorder(AsyncTransport):
    """Passes requests on and keeps every one (path and body) it sent."""

    def __init__(self, inner: AsyncTransport) -> None:
        self.inner = inner
        self.requests: list[WireRequest] = []

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    def bodies(self, api: str) -> list[bytes]:
        """The bodies sent to `api` (e.g. "sendredpack"), in order."""
        return [r.body for r in self.requests if r.path.endswith("/" + api)]


class Crash(BaseException):
    """The process dies here: not an `Exception`, so nothing on the way up handles it."""


class CrashingTransport(AsyncTransport):
    """Dies before or after passing a request on (after: the simulator processed it)."""

    def __init__(self, inner: AsyncTransport) -> None:
        self.inner = inner
        self.crash: str | None = None
        """The armed crash, "before" or "after"; None passes requests through."""
        self.skip = 0
        """Requests to pass through before the armed crash."""

    def arm(self, crash: str, *, skip: int = 0) -> None:
        """Die `crash` ("before" / "after") the request after the next `skip` ones."""
        self.crash, self.skip = crash, skip

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        crash = None
        if self.crash is not None:
            if self.skip:
                self.skip -= 1
            else:
                crash, self.crash = self.crash, None
        if crash == "before":
            raise Crash("killed before the request left")
        response = await self.inner.handle_async_request(request)
        if crash == "after":
            raise Crash("killed after the request was processed")
        return response


class ClockSleep:
    """`asyncio.sleep` on a frozen clock: the clock moves on by the time asked, at once.

    A lone sleeper wakes exactly when it asked to; several wake no earlier than they asked.
    """

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.clock.advance(max(0.0, seconds))
        await asyncio.sleep(0)


def merchant_of(creds: MerchantCredentials, **options: Any) -> Merchant:
    """The API `Merchant` of a simulated merchant (in-process: no URL needed)."""
    return Merchant(
        mch_id=creds.mch_id,
        api_key=SecretStr(creds.api_key),
        appid=creds.appid,
        mini_appid=creds.mini_appid,
        certificate=ClientCertificate.from_pem(creds.cert_pem, creds.key_pem),
        retry=options.pop("retry", FAST_RETRY),
        **options,
    )


@dataclass
class Bench:
    """One simulated merchant, its users, its profile, and a migrated ledger, on one clock."""

    sim: Simulator
    clock: FrozenClock
    creds: MerchantCredentials
    store: LedgerStore
    profile: MerchantProfile
    users: list[str]
    tmp: Path
    clients: list[AsyncClient] = field(default_factory=list)

    @property
    def mch_id(self) -> str:
        return self.creds.mch_id

    def transport(self, merchant: Merchant | None = None, *, ip: str = "10.0.0.1") -> Recorder:
        """An in-process transport to the simulator, presenting the merchant's certificate."""
        merchant = merchant or self.profile.merchant
        peer = PeerInfo(ip=ip, cert_der=self.creds.cert_der, read_timeout=merchant.timeouts.read)
        return Recorder(AsyncLocalTransport(self.sim.handle_wire, peer))

    def client(
        self, merchant: Merchant | None = None, *, transport: AsyncTransport | None = None
    ) -> AsyncClient:
        """An `AsyncClient` reaching the simulator in-process."""
        merchant = merchant or self.profile.merchant
        client = AsyncClient(
            merchant, transport=transport or self.transport(merchant), clock=self.clock
        )
        self.clients.append(client)
        return client

    def with_profile(self, **changes: Any) -> MerchantProfile:
        """Change the bench's profile (e.g. `rate_per_minute=60`)."""
        self.profile = replace(self.profile, **changes)
        return self.profile

    def write_file(self, name: str, lines: Iterable[str]) -> Path:
        """A campaign file with these lines."""
        path = self.tmp / name
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        return path

    def campaign(
        self,
        openids: Sequence[str] | None = None,
        *,
        name: str = "spring",
        template: Template = TEMPLATE,
        budget_fen: int | None = None,
    ) -> Campaign:
        """A planned campaign paying `openids` (default: every user) the template's amount."""
        path = self.write_file(f"{name}.txt", openids if openids is not None else self.users)
        campaign = create_campaign(
            self.store,
            self.profile,
            name=name,
            template=template,
            source=path,
            budget_fen=budget_fen,
            clock=self.clock,
        )
        plan_campaign(self.store, self.profile, campaign.id, clock=self.clock)
        return self.store.get_campaign(campaign.id)

    def add_payout(self, openid: str, amount: int = 100, *, key: str | None = None) -> Payout:
        """A PLANNED payout of no campaign, with a fresh bill number and frozen parameters."""
        [bill] = self.store.reserve_bill_numbers(self.mch_id, self.clock.now(), 1)
        params = TEMPLATE.params(
            BaseClient(self.profile.merchant), mch_billno=bill, openid=openid, amount_fen=amount
        )
        payout, _ = self.store.add_payout(
            NewPayout(
                natural_key=key or f"test:{openid}",
                merchant=self.profile.name,
                api=SendApi.SENDREDPACK,
                params=params,
            )
        )
        return payout

    def claim(self, limit: int = 1) -> list[Payout]:
        """Claim due payouts of the merchant (SENDING, leased for the profile's lease)."""
        return self.store.claim(
            self.mch_id, limit=limit, lease_seconds=self.profile.lease_seconds
        ).claimed

    def driver(self, client: AsyncClient | None = None, **options: Any) -> PayoutDriver:
        """A `PayoutDriver` on the bench's clock (pacers sleep on it too)."""
        sleep = ClockSleep(self.clock)
        return PayoutDriver(
            store=options.pop("store", self.store),
            client=client or self.client(),
            profile=self.profile,
            policy=options.pop("policy", QUICK_POLICY),
            clock=self.clock,
            send_pacer=Pacer(self.profile.rate_per_minute, clock=self.clock, sleep=sleep),
            query_pacer=Pacer(self.profile.query_rate_per_minute, clock=self.clock, sleep=sleep),
            **options,
        )

    async def run(self, campaign_id: int, **options: Any) -> RunSummary:
        """`run_campaign` in-process on the bench's clock, with quick settings."""
        options.setdefault("client", self.client())
        options.setdefault("settings", QUICK_RUN)
        profile = options.pop("profile", self.profile)
        return await run_campaign(
            self.store,
            campaign_id,
            profile,
            clock=self.clock,
            sleep=ClockSleep(self.clock),
            **options,
        )

    def issued(self) -> Counter[str]:
        """Packets the simulator really issued, per openid (the ground truth)."""
        _, records = self.sim.state.ledger(self.mch_id)
        return Counter(r.re_openid for r in records if r.status in ISSUED)

    def issued_fen(self) -> int:
        """The amount the simulator really issued."""
        _, records = self.sim.state.ledger(self.mch_id)
        return sum(r.total_amount for r in records if r.status in ISSUED)

    def states(self, campaign_id: int) -> Counter[PayoutState]:
        """The campaign's payouts per state (only states that occur)."""
        totals = self.store.totals_by_state(campaign_id)
        return Counter({state: t.count for state, t in totals.items() if t.count})


def make_bench(
    url: str,
    tmp: Path,
    *,
    users: int = 5,
    settings: MerchantSettings | None = None,
    wecom: bool = False,
    **profile: Any,
) -> Bench:
    """A fresh simulator merchant with `users` users and a migrated ledger at `url`; with
    `wecom`, the merchant has a WeCom corp and the users are its members."""
    clock = FrozenClock(START)
    sim = Simulator(clock=clock, seed=7)
    creds = sim.create_merchant(settings or MerchantSettings(), wecom=wecom)
    upgrade(url)
    store = LedgerStore.open(url, clock=clock)
    timeouts = profile.pop("timeouts", Timeouts())
    corp = {"wecom_corpid": creds.wecom_appid, "wecom_secret": creds.wecom_secret} if wecom else {}
    merchant = merchant_of(creds, timeouts=timeouts, **corp)
    profile.setdefault("lease_seconds", 60.0)
    return Bench(
        sim=sim,
        clock=clock,
        creds=creds,
        store=store,
        profile=MerchantProfile(name="shop", merchant=merchant, **profile),
        users=sim.add_users(creds.wecom_appid or creds.appid, users),
        tmp=tmp,
    )
