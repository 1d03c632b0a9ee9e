"""`hongbao sim …`: serving from the command line, persistence, and the control wrappers."""

from __future__ import annotations

import json
import os
import queue
import re
import ssl
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hongbao.cli.main import app
from hongbao.sim.app import MerchantCredentials
from hongbao.sim.server import CLI_COMMAND, SimServer, SimServerProcess
from tests.sim_served.servedkit import billno, post, send_body, tls_context

pytestmark = pytest.mark.served


def _credentials(created: dict[str, str]) -> MerchantCredentials:
    return MerchantCredentials(
        mch_id=created["mch_id"],
        api_key=created["api_key"],
        appid=created["appid"],
        mini_appid=created["mini_appid"],
        app_appid=created["app_appid"],
        cert_pem=created["cert_pem"].encode(),
        key_pem=created["key_pem"].encode(),
        p12=b"",
    )


def _first_lines(process: subprocess.Popen[str], count: int, timeout: float) -> list[str]:
    """The first `count` lines the process prints, waiting at most `timeout` seconds in all."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for _ in range(count):
            lines.put(stdout.readline())

    threading.Thread(target=read, daemon=True).start()
    return [lines.get(timeout=timeout).strip() for _ in range(count)]


def test_serve_on_port_0_prints_the_url_and_the_ca_file() -> None:
    process = subprocess.Popen(
        [*CLI_COMMAND, "sim", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url, ca_file = _first_lines(process, 2, timeout=20)
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", url)
        assert not url.endswith(":0")
        trust = ssl.create_default_context(cafile=ca_file)
        answer = httpx.get(f"{url}/__sim/ca.pem", verify=trust, timeout=10)
        assert answer.content == Path(ca_file).read_bytes()
    finally:
        process.terminate()
        assert process.wait(20) == 0  # SIGTERM is a graceful stop
        assert process.stdout is not None
        process.stdout.close()


def _control(
    server: SimServerProcess, method: str, path: str, body: object = None, **params: str
) -> httpx.Response:
    return httpx.request(
        method, server.url + path, json=body, params=params, verify=tls_context(server), timeout=10
    )


def test_state_and_ca_persist_across_restarts(tmp_path: Path) -> None:
    with SimServerProcess(tmp_path / "sim") as first:
        created = _control(first, "POST", "/__sim/merchants", {}).json()
        users = _control(
            first, "POST", "/__sim/users", {"appid": created["appid"], "count": 1}
        ).json()
        openid = users["openids"][0]
        creds = _credentials(created)
        cert = (creds.cert_pem, creds.key_pem)
        bill = billno(creds.mch_id)
        assert post(first, send_body(creds, openid, bill), cert=cert)["result_code"] == "SUCCESS"
        ca_before = first.ca_pem

    with SimServerProcess(tmp_path / "sim") as second:
        assert second.ca_pem == ca_before
        ledger = _control(second, "GET", "/__sim/ledger", mch_id=creds.mch_id).json()
        assert [(r["mch_billno"], r["status"]) for r in ledger["records"]] == [(bill, "SENT")]
        # The certificate issued before the restart still identifies the merchant.
        another = billno(creds.mch_id)
        assert (
            post(second, send_body(creds, openid, another), cert=cert)["result_code"] == "SUCCESS"
        )


def _run(server: SimServer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["sim", *args, "--url", server.url, "--ca", str(server.ca_path)]
    )
    return result.exit_code, result.output


def test_control_commands_drive_the_running_simulator(server: SimServer) -> None:
    code, output = _run(server, "merchant", "create", "--json", "--balance-fen", "5000")
    assert code == 0, output
    created = json.loads(output)
    assert server.sim.state.merchant(created["mch_id"]).balance_fen == 5000

    code, output = _run(server, "user", "create", "--appid", created["appid"], "--count", "2")
    assert code == 0, output
    openids = output.split()
    assert len(openids) == 2

    arm = ["error", "--endpoint", "sendredpack", "--err-code", "SYSTEMERROR", "--count", "1"]
    code, output = _run(server, "fault", *arm)
    assert code == 0, output
    assert [f.err_code for f in server.sim.faults.list()] == ["SYSTEMERROR"]
    code, output = _run(server, "fault")
    header, row = output.splitlines()  # a table in a pipe: tab-separated, with its header
    assert (code, header) == (0, "id\tendpoint\taction\tprobability\tcount\terr_code")
    assert row.endswith("\tsendredpack\terror\t1.0\t1\tSYSTEMERROR")
    code, output = _run(server, "fault", "--clear", "--json")
    assert (code, json.loads(output)) == (0, {"cleared": 1})

    creds = _credentials(created)
    bill = billno(creds.mch_id)
    body = send_body(creds, openids[0], bill)
    assert post(server, body, cert=(creds.cert_pem, creds.key_pem))["result_code"] == "SUCCESS"

    code, output = _run(server, "open", "--mch-id", creds.mch_id, "--bill", bill, "--json")
    assert code == 0, output
    assert json.loads(output)["status"] == "RECEIVED"

    code, output = _run(server, "ledger", "--mch-id", creds.mch_id, "--json")
    assert code == 0, output
    assert [(r["mch_billno"], r["status"]) for r in json.loads(output)["records"]] == [
        (bill, "RECEIVED")
    ]

    code, output = _run(server, "clock", "--advance", "86400")
    assert code == 0, output
    assert output.split()[:2] == ["now", "2024-03-16T10:00:00+08:00"]  # plain, in a pipe
    code, output = _run(server, "clock", "--json")
    assert json.loads(output)["now"].startswith("2024-03-16T10:00:00")
    code, output = _run(server, "merchant", "show", creds.mch_id, "--json")
    assert (code, json.loads(output)["mch_id"]) == (0, creds.mch_id)

    code, output = _run(server, "reset")
    assert code == 0, output
    code, output = _run(server, "merchant", "show", creds.mch_id)
    assert code == 1
    assert "no merchant" in output


def test_control_commands_need_the_ca_and_say_so() -> None:
    unset: dict[str, str | None] = {"HONGBAO_SIM_CA": None, "HONGBAO_SIM_DATA": None}
    result = CliRunner().invoke(app, ["sim", "reset", "--url", "https://127.0.0.1:1"], env=unset)
    assert result.exit_code == 1
    assert "CA" in result.output


def test_an_unreachable_simulator_is_reported(server: SimServer) -> None:
    result = CliRunner().invoke(
        app, ["sim", "reset", "--url", "https://127.0.0.1:1", "--ca", str(server.ca_path)]
    )
    assert result.exit_code == 1
    assert "cannot reach the simulator" in result.output


@pytest.mark.parametrize("frozen", [False, True])
def test_the_served_simulator_follows_the_wall_clock_unless_frozen(frozen: bool) -> None:
    process = subprocess.Popen(
        [*CLI_COMMAND, "sim", "serve", "--port", "0", *(["--frozen-clock"] if frozen else [])],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url, ca_file = _first_lines(process, 2, timeout=20)
        trust = ssl.create_default_context(cafile=ca_file)
        now = httpx.get(f"{url}/__sim/clock", verify=trust, timeout=10).json()["now"]
        moved = httpx.post(
            f"{url}/__sim/clock", json={"advance_seconds": 60}, verify=trust, timeout=10
        )
    finally:
        process.terminate()
        assert process.wait(20) == 0
        assert process.stdout is not None
        process.stdout.close()

    drift = abs(datetime.fromisoformat(now) - datetime.now(UTC))
    if frozen:
        assert now.startswith("2024-03-15")
        assert moved.status_code == 200
    else:
        assert drift < timedelta(minutes=5)  # the margin only absorbs a slow start
        assert moved.status_code == 409
