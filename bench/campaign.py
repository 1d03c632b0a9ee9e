"""The campaign engine's figures: send throughput, pacing under a cap, planning a large file.

Prints figures; asserts nothing but the bookkeeping each figure rests on. Four parts:

(a) `throughput` — payouts/s of `run_campaign` (what `hongbao campaign run` calls) against the
    served simulator with its rate cap lifted, beside a sequential loop of wechatpy 1.8.18's
    `WeChatPay.redpack.send` on the same simulator. The simulator runs in its own process
    (`SimServerProcess`, uvicorn over mutual TLS), so it shares neither the event loop nor the
    GIL with the runner. hongbao: one ledger for the part (a SQLite file with WAL and
    synchronous=FULL, or PostgreSQL with `--ledger-url`), per repetition one campaign of
    `--payouts` lines planned beforehand (not timed), then `run_campaign` (its own
    `AsyncClient`, `--concurrency` sends in flight, on the commands' event loop:
    `hongbao.eventloop`) timed from call to return; afterwards the ledger must hold that many
    SENT payouts and the simulator that many paid bills, or the bench stops. Beside it, the same
    `AsyncClient` alone (`send_redpack`, `--concurrency` in flight, no ledger at all) on the
    same simulator, which shows what the durable bookkeeping costs and the most a runner could
    reach here: their ratio (campaign run ÷ client alone, per repetition) is goal 1 (≥ 0.8).
    wechatpy is wired to the simulator like this: `WeChatPay(appid, api_key, mch_id,
    mch_cert=PEM, mch_key=PEM)` (the certificate the simulator issued, as PEM files), its
    `API_BASE_URL` set on the instance to the simulator's URL (the class fixes
    api.mch.weixin.qq.com and `_request` reads `self.API_BASE_URL`), and its requests session
    told to trust the simulator's CA (`pay._http.verify = ca.pem`, with `trust_env = False` so
    that a REQUESTS_CA_BUNDLE in the environment does not override it); each call has its own bill
    number and `client_ip`, and must answer SUCCESS. Its figure is how fast a merchant's loop
    of the most used Python SDK sends, one call after another.
(b) `cap` — the simulator on the wall clock (`SimServerProcess(wall_clock=True)`, i.e.
    `hongbao sim serve --wall-clock`: its 60 s FREQ_LIMIT window follows real time) with the
    merchant's rate set to `--cap` a minute, the engine's `rate_per_minute` the same, and a
    campaign sized to last `--cap-seconds`: achieved rate (payouts sent ÷ run time) ÷ cap, and
    the FREQ_LIMIT answers seen on the wire (the client's transport is wrapped to count them).
(c) `plan` — `create_campaign` + `plan_campaign` of a `--lines`-line file of distinct 28-char
    openids into a fresh, migrated ledger, in a child process of its own that imports only the
    engine and the ledger: its time (wall, and CPU as user + system, which the machine's other
    load moves less), and its own peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss`, read by the
    child as it ends).
(d) `whole` — goals 2 and 4, as whole processes on one served simulator: `hongbao campaign
    run` (the command, through its configuration file, in a child process) of a campaign of
    `--whole-payouts` payouts planned beforehand, beside bench/wechatpy_loop.py sending as many
    with wechatpy's `redpack.send` one after the other in a child process of its own (it imports
    only wechatpy). Each one's CPU is user + system time from `getrusage(RUSAGE_CHILDREN)`:
    start-up, imports and the TLS handshake included. Goal 2: hongbao's CPU per payout ÷
    wechatpy's CPU per send ≤ 0.5. Goal 4: from starting the command to its first payout
    committed SENT (the first answer, so an upper bound of the first send) ≤ 0.5 s. Both
    processes read compiled bytecode (the package is byte-compiled first, as an install does).

The load generators' own imports (wechatpy, httpx, the simulator's server) are made where they
are used, so that the planning child does not carry them in its RSS.

Run: `.venv/bin/python bench/campaign.py [--parts throughput,cap,plan,whole] [--payouts 3000]
[--repeat 3] [--cap 1200] [--cap-seconds 65] [--lines 1000000] [--whole-payouts 10000]
[--ledger-url URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import ssl
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from hongbao import eventloop
from hongbao.api import AsyncClient, Merchant
from hongbao.clock import SystemClock
from hongbao.engine.campaign import Template, create_campaign, plan_campaign
from hongbao.engine.runner import run_campaign
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.ids import mint_bill_no
from hongbao.ledger import LedgerStore, PayoutState, upgrade
from hongbao.wire.http_async import AsyncioTransport
from hongbao.wire.transport import AsyncTransport, WireRequest, WireResponse

if TYPE_CHECKING:
    from wechatpy.pay import WeChatPay

    from hongbao.sim.server import SimServerProcess

TEMPLATE = Template(
    amount_fen=100, send_name="Acme", wishing="Happy New Year", act_name="Spring", remark="Thanks"
)
CONTENT = {"send_name": "Acme", "wishing": "Happy New Year", "act_name": "Spring"}
CLIENT_IP = "192.168.0.1"
UNLIMITED = {
    "balance_fen": 10**13,
    "rate_per_minute": 10**9,
    "query_rate_per_minute": 10**9,
    "per_user_count": 10**9,
    "per_user_amount": 10**13,
    "merchant_amount": 10**13,
}
LIFTED = 10**8
"""The engine's own rate for part (a): no pacing, only the ledger and the network count."""
_ALPHABET = string.ascii_letters + string.digits + "-_"


