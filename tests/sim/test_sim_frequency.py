"""FREQ_LIMIT: a sliding 60-second window of 1,800 send calls per merchant
(docs/protocol.md §6.1)."""

from __future__ import annotations

from hongbao.sim.app import Simulator
from hongbao.wire import xmlcodec
from tests.sim.simkit import make_shop, signed_body


def test_1801_sends_inside_one_simulated_minute_give_exactly_one_freq_limit(sim: Simulator) -> None:
    shop = make_shop(sim, users=1, per_user_count=10_000, per_user_amount=10**9)
    codes = []
    for _ in range(1801):
        body = signed_body(shop.send_params(total_amount="100"), shop.creds.api_key)
        codes.append(xmlcodec.loads(shop.post("sendredpack", body).body)["err_code"])
        sim.move_clock(advance_seconds=0.03)  # 1,801 calls over 54 s
    assert codes.count("FREQ_LIMIT") == 1
    assert codes[-1] == "FREQ_LIMIT"
    assert codes.count("SUCCESS") == 1800
    sim.move_clock(advance_seconds=6.1)  # the first calls leave the window
    assert shop.send(total_amount="100")["result_code"] == "SUCCESS"


def test_calls_refused_after_the_signature_still_count(sim: Simulator) -> None:
    shop = make_shop(sim, rate_per_minute=2)
    assert shop.send(total_amount="1")["err_code"] == "MONEY_LIMIT"
    assert shop.send(total_amount="1")["err_code"] == "MONEY_LIMIT"
    assert shop.send()["err_code"] == "FREQ_LIMIT"


def test_calls_with_a_bad_signature_do_not_count(sim: Simulator) -> None:
    shop = make_shop(sim, rate_per_minute=1)
    for _ in range(3):
        assert (
            shop.call("sendredpack", shop.send_params(), key="0" * 32)["err_code"] == "SIGN_ERROR"
        )
    assert shop.send()["result_code"] == "SUCCESS"


def test_windows_are_per_merchant(sim: Simulator) -> None:
    first, second = make_shop(sim, rate_per_minute=1), make_shop(sim, rate_per_minute=1)
    assert first.send()["result_code"] == "SUCCESS"
    assert second.send()["result_code"] == "SUCCESS"
    assert first.send()["err_code"] == "FREQ_LIMIT"
