"""`hongbao demo`: a whole campaign against the in-process simulator, no account needed.

The simulator (WeChat's side) and hongbao (the merchant's side) share one simulated clock. The
send pacer keeps WeChat's 1,800 calls a minute exactly as in production, but where it would sleep
it moves the clock forward instead: the pace is real, only the waiting is skipped. Everything the
demo prints comes from hongbao's ledger and the simulator's own records; the demo computes no
figure itself.

Its world is kept in the demo folder: the simulator's state (`sim/`, serve it with
`hongbao sim serve --data DIR/sim`), the ledger (`ledger.db`), the openids file and a
`hongbao.toml` naming both, so `hongbao campaign report 1 -c DIR/hongbao.toml` works afterwards.

>>> # hongbao demo                 (in ./hongbao-demo)
>>> # hongbao demo --dir /tmp/x --users 200 --json
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hongbao.cli.boundary import guard
from hongbao.cli.campaign import print_report
from hongbao.cli.options import JsonOption
from hongbao.cli.output import RunDisplay, note, print_json, print_table
from hongbao.money import format_yuan

if TYPE_CHECKING:
    from hongbao.cli.demo_world import DemoResult

__all__ = ["demo_command"]


def demo_command(
    folder: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="Where the demo keeps its world (its earlier demo files are replaced).",
            file_okay=False,
        ),
    ] = Path("hongbao-demo"),
    users: Annotated[
        int, typer.Option("--users", help="How many users get a packet.", min=1, max=100_000)
    ] = 1000,
    as_json: JsonOption = False,
) -> None:
    """A whole campaign against the built-in simulator: no account, no configuration.

    Creates a simulated merchant and its users, writes their openids to a file, runs a campaign
    with a progress bar, lets 70 % of the users open their packets, moves the simulated clock a
    day on (the rest are refunded), tracks every packet and prints the report from the ledger.
    Example: `hongbao demo`
    """
    from hongbao.cli.demo_world import run_demo, simulator_view

    with guard(as_json):
        if not as_json:
            note(_INTRO.format(users=users, folder=folder))
        with RunDisplay("sending ", enabled=not as_json) as display:
            result = run_demo(folder, users, display)
    simulator = simulator_view(folder, result.mch_id)
    if as_json:
        print_json(_document(result, simulator))
        return
    note(
        f"\nsent at WeChat's pace of 1,800 a minute: {result.simulated_seconds:.0f} s of "
        "simulated time (the pacer moved the clock instead of sleeping)"
    )
    print_report(result.report, as_json=False)
    print_table(
        "The simulator's own records (what WeChat paid)",
        ["status", "count", "amount (yuan)"],
        [(s, v["count"], format_yuan(v["amount_fen"])) for s, v in sorted(simulator.items())],
    )
    note(_OUTRO.format(folder=folder, id=result.campaign_id))


def _document(result: DemoResult, simulator: dict[str, dict[str, int]]) -> dict[str, Any]:
    report = result.report
    figures = {
        "sent": report.sent,
        "received": report.received,
        "refunded": report.refunded,
        "waiting": report.waiting,
        "failed": report.failed,
        "unresolved": report.unresolved,
    }
    return {
        "folder": str(result.folder),
        "campaign_id": result.campaign_id,
        "mch_id": result.mch_id,
        "ledger": result.ledger_url,
        "simulated_seconds": round(result.simulated_seconds, 1),
        "report": {
            name: {"count": total.count, "amount_fen": total.amount_fen}
            for name, total in figures.items()
        },
        "simulator": simulator,
    }


_INTRO = """\
hongbao demo: {users} red packets against the built-in simulator (no real money, no account).
It sends them all at WeChat's pace, lets 70 % of the users open theirs, moves the clock on 25 h
(the rest expire and are refunded), tracks every packet and reports from the ledger.
Time is simulated: the simulator and hongbao share one clock. Its world is kept in {folder}/.
"""

_OUTRO = """
Look around:
  hongbao campaign status {id} -c {folder}/hongbao.toml
  hongbao campaign export {id} -c {folder}/hongbao.toml -o payouts.csv
  hongbao sim serve --data {folder}/sim       (then, in another shell:)
  hongbao query BILL_NO -c {folder}/hongbao.toml
"""