def _median_spread(values: list[float], digits: int = 0) -> str:
    """The median of the repetitions, with their min and max: "120 (min 110, max 130, n=3)"."""
    shown = f"{{:,.{digits}f}}".format
    if len(values) == 1:
        return shown(values[0])
    return (
        f"{shown(statistics.median(values))} (min {shown(min(values))}, "
        f"max {shown(max(values))}, n={len(values)})"
    )


# -- the served simulator ------------------------------------------------------------------


@dataclass
class SimMerchant:
    """A merchant created on the served simulator, with its certificate in PEM files."""

    server: SimServerProcess
    creds: dict[str, Any]
    cert_path: Path
    key_path: Path

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call to the simulator's control API."""
        import httpx

        trust = ssl.create_default_context(cafile=str(self.server.ca_path))
        response = httpx.request(
            method, self.server.url + path, verify=trust, timeout=120, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def users(self, count: int) -> list[str]:
        """`count` new openids under the merchant's Official Account appid."""
        answer = self.control(
            "POST", "/__sim/users", json={"appid": self.creds["appid"], "count": count}
        )
        openids: list[str] = answer["openids"]
        return openids

    def paid(self, bills: set[str] | None = None) -> int:
        """Bills the simulator really paid (among `bills`, if given)."""
        ledger = self.control("GET", "/__sim/ledger", params={"mch_id": self.creds["mch_id"]})
        return sum(
            1
            for row in ledger["records"]
            if row["status"] == "SENT" and (bills is None or row["mch_billno"] in bills)
        )

    def merchant(self) -> Merchant:
        """The API `Merchant` reaching the served simulator over mutual TLS."""
        return Merchant.from_pem_files(
            self.cert_path,
            self.key_path,
            mch_id=self.creds["mch_id"],
            api_key=self.creds["api_key"],
            appid=self.creds["appid"],
            base_url=self.server.url,
            backup_url=None,
            ca_bundle=self.server.ca_path,
        )


@contextmanager
def served(scratch: Path, settings: dict[str, Any], *, wall_clock: bool) -> Iterator[SimMerchant]:
    """A simulator in a child process with one merchant of these settings."""
    import httpx

    from hongbao.sim.server import SimServerProcess

    with SimServerProcess(wall_clock=wall_clock) as server:
        trust = ssl.create_default_context(cafile=str(server.ca_path))
        created = httpx.post(
            server.url + "/__sim/merchants", json=settings, verify=trust, timeout=60
        )
        created.raise_for_status()
        creds = created.json()
        cert_path, key_path = scratch / "apiclient_cert.pem", scratch / "apiclient_key.pem"
        cert_path.write_text(creds["cert_pem"], encoding="ascii")
        key_path.write_text(creds["key_pem"], encoding="ascii")
        yield SimMerchant(server, creds, cert_path, key_path)


# -- hongbao: one campaign run -------------------------------------------------------------


class CountingTransport(AsyncTransport):
    """The asyncio transport, counting the FREQ_LIMIT answers that come back."""

    def __init__(self, inner: AsyncTransport) -> None:
        self.inner = inner
        self.freq_limits = 0

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        response = await self.inner.handle_async_request(request)
        if b"FREQ_LIMIT" in response.body:
            self.freq_limits += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True)
