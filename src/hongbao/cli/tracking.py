"""`hongbao track` and `hongbao reconcile`: after sending, follow the packets and check the books.

Both ask gethbinfo (at the merchant's query rate) through `hongbao.engine.tracker`; `track`
records RECEIVED / REFUNDED in the ledger, `reconcile` changes nothing and lists every payout
the ledger and WeChat disagree about.

>>> # hongbao track 1 --follow          (until every packet is opened or refunded)
>>> # hongbao reconcile 1 --json
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from hongbao import eventloop
from hongbao.cli.boundary import ExitCode, guard
from hongbao.cli.options import ConfigOption, JsonOption, MerchantOption, load, open_ledger
from hongbao.cli.output import RunDisplay, print_fields, print_json, print_table
from hongbao.money import format_yuan

if TYPE_CHECKING:
    from hongbao.engine.config import HongbaoConfig
    from hongbao.engine.settings import MerchantProfile
    from hongbao.engine.tracker import ReconcileReport, TrackSummary
    from hongbao.ledger import LedgerStore, StateTotal

__all__ = ["reconcile_command", "track_command"]

CampaignArgument = Annotated[
    int | None,
    typer.Argument(
        help="Only this campaign (default: every payout of the merchant).", show_default=False
    ),
]


def track_command(
    campaign_id: CampaignArgument = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Keep going until no packet is waiting to be opened."),
    ] = False,
    every: Annotated[
        bool,
        typer.Option("--all", help="Ask about every sent packet now, not only those due (hourly)."),
    ] = False,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask WeChat about sent packets and record which were opened and which refunded.

    Each packet is asked about once an hour until the user opens it, or it is refunded
    24 hours after sending. With `--follow`, what it waits for (the next check, WeChat's rate
    limit) is shown at least every 10 s. Example: `hongbao track 1 --follow`
    """
    from hongbao.engine.tracker import track

    with guard(as_json, asks="tracking"):
        settings = load(config)
        with open_ledger(settings.ledger_url) as store:
            profile = _profile(settings, store, campaign_id, merchant)
            waiting = _waiting(store, campaign_id)
            with RunDisplay("tracking", enabled=not as_json) as display:
                display.show(0, waiting)
                summary = eventloop.run(
                    track(
                        store,
                        profile,
                        campaign_id=campaign_id,
                        settings=settings.run,
                        follow=follow,
                        due_only=not every,
                        progress=lambda s: display.show(s.checked, waiting),
                        on_status=display.status if follow else None,
                    )
                )
    _print_track(summary, as_json)


def reconcile_command(
    campaign_id: CampaignArgument = None,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare the ledger with WeChat's records, payout by payout (changes nothing).

    Lists every disagreement: money WeChat paid that the ledger does not count, money the
    ledger counts that WeChat never paid, different amounts or states, payouts not resolved
    yet, and payouts WeChat could not be asked about. Exit code 0 when all agree, 1 when not.
    Example: `hongbao reconcile 1 --json`
    """
    from hongbao.engine.tracker import reconcile

    with guard(as_json, asks="reconciliation"):
        settings = load(config)
        with open_ledger(settings.ledger_url) as store:
            profile = _profile(settings, store, campaign_id, merchant)
            with RunDisplay("reconciling", enabled=not as_json) as display:
                report = eventloop.run(
                    reconcile(
                        store,
                        profile,
                        campaign_id=campaign_id,
                        progress=lambda r: display.show(r.checked, None),
                    )
                )
    _print_reconcile(report, as_json)
    if report.mismatches:
        raise typer.Exit(int(ExitCode.ERROR))


def _profile(
    settings: HongbaoConfig, store: LedgerStore, campaign_id: int | None, name: str | None
) -> MerchantProfile:
    if name is None and campaign_id is not None:
        name = store.get_campaign(campaign_id).merchant
    return settings.profile(name)


def _waiting(store: LedgerStore, campaign_id: int | None) -> int | None:
    from hongbao.ledger import PayoutState

    if campaign_id is None:
        return None
    return store.totals_by_state(campaign_id)[PayoutState.SENT].count


def _total(total: StateTotal) -> dict[str, int]:
    return {"count": total.count, "amount_fen": total.amount_fen}


def _print_track(summary: TrackSummary, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "checked": summary.checked,
                "received": summary.received,
                "refunded": summary.refunded,
                "still_sent": summary.still_sent,
                "errors": summary.errors,
                "anomalies": summary.anomalies,
            }
        )
        return
    rows: list[tuple[str, object]] = [
        ("checked", summary.checked),
        ("opened", summary.received),
        ("refunded", summary.refunded),
        ("still waiting", summary.still_sent),
    ]
    if summary.errors:
        rows.append(("not answered", f"{summary.errors} (asked again next time)"))
    print_fields("Tracking", rows)
    for anomaly in summary.anomalies:
        typer.echo(f"anomaly: {anomaly}", err=True)


def _print_reconcile(report: ReconcileReport, as_json: bool) -> None:
    mismatches: list[dict[str, Any]] = [
        {
            "kind": m.kind.value,
            "payout_id": m.payout_id,
            "mch_billno": m.mch_billno,
            "openid": m.openid,
            "ledger_state": m.ledger_state.value,
            "ledger_amount_fen": m.ledger_amount,
            "wechat_status": m.wechat_status,
            "wechat_amount_fen": m.wechat_amount,
            "detail": m.detail,
        }
        for m in report.mismatches
    ]
    if as_json:
        print_json(
            {
                "checked": report.checked,
                "matched": report.matched,
                "behind": report.behind,
                "never_claimed": report.never_claimed,
                "ledger_issued": _total(report.ledger_issued),
                "wechat_issued": _total(report.wechat_issued),
                "mismatches": mismatches,
            }
        )
        return
    print_fields(
        "Reconciliation",
        [
            ("checked", report.checked),
            ("agree", report.matched),
            ("ledger behind (run track)", report.behind),
            ("never sent, not asked", report.never_claimed),
            ("issued, per the ledger", _counted(report.ledger_issued)),
            ("issued, per WeChat", _counted(report.wechat_issued)),
            ("disagreements", len(mismatches)),
        ],
    )
    if mismatches:
        print_table(
            "Disagreements",
            ["kind", "mch_billno", "ledger", "WeChat"],
            [
                (
                    m["kind"],
                    m["mch_billno"],
                    f"{m['ledger_state']} {format_yuan(m['ledger_amount_fen'])}",
                    m["wechat_status"]
                    + (
                        f" {format_yuan(m['wechat_amount_fen'])}"
                        if m["wechat_amount_fen"] is not None
                        else ""
                    ),
                )
                for m in mismatches
            ],
        )


def _counted(total: StateTotal) -> str:
    return f"{total.count} packets, {format_yuan(total.amount_fen)} yuan"
