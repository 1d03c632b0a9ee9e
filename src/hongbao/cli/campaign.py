"""`hongbao campaign …`: many red packets from a file, planned in the ledger before any is sent.

The commands parse, build the merchant profile and the ledger from the configuration, and call
`hongbao.engine.campaign` (and the runner for `run`). Only `create`, `plan` and `run` need the
merchant's key and certificate; the others read or change the ledger alone.

>>> # hongbao campaign create --merchant shop --file users.csv --amount 1.88 --send-name Acme \\
>>> #     --act-name Spring --wishing "Thank you" --remark Enjoy --budget 2000
>>> # hongbao campaign plan 1 && hongbao campaign run 1 && hongbao campaign status 1 --json
"""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hongbao import eventloop
from hongbao.cli.boundary import ExitCode, FastHelpGroup, guard
from hongbao.cli.options import (
    AmountOption,
    ConfigOption,
    JsonOption,
    MerchantOption,
    load,
    open_ledger,
    yuan,
)
from hongbao.cli.output import RunDisplay, note, print_fields, print_json, print_table
from hongbao.cli.worker import print_workers, worker_documents
from hongbao.clock import CST, SystemClock
from hongbao.money import format_yuan

if TYPE_CHECKING:
    from hongbao.engine.campaign import CampaignReport, CampaignStatus, PlanReport
    from hongbao.engine.runner import RunSummary
    from hongbao.ledger import Campaign, SendApi, StateTotal

__all__ = ["campaign_app"]

campaign_app = typer.Typer(
    name="campaign",
    help="Campaigns: create from a file of openids, plan, run, watch, report.",
    no_args_is_help=True,
    cls=FastHelpGroup,
)

IdArgument = Annotated[int, typer.Argument(help="The campaign's id (printed by `create`).")]

_SHOWN_BAD_LINES = 20
INTERRUPTED_EXIT = 130
"""The exit status after Ctrl-C (128 + SIGINT), as shells report it."""


class PacketKind(StrEnum):
    """The kind of red packet a campaign sends, as `--api` names it."""

    NORMAL = "normal"
    GROUP = "group"
    MINI = "mini"
    WORKWX = "workwx"


def _send_api(kind: PacketKind) -> SendApi:
    from hongbao.ledger import SendApi

    return {
        PacketKind.NORMAL: SendApi.SENDREDPACK,
        PacketKind.GROUP: SendApi.SENDGROUPREDPACK,
        PacketKind.MINI: SendApi.SENDMINIPROGRAMHB,
        PacketKind.WORKWX: SendApi.SENDWORKWXREDPACK,
    }[kind]