class RunFigures:
    """One timed campaign run."""

    sent: int
    seconds: float
    freq_limits: int | None = None

    @property
    def rate(self) -> float:
        """Payouts sent per second."""
        return self.sent / self.seconds


def _ledger_url(base: str | None, scratch: Path, name: str) -> str:
    return base if base is not None else f"sqlite:///{scratch / f'{name}.db'}"


def run_hongbao(
    sim: SimMerchant,
    profile: MerchantProfile,
    openids: list[str],
    ledger_url: str,
    scratch: Path,
    name: str,
    *,
    count_freq_limits: bool = False,
) -> RunFigures:
    """Plan a campaign paying `openids`, then time `run_campaign`; check every payout landed."""
    source = scratch / f"{name}.txt"
    source.write_text("".join(f"{openid}\n" for openid in openids), encoding="ascii")
    upgrade(ledger_url)
    with LedgerStore.open(ledger_url) as store:
        campaign = create_campaign(store, profile, name=name, template=TEMPLATE, source=source)
        plan_campaign(store, profile, campaign.id)
        bills = {payout.mch_billno for payout in store.iter_payouts(campaign.id)}
        counter = None
        client = None
        if count_freq_limits:
            merchant = profile.merchant
            counter = CountingTransport(
                AsyncioTransport(
                    base_url=merchant.base_url,
                    backup_url=None,
                    certificate=merchant.certificate,
                    ca_bundle=merchant.ca_bundle,
                    timeouts=merchant.timeouts,
                )
            )
            client = AsyncClient(merchant, transport=counter)

        async def send() -> float:
            started = time.perf_counter()
            summary = await run_campaign(
                store,
                campaign.id,
                profile,
                client=client,
                settings=RunSettings(poll_seconds=0.05),
            )
            elapsed = time.perf_counter() - started
            if counter is not None:
                await counter.aclose()  # the client does not close a transport it was given
            if summary.stopped != "completed":
                raise SystemExit(f"the run stopped: {summary.stopped}")
            return elapsed

        elapsed = eventloop.run(send())
        sent = store.totals_by_state(campaign.id)[PayoutState.SENT].count
    paid = sim.paid(bills)
    if sent != len(openids) or paid != len(openids):
        raise SystemExit(
            f"{len(openids)} payouts planned: the ledger has {sent} SENT, the simulator paid {paid}"
        )
    return RunFigures(sent, elapsed, counter.freq_limits if counter is not None else None)


