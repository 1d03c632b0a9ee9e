"""Bill-number re-entry (docs/protocol.md §6.5): one bill number never pays twice."""

from __future__ import annotations

from hongbao.sim.app import Simulator
from hongbao.sim.faults import parse_fault
from hongbao.sim.state import MerchantSettings
from hongbao.wire.local import PeerInfo
from tests.sim.simkit import Shop, make_shop, signed_body


def _paid(shop: Shop) -> list[str]:
    _, rows = shop.ledger()
    return [row.mch_billno for row in rows if row.status == "SENT"]


def test_identical_resend_replays_the_original_success_and_pays_once(shop: Shop) -> None:
    params = shop.send_params()
    body = signed_body(params, shop.creds.api_key)
    first = shop.post("sendredpack", body)
    before = shop.sim.state.merchant(shop.mch_id).balance_fen
    again = shop.post("sendredpack", body)
    assert again.body == first.body
    assert shop.sim.state.merchant(shop.mch_id).balance_fen == before
    assert _paid(shop) == [params["mch_billno"]]


def test_resend_with_a_new_nonce_and_other_texts_replays(shop: Shop) -> None:
    params = shop.send_params()
    first = shop.call("sendredpack", params)
    again = shop.call("sendredpack", {**params, "nonce_str": "other", "wishing": "新年快乐"})
    assert again["send_listid"] == first["send_listid"]
    assert len(_paid(shop)) == 1


def test_changed_openid_or_amount_keeps_the_original_intact(shop: Shop) -> None:
    params = shop.send_params()
    first = shop.call("sendredpack", params)
    assert (
        shop.call("sendredpack", {**params, "re_openid": shop.users[1]})["err_code"]
        == "FATAL_ERROR"
    )
    assert shop.call("sendredpack", {**params, "total_amount": "2000"})["err_code"] == "FATAL_ERROR"
    assert shop.query(params["mch_billno"])["detail_id"] == first["send_listid"]
    assert len(_paid(shop)) == 1


def test_same_bill_on_another_api_is_a_fatal_error(shop: Shop) -> None:
    params = shop.group_params()
    assert shop.call("sendgroupredpack", params)["result_code"] == "SUCCESS"
    single = shop.send_params(mch_billno=params["mch_billno"], total_amount="900")
    answer = shop.call("sendredpack", single)
    assert (answer["err_code"], answer["err_code_des"]) == (
        "FATAL_ERROR",
        "openid和原始单参数不一致",
    )


def test_rejection_before_issuing_leaves_the_bill_free(shop: Shop) -> None:
    params = shop.send_params()
    assert shop.call("sendredpack", params, peer=PeerInfo())["err_code"] == "CA_ERROR"
    assert shop.call("sendredpack", params)["result_code"] == "SUCCESS"


def test_soft_failure_is_evaluated_again_and_pays_once_after_a_top_up(sim: Simulator) -> None:
    shop = make_shop(sim, balance_fen=500)
    params = shop.send_params(total_amount="1000")
    assert shop.call("sendredpack", params)["err_code"] == "NOTENOUGH"
    assert shop.call("sendredpack", params)["err_code"] == "NOTENOUGH"
    detail_id = shop.query(params["mch_billno"])["detail_id"]
    sim.state.update_merchant(shop.mch_id, MerchantSettings(balance_fen=5000))
    answer = shop.call("sendredpack", params)
    assert answer["result_code"] == "SUCCESS"
    assert answer["send_listid"] == detail_id
    assert shop.call("sendredpack", params)["send_listid"] == detail_id
    assert sim.state.merchant(shop.mch_id).balance_fen == 4000


def test_processing_answers_processing_again_then_resolves_to_sent(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "processing", "count": 1, "seconds": 1200}))
    params = shop.send_params()
    before = shop.sim.state.merchant(shop.mch_id).balance_fen
    assert shop.call("sendredpack", params)["err_code"] == "PROCESSING"
    assert shop.call("sendredpack", params)["err_code"] == "PROCESSING"
    assert shop.sim.state.merchant(shop.mch_id).balance_fen == before
    shop.sim.move_clock(advance_seconds=1200)
    assert shop.query(params["mch_billno"])["status"] == "SENT"
    assert shop.sim.state.merchant(shop.mch_id).balance_fen == before - 1000
    answer = shop.call("sendredpack", params)
    assert answer["result_code"] == "SUCCESS"
    assert answer["send_listid"] == shop.query(params["mch_billno"])["detail_id"]


def test_processing_resolves_to_failed_when_it_can_no_longer_be_paid(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "processing", "count": 1}))
    params = shop.send_params()
    assert shop.call("sendredpack", params)["err_code"] == "PROCESSING"
    shop.sim.state.update_merchant(shop.mch_id, MerchantSettings(balance_fen=0))
    shop.sim.move_clock(advance_seconds=600)
    assert shop.query(params["mch_billno"])["status"] == "FAILED"
    assert shop.call("sendredpack", params)["err_code"] == "SEND_FAILED"
    assert shop.sim.state.merchant(shop.mch_id).balance_fen == 0
