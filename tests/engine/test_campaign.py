"""Campaigns: create from a file and a template, plan (idempotent, crash-safe), dry run, budget,
pause / resume / cancel, status, report and export."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import replace
from itertools import islice
from pathlib import Path

import pytest
from sqlalchemy import insert

from hongbao.api import BaseClient
from hongbao.clock import beijing_day
from hongbao.engine.campaign import (
    CampaignError,
    Template,
    campaign_report,
    campaign_status,
    cancel_campaign,
    create_campaign,
    export_csv,
    pause_campaign,
    plan_campaign,
    preview,
    resume_campaign,
)
from hongbao.engine.runner import run_campaign
from hongbao.engine.states import next_beijing_midnight
from hongbao.errors import ConfigurationError
from hongbao.ids import SERIALS_PER_DAY, validate_bill_no
from hongbao.ledger import AddResult, CampaignState, LedgerStore, NewPayout, PayoutState, SendApi
from hongbao.ledger.bills import BillSerialsExhaustedError
from hongbao.ledger.schema import bill_serials
from tests.engine.enginekit import QUICK_RUN, TEMPLATE, Bench, ClockSleep, make_bench

P = PayoutState
C = CampaignState


def payouts_of(bench: Bench, campaign_id: int) -> list[tuple[int | None, str, int]]:
    return [(p.line_no, p.re_openid, p.total_amount) for p in bench.store.iter_payouts(campaign_id)]


def test_planning_records_one_payout_per_good_line(any_bench: Bench) -> None:
    bench = any_bench
    a, b, c = bench.users[:3]
    path = bench.write_file("users.csv", ["openid,amount", a, f"{b},2.50", f"# {c}", c])

    campaign = create_campaign(
        bench.store, bench.profile, name="spring", template=TEMPLATE, source=path, clock=bench.clock
    )
    assert campaign.state is C.DRAFT
    report = plan_campaign(bench.store, bench.profile, campaign.id, clock=bench.clock)

    assert (report.good, report.bad, report.inserted, report.total_fen) == (3, 0, 3, 450)
    assert payouts_of(bench, campaign.id) == [(2, a, 100), (3, b, 250), (5, c, 100)]
    planned = bench.store.get_campaign(campaign.id)
    assert planned.state is C.PLANNED
    assert (planned.lines_total, planned.lines_good, planned.lines_bad) == (5, 3, 0)
    bills = [p.mch_billno for p in bench.store.iter_payouts(campaign.id)]
    assert len(set(bills)) == 3
    assert all(validate_bill_no(bill).startswith(bench.mch_id) for bill in bills)
    for payout in bench.store.iter_payouts(campaign.id):
        assert payout.params["send_name"] == TEMPLATE.send_name
        assert payout.params["nonce_str"]
        assert "sign" not in payout.params


def test_every_bad_line_is_reported_by_number_and_good_lines_still_go(bench: Bench) -> None:
    bench.with_profile(per_user_daily_amount_fen=500)
    a, b, c, d = bench.users[:4]
    path = bench.tmp / "mixed.csv"
    path.write_bytes(
        b"\n".join(
            [
                a.encode(),  # 1 good
                b"not an openid!",  # 2 malformed
                a.encode(),  # 3 duplicate
                b"o\xff\xfeabc",  # 4 not UTF-8
                f"{b},0.50".encode(),  # 5 below the merchant's range
                f"{c},6.00".encode(),  # 6 over the per-user daily cap
                f"{d},1.005".encode(),  # 7 more than two decimals
                d.encode(),  # 8 good
            ]
        )
        + b"\n"
    )
    seen: list[int] = []
    campaign = create_campaign(
        bench.store, bench.profile, name="mixed", template=TEMPLATE, source=path, clock=bench.clock
    )

    report = plan_campaign(
        bench.store, bench.profile, campaign.id, on_bad_line=lambda line: seen.append(line.line_no)
    )

    reasons = {line.line_no: line.reason for line in report.bad_lines}
    assert sorted(reasons) == seen == [2, 3, 4, 5, 6, 7]
    assert "malformed openid" in reasons[2]
    assert "duplicate" in reasons[3]
    assert "UTF-8" in reasons[4]
    assert "0.50" in reasons[5]
    assert "per-user daily cap" in reasons[6]
    assert "1.005" in reasons[7] or "decimal" in reasons[7]
    assert [(line, openid) for line, openid, _ in payouts_of(bench, campaign.id)] == [
        (1, a),
        (8, d),
    ]
    assert (report.good, report.bad) == (2, 6)


def test_a_missing_file_is_a_clear_error_and_nothing_is_recorded(bench: Bench) -> None:
    missing = bench.tmp / "nowhere.csv"
    with pytest.raises(ConfigurationError, match=r"nowhere\.csv"):
        create_campaign(bench.store, bench.profile, name="x", template=TEMPLATE, source=missing)
    assert bench.store.list_campaigns() == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"send_name": "x" * 33}, "send_name"),
        ({"wishing": ""}, "wishing"),
        ({"api": SendApi.SENDGROUPREDPACK, "total_num": 2, "amount_fen": 600}, "total_num"),
        ({"amount_fen": 50}, "scene_id"),
        ({"scene_id": "PRODUCT_9"}, "scene_id"),
        ({"risk_info": "posttime=1"}, "risk_info"),
    ],
)
def test_a_bad_template_names_its_field_and_records_nothing(
    bench: Bench, changes: dict[str, object], field: str
) -> None:
    path = bench.write_file("users.txt", bench.users)
    template = replace(TEMPLATE, **changes)  # type: ignore[arg-type]
    with pytest.raises(CampaignError) as caught:
        create_campaign(bench.store, bench.profile, name="bad", template=template, source=path)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert bench.store.list_campaigns() == []


def test_the_same_campaign_name_twice_is_refused(bench: Bench) -> None:
    bench.campaign(name="spring")
    with pytest.raises(CampaignError, match="spring"):
        bench.campaign(name="spring")


def test_planning_again_records_nothing_new(any_bench: Bench) -> None:
    bench = any_bench
    campaign = bench.campaign()

    again = plan_campaign(bench.store, bench.profile, campaign.id)

    assert (again.inserted, again.existing) == (0, len(bench.users))
    assert len(payouts_of(bench, campaign.id)) == len(bench.users)


class CrashingStore(LedgerStore):
    """A ledger whose process dies after recording `survive` payouts of a plan."""

    survive = 0

    def add_payouts(self, rows: Iterable[NewPayout], *, batch_size: int = 1000) -> AddResult:
        super().add_payouts(islice(rows, self.survive), batch_size=batch_size)
        raise RuntimeError("killed while planning")


async def test_a_crash_mid_plan_leaves_a_campaign_that_planning_again_completes(
    any_bench: Bench,
) -> None:
    bench = any_bench
    users = bench.sim.add_users(bench.creds.appid, 25)
    path = bench.write_file("big.txt", users)
    campaign = create_campaign(
        bench.store, bench.profile, name="big", template=TEMPLATE, source=path
    )
    crashing = CrashingStore(bench.store.engine, clock=bench.clock)
    crashing.survive = 10

    with pytest.raises(RuntimeError, match="killed"):
        plan_campaign(crashing, bench.profile, campaign.id)
    assert bench.store.get_campaign(campaign.id).state is C.DRAFT
    with pytest.raises(CampaignError, match="not planned"):
        await run_campaign(bench.store, campaign.id, bench.profile, client=bench.client())

    report = plan_campaign(bench.store, bench.profile, campaign.id)

    assert (report.inserted, report.existing) == (15, 10)
    assert sorted(openid for _, openid, _ in payouts_of(bench, campaign.id)) == sorted(users)
    assert bench.store.get_campaign(campaign.id).state is C.PLANNED


def test_planning_past_the_days_bill_numbers_stops_with_the_reason(bench: Bench) -> None:
    users = bench.sim.add_users(bench.creds.appid, 5)
    path = bench.write_file("late.txt", users)
    campaign = create_campaign(
        bench.store, bench.profile, name="late", template=TEMPLATE, source=path, clock=bench.clock
    )
    with bench.store.engine.begin() as conn:
        conn.execute(
            insert(bill_serials).values(
                mch_id=bench.mch_id,
                day=beijing_day(bench.clock.now()),
                next_serial=SERIALS_PER_DAY - 3,
            )
        )

    with pytest.raises(BillSerialsExhaustedError, match="bill numbers of 2024-03-15"):
        plan_campaign(bench.store, bench.profile, campaign.id, clock=bench.clock)
    assert bench.store.get_campaign(campaign.id).state is C.DRAFT

    bench.clock.advance(24 * 3600)
    report = plan_campaign(bench.store, bench.profile, campaign.id, clock=bench.clock)
    assert report.inserted + report.existing == 5
    assert bench.store.get_campaign(campaign.id).state is C.PLANNED


def test_planning_refuses_a_file_changed_since_creation(bench: Bench) -> None:
    path = bench.write_file("users.txt", bench.users[:2])
    campaign = create_campaign(bench.store, bench.profile, name="s", template=TEMPLATE, source=path)
    bench.write_file("users.txt", bench.users)

    with pytest.raises(CampaignError) as caught:
        plan_campaign(bench.store, bench.profile, campaign.id)
    assert caught.value.field == "source"
    assert payouts_of(bench, campaign.id) == []


def test_a_dry_run_reports_and_records_nothing(bench: Bench) -> None:
    bench.with_profile(rate_per_minute=120)
    path = bench.write_file("users.csv", [*bench.users[:3], "bad line!", f"{bench.users[3]},3"])
    campaign = create_campaign(
        bench.store, bench.profile, name="dry", template=TEMPLATE, source=path, budget_fen=400
    )

    report = plan_campaign(bench.store, bench.profile, campaign.id, dry_run=True)
    standalone = preview(bench.profile, TEMPLATE, path, budget_fen=400)

    for result in (report, standalone):
        assert (result.good, result.bad, result.total_fen) == (4, 1, 600)
        assert result.estimated_seconds == 4 * 60 / 120
        assert result.over_budget
        assert result.inserted == 0
    assert payouts_of(bench, campaign.id) == []
    assert bench.store.get_campaign(campaign.id).state is C.DRAFT


async def test_the_budget_is_never_exceeded(any_bench: Bench) -> None:
    bench = any_bench
    campaign = bench.campaign(budget_fen=350)  # 5 users × 1.00 yuan

    await run_campaign(
        bench.store,
        campaign.id,
        bench.profile,
        client=bench.client(),
        clock=bench.clock,
        settings=QUICK_RUN,
        sleep=ClockSleep(bench.clock),
    )

    assert bench.issued_fen() == 300
    assert bench.states(campaign.id) == {P.SENT: 3, P.SKIPPED: 2}
    assert bench.store.get_campaign(campaign.id).committed_fen == 300
    assert {p.reason for p in bench.store.iter_payouts(campaign.id) if p.state is P.SKIPPED} == {
        "over_budget"
    }


def test_only_a_running_campaign_pauses_and_only_a_paused_one_resumes(bench: Bench) -> None:
    campaign = bench.campaign()
    with pytest.raises(CampaignError, match="PLANNED"):
        pause_campaign(bench.store, campaign.id)
    bench.store.set_campaign_state(campaign.id, C.PLANNED, C.RUNNING)
    with pytest.raises(CampaignError, match="RUNNING"):
        resume_campaign(bench.store, campaign.id)

    assert pause_campaign(bench.store, campaign.id, "lunch break") is True
    assert pause_campaign(bench.store, campaign.id, "again") is False  # no error, reason kept

    paused = bench.store.get_campaign(campaign.id)
    assert (paused.state, paused.pause_reason) == (C.PAUSED, "lunch break")


def test_resume_makes_paused_payouts_due_but_not_those_of_a_later_day(bench: Bench) -> None:
    campaign = bench.campaign(bench.users[:2])
    bench.store.set_campaign_state(campaign.id, C.PLANNED, C.RUNNING)
    first, second = bench.claim(limit=2)
    now = bench.clock.now()
    bench.store.transition(
        first.id, P.SENDING, P.DEFERRED, err_code="NOTENOUGH", next_attempt_at=now.replace(hour=23)
    )
    tomorrow = next_beijing_midnight(now)
    bench.store.transition(
        second.id, P.SENDING, P.DEFERRED, err_code="SENDNUM_LIMIT", next_attempt_at=tomorrow
    )
    pause_campaign(bench.store, campaign.id)

    made_due = resume_campaign(bench.store, campaign.id, clock=bench.clock)

    assert made_due == 1
    assert bench.store.get_payout(first.id).next_attempt_at == now
    assert bench.store.get_payout(second.id).next_attempt_at == tomorrow
    assert bench.store.get_campaign(campaign.id).state is C.RUNNING


def test_cancel_cancels_what_was_not_sent(bench: Bench) -> None:
    campaign = bench.campaign()
    bench.store.set_campaign_state(campaign.id, C.PLANNED, C.RUNNING)
    [in_flight] = bench.claim()

    assert cancel_campaign(bench.store, campaign.id) == len(bench.users) - 1

    assert bench.states(campaign.id) == {P.CANCELLED: 4, P.SENDING: 1}
    assert bench.store.get_payout(in_flight.id).state is P.SENDING  # left to resolve
    with pytest.raises(CampaignError, match="CANCELLED"):
        cancel_campaign(bench.store, campaign.id)


async def test_status_report_and_export_tell_what_happened(bench: Bench) -> None:
    campaign = bench.campaign(budget_fen=400)
    await run_campaign(
        bench.store,
        campaign.id,
        bench.profile,
        client=bench.client(),
        clock=bench.clock,
        settings=QUICK_RUN,
        sleep=ClockSleep(bench.clock),
    )
    [first, *_] = list(bench.store.iter_payouts(campaign.id))
    bench.sim.state.open_packet(bench.mch_id, first.mch_billno, None)
    bench.store.transition(first.id, P.SENT, P.RECEIVED)

    status = campaign_status(bench.store, campaign.id)
    report = campaign_report(bench.store, campaign.id)
    out = io.StringIO()
    rows = export_csv(bench.store, campaign.id, out)

    assert status.campaign.state is C.COMPLETED
    assert status.totals[P.SENT].count == 3
    assert status.open.count == 0
    assert [(p.state, p.reason, p.count) for p in status.problems] == [
        (P.SKIPPED, "over_budget", 1)
    ]
    assert (report.sent.count, report.sent.amount_fen) == (4, 400)
    assert (report.received.count, report.waiting.count) == (1, 3)
    assert (report.skipped.count, report.unresolved.count, report.failed.count) == (1, 0, 0)
    lines = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows == len(lines) == 5
    assert [line["openid"] for line in lines] == bench.users
    assert {line["amount"] for line in lines} == {"1.00"}
    assert [line["state"] for line in lines].count("RECEIVED") == 1


def test_a_fission_template_plans_its_shares(bench: Bench, tmp_path: Path) -> None:
    template = replace(TEMPLATE, api=SendApi.SENDGROUPREDPACK, total_num=3, amount_fen=600)
    campaign = bench.campaign(bench.users[:2], template=template)

    [payout, _] = list(bench.store.iter_payouts(campaign.id))
    assert payout.api is SendApi.SENDGROUPREDPACK
    assert (payout.total_num, payout.params["amt_type"]) == (3, "ALL_RAND")
    assert Template.from_dict(bench.store.get_campaign(campaign.id).template) == template


@pytest.mark.parametrize("api", list(SendApi))
def test_every_planned_payout_is_what_the_api_itself_builds(
    sqlite_url: str, tmp_path: Path, api: SendApi
) -> None:
    """Planning copies the checked parameters of the first line; every line must still come out
    exactly as `send_params` builds it for that line (same fields, values, order), bar its own
    random nonce (and a WeCom packet's workwx_sign, which covers the nonce)."""
    workwx = api is SendApi.SENDWORKWXREDPACK
    bench = make_bench(sqlite_url, tmp_path, users=5, wecom=workwx)
    total_num = 3 if api is SendApi.SENDGROUPREDPACK else 1
    template = replace(TEMPLATE, api=api, total_num=total_num, amount_fen=300 * total_num)
    if workwx:
        template = replace(template, send_name=None, sender_name=TEMPLATE.send_name)
    a, b, c = bench.users[:3]
    path = bench.write_file(f"{api.value}.csv", [a, f"{b},{4 * total_num}.00", c])
    campaign = create_campaign(
        bench.store, bench.profile, name=api.value, template=template, source=path
    )
    plan_campaign(bench.store, bench.profile, campaign.id, clock=bench.clock)

    builder = BaseClient(bench.profile.merchant)
    nonces = set()
    for payout in bench.store.iter_payouts(campaign.id):
        expected = template.params(
            builder,
            mch_billno=payout.mch_billno,
            openid=payout.re_openid,
            amount_fen=payout.total_amount,
        )
        nonce = payout.params["nonce_str"]
        assert re.fullmatch(r"[0-9a-f]{32}", str(nonce))
        nonces.add(nonce)
        expected = builder.changed_params(api.value, expected, {"nonce_str": nonce})
        assert list(payout.params.items()) == list(expected.items())
    assert [p.total_amount for p in bench.store.iter_payouts(campaign.id)] == [
        300 * total_num,
        400 * total_num,
        300 * total_num,
    ]
    assert len(nonces) == 3
    bench.store.close()
    bench.sim.close()


def test_unresolved_means_money_in_an_unknown_state_and_the_rest_is_not_sent_yet(
    bench: Bench,
) -> None:
    campaign = bench.campaign()  # 5 payouts of 1.00
    bench.store.set_campaign_state(campaign.id, C.PLANNED, C.RUNNING)
    _sending, unknown, deferred = bench.claim(limit=3)
    bench.store.transition(unknown.id, P.SENDING, P.UNKNOWN, err_code="SYSTEMERROR")
    bench.store.transition(deferred.id, P.SENDING, P.DEFERRED, err_code="NOTENOUGH")

    report = campaign_report(bench.store, campaign.id)

    assert (report.unresolved.count, report.unresolved.amount_fen) == (2, 200)
    assert (report.not_sent_yet.count, report.not_sent_yet.amount_fen) == (3, 300)