def run_client_alone(
    sim: SimMerchant, openids: list[str], first_serial: int, concurrency: int
) -> RunFigures:
    """`AsyncClient.send_redpack` to each openid, `concurrency` in flight, no ledger; timed."""
    mch_id = sim.creds["mch_id"]
    now = SystemClock().now()
    bills = [mint_bill_no(mch_id, now, first_serial + n) for n in range(len(openids) + 1)]

    async def send_all() -> float:
        async with AsyncClient(sim.merchant()) as client:

            async def send(openid: str, bill: str) -> None:
                result = await client.send_redpack(
                    mch_billno=bill,
                    re_openid=openid,
                    total_amount=100,
                    client_ip=CLIENT_IP,
                    remark="Thanks",
                    **CONTENT,
                )
                if not result.send_listid:
                    raise SystemExit(f"client alone: no send_listid for {bill}")

            await send(openids[0], bills[-1])  # the TLS handshake, outside the timing
            todo = iter(zip(openids, bills, strict=False))

            async def lane() -> None:
                for openid, bill in todo:
                    await send(openid, bill)

            started = time.perf_counter()
            await asyncio.gather(*(lane() for _ in range(concurrency)))
            return time.perf_counter() - started

    elapsed = eventloop.run(send_all())
    paid = sim.paid(set(bills[:-1]))
    if paid != len(openids):
        raise SystemExit(f"the client alone sent {len(openids)}, the simulator paid {paid}")
    return RunFigures(len(openids), elapsed)


# -- wechatpy: a sequential loop -------------------------------------------------------------


def wechatpy_client(sim: SimMerchant) -> WeChatPay:
    """wechatpy's pay client aimed at the served simulator (see the module docstring)."""
    from wechatpy.pay import WeChatPay

    pay = WeChatPay(
        appid=sim.creds["appid"],
        api_key=sim.creds["api_key"],
        mch_id=sim.creds["mch_id"],
        mch_cert=str(sim.cert_path),
        mch_key=str(sim.key_path),
        timeout=10,
    )
    pay.API_BASE_URL = sim.server.url + "/"
    # Without trust_env=False, REQUESTS_CA_BUNDLE (when set) would override `verify`.
    pay._http.trust_env = False
    pay._http.verify = str(sim.server.ca_path)
    return pay


def run_wechatpy(sim: SimMerchant, openids: list[str], first_serial: int) -> RunFigures:
    """`redpack.send` to each openid in turn, each with its own bill number; time the loop."""
    pay = wechatpy_client(sim)
    mch_id = sim.creds["mch_id"]
    now = SystemClock().now()
    bills = [mint_bill_no(mch_id, now, first_serial + n) for n in range(len(openids))]
    # One call first: the TLS handshake, like hongbao's first request, but outside the timing.
    warm = mint_bill_no(mch_id, now, first_serial + len(openids))
    pay.redpack.send(
        openids[0], 100, remark="warm", client_ip=CLIENT_IP, out_trade_no=warm, **CONTENT
    )
    started = time.perf_counter()
    for openid, bill in zip(openids, bills, strict=True):
        answer = pay.redpack.send(
            openid, 100, remark="Thanks", client_ip=CLIENT_IP, out_trade_no=bill, **CONTENT
        )
        if answer.get("result_code") != "SUCCESS":
            raise SystemExit(f"wechatpy: unexpected answer {answer}")
    elapsed = time.perf_counter() - started
    paid = sim.paid(set(bills))
    if paid != len(openids):
        raise SystemExit(f"wechatpy sent {len(openids)}, the simulator paid {paid}")
    return RunFigures(len(openids), elapsed)


# -- the parts -----------------------------------------------------------------------------


def _profile(sim: SimMerchant, rate: int, concurrency: int) -> MerchantProfile:
    return MerchantProfile(
        name="bench",
        merchant=sim.merchant(),
        rate_per_minute=rate,
        query_rate_per_minute=rate,
        concurrency=concurrency,
        per_user_daily_count=10**6,
        per_user_daily_amount_fen=10**9,
    )


