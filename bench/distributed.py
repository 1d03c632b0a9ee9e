"""The scale-out dispatcher's figures: the shared rate cap, and scaling from 1 to 3 workers.

Prints figures; asserts only the bookkeeping they rest on (every payout SENT, the simulator paid
each once). Each run: a fresh schema in the PostgreSQL database `--admin-url` names (dropped
afterwards), migrated with the job tables; the simulator in its own process on the wall clock
(`SimServerProcess`, mutual TLS); a campaign planned beforehand; N `hongbao worker` processes
(`--concurrency` each) started and given 3 s to come up; then timed from `defer_campaign` (what
`hongbao campaign run --distributed` calls first) until no payout is open. payouts/s is that
whole time; "CPU ms/payout" is the user + system time of the worker processes over it.

(a) `cap` — 3 workers, the merchant's `rate_per_minute` and the simulator's cap both `--cap`,
    `--cap-seconds` worth of payouts: achieved rate ÷ cap, FREQ_LIMIT answers in the ledger's
    audit trail, the most sends the simulator saw in any sliding 60 s window and in each
    calendar minute.
(b) `cpu` — CPU-bound scaling: the cap lifted and the simulator answering at once, payouts/s
    with 1, 2 and 3 workers of `--concurrency` jobs, `--payouts` each. The workers, the
    simulator and PostgreSQL share this machine's cores, so this measures what the machine can
    do, not what more workers add: on 2 cores a second worker gains only while a core is idle,
    a third nothing, and the figures move with whatever else the machine runs.
(c) `latency` — latency-bound scaling, what more workers are for. WeChat answers in tens to
    hundreds of milliseconds, and a job drives its chunk one payout at a time, so one worker
    sends at most `--latency-jobs` ÷ latency payouts/s however fast its CPU. The simulator's
    own `delay` fault (`POST /__sim/faults {"endpoint": "sendredpack", "action": "delay",
    "seconds": …}`, armed until cleared) answers every send `--latency-ms` late; cap lifted;
    1, 2 and 3 workers of `--latency-jobs` jobs each. The recipients fill B of the 64 recipient
    buckets with `--per-bucket` payouts each, B the largest multiple of every run's jobs at once
    (8, 16, 24 → 48) up to 64: a bucket's payouts run one after the other, so with every
    bucket equal each run works through them in whole waves and no job slot idles at the end
    for want of a bucket (a real campaign fills all 64 buckets unevenly; its last wave runs
    part-full). Printed: payouts/s, the speed-up over the first worker count, the ceiling
    (jobs at once ÷ latency) and the workers' CPU ms/payout. The bench stops if a run beats
    its ceiling (the delay was not applied).

Run: `.venv/bin/python bench/distributed.py [--parts cap,cpu,latency] [--cap 1800]
[--cap-seconds 130] [--payouts 3000] [--concurrency 16] [--workers 1,2,3] [--latency-ms 200]
[--latency-jobs 8] [--per-bucket 30]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from math import lcm
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from campaign import LIFTED, TEMPLATE, UNLIMITED, SimMerchant, served
from hongbao.engine.campaign import create_campaign, plan_campaign
from hongbao.engine.config import load_config
from hongbao.engine.distributed import (
    RECIPIENT_LOCKS,
    defer_campaign,
    install_schema,
    recipient_lock,
)
from hongbao.ledger import LedgerStore, PayoutState, upgrade
from hongbao.ledger.schema import payout_events

HONGBAO = str(Path(sys.executable).parent / "hongbao")
OPEN = (PayoutState.PLANNED, PayoutState.DEFERRED, PayoutState.SENDING, PayoutState.UNKNOWN)


@contextmanager
def scratch_schema(admin_url: str, name: str) -> Iterator[str]:
    """A fresh schema in the admin URL's database; yields its ledger URL, drops it at the end."""
    url = make_url(admin_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    ledger = url.set(drivername="postgresql+psycopg").update_query_dict(
        {"options": f"-csearch_path={name}"}
    )
    try:
        yield ledger.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def write_config(sim: SimMerchant, path: Path, ledger_url: str, rate: int) -> None:
    """The configuration file every worker reads: the ledger and the simulated merchant."""
    creds = sim.creds
    path.write_text(
        f"""[ledger]
url = "{ledger_url}"

[merchants.shop]
mch_id = "{creds["mch_id"]}"
api_key = "{creds["api_key"]}"
appid = "{creds["appid"]}"
cert_pem = "{sim.cert_path}"
key_pem = "{sim.key_path}"
base_url = "{sim.server.url}"
ca_bundle = "{sim.server.ca_path}"
rate_per_minute = {rate}
query_rate_per_minute = {LIFTED}
""",
        encoding="utf-8",
    )


@dataclass(frozen=True)
class Run:
    """One timed distributed run."""

    sent: int
    seconds: float
    cpu_seconds: float
    """CPU time (user + system) the worker processes spent during the timed part."""
    freq_limits: int
    send_times: list[datetime]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    @property
    def cpu_ms_per_payout(self) -> float:
        return self.cpu_seconds * 1000 / self.sent


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes so far (Linux `/proc/<pid>/stat`)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_workers(
    sim: SimMerchant, ledger_url: str, scratch: Path, *, workers: int, openids: list[str],
    rate: int, concurrency: int,
) -> Run:  # fmt: skip
    """Plan a payout to each of `openids`, start `workers` worker processes, time the campaign
    to its end."""
    payouts = len(openids)
    config = scratch / "hongbao.toml"
    write_config(sim, config, ledger_url, rate)
    upgrade(ledger_url)
    store = LedgerStore.open(ledger_url)
    install_schema(store.engine)
    source = scratch / f"openids-{workers}.txt"
    source.write_text("".join(f"{o}\n" for o in openids), encoding="utf-8")
    profile = load_config(config).profile("shop")
    campaign = create_campaign(store, profile, name="bench", template=TEMPLATE, source=source)
    plan_campaign(store, profile, campaign.id)
    log = (scratch / "workers.log").open("ab")
    command = [HONGBAO, "worker", "--concurrency", str(concurrency), "--config", str(config)]
    processes = [
        subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT) for _ in range(workers)
    ]
    try:
        time.sleep(3.0)
        pids = [p.pid for p in processes]
        cpu_before = cpu_seconds(pids)
        started = time.perf_counter()
        defer_campaign(store, campaign.id)
        while True:
            totals = store.totals_by_state(campaign.id)
            if sum(totals[state].count for state in OPEN) == 0:
                break
            if any(p.poll() is not None for p in processes):
                raise SystemExit(f"a worker ended; see {scratch / 'workers.log'}")
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(pids) - cpu_before
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
        log.close()
    sent = totals[PayoutState.SENT].count
    if sent != payouts or sim.paid() != payouts:
        raise SystemExit(f"expected {payouts} SENT and paid, got {sent} / {sim.paid()}")
    with store.engine.connect() as conn:
        freq_limits = conn.execute(
            select(func.count()).where(payout_events.c.err_code == "FREQ_LIMIT")
        ).scalar_one()
    ledger = sim.control("GET", "/__sim/ledger", params={"mch_id": sim.creds["mch_id"]})
    send_times = [datetime.fromisoformat(row["send_time"]) for row in ledger["records"]]
    store.close()
    return Run(sent, seconds, cpu, int(freq_limits), send_times)


