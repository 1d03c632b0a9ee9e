"""sendredpack calls per second of the simulator served over mutual TLS. Prints figures only.

`bench_served` runs `hongbao sim serve` in a child process (uvicorn, uvloop + httptools, the
pyOpenSSL TLS layer) and loads it from this process with aiohttp: 16 requests in flight over
keep-alive connections that present the merchant's client certificate, each a distinct
successful send. State is kept: in memory, or in SQLite with `persist`. The ledger is checked
afterwards: every send must have paid exactly one packet.

Run: `.venv/bin/python bench/sim_served.py [--count N] [--concurrency 16]`.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop

from hongbao.sim.server import SimServerProcess
from hongbao.wire import xmlcodec
from hongbao.wire.sign import sign

PATH = "/mmpaymkttransfers/sendredpack"
_UNLIMITED = {
    "balance_fen": 10**12,
    "rate_per_minute": 10**9,
    "per_user_count": 10**9,
    "per_user_amount": 10**12,
    "merchant_amount": 10**12,
}


def _control(server: SimServerProcess, method: str, path: str, **kwargs: Any) -> Any:
    trust = ssl.create_default_context(cafile=str(server.ca_path))
    response = httpx.request(method, server.url + path, verify=trust, timeout=60, **kwargs)
    response.raise_for_status()
    return response.json()


def _bodies(creds: dict[str, str], users: list[str], count: int) -> list[bytes]:
    bodies = []
    for serial in range(count):
        params = {
            "nonce_str": f"n{serial}",
            "mch_billno": f"{creds['mch_id']}20240315{serial:010d}",
            "mch_id": creds["mch_id"],
            "wxappid": creds["appid"],
            "send_name": "天虹百货",
            "re_openid": users[serial % len(users)],
            "total_amount": "100",
            "total_num": "1",
            "wishing": "感谢您参加猜灯谜活动",
            "client_ip": "192.168.0.1",
            "act_name": "猜灯谜抢红包活动",
            "remark": "猜越多得越多",
        }
        params["sign"] = sign(params, creds["api_key"])
        bodies.append(xmlcodec.dumps(params))
    return bodies


def _client_tls(server: SimServerProcess, creds: dict[str, str], scratch: Path) -> ssl.SSLContext:
    (scratch / "cert.pem").write_text(creds["cert_pem"])
    (scratch / "key.pem").write_text(creds["key_pem"])
    context = ssl.create_default_context(cafile=str(server.ca_path))
    context.load_cert_chain(scratch / "cert.pem", scratch / "key.pem")
    return context


async def _load(url: str, context: ssl.SSLContext, bodies: list[bytes], concurrency: int) -> float:
    """Send every body, `concurrency` at a time; seconds taken by all but the warm-up."""
    warm_up = min(len(bodies) // 10, 500)
    connector = aiohttp.TCPConnector(ssl=context, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(queue: Iterator[bytes]) -> None:
            for body in queue:
                async with session.post(url, data=body) as response:
                    answer = await response.read()
                if response.status != 200 or b"<result_code><![CDATA[SUCCESS]]>" not in answer:
                    raise SystemExit(f"unexpected answer: {response.status} {answer[:300]!r}")

        async def run(chunk: list[bytes]) -> float:
            shared = iter(chunk)
            start = time.perf_counter()
            await asyncio.gather(*(worker(shared) for _ in range(concurrency)))
            return time.perf_counter() - start

        await run(bodies[:warm_up])  # opens the connections (handshakes) and warms the caches
        return await run(bodies[warm_up:]) if len(bodies) > warm_up else 0.0


def bench_served(count: int, *, persist: bool, concurrency: int = 16) -> float:
    """Successful sendredpack calls per second over mutual TLS with keep-alive."""
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        with SimServerProcess(scratch / "sim" if persist else None) as server:
            creds = _control(server, "POST", "/__sim/merchants", json=_UNLIMITED)
            users = _control(
                server, "POST", "/__sim/users", json={"appid": creds["appid"], "count": 1000}
            )["openids"]
            bodies = _bodies(creds, users, count)
            context = _client_tls(server, creds, scratch)
            elapsed = uvloop.run(_load(server.url + PATH, context, bodies, concurrency))
            ledger = _control(server, "GET", "/__sim/ledger", params={"mch_id": creds["mch_id"]})
    paid = sum(1 for row in ledger["records"] if row["status"] == "SENT")
    if paid != count:
        raise SystemExit(f"expected {count} paid packets, the ledger has {paid}")
    timed = count - min(count // 10, 500)
    return timed / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="sends per mode")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args()
    print(f"sendredpack over mutual TLS, {args.count} sends, {args.concurrency} in flight")
    for name, persist in (("served, in memory", False), ("served, SQLite", True)):
        rate = bench_served(args.count, persist=persist, concurrency=args.concurrency)
        print(f"  {name:<48} {rate:>8.0f} sends/s  ({1e6 / rate:.0f} µs per send)")


if __name__ == "__main__":
    main()
