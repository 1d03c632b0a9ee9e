"""Injected faults, in-process: network faults surface as TransportError, the ledger tells truth."""

from __future__ import annotations

import pytest

from hongbao.errors import TransportError
from hongbao.sim.faults import FaultSpecError, FaultTable, parse_fault
from hongbao.wire.local import PeerInfo
from tests.sim.simkit import Shop, parse, signed_body


def _statuses(shop: Shop) -> list[str]:
    return [row.status for row in shop.ledger()[1]]


def test_pay_then_drop_issues_the_packet_and_raises(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "pay_then_drop", "count": 1}))
    params = shop.send_params()
    body = signed_body(params, shop.creds.api_key)
    with pytest.raises(TransportError, match="connection dropped after the request was processed"):
        shop.post("sendredpack", body)
    assert _statuses(shop) == ["SENT"]
    # The client's same-bill retry learns the outcome; nothing is paid twice.
    assert parse(shop.post("sendredpack", body))["result_code"] == "SUCCESS"
    assert _statuses(shop) == ["SENT"]


def test_hang_raises_without_processing(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "hang", "count": 1}))
    with pytest.raises(TransportError, match="timed out"):
        shop.send()
    assert _statuses(shop) == []


def test_delay_longer_than_the_read_timeout_raises_after_processing(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "delay", "seconds": 10, "count": 1}))
    impatient = PeerInfo(ip=shop.peer.ip, cert_der=shop.peer.cert_der, read_timeout=5)
    with pytest.raises(TransportError, match="timed out"):
        shop.call("sendredpack", shop.send_params(), peer=impatient)
    assert _statuses(shop) == ["SENT"]


def test_delay_shorter_than_the_read_timeout_answers(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "delay", "seconds": 2}))
    assert shop.send()["result_code"] == "SUCCESS"


def test_http_status_answers_that_status_without_xml_or_processing(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "http_status", "status": 502, "count": 1}))
    response = shop.post("sendredpack", signed_body(shop.send_params(), shop.creds.api_key))
    assert response.status == 502
    assert not response.body.startswith(b"<xml>")
    assert _statuses(shop) == []


def test_count_spends_the_fault(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "error", "err_code": "SYSTEMERROR", "count": 2}))
    codes = [shop.send()["err_code"] for _ in range(3)]
    assert codes == ["SYSTEMERROR", "SYSTEMERROR", "SUCCESS"]


def test_a_fault_for_one_endpoint_leaves_the_others_alone(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"endpoint": "sendgroupredpack", "action": "hang"}))
    assert shop.send()["result_code"] == "SUCCESS"


def test_probability_with_a_seed_is_reproducible() -> None:
    def pattern() -> list[bool]:
        table = FaultTable()
        table.add(parse_fault({"action": "hang", "probability": 0.5, "seed": 42}))
        return [table.draw("sendredpack") is not None for _ in range(40)]

    first = pattern()
    assert first == pattern()
    assert 0 < sum(first) < 40


def test_clearing_disarms_every_fault(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "hang"}))
    shop.sim.faults.clear()
    assert shop.send()["result_code"] == "SUCCESS"


@pytest.mark.parametrize(
    ("doc", "complaint"),
    [
        ({"action": "explode"}, "action must be one of"),
        ({"endpoint": "refund", "action": "hang"}, "endpoint must be one of"),
        ({"action": "error"}, "needs an err_code"),
        ({"action": "error", "err_code": "<x>"}, "err_code must be a code"),
        ({"action": "http_status"}, "needs a status"),
        ({"action": "delay"}, "needs seconds"),
        ({"action": "hang", "count": 0}, "count must be at least 1"),
        ({"action": "hang", "probability": 1.5}, "probability must be in"),
        ({"action": "hang", "seconds": "soon"}, "seconds must be a number"),
    ],
)
def test_bad_fault_descriptions_are_refused_with_a_reason(
    doc: dict[str, object], complaint: str
) -> None:
    with pytest.raises(FaultSpecError, match=complaint):
        parse_fault(doc)