def most_in_a_minute(times: list[datetime]) -> int:
    """The most stamps in any sliding 60 s window."""
    window: deque[float] = deque()
    most = 0
    for stamp in sorted(t.timestamp() for t in times):
        window.append(stamp)
        while window[0] <= stamp - 60.0:
            window.popleft()
        most = max(most, len(window))
    return most


def part_cap(args: argparse.Namespace) -> None:
    """(a) three workers under one cap."""
    count = round(args.cap * args.cap_seconds / 60)
    print(
        f"(a) cap: {args.cap:,}/min shared by 3 workers, {count:,} payouts (~{args.cap_seconds} s)"
    )
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        settings = {**UNLIMITED, "rate_per_minute": args.cap}
        with (
            served(scratch, settings, wall_clock=True) as sim,
            scratch_schema(args.admin_url, f"bench_cap_{os.getpid()}") as url,
        ):
            run = run_workers(
                sim, url, scratch, workers=3, openids=sim.users(count), rate=args.cap,
                concurrency=args.concurrency,
            )  # fmt: skip
    achieved = run.rate * 60
    minutes = Counter(t.replace(second=0, microsecond=0) for t in run.send_times)
    whole = sorted(minutes.items())[1:-1]  # the first and last minutes are partly idle
    print(
        f"    {run.sent:,} sent in {run.seconds:.1f} s = {achieved:,.0f}/min; achieved ÷ cap = "
        f"{achieved / args.cap:.3f} (goal ≥ 0.95); FREQ_LIMIT answers: {run.freq_limits} "
        f"(goal 0)"
    )
    print(
        f"    most sends in any sliding 60 s window: {most_in_a_minute(run.send_times):,} "
        f"(cap {args.cap:,}); full calendar minutes: "
        + ", ".join(f"{at:%H:%M} {n:,}" for at, n in whole)
    )