@campaign_app.command("create")
def create_command(
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help="One openid a line, or CSV `openid[,amount]` (amount in yuan); `#` comments "
            "and blank lines are ignored.",
            dir_okay=False,
        ),
    ],
    amount: AmountOption,
    act_name: Annotated[str, typer.Option("--act-name", help="Activity name (act_name).")],
    wishing: Annotated[str, typer.Option("--wishing", help="Blessing text (wishing).")],
    remark: Annotated[str, typer.Option("--remark", help="Remark (remark).")],
    send_name: Annotated[
        str | None,
        typer.Option(
            "--send-name", help="Sender name (send_name; not for --api workwx).", show_default=False
        ),
    ] = None,
    sender_name: Annotated[
        str | None,
        typer.Option(
            "--sender-name",
            help="--api workwx: send in this person's name (sender_name); or --agentid.",
            show_default=False,
        ),
    ] = None,
    agentid: Annotated[
        int | None,
        typer.Option(
            "--agentid", help="--api workwx: send in this WeCom app's name.", show_default=False
        ),
    ] = None,
    sender_header_media_id: Annotated[
        str | None,
        typer.Option(
            "--sender-header-media-id",
            help="--api workwx: the sender's avatar (a WeCom media id).",
            show_default=False,
        ),
    ] = None,
    scene_id: Annotated[
        str | None,
        typer.Option("--scene-id", help="PRODUCT_1 … PRODUCT_8.", show_default=False),
    ] = None,
    api: Annotated[
        PacketKind,
        typer.Option(
            "--api",
            help="normal: one packet (sendredpack); group: a fission set of --total-num shares "
            "(sendgroupredpack); mini: a mini-program packet (sendminiprogramhb; the file holds "
            "mini-program openids); workwx: a WeCom packet to members of the merchant's corp "
            "(sendworkwxredpack; the file holds their openids under the corpid).",
            case_sensitive=False,
        ),
    ] = PacketKind.NORMAL,
    total_num: Annotated[
        int,
        typer.Option(
            "--total-num",
            help="Shares of a fission set (3-20; --api group only). --amount is the whole set.",
        ),
    ] = 1,
    risk_info: Annotated[
        str | None,
        typer.Option(
            "--risk-info",
            help="URL-encoded risk_info (posttime, mobile, deviceid, clientversion).",
            show_default=False,
        ),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            "--budget",
            metavar="YUAN",
            help="Never spend more than this; payouts past it are skipped, never sent.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="A unique name (default: the file's name and the time).",
            show_default=False,
        ),
    ] = None,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a campaign (nothing is sent); prints its id.

    Warns when an earlier campaign was created from a file with the same content (naming it).
    The template is checked against every rule of the API now. `--amount` is what a line
    without its own amount gets. Next: `hongbao campaign plan ID`, then `run ID`. Example:

        hongbao campaign create --merchant shop --file users.csv --amount 1.88 \\
            --send-name Acme --act-name Spring --wishing 'Thank you' --remark Enjoy --budget 2000

    A fission campaign: `--api group --total-num 5 --amount 10` (each seed user gets a set
    of 5 shares worth 10 yuan in all). A WeCom campaign: `--api workwx --sender-name HR`
    (or `--agentid 1000002`) instead of `--send-name`.
    """
    from hongbao.engine.campaign import Template, create_campaign, same_file_campaigns

    template = Template(
        amount_fen=yuan(amount),
        send_name=send_name,
        wishing=wishing,
        act_name=act_name,
        remark=remark,
        scene_id=scene_id,
        risk_info=risk_info,
        api=_send_api(api),
        total_num=total_num,
        sender_name=sender_name,
        agentid=agentid,
        sender_header_media_id=sender_header_media_id,
    )
    budget_fen = None if budget is None else yuan(budget, "--budget")
    chosen = name or f"{file.stem}-{SystemClock().now().astimezone(CST):%Y%m%d-%H%M%S}"
    with guard(as_json):
        settings = load(config)
        profile = settings.profile(merchant)
        with open_ledger(settings.ledger_url, create=True) as store:
            campaign = create_campaign(
                store,
                profile,
                name=chosen,
                template=template,
                source=file,
                budget_fen=budget_fen,
            )
            earlier = same_file_campaigns(store, campaign)
    if as_json:
        same = [{"id": c.id, "name": c.name, "state": c.state.value} for c in earlier]
        print_json({"id": campaign.id, "same_file_as": same})
    else:
        typer.echo(campaign.id)
    for other in earlier:
        note(
            f"warning: {file} has the same content as the file of campaign {other.id} "
            f"({other.name!r}, {other.state.value}): planning this one pays its users again"
        )
    if not as_json:
        note(f"campaign {campaign.name!r} created; next: hongbao campaign plan {campaign.id}")


@campaign_app.command("plan")
def plan_command(
    campaign_id: IdArgument,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only check and count; record nothing.")
    ] = False,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check every line of the campaign's file and record one payout per good line.

    Nothing is sent. Bad lines are listed with their numbers and reasons. Planning again
    records only what is missing (a crash while planning is repaired by planning again).
    Example: `hongbao campaign plan 1 --dry-run`
    """
    from hongbao.engine.campaign import plan_campaign

    with guard(as_json):
        settings = load(config)
        with open_ledger(settings.ledger_url) as store:
            campaign = store.get_campaign(campaign_id)
            profile = settings.profile(merchant or campaign.merchant)
            report = plan_campaign(store, profile, campaign_id, dry_run=dry_run)
    _print_plan(report, dry_run, as_json)


