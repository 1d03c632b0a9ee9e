"""`hongbao rules …`: rule mode (满额送) — serve the notify endpoint, try a notification, list.

>>> # hongbao rules serve --port 8000        (POST /wechatpay/notify; sends the red packets)
>>> # hongbao rules test notification.xml    (which rule would fire, and why)
>>> # hongbao rules list --json              (hits and budget used, from the ledger)
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hongbao.cli.boundary import ExitCode, FastHelpGroup, guard
from hongbao.cli.options import ConfigOption, JsonOption, load, open_ledger
from hongbao.cli.output import note, print_json, print_table
from hongbao.errors import ConfigurationError
from hongbao.money import format_yuan

if TYPE_CHECKING:
    from hongbao.engine.config import HongbaoConfig
    from hongbao.engine.notify import Preview, RuleMerchant
    from hongbao.engine.notify_verify import NotificationError
    from hongbao.engine.rules import Rule
    from hongbao.ledger import LedgerStore
    from hongbao.ledger.rules_store import RuleSummary

__all__ = ["rules_app"]

rules_app = typer.Typer(
    help="Rule mode (满额送): payments that meet a rule earn a red packet.",
    no_args_is_help=True,
    cls=FastHelpGroup,
)


@rules_app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8000,
    config: ConfigOption = None,
    log_level: Annotated[
        str, typer.Option(help="debug, info (every payment and packet), warning or error.")
    ] = "warning",
    save_notifications: Annotated[
        Path | None,
        typer.Option(
            "--save-notifications",
            metavar="DIR",
            file_okay=False,
            help="Save each verified notification as received, as DIR/<transaction_id>.xml "
            "(samples for `rules test`). Private: they hold WeChat's signature and openids.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Receive payment notifications at POST /wechatpay/notify and send the packets they earn.

    Answers SUCCESS only once the payment and its payouts are committed to the ledger; sends
    from the ledger (after a crash, what was in flight is recovered first). Once listening it
    prints the notify URL. What its payouts wait for (WeChat's rate limit, an unreachable
    host) is logged at least every 10 s (`[run] status_every`). With `--save-notifications
    DIR`, each notification whose signature verifies is kept, byte for byte, in DIR (made
    0700, files 0600): `hongbao rules test DIR/<transaction_id>.xml` then judges it. Stop
    with Ctrl-C or SIGTERM. Example: `hongbao rules serve --host 127.0.0.1 --port 8000 -c
    hongbao.toml`
    """
    import uvicorn

    from hongbao.engine.notify import NOTIFY_PATH, RuleService
    from hongbao.engine.notify import create_app as create_notify_app
    from hongbao.engine.notify_samples import NotificationSamples
    from hongbao.serving import ListeningServer

    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("debug, info, warning or error", param_hint="--log-level")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with guard(as_json=False):
        settings = load(config)
        open_ledger(settings.ledger_url, create=True).close()
        samples = None if save_notifications is None else NotificationSamples(save_notifications)
        service = RuleService.from_config(settings, samples=samples)
        try:
            sock = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            service.close()
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}{NOTIFY_PATH}"
    server = ListeningServer(
        uvicorn.Config(
            create_notify_app(service),
            log_level=level.lower(),
            access_log=level == "DEBUG",
            lifespan="on",
        ),
        lambda: typer.echo(url),
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise typer.Exit(int(ExitCode.ERROR))


@rules_app.command("test")
def try_command(
    file: Annotated[
        Path,
        typer.Argument(help="A payment notification (its XML body).", exists=True, dir_okay=False),
    ],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show which rule a notification would fire, and why each other would not (records nothing).

    The signature is verified with the merchant's key, as the server would: a bad one is
    reported and the exit code is 3. The customer's history comes from the ledger, if there is
    one. Example: `hongbao rules test notification.xml`
    """
    from hongbao.engine.notify import NotifyHandler
    from hongbao.engine.notify_verify import NotificationError
    from hongbao.ledger.rules_store import RuleLedger

    with guard(as_json):
        settings = load(config)
        body = file.read_bytes()
        store = _existing_ledger(settings, as_json)
        try:
            handler = NotifyHandler(
                RuleLedger(store.engine) if store is not None else None,
                _rule_merchants(settings),
            )
            try:
                preview = handler.preview(body)
            except NotificationError as exc:
                _refused(exc, as_json)
        finally:
            if store is not None:
                store.close()
    if as_json:
        print_json(_preview_json(preview))
    else:
        _print_preview(preview)


@rules_app.command("list")
def list_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The configured rules with their hits, packets sent, budget committed, and what the
    payments that earned nothing got instead (below threshold, app, limit…), from the ledger.

    Amounts are in the configuration's units: rewards and budgets in yuan, min_total_fee in
    fen. Example: `hongbao rules list --json`
    """
    from hongbao.ledger.rules_store import MATCH, RuleLedger

    with guard(as_json):
        settings = load(config)
        store = _existing_ledger(settings, as_json)
        summaries: dict[str, RuleSummary] = {}
        if store is not None:
            with store:
                summaries = {s.rule: s for s in RuleLedger(store.engine).summaries()}
    rows = [_rule_json(rule, summaries.get(rule.name)) for rule in settings.rules.values()]
    rows += [_retired_json(s) for name, s in summaries.items() if name not in settings.rules]
    if as_json:
        print_json({"rules": rows})
        return
    if not rows:
        note(f"{settings.path} has no [rules.NAME] section")
        return
    # Each amount in the unit the configuration gives it: rewards and budgets in yuan,
    # min_total_fee in fen (as WeChat's total_fee).
    print_table(
        "rules",
        [
            "rule",
            "merchant",
            "reward (yuan)",
            "min_total_fee (fen)",
            "hits",
            "packets sent",
            "committed (yuan)",
            "budget (yuan)",
            "no packet, because",
        ],
        [
            [
                row["rule"] + ("" if row["configured"] else " (not configured)"),
                row["merchant"],
                row["reward"],
                "" if row["min_total_fee"] is None else row["min_total_fee"],
                row["hits"],
                row["sent"],
                row["committed"],
                row["budget"],
                ", ".join(
                    f"{outcome} {count}"
                    for outcome, count in row["outcomes"].items()
                    if outcome != MATCH
                )
                or "-",
            ]
            for row in rows
        ],
    )


def _existing_ledger(settings: HongbaoConfig, as_json: bool) -> LedgerStore | None:
    """The ledger when it exists and is up to date; else None (reads as an empty history)."""
    from hongbao.ledger import schema_status

    status = schema_status(settings.ledger_url)
    if status.current is None:
        if not as_json:
            note("no ledger yet: judged as if no payment had been recorded")
        return None
    return open_ledger(settings.ledger_url)


def _rule_merchants(settings: HongbaoConfig) -> list[RuleMerchant]:
    from hongbao.engine.notify import RuleMerchant

    names = sorted({rule.merchant for rule in settings.rules.values()})
    if not names:
        raise ConfigurationError(f"{settings.path}: no [rules.NAME] section")
    return [RuleMerchant.from_config(settings, name) for name in names]


def _refused(exc: NotificationError, as_json: bool) -> None:
    message = f"the notification would be answered FAIL: {exc.message}"
    typer.echo(f"refused: {message}", err=True)
    if as_json:
        print_json({"error": message, "rejection": exc.rejection.value, "exit_code": 3})
    raise typer.Exit(int(ExitCode.REFUSED))


def _preview_json(preview: Preview) -> dict[str, Any]:
    from hongbao.engine.rules import Match

    payment = preview.payment
    recorded = preview.recorded
    return {
        "merchant": preview.merchant,
        "transaction_id": payment.transaction_id,
        "appid": payment.appid,
        "openid": payment.openid,
        "trade_type": payment.trade_type,
        "total_fee": payment.total_fee,
        "result_code": payment.result_code,
        "time_end": payment.time_end.isoformat(),
        "rules": [
            {
                "rule": result.rule,
                "fires": True,
                "api": result.api.value,
                "amount": format_yuan(result.amount_fen),
                "amount_fen": result.amount_fen,
                "natural_key": result.key,
            }
            if isinstance(result, Match)
            else {
                "rule": result.rule,
                "fires": False,
                "reason": result.reason.value,
                "detail": result.detail,
                "natural_key": result.key,
            }
            for result in preview.results
        ],
        "recorded": None
        if recorded is None
        else [
            {
                "rule": r.rule,
                "outcome": r.outcome,
                "detail": r.detail,
                "amount_fen": r.amount_fen,
                "payout_id": r.payout_id,
            }
            for r in recorded.results
        ],
    }


def _print_preview(preview: Preview) -> None:
    from hongbao.engine.rules import Match

    payment = preview.payment
    typer.echo(
        f"payment {payment.transaction_id} of merchant {preview.merchant}: "
        f"{format_yuan(payment.total_fee)} yuan by {payment.openid} under {payment.appid} "
        f"({payment.trade_type}, {payment.result_code})"
    )
    for result in preview.results:
        if isinstance(result, Match):
            typer.echo(
                f"  {result.rule}: FIRES — {result.api.value} {format_yuan(result.amount_fen)} yuan"
            )
        else:
            typer.echo(f"  {result.rule}: no — {result.reason.value}: {result.detail}")
    if preview.recorded is not None:
        given = ", ".join(
            f"{r.rule}={r.outcome}" + (f" (payout {r.payout_id})" if r.payout_id else "")
            for r in preview.recorded.results
        )
        typer.echo(f"already recorded (it is not judged again): {given or 'no rule'}")


def _reward(rule: Rule) -> str:
    from hongbao.engine.rules import FixedReward, TieredReward

    reward = rule.reward
    if isinstance(reward, FixedReward):
        return format_yuan(reward.amount_fen)
    low, high = reward.bounds
    kind = "tiers" if isinstance(reward, TieredReward) else "random"
    return f"{format_yuan(low)}–{format_yuan(high)} ({kind})"


def _counts(summary: RuleSummary | None) -> dict[str, Any]:
    from hongbao.ledger import PayoutState

    if summary is None:
        return {"hits": 0, "sent": 0, "committed_fen": 0, "outcomes": {}, "payouts": {}}
    issued = (PayoutState.SENT, PayoutState.RECEIVED, PayoutState.REFUNDED)
    return {
        "hits": summary.hits,
        "sent": sum(summary.payouts[s].count for s in issued if s in summary.payouts),
        "committed_fen": summary.committed_fen,
        "outcomes": dict(sorted(summary.outcomes.items())),
        "payouts": {
            state.value: {"count": total.count, "amount_fen": total.amount_fen}
            for state, total in sorted(summary.payouts.items())
        },
    }


def _rule_json(rule: Rule, summary: RuleSummary | None) -> dict[str, Any]:
    counts = _counts(summary)
    return {
        "rule": rule.name,
        "configured": True,
        "merchant": rule.merchant,
        "reward": _reward(rule),
        "min_total_fee": rule.conditions.min_total_fee,
        **counts,
        "committed": format_yuan(counts["committed_fen"]),
        "budget_fen": rule.budget_fen,
        "budget": format_yuan(rule.budget_fen),
    }


def _retired_json(summary: RuleSummary) -> dict[str, Any]:
    counts = _counts(summary)
    return {
        "rule": summary.rule,
        "configured": False,
        "merchant": summary.merchant,
        "reward": "",
        "min_total_fee": None,
        **counts,
        "committed": format_yuan(counts["committed_fen"]),
        "budget_fen": summary.budget_fen,
        "budget": format_yuan(summary.budget_fen),
    }
