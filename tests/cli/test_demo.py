"""`hongbao demo`: the README's main job. Its report must match what the simulator (WeChat)
really paid, packet by packet, and the world it leaves behind must be usable afterwards."""

from __future__ import annotations

import json
from pathlib import Path

from hongbao.ledger import LedgerStore, PayoutState
from hongbao.sim.app import Simulator
from tests.cli.conftest import run

# Ledger state → the simulator's record status for the same bill number.
SAME = {
    PayoutState.RECEIVED: "RECEIVED",
    PayoutState.REFUNDED: "REFUND",
}


def test_demo_report_matches_the_simulators_ledger(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = run("demo", "--dir", str(folder), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    report = doc["report"]

    sim = Simulator(data_dir=folder / "sim")  # the simulator's own, persisted records
    try:
        _, records = sim.state.ledger(doc["mch_id"])
    finally:
        sim.close()
    truth = {r.mch_billno: (r.re_openid, r.total_amount, r.status) for r in records}

    def of(status: str) -> dict[str, int]:
        chosen = [amount for _, amount, s in truth.values() if s == status]
        return {"count": len(chosen), "amount_fen": sum(chosen)}

    assert len(truth) == 1000
    assert report["sent"] == {
        "count": 1000,
        "amount_fen": sum(amount for _, amount, _ in truth.values()),
    }
    assert report["received"] == of("RECEIVED")
    assert report["refunded"] == of("REFUND")
    assert report["received"]["count"] == 700  # 70 % opened theirs
    assert report["refunded"]["count"] == 300
    assert report["unresolved"] == {"count": 0, "amount_fen": 0}
    assert report["failed"] == {"count": 0, "amount_fen": 0}

    with LedgerStore.open(doc["ledger"]) as store:
        payouts = list(store.iter_payouts(doc["campaign_id"]))
    assert {p.mch_billno for p in payouts} == set(truth)
    for payout in payouts:
        openid, amount, status = truth[payout.mch_billno]
        assert (payout.re_openid, payout.total_amount) == (openid, amount)
        assert SAME[payout.state] == status

    # The configuration the demo wrote reads the same ledger.
    again = run("campaign", "report", str(doc["campaign_id"]), "-c", str(folder / "hongbao.toml"),
                "--json")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["received"] == report["received"]