def part_throughput(args: argparse.Namespace) -> None:
    """(a) run_campaign against the served simulator, cap lifted, beside wechatpy's loop."""
    print(
        f"(a) throughput: {args.payouts:,} payouts per hongbao run, {args.wechatpy_calls:,} "
        f"wechatpy calls, {args.repeat} repetitions, ledger {args.ledger_url or 'SQLite file'}"
    )
    hongbao: list[float] = []
    wechatpy: list[float] = []
    alone: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        with served(scratch, UNLIMITED, wall_clock=False) as sim:
            profile = _profile(sim, LIFTED, args.concurrency)
            # The campaigns' bill numbers carry the ledger's identity; the loops without a
            # ledger mint theirs under identity 0, which no ledger takes.
            serial = 0
            # One ledger for every repetition: its bill serials go on from run to run, as they
            # must for one merchant (a fresh ledger would mint the first run's bill numbers).
            url = _ledger_url(args.ledger_url, scratch, "throughput")
            for rep in range(args.repeat):
                name = f"throughput-{os.getpid()}-{rep}"
                run = run_hongbao(sim, profile, sim.users(args.payouts), url, scratch, name)
                hongbao.append(run.rate)
                loop = run_wechatpy(sim, sim.users(args.wechatpy_calls), serial)
                serial += args.wechatpy_calls + 1
                wechatpy.append(loop.rate)
                bare = run_client_alone(sim, sim.users(args.payouts), serial, args.concurrency)
                serial += args.payouts + 1
                alone.append(bare.rate)
                print(
                    f"    run {rep + 1}: hongbao {run.sent:,} in {run.seconds:.2f} s = "
                    f"{run.rate:,.0f}/s; wechatpy {loop.sent:,} in {loop.seconds:.2f} s = "
                    f"{loop.rate:,.0f}/s; ratio {run.rate / loop.rate:.2f}; client alone "
                    f"{bare.rate:,.0f}/s"
                )
    ratios = [h / w for h, w in zip(hongbao, wechatpy, strict=True)]
    durable = [h / a for h, a in zip(hongbao, alone, strict=True)]
    print(
        f"    hongbao campaign run, {args.concurrency} in flight: "
        f"{_median_spread(hongbao)} payouts/s"
    )
    print(f"    wechatpy redpack.send, sequential: {_median_spread(wechatpy)} payouts/s")
    ceiling = [a / w for a, w in zip(alone, wechatpy, strict=True)]
    print(
        f"    reference: AsyncClient alone, no ledger, {args.concurrency} in flight: "
        f"{_median_spread(alone)} sends/s = {statistics.median(ceiling):.2f}× wechatpy"
    )
    print(
        f"    ratio to wechatpy (median of per-repetition ratios): {_median_spread(ratios, 2)}×; "
        "every hongbao payout SENT in the ledger and paid by the simulator"
    )
    print(
        f"    goal 1: campaign run ÷ AsyncClient alone, same simulator and concurrency: "
        f"{_median_spread(durable, 2)} (goal ≥ 0.8)"
    )


def part_cap(args: argparse.Namespace) -> None:
    """(b) the rate achieved under a cap, on the simulator's wall clock."""
    count = round(args.cap * args.cap_seconds / 60)
    print(
        f"(b) cap: {args.cap:,}/min on the simulator's wall clock, {count:,} payouts "
        f"(~{args.cap_seconds:g} s), ledger {args.ledger_url or 'SQLite file'}"
    )
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        settings = {**UNLIMITED, "rate_per_minute": args.cap}
        with served(scratch, settings, wall_clock=True) as sim:
            profile = _profile(sim, args.cap, args.concurrency)
            name = f"cap-{os.getpid()}"
            url = _ledger_url(args.ledger_url, scratch, name)
            run = run_hongbao(
                sim, profile, sim.users(count), url, scratch, name, count_freq_limits=True
            )
    achieved = run.rate * 60
    print(
        f"    {run.sent:,} sent in {run.seconds:.1f} s = {achieved:,.0f}/min; "
        f"achieved ÷ cap = {achieved / args.cap:.3f} (goal ≥ 0.98); "
        f"FREQ_LIMIT answers: {run.freq_limits} (goal 0)"
    )


