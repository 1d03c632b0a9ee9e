"""Rule mode: payment notifications handled per second on one core.

What one "handled" notification includes: parsing the XML (defusedxml), verifying its MD5
signature over every field, judging it against three rules (two with per-customer limits, read
from the ledger), and committing the payment, each rule's result, the budget charge and the
PLANNED payout (bill number minted, frozen parameters) in one SQLite transaction (WAL,
`synchronous=FULL`: durable before the answer). Sending the red packets is NOT included (no
dispatcher runs); see `bench/campaign_engine.py` for payouts sent per second.

Four figures, each in a fresh ledger, the process pinned to one core:

- `handle_payment`, new payments (each earns a packet);
- `handle_payment`, redeliveries of recorded payments (a read, no write);
- the ASGI app (`POST /wechatpay/notify` through httpx's ASGITransport), new payments;
- `handle_payment`, new payments, from 8 threads at once (the single SQLite writer serialises
  them: this shows what concurrency costs or gains).

Prints figures; asserts nothing. Run: `.venv/bin/python bench/rules.py [--payments N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from pydantic import SecretStr

from hongbao.api import Merchant
from hongbao.engine.notify import NOTIFY_PATH, NotifyHandler, RuleMerchant, RuleService, create_app
from hongbao.engine.rules import AppidKind, Rule, parse_rule
from hongbao.ledger import LedgerStore, upgrade
from hongbao.ledger.rules_store import RuleLedger
from hongbao.wire import xmlcodec
from hongbao.wire.sign import sign

MCH_ID = "1900000109"
API_KEY = "192006250b4c09247ec02edce69f6a2d"
APPID = "wx2421b1c4370ec43b"
BASE = {
    "merchant": "bench",
    "send_name": "Acme",
    "wishing": "Thank you",
    "act_name": "Spend and get",
    "remark": "Bench",
    "budget": "10000000",
}


def _rules() -> list[Rule]:
    return [
        parse_rule("every", {**BASE, "min_total_fee": 100, "amount": "1.00"}),
        parse_rule(
            "once", {**BASE, "min_total_fee": 100, "amount": "2.00", "per_customer_limit": 1}
        ),
        parse_rule(
            "daily",
            {**BASE, "min_total_fee": 100, "amount": "3.00", "per_customer_daily_limit": 2},
        ),
    ]


def _merchant() -> RuleMerchant:
    merchant = Merchant(mch_id=MCH_ID, api_key=SecretStr(API_KEY), appid=APPID)
    return RuleMerchant("bench", merchant, tuple(_rules()), {APPID: AppidKind.OFFICIAL_ACCOUNT})


def _notifications(count: int, offset: int) -> list[bytes]:
    bodies = []
    for n in range(offset, offset + count):
        fields: dict[str, str | int] = {
            "return_code": "SUCCESS",
            "appid": APPID,
            "mch_id": MCH_ID,
            "nonce_str": f"{n:032d}",
            "result_code": "SUCCESS",
            "openid": f"o{n % 5000:027d}",
            "trade_type": "JSAPI",
            "bank_type": "CMC",
            "total_fee": 12_000,
            "fee_type": "CNY",
            "cash_fee": 12_000,
            "transaction_id": f"4200002024031500{n:016d}",
            "out_trade_no": f"BENCH{n:016d}",
            "time_end": "20240315100000",
        }
        fields["sign"] = sign(fields, API_KEY, "MD5")
        bodies.append(xmlcodec.dumps(fields))
    return bodies


def _ledger(tmp: Path, name: str) -> LedgerStore:
    url = f"sqlite:///{tmp / name}.db"
    upgrade(url)
    return LedgerStore.open(url)


def _report(label: str, count: int, seconds: float) -> None:
    print(f"{label:<52} {count:>6} in {seconds:6.2f} s = {count / seconds:8.0f} notifications/s")


def _timed(work: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    done = work()
    return done, time.perf_counter() - started


def bench_direct(tmp: Path, payments: int) -> None:
    """handle_payment on new payments, then on the same payments again."""
    with _ledger(tmp, "direct") as store:
        handler = NotifyHandler(RuleLedger(store.engine), [_merchant()])
        bodies = _notifications(payments, 0)

        def handle_all() -> int:
            return sum(handler.receive(body).acknowledged for body in bodies)

        _report("handle_payment, new payments (1 thread)", *_timed(handle_all))
        _report("handle_payment, redeliveries (1 thread)", *_timed(handle_all))


def bench_threads(tmp: Path, payments: int) -> None:
    """handle_payment on new payments from 8 threads."""
    with _ledger(tmp, "threads") as store:
        handler = NotifyHandler(RuleLedger(store.engine), [_merchant()])
        bodies = _notifications(payments, 10**7)

        def handle_all() -> int:
            with ThreadPoolExecutor(8) as pool:
                return sum(receipt.acknowledged for receipt in pool.map(handler.receive, bodies))

        _report("handle_payment, new payments (8 threads)", *_timed(handle_all))


async def bench_asgi(tmp: Path, payments: int) -> None:
    """POST /wechatpay/notify through the ASGI app in this process (no sending)."""
    with _ledger(tmp, "asgi") as store:
        handler = NotifyHandler(RuleLedger(store.engine), [_merchant()])
        service = RuleService(handler, {}, executor=ThreadPoolExecutor(1))
        bodies = _notifications(payments, 2 * 10**7)
        transport = httpx.ASGITransport(app=create_app(service))
        async with service, httpx.AsyncClient(transport=transport, base_url="http://b") as http:
            started = time.perf_counter()
            answers = [await http.post(NOTIFY_PATH, content=body) for body in bodies]
            seconds = time.perf_counter() - started
        done = sum(b"SUCCESS" in answer.content for answer in answers)
        _report("ASGI app, POST /wechatpay/notify, new payments", done, seconds)


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=3000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory(prefix="hongbao-bench-rules-") as folder:
        tmp = Path(folder)
        bench_direct(tmp, args.payments)
        asyncio.run(bench_asgi(tmp, args.payments))
        bench_threads(tmp, args.payments)


if __name__ == "__main__":
    main()
