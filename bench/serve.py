"""`hongbao serve` under load: payouts accepted per second, replays per second, and the
dispatcher's send rate while the API is loaded.

Prints figures; asserts nothing but the bookkeeping each figure rests on (every create answered
201, every replay 200 with `Idempotent-Replayed: true`). The simulator runs in its own process
over mutual TLS on the wall clock (`SimServerProcess(wall_clock=True)`: its 60 s FREQ_LIMIT
window follows real time), its merchant capped at `--cap` sends a minute, the configuration's
`rate_per_minute` the same. `hongbao serve` runs as a real process (embedded mode: a SQLite
ledger file, WAL, synchronous=FULL; it sends in its own process) with a bearer token.

Per repetition, on the same server and ledger:

(a) `accepted` — `--clients` concurrent HTTP clients (aiohttp, one keep-alive connection each)
    POST /v1/payouts (wait=0, a new Idempotency-Key each) for `--seconds`: accepted payouts/s
    (goal ≥ 1,000/s) and p50/p99 latency of the 201 answers, as the clients measure them
    (goal p99 ≤ 20 ms).
(b) `replays` — the same clients send the same keys and bodies again for up to `--seconds`:
    replays/s (each must be 200 with `Idempotent-Replayed: true`).
    The server's CPU time per accepted payout (from /proc, API and dispatcher together) bounds
    what one free core could accept; the machine's other load moves it less than the rate.
(c) `dispatch` — payouts the ledger records as sent (`sent_at`, read back over the API) during
    (a), after its first `--ramp` seconds, per minute ÷ `--cap` (goal ≥ 0.98). The backlog (a)
    leaves grows with each repetition, so the dispatcher is sending throughout.

At the end: the FREQ_LIMIT answers the service saw (/metrics; goal 0).

Run: `.venv/bin/python bench/serve.py [--quick] [--seconds 20] [--clients 32] [--cap 1800]
[--repeat 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from campaign import UNLIMITED, SimMerchant, _median_spread, served
from hongbao.sim.server import CLI_COMMAND

TOKEN = "bench-token-" + "0123456789abcdef"
PACKET = {"send_name": "Acme", "wishing": "Happy New Year", "act_name": "Spring", "remark": "Hi"}
USERS = 5000
"""Receivers, paid in turn; the dispatcher sends fewer than `USERS` × 10 (the daily count)."""


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def write_config(sim: SimMerchant, scratch: Path, cap: int) -> Path:
    """hongbao.toml for the simulator's merchant, a SQLite ledger and a bearer token."""
    creds = sim.creds
    tokens = scratch / "api_tokens"
    tokens.write_text(TOKEN + "\n", encoding="ascii")
    config = scratch / "hongbao.toml"
    config.write_text(
        f"""[ledger]
url = "sqlite:///{scratch / "serve.db"}"

[api]
token_file = "{tokens}"

[merchants.bench]
mch_id = "{creds["mch_id"]}"
api_key = "{creds["api_key"]}"
appid = "{creds["appid"]}"
cert_pem = "{sim.cert_path}"
key_pem = "{sim.key_path}"
base_url = "{sim.server.url}"
ca_bundle = "{sim.server.ca_path}"
rate_per_minute = {cap}
query_rate_per_minute = {cap}
""",
        encoding="utf-8",
    )
    for path in (tokens, config, sim.key_path):
        path.chmod(0o600)
    return config