# -- whole processes: `hongbao campaign run` beside a wechatpy loop --------------------------


def _write_config(scratch: Path, sim: SimMerchant, ledger_url: str, concurrency: int) -> Path:
    """A `hongbao.toml` for the served simulator's merchant, its rate lifted like (a)'s."""
    key_file = scratch / "api_key"
    key_file.write_text(sim.creds["api_key"], encoding="ascii")
    key_file.chmod(0o600)
    sim.key_path.chmod(0o600)
    config = scratch / "hongbao.toml"
    config.write_text(
        f'[ledger]\nurl = "{ledger_url}"\n\n[merchants.bench]\n'
        f'mch_id = "{sim.creds["mch_id"]}"\nappid = "{sim.creds["appid"]}"\n'
        f'api_key_file = "{key_file}"\ncert_pem = "{sim.cert_path}"\n'
        f'key_pem = "{sim.key_path}"\nbase_url = "{sim.server.url}"\n'
        f'ca_bundle = "{sim.server.ca_path}"\nrate_per_minute = {LIFTED}\n'
        f"query_rate_per_minute = {LIFTED}\nconcurrency = {concurrency}\n"
        f'per_user_daily_count = 1000000\nper_user_daily_amount = "10000000.00"\n',
        encoding="ascii",
    )
    return config


