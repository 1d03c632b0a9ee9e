"""Payouts on demand: what recording each payout before it leaves costs a caller.

Prints figures; asserts nothing but the bookkeeping each figure rests on. The simulator runs in
its own process over mutual TLS (`SimServerProcess`, rate cap lifted), as in bench/campaign.py.
The ledger is a SQLite file (WAL, synchronous=FULL) unless `--ledger-url` names another.

(a) `latency` — `AsyncPayouts.pay(key, …, wait=True)` called `--calls` times one after the
    other (each a new key: record, claim, send, commit the outcome), beside as many
    `AsyncClient.send_redpack` calls of the bare client, one after the other, in the same run:
    p50 and p99 of each, and the p50 overhead of the durable path (goal: ≤ 1 ms on SQLite).
(b) `throughput` — `--callers` concurrent callers paying `--payouts` keys in all through one
    `AsyncPayouts`, beside `hongbao campaign run` (`run_campaign`) of as many payouts with
    `--callers` sends in flight: payouts/s of each and their ratio (goal: ≥ 0.8).

Every figure is checked: each key SENT in the ledger and each bill paid by the simulator.

Run: `.venv/bin/python bench/payouts.py [--parts latency,throughput] [--calls 500]
[--payouts 3000] [--callers 64] [--repeat 3] [--ledger-url URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from campaign import (
    CLIENT_IP,
    CONTENT,
    LIFTED,
    UNLIMITED,
    SimMerchant,
    _ledger_url,
    _median_spread,
    _profile,
    run_hongbao,
    served,
)
from hongbao import eventloop
from hongbao.api import AsyncClient
from hongbao.clock import SystemClock
from hongbao.engine.ondemand import AsyncPayouts
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.ids import mint_bill_no
from hongbao.ledger import PayoutState, Scope, upgrade

PACKET: dict[str, Any] = {**CONTENT, "remark": "Thanks"}
SETTINGS = RunSettings(poll_seconds=0.05)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _check(payouts: AsyncPayouts, profile: MerchantProfile, sim: SimMerchant, keys: int) -> None:
    rows = payouts.store.list_payouts(Scope.on_demand(profile.mch_id), limit=10**7)
    sent = {row.mch_billno for row in rows if row.state is PayoutState.SENT}
    paid = sim.paid(sent)
    if len(sent) < keys or paid != len(sent):
        raise SystemExit(f"{keys} keys paid: the ledger has {len(sent)} SENT, the sim paid {paid}")


def latency(
    sim: SimMerchant, profile: MerchantProfile, url: str, calls: int, rep: int
) -> tuple[list[float], list[float]]:
    """Times of `calls` sequential pay(wait=True), and of `calls` sequential bare sends (s)."""
    openids = sim.users(calls + 1)
    now = SystemClock().now()
    # The bare client mints under identity 0, which no ledger takes.
    first_serial = rep * (calls + 2)

    async def measure() -> tuple[list[float], list[float]]:
        durable: list[float] = []
        bare: list[float] = []
        async with AsyncPayouts(url, profile, settings=SETTINGS) as payouts:
            await payouts.pay(f"warm-{os.getpid()}-{rep}", openids[-1], 100, **PACKET)
            for n, openid in enumerate(openids[:-1]):
                started = time.perf_counter()
                view = await payouts.pay(f"lat-{os.getpid()}-{rep}-{n}", openid, 100, **PACKET)
                durable.append(time.perf_counter() - started)
                if view.state is not PayoutState.SENT:
                    raise SystemExit(f"pay ended {view.state}")
            _check(payouts, profile, sim, calls)
        async with AsyncClient(profile.merchant) as client:
            for n, openid in enumerate(openids[:-1]):
                bill = mint_bill_no(profile.mch_id, now, first_serial + n)
                started = time.perf_counter()
                await client.send_redpack(
                    mch_billno=bill, re_openid=openid, total_amount=100, client_ip=CLIENT_IP,
                    **PACKET,
                )  # fmt: skip
                bare.append(time.perf_counter() - started)
        return durable, bare

    return eventloop.run(measure())


def concurrent(
    sim: SimMerchant, profile: MerchantProfile, url: str, payouts_count: int, callers: int, rep: int
) -> float:
    """Payouts/s of `callers` concurrent callers paying `payouts_count` new keys."""
    openids = sim.users(payouts_count)

    async def measure() -> float:
        async with AsyncPayouts(url, profile, settings=SETTINGS) as payouts:
            await payouts.pay(f"warm-c-{os.getpid()}-{rep}", openids[0], 100, **PACKET)
            todo = iter(enumerate(openids))

            async def caller() -> None:
                for n, openid in todo:
                    view = await payouts.pay(
                        f"tp-{os.getpid()}-{rep}-{n}", openid, 100, **PACKET
                    )
                    if view.state is not PayoutState.SENT:
                        raise SystemExit(f"pay ended {view.state}")

            started = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(callers)))
            elapsed = time.perf_counter() - started
            _check(payouts, profile, sim, payouts_count)
        return payouts_count / elapsed

    return eventloop.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="latency,throughput")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--payouts", type=int, default=3000)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ledger-url", default=None)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        with served(scratch, UNLIMITED, wall_clock=False) as sim:
            profile = _profile(sim, LIFTED, args.callers)
            url = _ledger_url(args.ledger_url, scratch, "payouts")
            upgrade(url)
            ledger = args.ledger_url or "SQLite file (WAL, synchronous=FULL)"
            if "latency" in parts:
                print(f"(a) latency: {args.calls} sequential calls each, ledger {ledger}")
                p50s, p99s, bare50s, bare99s, overheads = [], [], [], [], []
                for rep in range(args.repeat):
                    durable, bare = latency(sim, profile, url, args.calls, rep)
                    ms = [1000 * v for v in durable]
                    bms = [1000 * v for v in bare]
                    p50s.append(statistics.median(ms))
                    p99s.append(_percentile(ms, 0.99))
                    bare50s.append(statistics.median(bms))
                    bare99s.append(_percentile(bms, 0.99))
                    overheads.append(p50s[-1] - bare50s[-1])
                    print(
                        f"    run {rep + 1}: pay(wait=True) p50 {p50s[-1]:.2f} ms, p99 "
                        f"{p99s[-1]:.2f} ms; bare send_redpack p50 {bare50s[-1]:.2f} ms, p99 "
                        f"{bare99s[-1]:.2f} ms; p50 overhead {overheads[-1]:.2f} ms"
                    )
                print(f"    pay(wait=True) p50: {_median_spread(p50s, 2)} ms")
                print(f"    pay(wait=True) p99: {_median_spread(p99s, 2)} ms")
                print(f"    bare send_redpack p50: {_median_spread(bare50s, 2)} ms")
                print(f"    bare send_redpack p99: {_median_spread(bare99s, 2)} ms")
                print(f"    p50 overhead: {_median_spread(overheads, 2)} ms; goal ≤ 1 ms")
            if "throughput" in parts:
                print(
                    f"(b) throughput: {args.payouts:,} payouts, {args.callers} callers / in "
                    f"flight, ledger {ledger}"
                )
                ondemand, campaign = [], []
                for rep in range(args.repeat):
                    rate = concurrent(sim, profile, url, args.payouts, args.callers, rep)
                    ondemand.append(rate)
                    name = f"payouts-bench-{os.getpid()}-{rep}"
                    run = run_hongbao(
                        sim, profile, sim.users(args.payouts), url, scratch, name
                    )
                    campaign.append(run.rate)
                    print(
                        f"    run {rep + 1}: pay() {rate:,.0f}/s; campaign run "
                        f"{run.rate:,.0f}/s; ratio {rate / run.rate:.2f}"
                    )
                ratios = [o / c for o, c in zip(ondemand, campaign, strict=True)]
                print(f"    pay(), {args.callers} callers: {_median_spread(ondemand)} payouts/s")
                print(f"    campaign run: {_median_spread(campaign)} payouts/s")
                print(
                    f"    ratio: {statistics.median(ratios):.2f} (min {min(ratios):.2f}, "
                    f"max {max(ratios):.2f}); goal ≥ 0.8"
                )


if __name__ == "__main__":
    main()
