"""Peak memory and time to read a 1,000,000-line campaign file, and to record it in a ledger.

Two runs, each in a fresh child process so each peak RSS is its own:

- `parse`: `CampaignFile` over the file, every line consumed (the duplicate check's set of
  openids is the only thing that grows);
- `plan`: the same stream turned into `NewPayout`s (bill numbers minted from reserved serials)
  and recorded with `LedgerStore.add_payouts` into a fresh SQLite ledger.

Prints figures; asserts nothing. Run: `.venv/bin/python bench/campaign_input_memory.py [--lines N]`.
"""

from __future__ import annotations

import argparse
import resource
import secrets
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hongbao.clock import SystemClock, beijing_day
from hongbao.engine.campaign_input import CampaignFile, Entry
from hongbao.ids import mint_bill_no, new_nonce
from hongbao.ledger import LedgerStore, NewPayout, SendApi, upgrade

MCH_ID = "1900000109"
_ALPHABET = string.ascii_letters + string.digits + "-_"


def write_file(path: Path, lines: int) -> None:
    """A CSV of `lines` distinct 28-character openids with amounts."""
    with path.open("w", encoding="ascii") as out:
        out.write("openid,amount\n")
        for n in range(lines):
            openid = "o" + "".join(secrets.choice(_ALPHABET) for _ in range(19)) + f"{n:08d}"
            out.write(f"{openid},{1 + n % 200}.00\n")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_parse(path: Path) -> None:
    source = CampaignFile(path)
    started = time.perf_counter()
    for _ in source:
        pass
    elapsed = time.perf_counter() - started
    print(
        f"parse: {source.good:,} good, {source.bad:,} bad lines in {elapsed:.1f} s "
        f"({source.good / elapsed:,.0f} lines/s), peak RSS {peak_rss_mb():.0f} MB"
    )


def run_plan(path: Path, ledger_dir: Path) -> None:
    url = f"sqlite:///{ledger_dir / 'ledger.db'}"
    upgrade(url)
    clock = SystemClock()
    now = clock.now()
    with LedgerStore.open(url, clock=clock) as store:
        source = CampaignFile(path)

        def payouts() -> Iterator[NewPayout]:
            serials: Iterator[int] = iter(())
            for item in source:
                if not isinstance(item, Entry):
                    continue
                serial = next(serials, None)
                if serial is None:
                    serials = iter(store.reserve_bill_serials(MCH_ID, beijing_day(now), 10_000))
                    serial = next(serials)
                params = {
                    "nonce_str": new_nonce(),
                    "mch_billno": mint_bill_no(MCH_ID, now, serial),
                    "mch_id": MCH_ID,
                    "wxappid": "wx2421b1c4370ec43b",
                    "send_name": "Acme",
                    "re_openid": item.openid,
                    "total_amount": item.amount_fen or 100,
                    "total_num": 1,
                    "wishing": "Happy New Year",
                    "client_ip": "192.168.0.1",
                    "act_name": "Spring",
                    "remark": "Thanks",
                }
                yield NewPayout(
                    natural_key=f"campaign:1:{item.openid}",
                    merchant="acme",
                    api=SendApi.SENDREDPACK,
                    params=params,
                    line_no=item.line_no,
                )

        started = time.perf_counter()
        result = store.add_payouts(payouts(), batch_size=5000)
        elapsed = time.perf_counter() - started
    print(
        f"plan:  {result.inserted:,} payouts recorded in {elapsed:.1f} s "
        f"({result.inserted / elapsed:,.0f} payouts/s), peak RSS {peak_rss_mb():.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--child", choices=["parse", "plan"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "parse":
        run_parse(args.file)
        return
    if args.child == "plan":
        with tempfile.TemporaryDirectory() as ledger_dir:
            run_plan(args.file, Path(ledger_dir))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "users.csv"
        write_file(path, args.lines)
        print(f"{args.lines:,}-line file, {path.stat().st_size / 1e6:.0f} MB")
        for mode in ("parse", "plan"):
            subprocess.run(
                [sys.executable, __file__, "--child", mode, "--file", str(path)], check=True
            )


if __name__ == "__main__":
    main()
