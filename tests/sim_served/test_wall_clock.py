"""`hongbao sim serve --wall-clock`: a served simulator whose time is the real time.

A load test of the FREQ_LIMIT window (a sliding 60 s) needs the simulator's clock to pass as
WeChat's does; the default served simulator is frozen, so that tests move its time by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from hongbao.sim.server import SimServerProcess
from tests.sim_served.servedkit import tls_context


def _clock(server: SimServerProcess, body: object = None) -> httpx.Response:
    method = "GET" if body is None else "POST"
    return httpx.request(
        method, server.url + "/__sim/clock", json=body, verify=tls_context(server), timeout=10
    )


def test_a_wall_clock_simulator_tells_the_real_time_and_cannot_be_moved() -> None:
    with SimServerProcess(wall_clock=True) as server:
        now = datetime.fromisoformat(_clock(server).json()["now"])
        moved = _clock(server, {"advance_seconds": 60})

    # The frozen default starts in 2024; this one is today (the margin only absorbs a slow start).
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=5)
    assert moved.status_code == 409
    assert "wall clock" in moved.json()["error"]


def test_the_default_served_simulator_stays_frozen_until_moved() -> None:
    with SimServerProcess() as server:
        before = datetime.fromisoformat(_clock(server).json()["now"])
        moved = _clock(server, {"advance_seconds": 60}).json()
        after = datetime.fromisoformat(_clock(server).json()["now"])

    assert datetime.fromisoformat(moved["now"]) == after == before + timedelta(seconds=60)
