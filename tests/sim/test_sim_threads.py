"""The registry is shared by threads (the in-process transport may be called from many)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hongbao.sim.app import Simulator
from tests.sim.simkit import make_shop, parse, signed_body


def test_concurrent_resends_of_the_same_bills_pay_each_once(sim: Simulator) -> None:
    shop = make_shop(sim, users=20, balance_fen=1_000_000)
    bodies = [
        signed_body(shop.send_params(re_openid=user, total_amount="100"), shop.creds.api_key)
        for user in shop.users
    ]
    work = bodies * 8  # every bill sent eight times, from eight threads at once

    def post(body: bytes) -> str:
        return str(parse(shop.post("sendredpack", body))["send_listid"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        listids = list(pool.map(post, work))
    assert len(set(listids)) == len(bodies)
    balance, rows = shop.ledger()
    assert len(rows) == len(bodies)
    assert balance == 1_000_000 - 100 * len(bodies)