def _child_cpu(command: list[str]) -> tuple[float, float]:
    """Run `command` to its end: its wall time and its CPU time (user + system, in seconds).

    The CPU comes from `getrusage(RUSAGE_CHILDREN)` before and after: the simulator, the only
    other child, is still running and so not counted.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def run_cli_campaign(
    sim: SimMerchant, config: Path, ledger_url: str, openids: list[str], scratch: Path, name: str
) -> tuple[float, float, float]:
    """`hongbao campaign run` of a campaign paying `openids`, planned beforehand, as a process.

    Returns its wall time, its CPU time, and the seconds from starting it to its first payout
    committed SENT (the first answer: an upper bound of its start-up to the first send).
    """
    source = scratch / f"{name}.txt"
    source.write_text("".join(f"{openid}\n" for openid in openids), encoding="ascii")
    profile = _profile(sim, LIFTED, 16)
    with LedgerStore.open(ledger_url) as store:
        campaign = create_campaign(store, profile, name=name, template=TEMPLATE, source=source)
        plan_campaign(store, profile, campaign.id)
    from hongbao.sim.server import CLI_COMMAND

    command = [*CLI_COMMAND, "campaign", "run", str(campaign.id), "-c", str(config), "--json"]
    started = SystemClock().now()
    elapsed, cpu = _child_cpu(command)
    with LedgerStore.open(ledger_url) as store:
        payouts = list(store.iter_payouts(campaign.id))
    sent = [payout for payout in payouts if payout.state is PayoutState.SENT]
    paid = sim.paid({payout.mch_billno for payout in payouts})
    if len(sent) != len(openids) or paid != len(openids):
        raise SystemExit(
            f"{len(openids)} payouts planned: the ledger has {len(sent)} SENT, the sim paid {paid}"
        )
    first = min(payout.sent_at for payout in sent if payout.sent_at is not None)
    return elapsed, cpu, (first - started).total_seconds()


def run_wechatpy_process(
    sim: SimMerchant, openids: list[str], first_serial: int, scratch: Path
) -> tuple[float, float]:
    """bench/wechatpy_loop.py sending to each of `openids` as a process: wall and CPU time."""
    now = SystemClock().now()
    bills = [mint_bill_no(sim.creds["mch_id"], now, first_serial + n) for n in range(len(openids))]
    job = scratch / "wechatpy-job.json"
    job.write_text(
        json.dumps(
            {
                "url": sim.server.url,
                "ca_path": str(sim.server.ca_path),
                "appid": sim.creds["appid"],
                "api_key": sim.creds["api_key"],
                "mch_id": sim.creds["mch_id"],
                "cert_path": str(sim.cert_path),
                "key_path": str(sim.key_path),
                "client_ip": CLIENT_IP,
                "content": {**CONTENT, "remark": "Thanks"},
                "openids": openids,
                "bills": bills,
            }
        ),
        encoding="utf-8",
    )
    loop = Path(__file__).with_name("wechatpy_loop.py")
    elapsed, cpu = _child_cpu([sys.executable, str(loop), str(job)])
    paid = sim.paid(set(bills))
    if paid != len(openids):
        raise SystemExit(f"wechatpy sent {len(openids)}, the simulator paid {paid}")
    return elapsed, cpu


def part_whole(args: argparse.Namespace) -> None:
    """(d) CPU per payout of whole processes, and `campaign run`'s start-up to its first send."""
    count = args.whole_payouts
    print(
        f"(d) whole processes: `hongbao campaign run` of {count:,} payouts ({args.concurrency} "
        f"in flight) beside a wechatpy loop of {count:,} sends, {args.repeat} repetitions, "
        f"ledger {args.ledger_url or 'SQLite file'}"
    )
    import compileall

    import hongbao

    # As an installed package would: without bytecode (PYTHONDONTWRITEBYTECODE, a source tree)
    # every start compiles each module again, which is not the command's own cost.
    compileall.compile_dir(Path(hongbao.__file__).parent, quiet=1)
    ratios: list[float] = []
    starts: list[float] = []
    hongbao_ms: list[float] = []
    wechatpy_ms: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        with served(scratch, UNLIMITED, wall_clock=False) as sim:
            url = _ledger_url(args.ledger_url, scratch, "whole")
            upgrade(url)
            config = _write_config(scratch, sim, url, args.concurrency)
            serial = 0
            for rep in range(args.repeat):
                name = f"whole-{os.getpid()}-{rep}"
                seconds, cpu, start = run_cli_campaign(
                    sim, config, url, sim.users(count), scratch, name
                )
                w_seconds, w_cpu = run_wechatpy_process(sim, sim.users(count), serial, scratch)
                serial += count
                per, w_per = cpu / count * 1000, w_cpu / count * 1000
                hongbao_ms.append(per)
                wechatpy_ms.append(w_per)
                ratios.append(per / w_per)
                starts.append(start)
                print(
                    f"    run {rep + 1}: hongbao {seconds:.2f} s, {cpu:.2f} s CPU = {per:.3f} ms "
                    f"a payout, first SENT after {start:.2f} s; wechatpy {w_seconds:.2f} s, "
                    f"{w_cpu:.2f} s CPU = {w_per:.3f} ms a send; ratio {per / w_per:.2f}"
                )
    print(f"    CPU per durable payout: {_median_spread(hongbao_ms, 3)} ms")
    print(f"    CPU per wechatpy send: {_median_spread(wechatpy_ms, 3)} ms")
    print(
        f"    goal 2: CPU per durable payout ÷ CPU per wechatpy send = "
        f"{_median_spread(ratios, 2)} (goal ≤ 0.5)"
    )
    print(
        f"    goal 4: start-up to the first payout SENT = {_median_spread(starts, 2)} s "
        "(goal ≤ 0.5; the first answer committed, so an upper bound of the first send)"
    )


def write_openids(path: Path, lines: int, seed: int = 1) -> None:
    """A file of `lines` distinct openids, 28 characters each like WeChat's."""
    draw = random.Random(seed)
    with path.open("w", encoding="ascii") as out:
        for n in range(lines):
            out.write("o" + "".join(draw.choices(_ALPHABET, k=19)) + f"{n:08d}\n")