@dataclass(frozen=True)
class Server:
    """A running `hongbao serve`: its URL and process id."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serving(config: Path, log: Path) -> Iterator[Server]:
    """`hongbao serve -c CONFIG --port 0` in its own process."""
    command = [*CLI_COMMAND, "serve", "-c", str(config), "--port", "0"]
    with log.open("w", encoding="utf-8") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"on (https?://\S+) ", line)
        try:
            if found is None:
                raise SystemExit(f"hongbao serve did not start: {line!r} {log.read_text()}")
            yield Server(found.group(1), process.pid)
        finally:
            process.terminate()
            process.wait(timeout=60)


@dataclass
class Phase:
    """What the clients of one phase saw."""

    answered: int
    seconds: float
    latencies: list[float]
    started: float
    ended: float

    @property
    def rate(self) -> float:
        return self.answered / self.seconds


async def drive(
    url: str, bodies: list[tuple[str, bytes]], clients: int, seconds: float, replay: bool
) -> Phase:
    """`clients` keep-alive clients POSTing `bodies` in turn until done or `seconds` pass."""
    todo = iter(bodies)
    latencies: list[float] = []
    want = 200 if replay else 201

    async def client() -> None:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            for key, body in todo:
                if time.perf_counter() > deadline:
                    return
                headers = {
                    "Authorization": f"Bearer {TOKEN}",
                    "Idempotency-Key": key,
                    "Content-Type": "application/json",
                }
                began = time.perf_counter()
                async with session.post(f"{url}/v1/payouts", data=body, headers=headers) as got:
                    await got.read()
                    latencies.append(time.perf_counter() - began)
                    replayed = got.headers.get("Idempotent-Replayed") == "true"
                    if got.status != want or replayed != replay:
                        raise SystemExit(f"{key}: {got.status} (replayed: {replayed})")

    started_wall = time.time()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return Phase(len(latencies), elapsed, latencies, started_wall, started_wall + elapsed)


async def sent_times(url: str) -> list[float]:
    """The `sent_at` of every SENT payout, read over the API (Unix seconds)."""
    times: list[float] = []
    cursor: str | None = None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        while True:
            params = {"state": "SENT", "limit": "500", **({"cursor": cursor} if cursor else {})}
            async with session.get(f"{url}/v1/payouts", params=params, headers=headers) as got:
                page: dict[str, Any] = await got.json()
            times += [datetime.fromisoformat(row["sent_at"]).timestamp() for row in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return times


async def freq_limits(url: str) -> float:
    """FREQ_LIMIT answers the service counted (/metrics)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as got:
        text = await got.text()
    found = re.findall(r"^hongbao_freq_limit_answers_total\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(value) for value in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 s phases: a smoke run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of phase (a)")
    parser.add_argument("--ramp", type=float, default=3.0, help="seconds (c) leaves out")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--cap", type=int, default=1800, help="the merchant's sends a minute")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    seconds = 6.0 if args.quick else args.seconds
    ramp = min(args.ramp, seconds / 3)
    print(
        f"hongbao serve (SQLite file, WAL, synchronous=FULL), {args.clients} clients, "
        f"{seconds:g} s phases, merchant cap {args.cap:,}/min, {args.repeat} repetitions"
    )
    accepted: list[float] = []
    p50s: list[float] = []
    p99s: list[float] = []
    replays: list[float] = []
    shares: list[float] = []
    costs: list[float] = []
    client_costs: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        settings = {**UNLIMITED, "rate_per_minute": args.cap}
        with served(scratch, settings, wall_clock=True) as sim:
            openids = sim.users(USERS)
            config = write_config(sim, scratch, args.cap)
            with serving(config, scratch / "serve.log") as server:
                url = server.url
                for rep in range(args.repeat):
                    count = int(seconds * 5000)  # more than any client here sends in time
                    bodies = [
                        (
                            f"bench-{os.getpid()}-{rep}-{n}",
                            json.dumps(
                                {"openid": openids[n % USERS], "amount_fen": 100, **PACKET}
                            ).encode(),
                        )
                        for n in range(count)
                    ]
                    cpu, own = server.cpu_seconds(), time.process_time()
                    load = asyncio.run(drive(url, bodies, args.clients, seconds, replay=False))
                    cpu, own = server.cpu_seconds() - cpu, time.process_time() - own
                    again = asyncio.run(
                        drive(url, bodies[: load.answered], args.clients, seconds, replay=True)
                    )
                    sent = asyncio.run(sent_times(url))
                    window = (load.started + ramp, load.ended)
                    inside = sum(1 for at in sent if window[0] <= at < window[1])
                    per_minute = inside / (window[1] - window[0]) * 60
                    ms = [1000 * value for value in load.latencies]
                    accepted.append(load.rate)
                    p50s.append(statistics.median(ms))
                    p99s.append(_percentile(ms, 0.99))
                    replays.append(again.rate)
                    shares.append(per_minute / args.cap)
                    costs.append(1000 * cpu / load.answered)
                    client_costs.append(1000 * own / load.answered)
                    print(
                        f"    run {rep + 1}: {load.answered:,} accepted in {load.seconds:.1f} s "
                        f"= {load.rate:,.0f}/s, p50 {p50s[-1]:.1f} ms, p99 {p99s[-1]:.1f} ms; "
                        f"{again.answered:,} replays = {again.rate:,.0f}/s; {inside} sent in "
                        f"{window[1] - window[0]:.1f} s = {per_minute:,.0f}/min "
                        f"= {shares[-1]:.3f} of the cap; server CPU {costs[-1]:.2f} ms per "
                        f"accepted payout (clients {client_costs[-1]:.2f} ms)"
                    )
                limited = asyncio.run(freq_limits(url))
    print(f"(a) accepted (wait=0): {_median_spread(accepted)} payouts/s; goal ≥ 1,000/s")
    print(f"    latency p50: {_median_spread(p50s, 1)} ms")
    print(f"    latency p99: {_median_spread(p99s, 1)} ms; goal ≤ 20 ms")
    print(
        f"    server CPU per accepted payout (API and dispatcher): {_median_spread(costs, 2)} ms"
        f" = at most {1000 / statistics.median(costs):,.0f}/s on one free core; the clients' "
        f"own CPU {_median_spread(client_costs, 2)} ms"
    )
    print(f"(b) replays: {_median_spread(replays)} /s (each 200, Idempotent-Replayed: true)")
    print(f"(c) dispatcher under load: {_median_spread(shares, 3)} of the cap; goal ≥ 0.98")
    print(f"    FREQ_LIMIT answers: {limited:.0f} (goal 0)")


if __name__ == "__main__":
    main()
