"""The dashboard's pages over a real ledger (SQLite and PostgreSQL), through plain HTTP."""

from __future__ import annotations

import csv
import io

from hongbao.ledger import CampaignState, PayoutState
from tests.web.webkit import Filled, csrf_of, dashboard


def test_the_campaigns_page_shows_progress_and_money(filled: Filled) -> None:
    with dashboard(filled.bench) as client:
        page = client.get("/")

    assert page.status_code == 200
    html = page.text
    assert filled.campaign.name in html
    assert "COMPLETED" in html
    assert "5 / 5" in html  # everything settled
    assert "3 · ¥3.00" in html  # sent: 3 packets of 1.00
    assert "1 · ¥1.00" in html  # received, failed
    assert "¥3.00 of ¥4.00" in html  # budget used


def test_the_campaign_page_explains_failures_and_charts_the_sends(filled: Filled) -> None:
    with dashboard(filled.bench) as client:
        page = client.get(f"/campaigns/{filled.campaign.id}")

    assert page.status_code == 200
    html = page.text
    assert "OPENID_ERROR" in html
    assert "budget" in html  # the SKIPPED payout's reason
    assert 'data-chart="sends-data"' in html
    assert "merchant cap (1800/min)" in html
    assert 'data-chart="outcomes-data"' in html
    assert '"label": "received"' in html
    assert "/static/chart.umd.min.js" in html


def test_the_live_progress_document_counts_the_states(filled: Filled) -> None:
    with dashboard(filled.bench) as client:
        live = client.get(f"/api/campaigns/{filled.campaign.id}").json()
        every = client.get("/api/campaigns").json()

    assert (live["settled"], live["total"], live["state"]) == (5, 5, "COMPLETED")
    assert live["states"]["SENT"]["count"] == 2
    assert live["states"]["RECEIVED"]["count"] == 1
    assert every["campaigns"] == [live]


def test_the_csv_export_holds_every_payout(filled: Filled) -> None:
    with dashboard(filled.bench) as client:
        response = client.get(f"/campaigns/{filled.campaign.id}/export.csv")

    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(row["openid"] for row in rows) == sorted(filled.bench.users)
    assert {row["state"] for row in rows} == {"SENT", "RECEIVED", "FAILED", "SKIPPED"}


def test_a_payout_is_found_by_openid_and_by_bill_number(filled: Filled) -> None:
    payout = filled.received
    with dashboard(filled.bench) as client:
        by_openid = client.get("/payouts", params={"q": payout.re_openid}).text
        by_bill = client.get("/payouts", params={"q": payout.mch_billno}).text
        nothing = client.get("/payouts", params={"q": "o-nobody"}).text

    assert f'href="/payouts/{payout.id}"' in by_openid
    assert f'href="/payouts/{payout.id}"' in by_bill
    assert "No payout for" in nothing


def test_a_payouts_history_is_shown_masked(filled: Filled) -> None:
    payout = filled.failed
    with dashboard(filled.bench) as client:
        html = client.get(f"/payouts/{payout.id}").text

    assert html.count('class="event"') == len(filled.bench.store.events(payout.id)) >= 2
    assert "OPENID_ERROR" in html
    assert payout.mch_billno in html
    assert filled.bench.creds.api_key not in html
    assert "&#34;sign&#34;" not in html
    assert '"sign"' not in html


def test_planned_payouts_are_not_sent_yet_and_only_in_flight_ones_unresolved(
    filled: Filled,
) -> None:
    bench = filled.bench
    campaign = bench.campaign(bench.sim.add_users(bench.creds.appid, 3), name="autumn")
    bench.store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
    bench.claim(limit=1)
    with dashboard(bench) as client:
        page = client.get(f"/campaigns/{campaign.id}").text
        live = client.get(f"/api/campaigns/{campaign.id}").json()

    assert live["fields"]["unresolved"] == "1 · ¥1.00"  # SENDING: maybe sent
    assert live["fields"]["not_sent_yet"] == "2 · ¥2.00"  # PLANNED
    assert "not sent yet" in page
    assert '<span data-field="not_sent_yet">2 · ¥2.00</span>' in page


def test_a_payouts_chinese_texts_are_shown_as_text(filled: Filled) -> None:
    with dashboard(filled.bench) as client:
        html = client.get(f"/payouts/{filled.received.id}").text

    assert "天虹百货" in html  # the template's send_name, in the frozen parameters
    assert "\\u" not in html