@campaign_app.command("run")
def run_command(
    campaign_id: IdArgument,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed",
            help="Hand the payouts to `hongbao worker`s (PostgreSQL ledger) and follow them.",
        ),
    ] = False,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send the campaign's payouts to the end, with a progress bar on a terminal.

    Packets left in flight by a crash are resolved first (query, or a resend with the same
    bill number), then the rest is sent at the merchant's rate. What it waits for (WeChat's
    rate limit, an unreachable host, packets of an interrupted run, daily caps) is shown at
    least every 10 s; a campaign that cannot reach WeChat for 2 minutes is paused with the
    reason. Ctrl-C stops sending and lets the packets in flight resolve (exit code 130; a
    second Ctrl-C stops at once); kill -9 or a power cut? Run it again: it continues where the
    ledger says. Exit codes: 0 when the campaign completed, or waits for a later day (daily
    caps: run it again then); 3 when it stopped with payouts unsent (paused, by hand or for a
    lack of balance, or cancelled). With `--distributed`, the workers send and this command
    defers their jobs and follows them, saying where the jobs are (is a worker running?) and
    what they wait for (see docs/scale-out.md). Example: `hongbao campaign run 1`
    """
    from hongbao.engine.runner import CampaignRunner
    from hongbao.ledger import CampaignState
    from hongbao.ledger.states import OPEN_STATES

    with guard(as_json):
        settings = load(config)
        with open_ledger(settings.ledger_url) as store:
            campaign = store.get_campaign(campaign_id)
            profile = settings.profile(merchant or campaign.merchant)
            with RunDisplay(f"campaign {campaign_id}", enabled=not as_json) as display:
                totals = store.totals_by_state(campaign_id)
                total = sum(t.count for t in totals.values())
                display.show(total - sum(totals[s].count for s in OPEN_STATES), total)
                try:
                    if distributed:
                        from hongbao.engine.distributed import run_distributed

                        running = run_distributed(
                            store,
                            campaign_id,
                            settings=settings.run,
                            progress=display.update,
                            on_status=display.status,
                        )
                        summary = eventloop.run(running)
                    else:
                        runner = CampaignRunner(
                            store,
                            profile,
                            settings=settings.run,
                            progress=display.update,
                            on_status=display.status,
                        )

                        def interrupt() -> None:
                            runner.interrupt()
                            display.status(
                                "interrupted: no new sends; the packets in flight resolve "
                                "(Ctrl-C again to stop at once)"
                            )

                        summary = eventloop.run(runner.run(campaign_id), on_interrupt=interrupt)
                except (eventloop.Interrupted, KeyboardInterrupt):
                    if distributed:
                        note(
                            "interrupted: no longer following; the workers go on "
                            f"(hongbao campaign status {campaign_id})"
                        )
                    else:
                        note(
                            "interrupted at once: packets left in flight are resolved by the "
                            f"next run (hongbao campaign run {campaign_id}); nothing is paid twice"
                        )
                    raise typer.Exit(INTERRUPTED_EXIT) from None
    print_summary(summary, as_json)
    if summary.interrupted:
        raise typer.Exit(INTERRUPTED_EXIT)
    if summary.campaign_state in (CampaignState.PAUSED, CampaignState.CANCELLED):
        raise typer.Exit(int(ExitCode.REFUSED))


@campaign_app.command("status")
def status_command(
    campaign_id: IdArgument, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Counts and amounts of the campaign's payouts by state, and what held some back.

    Example: `hongbao campaign status 1 --json`
    """
    from hongbao.engine.campaign import campaign_status

    with guard(as_json), open_ledger(load(config).ledger_url) as store:
        status = campaign_status(store, campaign_id)
        workers = worker_documents(store, campaign_id)
    _print_status(status, as_json, workers)


