"""WeCom red packets through the engine: `pay(kind="workwx")` and campaigns of kind workwx are
rows of the one payouts table driven by the one core, queried with queryworkwxredpack when
their outcome is unknown and when tracked, and a DEBUG run shows no secret and no signature."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hongbao.engine.campaign import Template
from hongbao.engine.dispatch import Pace
from hongbao.engine.ondemand import AsyncPayouts
from hongbao.engine.tracker import reconcile, track
from hongbao.errors import IdempotencyConflict, ValidationError
from hongbao.ledger import PayoutState, SendApi
from hongbao.sim.entities import Api
from hongbao.sim.faults import parse_fault
from hongbao.wire import xmlcodec
from tests.engine.enginekit import QUICK_RUN, Bench, ClockSleep, Recorder, make_bench

P = PayoutState
PACKET: dict[str, Any] = {"wishing": "新春快乐", "act_name": "年会红包", "remark": "年会抽奖"}


@pytest.fixture
def corp_bench(sqlite_url: str, tmp_path: Path) -> Iterator[Bench]:
    bench = make_bench(sqlite_url, tmp_path, users=3, wecom=True)
    yield bench
    bench.store.close()
    bench.sim.close()


def _payouts(bench: Bench, recorder: Recorder) -> AsyncPayouts:
    return AsyncPayouts(
        bench.store,
        bench.profile,
        settings=QUICK_RUN,
        clock=bench.clock,
        clients={"shop": bench.client(transport=recorder)},
        paces={"shop": Pace.local(bench.profile, clock=bench.clock, sleep=ClockSleep(bench.clock))},
    )


@pytest.fixture
async def recorder(corp_bench: Bench) -> Recorder:
    return corp_bench.transport()


@pytest.fixture
async def payouts(corp_bench: Bench, recorder: Recorder) -> AsyncIterator[AsyncPayouts]:
    async with _payouts(corp_bench, recorder) as opened:
        yield opened


async def test_pay_workwx_sends_once_in_an_apps_name_and_is_tracked(
    corp_bench: Bench, payouts: AsyncPayouts, recorder: Recorder
) -> None:
    member = corp_bench.users[0]
    view = await payouts.pay("party:1", member, 888, kind="workwx", agentid=1000002, **PACKET)
    assert (view.state, view.kind, view.outcome) == (P.SENT, "workwx", "sent")
    again = await payouts.pay("party:1", member, 888, kind="workwx", agentid=1000002, **PACKET)
    assert again.bill_no == view.bill_no
    [row] = corp_bench.sim.state.ledger(corp_bench.mch_id)[1]
    assert (row.api, row.re_openid, row.total_amount) == (Api.WORKWX.value, member, 888)
    # The ledger holds the exact wire parameters: workwx_sign yes, the secret never.
    payout = corp_bench.store.find_payout(f"pay:{corp_bench.mch_id}:party:1", 0)
    assert payout is not None
    assert payout.api is SendApi.SENDWORKWXREDPACK
    assert "total_num" not in payout.params
    assert "send_name" not in payout.params
    [body] = recorder.bodies("sendworkwxredpack")
    assert payout.params["workwx_sign"] == xmlcodec.loads(body)["workwx_sign"]
    secret = corp_bench.profile.merchant.wecom_secret
    assert secret is not None
    assert secret.get_secret_value() not in json.dumps(payout.params)

    corp_bench.sim.state.open_packet(corp_bench.mch_id, view.bill_no)
    summary = await track(corp_bench.store, corp_bench.profile, due_only=False,
                          client=corp_bench.client(), clock=corp_bench.clock)  # fmt: skip
    assert summary.received == 1
    assert recorder.bodies("gethbinfo") == []
    report = await reconcile(corp_bench.store, corp_bench.profile, client=corp_bench.client(),
                             clock=corp_bench.clock)  # fmt: skip
    assert report.mismatches == []
    assert report.checked == 1


async def test_an_unopened_wecom_packet_is_tracked_to_refunded(
    corp_bench: Bench, payouts: AsyncPayouts
) -> None:
    view = await payouts.pay(
        "party:2", corp_bench.users[1], 500, kind="workwx", sender_name="HR", **PACKET
    )
    corp_bench.sim.move_clock(advance_seconds=timedelta(hours=25).total_seconds())
    summary = await track(corp_bench.store, corp_bench.profile, due_only=False,
                          client=corp_bench.client(), clock=corp_bench.clock)  # fmt: skip
    assert summary.refunded == 1
    got = await payouts.get("party:2")
    assert got is not None
    assert (got.state, got.refund_amount_fen, got.bill_no) == (P.REFUNDED, 500, view.bill_no)


async def test_an_unknown_outcome_is_resolved_with_queryworkwxredpack_never_paid_twice(
    corp_bench: Bench, payouts: AsyncPayouts, recorder: Recorder
) -> None:
    faults = corp_bench.sim.faults
    faults.add(parse_fault({"endpoint": "sendworkwxredpack", "action": "pay_then_drop",
                            "count": 1}))  # fmt: skip
    faults.add(parse_fault({"endpoint": "sendworkwxredpack", "action": "error",
                            "err_code": "SYSTEMERROR", "count": 5}))  # fmt: skip
    args = ("party:3", corp_bench.users[2], 300)
    view = await payouts.pay(*args, kind="workwx", agentid=1000002, timeout=0.2, **PACKET)
    for _ in range(20):
        if view.settled:
            break
        corp_bench.clock.advance(61)
        view = await payouts.pay(*args, kind="workwx", agentid=1000002, timeout=0.2, **PACKET)
    assert view.state is P.SENT
    rows = corp_bench.sim.state.ledger(corp_bench.mch_id)[1]
    assert [(row.mch_billno, row.status) for row in rows] == [(view.bill_no, "SENT")]
    assert recorder.bodies("queryworkwxredpack")
    # Every send of the bill was the same bytes: same nonce, same workwx_sign, same sign.
    assert len(set(recorder.bodies("sendworkwxredpack"))) == 1


async def test_pay_workwx_refuses_what_the_api_has_not(payouts: AsyncPayouts) -> None:
    with pytest.raises(ValidationError) as caught:
        await payouts.pay("bad:1", "oX", 100, kind="workwx", send_name="Acme", agentid=1, **PACKET)
    assert caught.value.field == "send_name"
    with pytest.raises(ValidationError) as caught:
        await payouts.pay("bad:2", "oX", 100, kind="workwx", **PACKET)
    assert (caught.value.field, caught.value.rule) == ("sender_name", "sender_xor_agentid")
    with pytest.raises(ValidationError) as caught:
        await payouts.pay("bad:3", "oX", 100, kind="normal", sender_name="HR", **PACKET)
    assert caught.value.field == "sender_name"
    assert await payouts.list() == []


async def test_the_same_key_as_another_kind_is_a_conflict(
    corp_bench: Bench, payouts: AsyncPayouts
) -> None:
    member = corp_bench.users[0]
    await payouts.pay("party:4", member, 100, kind="workwx", agentid=1000002, **PACKET)
    with pytest.raises(IdempotencyConflict) as caught:
        await payouts.pay("party:4", member, 100, kind="workwx", sender_name="HR", **PACKET)
    assert caught.value.fields == ["agentid", "sender_name"]


async def test_a_wecom_campaign_pays_each_member_with_its_own_workwx_sign(
    corp_bench: Bench, recorder: Recorder
) -> None:
    template = Template(api=SendApi.SENDWORKWXREDPACK, amount_fen=666, sender_name="HR", **PACKET)
    campaign = corp_bench.campaign(name="nianhui", template=template)
    summary = await corp_bench.run(campaign.id, client=corp_bench.client(transport=recorder))
    assert summary.stopped == "completed"
    assert corp_bench.issued() == {user: 1 for user in corp_bench.users}
    signs = {xmlcodec.loads(body)["workwx_sign"] for body in recorder.bodies("sendworkwxredpack")}
    assert len(signs) == len(corp_bench.users)


async def test_a_debug_run_shows_no_key_no_secret_and_no_signature(
    corp_bench: Bench, payouts: AsyncPayouts, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hongbao")
    corp_bench.sim.faults.add(parse_fault({"endpoint": "sendworkwxredpack", "action": "error",
                                           "err_code": "SIGN_ERROR", "count": 1}))  # fmt: skip
    corp_bench.sim.faults.add(parse_fault({"endpoint": "*", "action": "error",
                                           "err_code": "SYSTEMERROR", "count": 2}))  # fmt: skip
    for n, user in enumerate(corp_bench.users):
        view = await payouts.pay(
            f"debug:{n}", user, 100, kind="workwx", agentid=1000002, timeout=0.2, **PACKET
        )
        for _ in range(20):
            if view.settled:
                break
            corp_bench.clock.advance(61)
            view = await payouts.pay(
                f"debug:{n}", user, 100, kind="workwx", agentid=1000002, timeout=0.2, **PACKET
            )
    merchant = corp_bench.profile.merchant
    assert merchant.wecom_secret is not None
    secrets = [merchant.api_key.get_secret_value(), merchant.wecom_secret.get_secret_value()]
    for body in recorder.bodies("sendworkwxredpack") + recorder.bodies("queryworkwxredpack"):
        fields = xmlcodec.loads(body)
        secrets += [str(fields[name]) for name in ("sign", "workwx_sign") if name in fields]
    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text}" for record in caplog.records
    )
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    assert "workwx_sign" in logged  # the requests were logged, masked
    shown = [logged, repr(merchant), str(merchant), repr(corp_bench.profile)]
    for text in shown:
        for secret in secrets:
            assert secret not in text
