"""A scale-out worker in its own process with the chaos test's quick timings, for the tests to
`kill -9` (`hongbao worker` runs the same `run_worker`, with the production timings).

    python -m tests.distributed.worker_proc CONFIG.toml
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hongbao import eventloop
from hongbao.engine.config import load_config
from hongbao.engine.distributed import WorkerOptions, run_worker
from tests.engine.chaos_runner import CHAOS_RUN

STALLED_SECONDS = 3.0


def main(argv: list[str]) -> int:
    """Run a worker on the ledger and merchants of the configuration file `argv[0]`."""
    config = load_config(Path(argv[0]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    options = WorkerOptions(concurrency=16, stalled_seconds=STALLED_SECONDS, settings=CHAOS_RUN)
    eventloop.run(run_worker(config.ledger_url, config.profile, options))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