def test_pausing_resuming_and_cancelling_from_the_page(filled: Filled) -> None:
    bench = filled.bench
    campaign = bench.campaign(bench.sim.add_users(bench.creds.appid, 3), name="autumn")
    store = bench.store
    store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
    with dashboard(bench) as client:
        page = client.get(f"/campaigns/{campaign.id}").text
        assert 'data-confirm="Pause campaign autumn?' in page
        csrf = csrf_of(page)

        paused = client.post(f"/campaigns/{campaign.id}/pause", data={"csrf": csrf})
        assert (paused.status_code, paused.headers["location"]) == (
            303,
            f"/campaigns/{campaign.id}?done=pause",
        )
        assert store.get_campaign(campaign.id).state is CampaignState.PAUSED

        client.post(f"/campaigns/{campaign.id}/resume", data={"csrf": csrf})
        assert store.get_campaign(campaign.id).state is CampaignState.RUNNING

        client.post(f"/campaigns/{campaign.id}/cancel", data={"csrf": csrf})
        assert store.get_campaign(campaign.id).state is CampaignState.CANCELLED
        assert bench.states(campaign.id) == {PayoutState.CANCELLED: 3}

        again = client.post(f"/campaigns/{campaign.id}/pause", data={"csrf": csrf})
    assert again.status_code == 409
    assert "only a RUNNING one can pause" in again.text


def test_an_interrupted_campaign_shows_the_command_that_runs_it_again(filled: Filled) -> None:
    bench = filled.bench
    campaign = bench.campaign(bench.sim.add_users(bench.creds.appid, 3), name="autumn")
    bench.store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
    bench.store.set_campaign_state(campaign.id, CampaignState.RUNNING, CampaignState.INTERRUPTED)
    with dashboard(bench) as client:
        page = client.get(f"/campaigns/{campaign.id}").text
        listed = client.get("/").text

    hint = f"run again to continue: <code>hongbao campaign run {campaign.id}</code>"
    assert hint in page
    assert hint in listed
    assert f"<code>hongbao campaign run {filled.campaign.id}</code>" not in page + listed


def test_retrying_the_failed_payouts_from_the_page(filled: Filled) -> None:
    bench, campaign_id = filled.bench, filled.campaign.id
    with dashboard(bench) as client:
        page = client.get(f"/campaigns/{campaign_id}").text
        assert f'action="/campaigns/{campaign_id}/retry"' in page
        csrf = csrf_of(page)

        retried = client.post(f"/campaigns/{campaign_id}/retry", data={"csrf": csrf})
        again = client.post(f"/campaigns/{campaign_id}/retry", data={"csrf": csrf})
        shown = client.get(retried.headers["location"]).text
        refused = client.post(f"/campaigns/{campaign_id}/retry", data={})

    assert retried.status_code == 303
    assert retried.headers["location"] == f"/campaigns/{campaign_id}?done=retry&retried=1&left=0"
    assert again.headers["location"].endswith("retried=0&left=0")
    assert "1 failed payouts re-issued with new bill numbers" in shown
    assert refused.status_code == 403
    [new] = [p for p in bench.store.iter_payouts(campaign_id) if p.previous_payout_id]
    assert (new.previous_payout_id, new.state) == (filled.failed.id, PayoutState.PLANNED)
    assert new.mch_billno != filled.failed.mch_billno
    assert bench.store.get_campaign(campaign_id).state is CampaignState.RUNNING


def test_reconciling_from_the_page_lists_the_mismatches(filled: Filled) -> None:
    bench = filled.bench
    # The ledger says the failed payout was never issued; WeChat says it was (paid elsewhere).
    sent = bench.store.find_payouts([PayoutState.SENT], campaign_id=filled.campaign.id)[0]
    bench.store.transition(sent.id, PayoutState.SENT, PayoutState.REFUNDED)
    with dashboard(bench) as client:
        csrf = csrf_of(client.get("/reconcile").text)
        started = client.post(f"/reconcile/{filled.campaign.id}", data={"csrf": csrf})
        assert started.status_code == 303
        for _ in range(200):
            html = client.get("/reconcile").text
            if "Reconciling since" not in html:
                break

    assert "Checked 4" in html
    assert "state_differs" in html
    assert sent.mch_billno in html


def test_reconciliation_without_the_configuration_says_what_is_needed(filled: Filled) -> None:
    with dashboard(filled.bench, reconciler=None) as client:
        html = client.get("/reconcile").text
    assert "--config" in html
    assert "Reconcile now" not in html


def test_the_rules_page_lists_configured_rules_not_used_yet(filled: Filled) -> None:
    with dashboard(filled.bench, rule_names=["big_spender"]) as client:
        html = client.get("/rules").text
    assert "big_spender" in html


def test_an_unknown_campaign_or_payout_is_404(filled: Filled) -> None:
    with dashboard(filled.bench) as client:
        assert client.get("/campaigns/999").status_code == 404
        assert client.get("/payouts/999999").status_code == 404
        assert client.get("/api/campaigns/999").json() == {"error": "no campaign with id 999"}


def test_the_payouts_page_lists_payouts_on_demand_newest_first(filled: Filled) -> None:
    bench = filled.bench
    first = bench.add_payout(bench.users[0], key=f"pay:{bench.mch_id}:order-1:cashback")
    second = bench.add_payout(bench.users[1], key=f"pay:{bench.mch_id}:order-2")
    with dashboard(bench) as client:
        html = client.get("/payouts").text

    assert "Payouts on demand" in html
    assert html.index("order-2") < html.index("order-1:cashback")
    assert f'href="/payouts/{first.id}"' in html
    assert f'href="/payouts/{second.id}"' in html
    # Campaign payouts are found by search, not listed here.
    assert filled.campaign.name not in html
