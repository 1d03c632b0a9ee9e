"""What `hongbao worker` and `hongbao campaign run --distributed` say: one summary line per job,
procrastinate's own INFO lines only with `--verbose`, and what the jobs wait for while they wait —
read from their output in a pipe."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hongbao.engine.distributed import TASK_NAME
from hongbao.engine.job_queries import campaign_jobs
from hongbao.sim.faults import parse_fault
from hongbao.sim.server import CLI_COMMAND, SimServer
from tests.cli.livekit import Child, child_env, spawn
from tests.distributed.distkit import Setup, setup
from tests.sim_served.servedkit import wall_clock_server

pytestmark = [pytest.mark.postgres, pytest.mark.served]

_SUMMARY = re.compile(r" INFO hongbao\.engine: job (\d+) \(campaign (\d+), \d+ payouts?\) in ")


@pytest.fixture
def served() -> Iterator[SimServer]:
    with wall_clock_server(5) as server:
        yield server


def _world(served: SimServer, tmp_path: Path, pg_url: str, payouts: int) -> Setup:
    world = setup(
        served, tmp_path, pg_url, payouts=payouts, rate_per_minute=6000,
        sim_rate_per_minute=10**6, seed=5,
    )  # fmt: skip
    with world.config.open("a", encoding="utf-8") as config:
        config.write("\n[run]\nstatus_every = 0.5\n")
    return world


def _worker(world: Setup, *options: str) -> Child:
    return spawn(
        "worker", "--concurrency", "4", "--stalled-after", "3", *options,
        "-c", str(world.config), terminal=False,
    )  # fmt: skip


def _stop(child: Child) -> str:
    child.process.terminate()
    child.finish()
    return child.output


def _summaries(output: str) -> Counter[tuple[int, int]]:
    return Counter((int(m[1]), int(m[2])) for m in _SUMMARY.finditer(output))


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_the_worker_logs_one_line_per_job_and_procrastinates_only_when_verbose(
    served: SimServer, tmp_path: Path, pg_url: str, verbose: bool
) -> None:
    world = _world(served, tmp_path, pg_url, 6)
    cid = world.campaign_id
    worker = _worker(world, *(["--verbose"] if verbose else []))
    try:
        ran = subprocess.run(
            [*CLI_COMMAND, "campaign", "run", str(cid), "--distributed", "-c", str(world.config)],
            capture_output=True,
            env=child_env(),
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr
        jobs = campaign_jobs(world.store.engine, TASK_NAME, cid)
        deadline = time.monotonic() + 30
        while sum(_summaries(worker.output).values()) < jobs and time.monotonic() < deadline:
            worker.pump()
    finally:
        output = _stop(worker)
        world.store.close()
    summaries = _summaries(output)
    assert jobs >= 2
    assert len(summaries) == jobs, output  # one line for each job …
    assert set(summaries.values()) == {1}  # … and only one
    assert {campaign for _, campaign in summaries} == {cid}
    assert "every payout of the chunk settled" in output
    assert (" INFO procrastinate" in output) is verbose, output


def test_a_distributed_run_and_its_worker_say_what_the_jobs_wait_for(
    served: SimServer, tmp_path: Path, pg_url: str
) -> None:
    world = _world(served, tmp_path, pg_url, 3)
    cid, config = world.campaign_id, str(world.config)
    served.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "error", "err_code": "FREQ_LIMIT"})
    )
    following = spawn("campaign", "run", str(cid), "--distributed", "-c", config, terminal=False)
    worker = None
    try:
        # No worker yet: the run says so, in a progress line, again and again.
        following.wait_for("no worker is running: start `hongbao worker`")
        nobody = f"campaign {cid}: 0 of 3; job"
        following.wait_for_times(nobody, 2)
        worker = _worker(world)
        worker.wait_for(
            f"WARNING hongbao.engine: waiting: campaign {cid}: WeChat answers FREQ_LIMIT"
        )
        following.wait_for("WeChat answers FREQ_LIMIT; next try in")
        following.interrupt()
        assert following.finish() == 130, following.output
    finally:
        if following.process.poll() is None:
            following.process.kill()
        logs = "" if worker is None else _stop(worker)
        world.store.close()
    assert "interrupted: no longer following; the workers go on" in following.output
    said = rf"campaign {cid}: 0 of 3; jobs?: \d running; WeChat answers FREQ_LIMIT; next try in"
    assert re.search(said, following.output), following.output
    assert "next try in" in logs