def plan_child(source: Path, ledger_url: str) -> None:
    """Create and plan a campaign from `source`; print seconds, CPU seconds, payouts, peak RSS."""
    merchant = Merchant(
        mch_id="1900000109",
        api_key=SecretStr("k" * 32),
        appid="wx2421b1c4370ec43b",
        backup_url=None,
    )
    profile = MerchantProfile(name="bench", merchant=merchant)
    with LedgerStore.open(ledger_url) as store:
        started, cpu = time.perf_counter(), time.process_time()
        campaign = create_campaign(
            store, profile, name=f"plan-{os.getpid()}", template=TEMPLATE, source=source
        )
        report = plan_campaign(store, profile, campaign.id)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{elapsed} {cpu} {report.inserted} {peak_mb}")


def part_plan(args: argparse.Namespace) -> None:
    """(c) time and the planning process's own peak RSS for a large file."""
    print(
        f"(c) plan: {args.lines:,}-line file, {args.plan_repeat} repetition(s), each a fresh "
        f"child process and ledger ({args.ledger_url or 'SQLite file'})"
    )
    seconds: list[float] = []
    cpus: list[float] = []
    peaks: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        source = scratch / "users.txt"
        write_openids(source, args.lines)
        for rep in range(args.plan_repeat):
            url = _ledger_url(args.ledger_url, scratch, f"plan-{rep}")
            upgrade(url)  # here, not in the child: migrations are not planning
            command = [sys.executable, __file__, "--plan-child", str(source), "--ledger-url", url]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            elapsed, cpu, inserted, peak = (float(word) for word in done.stdout.split())
            if int(inserted) != args.lines:
                raise SystemExit(f"planned {inserted:.0f} payouts of {args.lines} lines")
            seconds.append(elapsed)
            cpus.append(cpu)
            peaks.append(peak)
            print(f"    run {rep + 1}: {elapsed:.1f} s ({cpu:.1f} s CPU), peak RSS {peak:.0f} MB")
            if args.ledger_url is None:
                for leftover in scratch.glob(f"plan-{rep}.db*"):
                    leftover.unlink()
    print(
        f"    {args.lines:,} payouts planned: {_median_spread(seconds, 1)} s (goal ≤ 60; CPU "
        f"{_median_spread(cpus, 1)} s), peak RSS {_median_spread(peaks)} MB (goal ≤ 200)"
    )


PARTS: dict[str, Callable[[argparse.Namespace], None]] = {
    "throughput": part_throughput,
    "cap": part_cap,
    "plan": part_plan,
    "whole": part_whole,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", default="throughput,cap,plan,whole", help="comma-separated parts"
    )
    parser.add_argument("--payouts", type=int, default=3000, help="(a) payouts per hongbao run")
    parser.add_argument("--wechatpy-calls", type=int, default=1000, help="(a) wechatpy calls")
    parser.add_argument("--repeat", type=int, default=3, help="(a) repetitions")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="sends in flight (64: against a local simulator answering in about a millisecond, "
        "16 leave the runner waiting on its commit rounds; WeChat answers in tens of ms)",
    )
    parser.add_argument("--whole-payouts", type=int, default=10_000, help="(d) payouts per process")
    parser.add_argument("--cap", type=int, default=1200, help="(b) the cap, sends per minute")
    parser.add_argument("--cap-seconds", type=float, default=65.0, help="(b) run length")
    parser.add_argument("--lines", type=int, default=1_000_000, help="(c) lines to plan")
    parser.add_argument("--plan-repeat", type=int, default=1, help="(c) repetitions")
    parser.add_argument(
        "--ledger-url", help="a PostgreSQL ledger (default: a fresh SQLite file per run)"
    )
    parser.add_argument("--plan-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plan_child is not None:
        plan_child(args.plan_child, args.ledger_url)
        return
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {sorted(PARTS)}")
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. Noise: the "
        "simulator, the runner and the database share these cores and the disk; figures move "
        "by 10-20% from run to run, so read the spread, not one number."
    )
    for name in args.parts.split(","):
        PARTS[name](args)


if __name__ == "__main__":
    main()
