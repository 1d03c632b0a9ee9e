"""A campaign handed to the workers is resumed with a hint to run it `--distributed` again."""

from __future__ import annotations

from pathlib import Path

import pytest

from hongbao.engine.campaign import pause_campaign
from hongbao.engine.distributed import defer_campaign, ran_distributed
from tests.cli.conftest import run
from tests.distributed.distkit import setup
from tests.sim_served.servedkit import wall_clock_server

pytestmark = [pytest.mark.postgres, pytest.mark.served]


def test_resuming_a_distributed_campaign_says_to_run_it_distributed(
    pg_url: str, tmp_path: Path
) -> None:
    with wall_clock_server(7) as server:
        world = setup(
            server, tmp_path, pg_url, payouts=3, rate_per_minute=60, sim_rate_per_minute=1800,
            seed=7,
        )  # fmt: skip
        cid, cfg = world.campaign_id, ("-c", str(world.config))
        assert not ran_distributed(world.store, cid)
        defer_campaign(world.store, cid)
        assert ran_distributed(world.store, cid)
        pause_campaign(world.store, cid)

        resumed = run("campaign", "resume", str(cid), *cfg)
        world.store.close()

    assert resumed.exit_code == 0, resumed.stderr
    assert f"run it: hongbao campaign run {cid} --distributed" in resumed.stdout
