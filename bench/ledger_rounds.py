"""What one commit round of the ledger costs: `LedgerStore.transition_and_claim` alone.

A dispatcher's round commits the outcomes of the drives that finished and claims as many new
payouts, in one transaction (one fsync on SQLite). This bench runs that round with no network
and no event loop, on a SQLite file (WAL, synchronous=FULL) or the `--ledger-url` given: a
campaign's payouts are recorded, `--round` of them claimed, then each round moves the held ones
SENDING → SENT (each with its send event, as the engine records it) and claims the next
`--round`. It prints the wall and CPU time of a round and the CPU per payout, for each size,
so that the fixed cost of a round and the cost of each payout in it can be read apart.

Prints figures; asserts nothing but that every round moved all it held.

Run: `.venv/bin/python bench/ledger_rounds.py [--rounds 1,4,16,32] [--payouts 4000]
[--ledger-url URL]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hongbao.clock import SystemClock
from hongbao.ids import new_nonce
from hongbao.ledger import LedgerStore, upgrade
from hongbao.ledger.records import (
    ClaimRequest,
    EventInfo,
    NewCampaign,
    NewPayout,
    Payout,
    SendApi,
    Transition,
)
from hongbao.ledger.states import CampaignState, PayoutState

MCH_ID = "1900000109"
ANSWER = {
    "return_code": "SUCCESS",
    "result_code": "SUCCESS",
    "err_code": "SUCCESS",
    "err_code_des": "发放成功",
    "mch_billno": "",
    "mch_id": MCH_ID,
    "wxappid": "wx2421b1c4370ec43b",
    "total_amount": "100",
    "send_listid": "1000041701201506043000000067",
}


def _params(openid: str, bill: str) -> dict[str, object]:
    return {
        "nonce_str": new_nonce(),
        "mch_billno": bill,
        "mch_id": MCH_ID,
        "wxappid": "wx2421b1c4370ec43b",
        "send_name": "天虹百货",
        "re_openid": openid,
        "total_amount": 100,
        "total_num": 1,
        "wishing": "恭喜发财",
        "client_ip": "192.168.0.1",
        "act_name": "猜灯谜",
        "remark": "猜越多得越多",
    }


def _sent(payout: Payout) -> Transition:
    event = EventInfo(kind="send", request=payout.params, response=ANSWER, detail="sent")
    fields = {"send_listid": ANSWER["send_listid"]}
    return Transition(payout.id, PayoutState.SENDING, PayoutState.SENT, event, fields)


def measure(url: str, size: int, payouts: int, name: str) -> tuple[int, float, float]:
    """Rounds of `size` over a new campaign of `payouts`: (rounds, wall s, CPU s) in all."""
    with LedgerStore.open(url) as store:
        bills = store.reserve_bill_numbers(MCH_ID, SystemClock().now(), payouts)
        campaign = store.create_campaign(
            NewCampaign(name, "bench", MCH_ID, SendApi.SENDREDPACK, template={})
        )
        store.set_campaign_state(campaign.id, CampaignState.DRAFT, CampaignState.PLANNED)
        store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
        store.add_payouts(
            NewPayout(
                f"campaign:{campaign.id}:{n}",
                "bench",
                SendApi.SENDREDPACK,
                _params(f"oBENCH{n:022d}", bills[n]),
                campaign_id=campaign.id,
            )
            for n in range(payouts)
        )
        claim = ClaimRequest(mch_id=MCH_ID, limit=size, campaign_id=campaign.id)
        held = store.transition_and_claim([], claim)[1].claimed
        rounds = payouts // size - 1
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            moved, claimed = store.transition_and_claim([_sent(p) for p in held], claim)
            if not all(moved):
                raise SystemExit("a round did not move every payout it held")
            held = claimed.claimed
        return rounds, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    """Print the cost of a round for each size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", default="1,4,16,32", help="round sizes, comma-separated")
    parser.add_argument("--payouts", type=int, default=4000)
    parser.add_argument("--ledger-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = args.ledger_url or f"sqlite:///{Path(directory, 'rounds.db')}"
        upgrade(url)
        print(f"transition_and_claim rounds, ledger {args.ledger_url or 'SQLite file'}")
        for n, size in enumerate(int(text) for text in args.rounds.split(",")):
            rounds, wall, cpu = measure(url, size, args.payouts, f"rounds-{n}-{time.time_ns()}")
            print(
                f"    {size:>3} a round: {wall / rounds * 1000:6.2f} ms wall, "
                f"{cpu / rounds * 1000:6.2f} ms CPU a round = "
                f"{cpu / rounds / size * 1000:.3f} ms CPU a payout ({rounds} rounds)"
            )


if __name__ == "__main__":
    main()
