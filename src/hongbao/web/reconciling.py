"""Reconciliations started from the dashboard: one background task per campaign, latest kept.

`hongbao.engine.tracker.reconcile` asks WeChat about every claimed payout, so it needs the
merchant's credentials and takes time (at the merchant's query rate); the dashboard runs it in
the background and shows the latest report of each campaign. Reports live in memory only: the
ledger is not changed by a reconciliation, and `hongbao reconcile` prints the same report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from hongbao.clock import Clock, SystemClock
from hongbao.engine.tracker import ReconcileReport
from hongbao.ledger import Campaign
from hongbao.printable import printable

__all__ = ["ReconcileJob", "Reconciler", "Reconciliations"]

logger = logging.getLogger("hongbao.web")

Reconciler = Callable[[Campaign], Awaitable[ReconcileReport]]
"""Reconciles one campaign against WeChat (built from the configuration by the CLI)."""


@dataclass(slots=True)
class ReconcileJob:
    """One reconciliation of a campaign: running, done (`report`) or failed (`error`)."""

    campaign: Campaign
    started_at: datetime
    report: ReconcileReport | None = None
    error: str | None = None
    done: bool = False


class Reconciliations:
    """The reconciliations of this dashboard process; at most one running per campaign."""

    def __init__(self, reconciler: Reconciler | None, clock: Clock | None = None) -> None:
        self._reconciler = reconciler
        self._clock: Clock = clock or SystemClock()
        self._jobs: dict[int, ReconcileJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        """False when the dashboard was started without the merchants' configuration."""
        return self._reconciler is not None

    def jobs(self) -> dict[int, ReconcileJob]:
        """The latest reconciliation of each campaign, by campaign id."""
        return dict(self._jobs)

    def start(self, campaign: Campaign) -> bool:
        """Start reconciling `campaign` in the background; False when one is running already."""
        if self._reconciler is None:
            raise RuntimeError("reconciliation needs the merchants' configuration")
        running = self._jobs.get(campaign.id)
        if running is not None and not running.done:
            return False
        job = ReconcileJob(campaign, self._clock.now())
        self._jobs[campaign.id] = job
        task = asyncio.create_task(self._run(job, self._reconciler))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, job: ReconcileJob, reconciler: Reconciler) -> None:
        try:
            job.report = await reconciler(job.campaign)
        except Exception as exc:
            # Errors of hongbao never carry a secret; the class and first line say enough.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            job.error = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
            logger.warning(
                "reconciling campaign %s failed: %s", job.campaign.id, printable(job.error)
            )
        finally:
            job.done = True
