"""The dashboard's figures: how long each page takes over a campaign of 100,000 payouts.

A fresh ledger (a SQLite file by default, PostgreSQL with `--ledger-url`) gets one campaign of
`--payouts` payouts in varied states — sent, received, refunded, failed (several err_codes),
skipped, deferred, unknown, planned — spread over an hour of sends, with their audit events
(a claim, and a send with its request and answer, for every payout that was tried), inserted
in bulk with SQL (not timed).
Each page is then requested `--repeat` times through the app in-process (Starlette's test
client: routing, the access check, the SQL aggregates and the Jinja2 rendering, without a
socket) and its median and worst times printed. The CSV export of the whole campaign is timed
too, as a figure of its own: it streams every row by design.

Run: `.venv/bin/python bench/dashboard.py [--payouts 100000] [--repeat 7] [--ledger-url URL]`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert

from hongbao.ledger import (
    CampaignState,
    LedgerStore,
    NewCampaign,
    PayoutState,
    SendApi,
    display_url,
    upgrade,
)
from hongbao.ledger.db import write_transaction
from hongbao.ledger.schema import payout_events, payouts
from hongbao.web import DashboardSettings, create_app

P = PayoutState
MCH_ID = "1900000109"
START = datetime(2024, 3, 15, 2, 0, tzinfo=UTC)
SEND_MINUTES = 60
# (state, share of the payouts, err_code)
MIX: list[tuple[PayoutState, float, str | None]] = [
    (P.SENT, 0.30, None),
    (P.RECEIVED, 0.40, None),
    (P.REFUNDED, 0.08, None),
    (P.FAILED, 0.02, "OPENID_ERROR"),
    (P.FAILED, 0.01, "SEND_FAILED"),
    (P.SKIPPED, 0.02, None),
    (P.DEFERRED, 0.02, "SENDNUM_LIMIT"),
    (P.UNKNOWN, 0.01, "SYSTEMERROR"),
    (P.PLANNED, 0.14, None),
]
_CHUNK = 5000


def _openid(rng: random.Random) -> str:
    return "o" + "".join(rng.choices(string.ascii_letters + string.digits + "_-", k=27))


def _params(bill: str, openid: str) -> dict[str, Any]:
    return {
        "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "mch_billno": bill,
        "mch_id": MCH_ID,
        "wxappid": "wx8888888888888888",
        "send_name": "天虹百货",
        "re_openid": openid,
        "total_amount": 100,
        "total_num": 1,
        "wishing": "感谢您参加猜灯谜活动",
        "client_ip": "192.168.0.1",
        "act_name": "猜灯谜抢红包活动",
        "remark": "猜越多得越多",
    }


def _states(count: int, rng: random.Random) -> list[tuple[PayoutState, str | None]]:
    states: list[tuple[PayoutState, str | None]] = []
    for state, share, code in MIX:
        states += [(state, code)] * round(count * share)
    states = (states + [(P.PLANNED, None)] * count)[:count]
    rng.shuffle(states)
    return states


def _rows(campaign_id: int, count: int, seed: int) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """Each payout row with its events."""
    rng = random.Random(seed)
    for n, (state, code) in enumerate(_states(count, rng), start=1):
        openid = _openid(rng)
        bill = f"{MCH_ID}20240315{n:010d}"
        tried = state not in (P.PLANNED, P.SKIPPED)
        issued = state in (P.SENT, P.RECEIVED, P.REFUNDED)
        sent_at = START + timedelta(seconds=SEND_MINUTES * 60 * n / count)
        row = {
            "natural_key": f"campaign:{campaign_id}:{openid}",
            "generation": 0,
            "campaign_id": campaign_id,
            "line_no": n,
            "merchant": "shop",
            "mch_id": MCH_ID,
            "api": SendApi.SENDREDPACK.value,
            "mch_billno": bill,
            "params": json.dumps(_params(bill, openid), ensure_ascii=False),
            "re_openid": openid,
            "total_amount": 100,
            "total_num": 1,
            "state": state.value,
            "reason": "budget" if state is P.SKIPPED else None,
            "err_code": code,
            "bill_dead": code == "SEND_FAILED",
            "send_listid": f"1000041701202403153{n:012d}" if issued else None,
            "attempts": 1 if tried else 0,
            "created_at": START,
            "updated_at": sent_at,
            "claimed_at": sent_at if tried else None,
            "sent_at": sent_at if issued else None,
            "received_at": sent_at + timedelta(minutes=rng.randint(1, 600))
            if state is P.RECEIVED
            else None,
            "refunded_at": sent_at + timedelta(hours=24) if state is P.REFUNDED else None,
            "refund_amount": 100 if state is P.REFUNDED else None,
        }
        events = []
        if tried:
            answer = {
                "return_code": "SUCCESS",
                "result_code": "FAIL" if code else "SUCCESS",
                "err_code": code,
                "mch_billno": bill,
                "send_listid": row["send_listid"],
            }
            events = [
                ("claim", P.PLANNED, P.SENDING, None, sent_at, None, None),
                ("send", P.SENDING, state, code, sent_at, row["params"], json.dumps(answer)),
            ]
        yield row, events


def fill(store: LedgerStore, count: int) -> tuple[int, str, str]:
    """A campaign of `count` payouts; returns its id, one openid and one bill number."""
    campaign = store.create_campaign(
        NewCampaign(
            name="bench",
            merchant="shop",
            mch_id=MCH_ID,
            api=SendApi.SENDREDPACK,
            template={"amount_fen": 100},
            budget_fen=count * 100,
        )
    )
    store.set_campaign_state(campaign.id, CampaignState.DRAFT, CampaignState.PLANNED)
    store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
    rows = list(_rows(campaign.id, count, seed=7))
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]

        def work(conn: Connection, chunk: list[tuple[dict[str, Any], list[Any]]] = chunk) -> None:
            conn.execute(insert(payouts), [row for row, _ in chunk])
            ids = dict(
                conn.execute(
                    payouts.select()
                    .with_only_columns(payouts.c.mch_billno, payouts.c.id)
                    .where(payouts.c.mch_billno.in_([row["mch_billno"] for row, _ in chunk]))
                ).all()
            )
            events = [
                {
                    "payout_id": ids[row["mch_billno"]],
                    "at": at,
                    "kind": kind,
                    "from_state": before.value,
                    "to_state": after.value,
                    "attempt": 1,
                    "err_code": code,
                    "detail": None,
                    "request": request,
                    "response": response,
                }
                for row, row_events in chunk
                for kind, before, after, code, at, request, response in row_events
            ]
            if events:
                conn.execute(insert(payout_events), events)

        write_transaction(store.engine, work)
    committed = sum(100 for row, _ in rows if row["state"] in ("SENT", "RECEIVED", "REFUNDED"))
    write_transaction(
        store.engine,
        lambda conn: conn.exec_driver_sql(
            f"UPDATE campaigns SET committed_fen = {committed} WHERE id = {campaign.id}"  # noqa: S608
        ),
    )
    sample = rows[len(rows) // 2][0]
    return campaign.id, sample["re_openid"], sample["mch_billno"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payouts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ledger-url", help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    from starlette.testclient import TestClient

    with tempfile.TemporaryDirectory() as scratch:
        url = args.ledger_url or f"sqlite:///{Path(scratch) / 'ledger.db'}"
        upgrade(url)
        with LedgerStore.open(url) as store:
            began = time.perf_counter()
            campaign_id, openid, bill = fill(store, args.payouts)
            print(
                f"ledger {display_url(url)}: {args.payouts} payouts with their events "
                f"inserted in {time.perf_counter() - began:.1f} s (not timed below)"
            )
            payout_id = store.find_payouts([P.FAILED], campaign_id=campaign_id, limit=1)[0].id
            pages = {
                "campaigns  /": "/",
                "campaign   /campaigns/ID": f"/campaigns/{campaign_id}",
                "live       /api/campaigns/ID": f"/api/campaigns/{campaign_id}",
                "search     /payouts?q=openid": f"/payouts?q={openid}",
                "search     /payouts?q=bill": f"/payouts?q={bill}",
                "payout     /payouts/ID": f"/payouts/{payout_id}",
                "reconcile  /reconcile": "/reconcile",
                "rules      /rules": "/rules",
            }
            app = create_app(DashboardSettings(store=store, rate_caps={"shop": 1800}))
            with TestClient(app) as client:
                print(f"{'page':34} {'median ms':>10} {'worst ms':>10}  (of {args.repeat})")
                for name, path in pages.items():
                    times = []
                    for _ in range(args.repeat):
                        began = time.perf_counter()
                        response = client.get(path)
                        times.append(time.perf_counter() - began)
                        if response.status_code != 200:
                            raise SystemExit(f"{path}: HTTP {response.status_code}")
                    median, worst = statistics.median(times) * 1000, max(times) * 1000
                    print(f"{name:34} {median:10.1f} {worst:10.1f}")
                began = time.perf_counter()
                export = client.get(f"/campaigns/{campaign_id}/export.csv")
                lines = export.text.count("\n") - 1
                print(
                    f"{'export     /campaigns/ID/export.csv':34} "
                    f"{(time.perf_counter() - began) * 1000:10.1f} ms for {lines} rows (once)"
                )


if __name__ == "__main__":
    main()
