"""`campaign run` is never silent and never stuck: it says what it waits for in a pipe and on a
terminal, pauses a campaign that cannot reach WeChat, and drains on Ctrl-C."""

from __future__ import annotations

import json
import re
import socket

import pytest

from hongbao.sim.faults import parse_fault
from tests.cli.conftest import Configured, run
from tests.cli.livekit import configure, spawn
from tests.cli.test_campaign import _create, _nonzero, _paid, _users_file

pytestmark = pytest.mark.served

TERMINAL = pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _planned(configured: Configured, count: int) -> int:
    cid = _create(configured, _users_file(configured, count))
    assert run("campaign", "plan", str(cid), "-c", str(configured.config)).exit_code == 0
    return cid


def _status(configured: Configured, cid: int) -> dict[str, object]:
    shown = run("campaign", "status", str(cid), "-c", str(configured.config), "--json")
    assert shown.exit_code == 0, shown.stderr
    document: dict[str, object] = json.loads(shown.stdout)
    return document


@TERMINAL
def test_an_unreachable_host_is_said_every_few_seconds_then_pauses(
    configured: Configured, terminal: bool
) -> None:
    cid = _planned(configured, 50)
    url = f"https://127.0.0.1:{_closed_port()}"
    configure(configured.config, run={"status_every": 0.5, "pause_after": 3}, base_url=url)
    child = spawn("campaign", "run", str(cid), "-c", str(configured.config), terminal=terminal)
    child.wait_for(" payouts DEFERRED, retrying in")
    assert child.finish() == 3, child.output
    out = child.output
    assert f"could not reach {url}" in out
    assert "connection refused" in out.lower()
    assert "the campaign pauses in" in out
    assert f"campaign {cid}: paused: nothing reached WeChat for 3 s" in out
    status = _status(configured, cid)
    assert status["state"] == "PAUSED"
    assert f"could not reach {url}" in str(status["pause_reason"])
    # Nothing left in flight, nothing paid: the rest waits for `resume`.
    assert set(_nonzero(status["states"])) <= {"PLANNED", "DEFERRED"}  # type: ignore[arg-type]
    assert _paid(configured) == {}


@TERMINAL
def test_a_pipe_gets_a_progress_line_while_wechat_answers_freq_limit(
    configured: Configured, terminal: bool
) -> None:
    cid = _planned(configured, 5)
    configure(configured.config, run={"status_every": 0.5})
    configured.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "error", "err_code": "FREQ_LIMIT"})
    )
    child = spawn("campaign", "run", str(cid), "-c", str(configured.config), terminal=terminal)
    child.wait_for("WeChat answers FREQ_LIMIT; next try in")
    if not terminal:
        assert f"campaign {cid}: 0 of 5; WeChat answers FREQ_LIMIT" in child.output
    child.interrupt()
    assert child.finish() == 130, child.output
    said = r"interrupted: \d+ in flight resolved, 0 of 5 sent; run again to continue"
    assert re.search(said, child.output)
    assert _status(configured, cid)["state"] == "INTERRUPTED"


@TERMINAL
def test_ctrl_c_drains_what_is_in_flight_and_a_rerun_finishes(
    configured: Configured, terminal: bool
) -> None:
    count = 60
    cid = _planned(configured, count)
    configure(configured.config, run={"status_every": 0.5})
    # Each send takes half a second: there are always packets in flight to drain.
    configured.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "delay", "seconds": 0.5})
    )
    child = spawn("campaign", "run", str(cid), "-c", str(configured.config), terminal=terminal)
    while len(_paid(configured)) < 10:
        child.pump()
    child.interrupt()
    assert child.finish() == 130, child.output
    paid = len(_paid(configured))
    assert 10 <= paid < count
    assert f"of {count} sent; run again to continue" in child.output
    assert re.search(r"interrupted: \d+ in flight resolved", child.output)
    status = _status(configured, cid)
    assert status["state"] == "INTERRUPTED"
    states = _nonzero(status["states"])  # type: ignore[arg-type]
    # Nothing left in flight: sent, or never sent (those that waited for their turn went back).
    assert set(states) <= {"SENT", "PLANNED", "DEFERRED"}, states
    assert states["SENT"]["count"] == paid
    assert f"{paid} of {count} sent" in child.output

    finished = run("campaign", "run", str(cid), "-c", str(configured.config), "--json")
    assert finished.exit_code == 0, finished.stderr
    assert json.loads(finished.stdout)["state"] == "COMPLETED"
    assert len(_paid(configured)) == count  # everyone once


def test_a_second_ctrl_c_stops_at_once_and_the_rerun_takes_over_without_waiting(
    configured: Configured,
) -> None:
    cid = _planned(configured, 20)
    # Leases far longer than a run waits (max_idle_wait, 300 s): a rerun that waited for them
    # would stop with "waiting: …" instead of completing.
    configure(configured.config, run={"status_every": 0.5}, lease_seconds=900, concurrency=4)
    configured.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "hang", "seconds": 5, "count": 4})
    )
    child = spawn("campaign", "run", str(cid), "-c", str(configured.config), terminal=False)
    child.wait_for("campaign ")  # a first status line: the claims are in flight, hanging
    child.interrupt()
    child.wait_for("Ctrl-C again to stop at once")
    child.interrupt()
    assert child.finish() == 130, child.output
    assert "interrupted at once" in child.output
    assert _nonzero(_status(configured, cid)["states"])["SENDING"]["count"] == 4  # type: ignore[arg-type]

    finished = run("campaign", "run", str(cid), "-c", str(configured.config), "--json")
    assert finished.exit_code == 0, finished.stderr
    assert json.loads(finished.stdout)["state"] == "COMPLETED"
    assert len(_paid(configured)) == 20