@campaign_app.command("pause")
def pause_command(
    campaign_id: IdArgument, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Pause a running campaign: runners stop claiming; packets in flight still resolve."""
    from hongbao.engine.campaign import pause_campaign

    with guard(as_json), open_ledger(load(config).ledger_url) as store:
        paused_now = pause_campaign(store, campaign_id)
        campaign = store.get_campaign(campaign_id)
    message = f"campaign {campaign_id} paused"
    if not paused_now:
        message = f"campaign {campaign_id} was already paused ({campaign.pause_reason})"
    _done(
        {"id": campaign_id, "state": campaign.state.value, "already_paused": not paused_now},
        message,
        as_json,
    )


@campaign_app.command("resume")
def resume_command(
    campaign_id: IdArgument, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Resume a paused campaign (then `hongbao campaign run ID` sends the rest).

    A campaign handed to the workers is run again with `--distributed`, as the hint says.
    """
    from hongbao.engine.campaign import resume_campaign
    from hongbao.engine.distributed import ran_distributed

    with guard(as_json), open_ledger(load(config).ledger_url) as store:
        due = resume_campaign(store, campaign_id)
        state = store.get_campaign(campaign_id).state
        run = f"hongbao campaign run {campaign_id}"
        if ran_distributed(store, campaign_id):
            run += " --distributed"
    _done(
        {"id": campaign_id, "state": state.value, "made_due": due, "next": run},
        f"campaign {campaign_id} resumed; run it: {run}",
        as_json,
    )


@campaign_app.command("cancel")
def cancel_command(
    campaign_id: IdArgument, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Cancel a campaign: unsent payouts are cancelled; those in flight still resolve."""
    from hongbao.engine.campaign import cancel_campaign

    with guard(as_json), open_ledger(load(config).ledger_url) as store:
        cancelled = cancel_campaign(store, campaign_id)
        state = store.get_campaign(campaign_id).state
    _done(
        {"id": campaign_id, "state": state.value, "cancelled": cancelled},
        f"campaign {campaign_id} cancelled: {cancelled} unsent payouts will never be sent",
        as_json,
    )


class RetryState(StrEnum):
    """The settled states `campaign retry --state` takes (those whose money may be unpaid)."""

    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


@campaign_app.command("retry")
def retry_command(
    campaign_id: IdArgument,
    state: Annotated[
        RetryState,
        typer.Option(
            "--state",
            help="Which payouts: FAILED (refused for good), or SKIPPED (over the budget or a "
            "daily cap).",
            case_sensitive=False,
        ),
    ] = RetryState.FAILED,
    err_code: Annotated[
        str | None,
        typer.Option(
            "--err-code",
            metavar="CODE",
            help="Only payouts that ended with this err_code (e.g. FATAL_ERROR).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pay again, under new bill numbers, the users whose payouts failed; nothing is sent yet.

    Each FAILED payout whose money is known never to have left gets one new payout (a new
    bill number, linked to the old one in the ledger); running it twice, or twice at once,
    re-issues each payout once. A payout whose outcome is UNKNOWN is never retried: it may
    have paid (`hongbao track` resolves it). Then `hongbao campaign run ID` sends the new
    payouts within the budget and the daily caps. Example:
    `hongbao campaign retry 1 --err-code FATAL_ERROR`
    """
    from hongbao.engine.retry import retry_payouts
    from hongbao.ledger import PayoutState

    code = err_code.strip().upper() if err_code else None
    from hongbao.api import BaseClient

    with guard(as_json), open_ledger((settings := load(config)).ledger_url) as store:
        merchant = store.get_campaign(campaign_id).merchant
        known = merchant in settings.merchants
        builder = BaseClient(settings.merchant(merchant)) if known else None
        report = retry_payouts(
            store, campaign_id, state=PayoutState(state.value), err_code=code, builder=builder
        )
        campaign_state = store.get_campaign(campaign_id).state
    if as_json:
        print_json(
            {
                "id": campaign_id,
                "state": campaign_state.value,
                "retried": report.retried,
                "retried_fen": report.retried_fen,
                "already_retried": report.already,
                "left_alone": report.unsafe,
                "budget_left_fen": report.budget_left_fen,
                "over_budget": report.over_budget,
            }
        )
        return
    which = f"{state.value}{f' {code}' if code else ''}"
    typer.echo(
        f"campaign {campaign_id}: {report.retried} {which} payouts re-issued with new bill "
        f"numbers ({format_yuan(report.retried_fen)} yuan)"
    )
    if report.already:
        note(f"{report.already} were re-issued by another retry at the same time")
    if report.unsafe:
        note(
            f"{report.unsafe} left alone: nothing proves their money did not leave (see "
            f"`hongbao campaign status {campaign_id}`)"
        )
    if report.over_budget:
        note(
            f"the budget allows {format_yuan(report.budget_left_fen or 0)} yuan more: the "
            "payouts past it will be skipped"
        )
    if report.retried and campaign_state.value == "PAUSED":
        note(
            f"the campaign is paused: hongbao campaign resume {campaign_id}, then hongbao "
            f"campaign run {campaign_id}"
        )
    elif report.retried:
        note(f"next: hongbao campaign run {campaign_id}")


@campaign_app.command("report")
def report_command(
    campaign_id: IdArgument, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """What the campaign paid: sent, received, refunded, failed, unresolved (from the ledger).

    "unresolved" is money in an unknown state (in flight: maybe sent; `hongbao track`
    resolves it); planned and deferred payouts are "not sent yet". Run `hongbao track ID`
    first for the latest received/refunded figures.
    """
    from hongbao.engine.campaign import campaign_report

    with guard(as_json), open_ledger(load(config).ledger_url) as store:
        report = campaign_report(store, campaign_id)
    print_report(report, as_json)


@campaign_app.command("export")
def export_command(
    campaign_id: IdArgument,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The CSV file to write ('-': stdout).", dir_okay=False),
    ] = Path("-"),
    config: ConfigOption = None,
) -> None:
    """Every payout of the campaign as CSV: openid, amount, state, bill number, times, errors.

    Example: `hongbao campaign export 1 -o spring.csv`
    """
    from hongbao.engine.campaign import export_csv

    with guard(False), open_ledger(load(config).ledger_url) as store:
        if str(output) == "-":
            rows = export_csv(store, campaign_id, sys.stdout)
        else:
            with output.open("w", newline="", encoding="utf-8") as out:
                rows = export_csv(store, campaign_id, out)
    if str(output) != "-":
        note(f"{rows} payouts written to {output}")


@campaign_app.command("list")
def list_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Every campaign in the ledger, oldest first."""
    with guard(as_json), open_ledger(load(config).ledger_url) as store:
        campaigns = store.list_campaigns()
    if as_json:
        print_json([_campaign_document(c) for c in campaigns])
        return
    print_table(
        "Campaigns",
        ["id", "name", "merchant", "state", "created"],
        [(c.id, c.name, c.merchant, c.state.value, _time(c.created_at)) for c in campaigns],
    )


# --- output -----------------------------------------------------------------------------------


def _done(document: dict[str, Any], message: str, as_json: bool) -> None:
    if as_json:
        print_json(document)
    else:
        typer.echo(message)


def _time(value: datetime) -> str:
    return value.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")


def _total(total: StateTotal) -> dict[str, int]:
    return {"count": total.count, "amount_fen": total.amount_fen}


def _campaign_document(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "merchant": campaign.merchant,
        "mch_id": campaign.mch_id,
        "state": campaign.state.value,
        "pause_reason": campaign.pause_reason,
        "budget_fen": campaign.budget_fen,
        "committed_fen": campaign.committed_fen,
        "lines": {
            "total": campaign.lines_total,
            "good": campaign.lines_good,
            "bad": campaign.lines_bad,
        },
        "created_at": campaign.created_at.isoformat(),
    }


def _print_plan(report: PlanReport, dry_run: bool, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "id": report.campaign_id,
                "dry_run": dry_run,
                "lines": report.lines,
                "good": report.good,
                "bad": report.bad,
                "bad_lines": [
                    {"line": b.line_no, "reason": b.reason, "text": b.text}
                    for b in report.bad_lines
                ],
                "recorded": report.inserted,
                "already_recorded": report.existing,
                "total_fen": report.total_fen,
                "budget_fen": report.budget_fen,
                "over_budget": report.over_budget,
                "estimated_seconds": round(report.estimated_seconds, 1),
            }
        )
        return
    rows: list[tuple[str, object]] = [
        ("lines", report.lines),
        ("good", report.good),
        ("bad", report.bad),
        ("total", f"{format_yuan(report.total_fen)} yuan"),
    ]
    if report.budget_fen is not None:
        over = " (OVER: the rest will be skipped)" if report.over_budget else ""
        rows.append(("budget", f"{format_yuan(report.budget_fen)} yuan{over}"))
    if not dry_run:
        rows.append(("recorded", f"{report.inserted} new, {report.existing} already"))
    rows.append(("sending takes", f"at least {report.estimated_seconds:.0f} s at the rate cap"))
    print_fields("Dry run" if dry_run else f"Campaign {report.campaign_id} planned", rows)
    if report.bad_lines:
        print_table(
            f"Bad lines (first {min(len(report.bad_lines), _SHOWN_BAD_LINES)} of {report.bad})",
            ["line", "reason", "text"],
            [(b.line_no, b.reason, b.text) for b in report.bad_lines[:_SHOWN_BAD_LINES]],
        )


def _print_status(status: CampaignStatus, as_json: bool, workers: list[dict[str, Any]]) -> None:
    from hongbao.ledger import PayoutState

    campaign = status.campaign
    nonzero = {state: total for state, total in status.totals.items() if total.count}
    problems = [
        {
            "state": p.state.value,
            "err_code": p.err_code,
            "reason": p.reason,
            "count": p.count,
            "amount_fen": p.amount_fen,
        }
        for p in status.problems
    ]
    if as_json:
        document = _campaign_document(campaign)
        # Every state, zeros included: a script reads the same keys whatever happened.
        document["states"] = {s.value: _total(status.totals[s]) for s in PayoutState}
        document["open"] = _total(status.open)
        document["problems"] = problems
        document["workers"] = workers
        print_json(document)
        return
    rows: list[tuple[str, object]] = [
        ("name", campaign.name),
        ("merchant", f"{campaign.merchant} ({campaign.mch_id})"),
        ("state", campaign.state.value),
    ]
    if campaign.pause_reason and campaign.state.value == "PAUSED":
        rows.append(("paused because", campaign.pause_reason))
    if campaign.budget_fen is not None:
        rows.append(
            (
                "budget",
                f"{format_yuan(campaign.committed_fen)} of {format_yuan(campaign.budget_fen)} "
                "yuan committed",
            )
        )
    print_fields(f"Campaign {campaign.id}", rows)
    print_table(
        "Payouts by state",
        ["state", "count", "amount (yuan)"],
        [(s.value, t.count, format_yuan(t.amount_fen)) for s, t in nonzero.items()],
    )
    if problems:
        print_table(
            "Held back or failed",
            ["state", "err_code", "reason", "count"],
            [(p["state"], p["err_code"] or "-", p["reason"] or "-", p["count"]) for p in problems],
        )
    print_workers(workers)


def print_summary(summary: RunSummary, as_json: bool) -> None:
    """How a run ended, with the campaign's payouts by state."""
    from hongbao.ledger import PayoutState

    nonzero = {state: total for state, total in summary.totals.items() if total.count}
    if as_json:
        print_json(
            {
                "id": summary.campaign_id,
                "state": summary.campaign_state.value,
                "stopped": summary.stopped,
                "driven": summary.driven,
                "next_due": summary.next_due.isoformat() if summary.next_due else None,
                "states": {s.value: _total(summary.totals[s]) for s in PayoutState},
            }
        )
        return
    typer.echo(f"campaign {summary.campaign_id}: {summary.stopped}")
    print_table(
        "Payouts by state",
        ["state", "count", "amount (yuan)"],
        [(s.value, t.count, format_yuan(t.amount_fen)) for s, t in nonzero.items()],
    )


def print_report(report: CampaignReport, as_json: bool) -> None:
    """A campaign report: JSON, or a table of counts and amounts."""
    lines = [
        ("sent", "sent", report.sent),
        ("received", "received", report.received),
        ("refunded", "refunded", report.refunded),
        ("waiting", "waiting to be opened", report.waiting),
        ("failed", "failed", report.failed),
        ("skipped", "skipped", report.skipped),
        ("cancelled", "cancelled", report.cancelled),
        ("unresolved", "unresolved (in flight: maybe sent)", report.unresolved),
        ("not_sent_yet", "not sent yet (planned, deferred)", report.not_sent_yet),
    ]
    if as_json:
        document: dict[str, Any] = {"id": report.campaign_id}
        document.update({key: _total(total) for key, _, total in lines})
        print_json(document)
        return
    print_table(
        f"Campaign {report.campaign_id} report",
        ["", "count", "amount (yuan)"],
        [(name, total.count, format_yuan(total.amount_fen)) for _, name, total in lines],
    )