def part_cpu(args: argparse.Namespace) -> None:
    """(b) payouts/s with the cap lifted and instant answers, 1 to 3 workers: CPU-bound."""
    print(
        f"(b) cpu: CPU-bound on {os.cpu_count()} shared cores — cap lifted, the simulator "
        f"answering at once, {args.payouts:,} payouts, {args.concurrency} jobs per worker"
    )
    rates: dict[int, float] = {}
    for workers in worker_counts(args):
        with tempfile.TemporaryDirectory() as directory:
            scratch = Path(directory)
            with (
                served(scratch, UNLIMITED, wall_clock=True) as sim,
                scratch_schema(args.admin_url, f"bench_cpu_{os.getpid()}_{workers}") as url,
            ):
                run = run_workers(
                    sim, url, scratch, workers=workers, openids=sim.users(args.payouts),
                    rate=LIFTED, concurrency=args.concurrency,
                )  # fmt: skip
        rates[workers] = run.rate
        print(f"    {workers} worker(s): {run.sent:,} in {run.seconds:.1f} s = {versus(rates)}")
        print(f"        workers' CPU {run.cpu_ms_per_payout:.2f} ms/payout")
    print(
        f"    the workers, the simulator and PostgreSQL share {os.cpu_count()} cores: this is the "
        "machine's CPU limit, not what more workers add (see (c))"
    )


def versus(rates: dict[int, float]) -> str:
    """The last run's payouts/s and its speed-up over the first worker count's."""
    (first, base), rate = next(iter(rates.items())), list(rates.values())[-1]
    return f"{rate:,.1f} payouts/s, speed-up {rate / base:.2f}× over {first} worker(s)"


def worker_counts(args: argparse.Namespace) -> list[int]:
    """The worker counts of the scaling parts."""
    return [int(n) for n in args.workers.split(",")]


def even_recipients(sim: SimMerchant, buckets: int, per_bucket: int) -> list[str]:
    """New openids, `per_bucket` in each of `buckets` recipient buckets and none elsewhere."""
    mch_id = sim.creds["mch_id"]
    chosen: dict[str, list[str]] = {}
    while len(chosen) < buckets or any(len(group) < per_bucket for group in chosen.values()):
        for openid in sim.users(buckets * per_bucket):
            lock = recipient_lock(mch_id, openid)
            if lock not in chosen and len(chosen) < buckets:
                chosen[lock] = []
            group = chosen.get(lock)
            if group is not None and len(group) < per_bucket:
                group.append(openid)
    return [openid for group in chosen.values() for openid in group]


def part_latency(args: argparse.Namespace) -> None:
    """(c) payouts/s with every send answered late, 1 to 3 workers: latency-bound."""
    counts = worker_counts(args)
    latency = args.latency_ms / 1000
    slots = lcm(*(n * args.latency_jobs for n in counts))
    buckets = slots * (RECIPIENT_LOCKS // slots) if slots <= RECIPIENT_LOCKS else RECIPIENT_LOCKS
    print(
        f"(c) latency: every sendredpack answered {args.latency_ms} ms late (the simulator's "
        f"delay fault), cap lifted, {args.latency_jobs} jobs per worker, "
        f"{buckets * args.per_bucket:,} payouts = {args.per_bucket} in each of {buckets} "
        f"recipient buckets"
    )
    rates: dict[int, float] = {}
    for workers in counts:
        with tempfile.TemporaryDirectory() as directory:
            scratch = Path(directory)
            with (
                served(scratch, UNLIMITED, wall_clock=True) as sim,
                scratch_schema(args.admin_url, f"bench_latency_{os.getpid()}_{workers}") as url,
            ):
                openids = even_recipients(sim, buckets, args.per_bucket)
                sim.control(
                    "POST",
                    "/__sim/faults",
                    json={"endpoint": "sendredpack", "action": "delay", "seconds": latency},
                )
                run = run_workers(
                    sim, url, scratch, workers=workers, openids=openids, rate=LIFTED,
                    concurrency=args.latency_jobs,
                )  # fmt: skip
        ceiling = workers * args.latency_jobs / latency
        if run.rate > ceiling:
            raise SystemExit(f"{run.rate:.1f} payouts/s beats the ceiling {ceiling:.1f}/s")
        rates[workers] = run.rate
        print(f"    {workers} worker(s): {run.sent:,} in {run.seconds:.1f} s = {versus(rates)}")
        print(
            f"        ceiling {workers * args.latency_jobs} jobs ÷ {latency:g} s = "
            f"{ceiling:,.0f}/s; workers' CPU {run.cpu_ms_per_payout:.2f} ms/payout"
        )
    print(
        "    one worker is bound by its jobs × the answer's latency, not by CPU: more workers, "
        "more sends in flight"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="cap,cpu,latency")
    parser.add_argument("--cap", type=int, default=1800)
    parser.add_argument("--cap-seconds", type=int, default=130)
    parser.add_argument("--payouts", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", default="1,2,3", help="worker counts of parts (b), (c)")
    parser.add_argument("--latency-ms", type=int, default=200, help="part (c)")
    parser.add_argument("--latency-jobs", type=int, default=8, help="jobs per worker in (c)")
    parser.add_argument("--per-bucket", type=int, default=30, help="payouts per bucket in (c)")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "HONGBAO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    parts = {"cap": part_cap, "cpu": part_cpu, "latency": part_latency}
    for name in args.parts.split(","):
        parts[name](args)


if __name__ == "__main__":
    main()
