"""`hongbao worker`: a scale-out worker on any machine that reaches the ledger's PostgreSQL.

Start as many as you like, on as many machines; `hongbao campaign run ID --distributed` gives
them work. They pace their sends together under each merchant's `rate_per_minute`. Stop one with
Ctrl-C or SIGTERM; a worker killed outright is noticed by the others after `--stalled-after`
seconds and its jobs run again elsewhere, resolving first what it left in flight.

>>> # hongbao worker --concurrency 16 --config hongbao.toml
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hongbao import eventloop
from hongbao.cli.boundary import guard
from hongbao.cli.options import ConfigOption, load
from hongbao.cli.output import print_table

if TYPE_CHECKING:
    from hongbao.ledger import LedgerStore

__all__ = ["worker_command", "worker_documents"]


def worker_command(
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Jobs this worker runs at once.")
    ] = 16,
    queues: Annotated[
        list[str] | None,
        typer.Option("--queues", help="Queues to take jobs from (repeat; default: hongbao)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="This worker's name in the logs.")
    ] = None,
    stalled_after: Annotated[
        float,
        typer.Option(
            "--stalled-after",
            min=3,
            help="Seconds without a heartbeat after which a worker is taken for dead "
            "(use the same on every worker).",
        ),
    ] = 30.0,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Also log procrastinate's own INFO lines (each job's start and end)."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Run a scale-out worker: take campaign jobs from the ledger's PostgreSQL and send them.

    Needs `[ledger] url` on PostgreSQL (after `hongbao db upgrade`) and the merchants'
    configuration. Runs until Ctrl-C or SIGTERM. Logs one line per job, what it achieved
    (`--verbose` adds procrastinate's own lines). While its jobs wait (WeChat's rate limit, an
    unreachable host, packets of a dead worker, daily caps) it logs why, at least every 10 s
    (`[run] status_every`). Example: `hongbao worker --concurrency 16`
    """
    from hongbao.engine.distributed import QUEUE, WorkerOptions, run_worker

    with guard(as_json=False):
        settings = load(config)
        options = WorkerOptions(
            concurrency=concurrency,
            queues=queues or [QUEUE],
            name=name,
            stalled_seconds=stalled_after,
            settings=settings.run,
            on_demand=tuple(settings.merchants),
        )
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        # procrastinate says INFO for each job's start and end, and each periodic check:
        # hongbao's one line per job says what it achieved.
        logging.getLogger("procrastinate").setLevel(logging.INFO if verbose else logging.WARNING)
        eventloop.run(run_worker(settings.ledger_url, settings.profile, options))


def worker_documents(store: LedgerStore, campaign_id: int) -> list[dict[str, Any]]:
    """Per worker, what it did for the campaign (none on SQLite, or before any worker ran)."""
    if store.engine.dialect.name != "postgresql":
        return []
    from hongbao.engine.distributed import campaign_workers

    return [
        {
            "worker": worker.worker_id,
            "alive": worker.heartbeat_age is not None,
            "heartbeat_age_seconds": worker.heartbeat_age,
            "running_jobs": worker.running,
            "finished_jobs": worker.finished,
            "payouts": worker.payouts,
            "settled": worker.settled,
        }
        for worker in campaign_workers(store, campaign_id)
    ]


def print_workers(documents: list[dict[str, Any]]) -> None:
    """The per-worker table of `campaign status`."""
    if not documents:
        return
    print_table(
        "Workers",
        ["worker", "heartbeat", "jobs running", "jobs done", "payouts settled"],
        [
            (
                "gone" if doc["worker"] is None else doc["worker"],
                "-"
                if doc["heartbeat_age_seconds"] is None
                else f"{doc['heartbeat_age_seconds']:.0f} s ago",
                doc["running_jobs"],
                doc["finished_jobs"],
                f"{doc['settled']} of {doc['payouts']}",
            )
            for doc in documents
        ],
    )
