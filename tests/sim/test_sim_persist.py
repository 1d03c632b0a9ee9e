"""With a data dir the simulator keeps merchants, users, records and balances across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from hongbao.sim.app import Simulator
from hongbao.sim.exceptions import UnknownObjectError
from hongbao.sim.state import MerchantSettings
from hongbao.wire.local import PeerInfo
from tests.sim.simkit import Shop


def _shop(sim: Simulator, creds_from: Shop | None = None) -> Shop:
    if creds_from is not None:
        return Shop(sim, creds_from.creds, creds_from.users, creds_from.mini_users, creds_from.peer)
    creds = sim.create_merchant(MerchantSettings(balance_fen=5000, per_user_count=1))
    return Shop(
        sim,
        creds,
        sim.add_users(creds.appid, 2),
        sim.add_users(creds.mini_appid, 1),
        PeerInfo(cert_der=creds.cert_der),
    )


def test_a_restarted_simulator_remembers_records_balances_and_counters(tmp_path: Path) -> None:
    first = Simulator(data_dir=tmp_path, seed=3)
    shop = _shop(first)
    params = shop.send_params(total_amount="1000")
    sent = shop.call("sendredpack", params)
    first.move_clock(advance_seconds=3600)
    first.close()

    second = Simulator(data_dir=tmp_path, seed=3)
    again = _shop(second, shop)
    record = again.query(params["mch_billno"])
    assert (record["status"], record["detail_id"]) == ("SENT", sent["send_listid"])
    assert second.state.merchant(shop.mch_id).balance_fen == 4000
    assert second.clock.now() == first.clock.now()
    # The certificate issued before the restart is still accepted (same CA on disk).
    assert again.call("sendredpack", params)["send_listid"] == sent["send_listid"]
    # The daily count survived: the user already had their one packet today.
    assert again.send(total_amount="1000")["err_code"] == "SENDNUM_LIMIT"
    # A new merchant does not collide with the old one despite the same seed.
    assert second.create_merchant().mch_id != shop.mch_id
    second.close()


def test_timed_transitions_continue_after_a_restart(tmp_path: Path) -> None:
    first = Simulator(data_dir=tmp_path)
    shop = _shop(first)
    params = shop.send_params(total_amount="1000")
    shop.call("sendredpack", params)
    first.close()

    second = Simulator(data_dir=tmp_path)
    second.move_clock(advance_seconds=24 * 3600 + 15 * 60)
    assert _shop(second, shop).query(params["mch_billno"])["status"] == "REFUND"
    assert second.state.merchant(shop.mch_id).balance_fen == 5000
    second.close()


def test_users_blocks_and_fission_shares_persist(tmp_path: Path) -> None:
    first = Simulator(data_dir=tmp_path)
    shop = _shop(first)
    params = shop.group_params(total_amount="300", total_num="3")
    assert shop.call("sendgroupredpack", params)["result_code"] == "SUCCESS"
    claimed = first.state.open_packet(shop.mch_id, params["mch_billno"])
    first.state.set_blocked(shop.users[1], True)
    first.close()

    second = Simulator(data_dir=tmp_path)
    again = _shop(second, shop)
    assert again.query(params["mch_billno"])["hblist"] == [
        {
            "openid": shop.users[0],
            "status": "RECEIVED",
            "amount": str(claimed.amount),
            "rcv_time": "2024-03-15 10:00:00",
        }
    ]
    assert again.send(re_openid=shop.users[1])["err_code"] == "NO_AUTH"
    second.close()


def test_reset_clears_the_stored_state(tmp_path: Path) -> None:
    first = Simulator(data_dir=tmp_path)
    mch_id = first.create_merchant().mch_id
    first.reset()
    first.close()
    second = Simulator(data_dir=tmp_path)
    with pytest.raises(UnknownObjectError):
        second.state.merchant(mch_id)
    second.close()


def test_the_state_database_holding_api_keys_is_private_to_its_owner(tmp_path: Path) -> None:
    (tmp_path / "sim.sqlite3").touch(mode=0o644)  # left by an older version
    sim = Simulator(data_dir=tmp_path, seed=3)
    _shop(sim)
    sim.close()
    fresh = tmp_path / "fresh"
    Simulator(data_dir=fresh, seed=3).close()
    for folder in (tmp_path, fresh):
        for file in folder.glob("sim.sqlite3*"):
            assert file.stat().st_mode & 0o777 == 0o600, file
