"""How many sendredpack calls per second the simulator sustains. Prints figures; asserts nothing.

One function per mode, each returning calls per second:

- `bench_in_process`: `Simulator.handle_wire` called directly (no sockets, no client), in memory
  and with persistence (SQLite in a temporary data dir) — the simulator's own cost per send.
- `bench_served` (in `sim_served.py`): `hongbao sim serve` in a child process loaded with aiohttp,
  16 requests in flight over keep-alive mutual-TLS connections, in memory and with SQLite.

Run: `.venv/bin/python bench/sim_throughput.py [--count N]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hongbao.sim.app import Simulator
from hongbao.sim.state import MerchantSettings
from hongbao.wire import xmlcodec
from hongbao.wire.local import PeerInfo
from hongbao.wire.sign import sign
from hongbao.wire.transport import WireRequest
from sim_served import bench_served

PATH = "/mmpaymkttransfers/sendredpack"


@dataclass(frozen=True)
class Workload:
    """Signed requests ready to send, and who sends them."""

    mch_id: str
    requests: list[WireRequest]
    peer: PeerInfo


def prepare(sim: Simulator, count: int) -> Workload:
    """A merchant without practical limits and `count` signed sendredpack requests for it."""
    creds = sim.create_merchant(
        MerchantSettings(
            balance_fen=10**12,
            rate_per_minute=10**9,
            per_user_count=10**9,
            per_user_amount=10**12,
            merchant_amount=10**12,
        )
    )
    users = sim.add_users(creds.appid, 1000)
    requests = []
    for serial in range(count):
        params = {
            "nonce_str": f"n{serial}",
            "mch_billno": f"{creds.mch_id}20240315{serial:010d}",
            "mch_id": creds.mch_id,
            "wxappid": creds.appid,
            "send_name": "天虹百货",
            "re_openid": users[serial % len(users)],
            "total_amount": "100",
            "total_num": "1",
            "wishing": "感谢您参加猜灯谜活动",
            "client_ip": "192.168.0.1",
            "act_name": "猜灯谜抢红包活动",
            "remark": "猜越多得越多",
        }
        params["sign"] = sign(params, creds.api_key)
        requests.append(WireRequest(PATH, xmlcodec.dumps(params)))
    return Workload(creds.mch_id, requests, PeerInfo(cert_der=creds.cert_der))


def bench_in_process(count: int, *, persist: bool) -> float:
    """sendredpack calls per second through `handle_wire`, all of them successful."""
    with tempfile.TemporaryDirectory() as directory:
        sim = Simulator(data_dir=Path(directory) if persist else None, seed=1)
        work = prepare(sim, count)
        handle, peer = sim.handle_wire, work.peer
        start = time.perf_counter()
        for request in work.requests:
            handle(request, peer)
        elapsed = time.perf_counter() - start
        _, rows = sim.state.ledger(work.mch_id)
        paid = sum(1 for row in rows if row.status == "SENT")
        if paid != count:
            raise SystemExit(f"expected {count} paid packets, the ledger has {paid}")
        sim.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="sends per mode")
    args = parser.parse_args()
    sections: list[tuple[str, Callable[[], float]]] = [
        ("in-process, in memory", lambda: bench_in_process(args.count, persist=False)),
        (
            "in-process, SQLite (WAL, synchronous=NORMAL)",
            lambda: bench_in_process(args.count, persist=True),
        ),
        ("served over mutual TLS, in memory", lambda: bench_served(args.count, persist=False)),
        ("served over mutual TLS, SQLite", lambda: bench_served(args.count, persist=True)),
    ]
    print(f"sendredpack, {args.count} successful sends per mode")
    for name, run in sections:
        rate = run()
        print(f"  {name:<48} {rate:>8.0f} sends/s  ({1e6 / rate:.0f} µs per send)")


if __name__ == "__main__":
    main()
