"""`hongbao payouts list | show | run`: the payouts on demand in the ledger (`hongbao send`,
`Payouts.pay(key=…)`).

>>> # hongbao payouts list --state UNKNOWN --json
>>> # hongbao payouts show order-8812:cashback
>>> # hongbao payouts run      # send what waits, resolve what a crash left in flight
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hongbao.cli.boundary import FastHelpGroup, guard
from hongbao.cli.options import ConfigOption, JsonOption, MerchantOption, load, open_ledger
from hongbao.cli.output import note, print_fields, print_json, print_table
from hongbao.money import format_yuan

if TYPE_CHECKING:
    from hongbao.engine.config import HongbaoConfig
    from hongbao.engine.ondemand import AsyncPayouts, PayoutView

__all__ = ["payout_document", "payouts_app"]

payouts_app = typer.Typer(
    name="payouts",
    help="Payouts on demand (hongbao send, Payouts.pay): list, show, run what waits.",
    no_args_is_help=True,
    cls=FastHelpGroup,
)

_STATES = (
    "PLANNED",
    "SENDING",
    "SENT",
    "RECEIVED",
    "REFUNDED",
    "FAILED",
    "DEFERRED",
    "UNKNOWN",
    "SKIPPED",
    "CANCELLED",
)


def payout_document(view: PayoutView) -> dict[str, Any]:
    """A payout on demand as `--json` prints it (times in ISO 8601)."""
    document: dict[str, Any] = {
        "key": view.key,
        "payout_id": view.id,
        "merchant": view.merchant,
        "mch_id": view.mch_id,
        "kind": view.kind,
        "mch_billno": view.bill_no,
        "re_openid": view.openid,
        "total_amount_fen": view.amount_fen,
        "total_num": view.total_num,
        "state": view.state.value,
        "outcome": view.outcome,
        "err_code": view.err_code,
        "err_code_des": view.err_code_des,
        "reason": view.reason,
        "send_listid": view.send_listid,
        "generation": view.generation,
        "attempts": view.attempts,
    }
    for name in (
        "next_attempt_at",
        "created_at",
        "updated_at",
        "sent_at",
        "received_at",
        "refunded_at",
    ):
        value: datetime | None = getattr(view, name)
        document[name] = value.isoformat() if value is not None else None
    document["refund_amount_fen"] = view.refund_amount_fen
    return document


def _payouts(config: HongbaoConfig, merchant: str | None) -> AsyncPayouts:
    from hongbao.engine.ondemand import AsyncPayouts

    store = open_ledger(config.ledger_url)
    return AsyncPayouts(store, config.profile(merchant))


@payouts_app.command("list")
def list_command(
    state: Annotated[
        str | None,
        typer.Option("--state", help=f"Only payouts in this state ({', '.join(_STATES)})."),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option("--since", help="Only payouts recorded since (ISO 8601, UTC if no zone)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The merchant's payouts on demand, newest first.

    Example: `hongbao payouts list --state UNKNOWN --json`
    """
    from datetime import UTC

    from hongbao.eventloop import run
    from hongbao.ledger import PayoutState

    if state is not None and state.upper() not in _STATES:
        raise typer.BadParameter(
            f"{state!r} is not one of {', '.join(_STATES)}", param_hint="--state"
        )
    chosen = PayoutState(state.upper()) if state is not None else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with guard(as_json):
        payouts = _payouts(load(config), merchant)

        async def work() -> list[PayoutView]:
            async with payouts:
                return await payouts.list(state=chosen, since=since, limit=limit)

        try:
            views = run(work())
        finally:
            payouts.store.close()
    if as_json:
        print_json([payout_document(view) for view in views])
        return
    print_table(
        "Payouts on demand",
        ["key", "state", "amount", "openid", "mch_billno", "err_code", "created"],
        [
            (
                view.key,
                view.state.value,
                format_yuan(view.amount_fen),
                view.openid,
                view.bill_no,
                view.err_code or "-",
                view.created_at.isoformat(timespec="seconds"),
            )
            for view in views
        ],
    )


@payouts_app.command("show")
def show_command(
    key: Annotated[
        str | None, typer.Argument(help="The payout's idempotency key.", show_default=False)
    ] = None,
    bill_no: Annotated[
        str | None,
        typer.Option("--bill-no", help="Find it by bill number instead.", show_default=False),
    ] = None,
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One payout on demand, by key or bill number (exit 1 when there is none).

    Example: `hongbao payouts show order-8812:cashback --json`
    """
    from hongbao.eventloop import run

    if (key is None) == (bill_no is None):
        raise typer.BadParameter("give a KEY or --bill-no", param_hint="KEY")
    with guard(as_json):
        payouts = _payouts(load(config), merchant)

        async def work() -> PayoutView | None:
            async with payouts:
                return await payouts.get(key, bill_no=bill_no)

        try:
            view = run(work())
        finally:
            payouts.store.close()
    if view is None:
        typer.echo(
            f"error: no payout on demand with {f'key {key}' if key else f'bill {bill_no}'}",
            err=True,
        )
        raise typer.Exit(1)
    if as_json:
        print_json(payout_document(view))
        return
    document = payout_document(view)
    print_fields(
        f"Payout {view.key}",
        [(name, "-" if value is None else value) for name, value in document.items()],
    )


@payouts_app.command("run")
def run_command(
    merchant: MerchantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send the payouts on demand that wait (recorded with wait=False, deferred and due now),
    after resolving those a crash left in flight; exits when nothing more is due.

    Example: `hongbao payouts run`
    """
    from hongbao.eventloop import run

    with guard(as_json):
        payouts = _payouts(load(config), merchant)

        async def work() -> tuple[int, list[PayoutView]]:
            async with payouts:
                driven = await payouts.run_pending()
                return driven, await payouts.list(limit=1000)

        try:
            driven, views = run(work())
        finally:
            payouts.store.close()
    waiting = [view for view in views if not view.settled]
    if as_json:
        print_json({"driven": driven, "open": [payout_document(view) for view in waiting]})
        return
    note(f"{driven} drives done; {len(waiting)} payouts still open")
    if waiting:
        print_table(
            "Still open",
            ["key", "state", "err_code", "next attempt"],
            [
                (
                    view.key,
                    view.state.value,
                    view.err_code or "-",
                    view.next_attempt_at.isoformat(timespec="seconds")
                    if view.next_attempt_at
                    else "-",
                )
                for view in waiting
            ],
        )
