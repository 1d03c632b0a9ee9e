"""`hongbao serve` as a real process against the simulator served over mutual TLS, on SQLite
and PostgreSQL: idempotency under 100 concurrent clients, a SIGKILL in the middle of a send,
authentication, and what /metrics must never show. The simulator's records of what it really
issued are the ground truth."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from hongbao.sim.entities import ISSUED
from hongbao.sim.faults import parse_fault
from hongbao.sim.server import CLI_COMMAND, SimServer
from tests.service.servicekit import (
    AUTH,
    PACKET,
    ROOT,
    TOKEN,
    Merchant,
    serving,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.served




def _issued(merchant: Merchant) -> Counter[tuple[str, int]]:
    _, records = merchant.server.sim.state.ledger(merchant.mch_id)
    return Counter((r.re_openid, r.total_amount) for r in records if r.status in ISSUED)


def _pay(url: str, key: str, body: dict[str, Any], wait: float = 0, **kw: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/payouts",
        params={"wait": wait},
        json=body,
        headers={**AUTH, "Idempotency-Key": key},
        timeout=kw.pop("timeout", 30),
        **kw,
    )


def test_a_hundred_concurrent_clients_on_one_key_pay_one_packet(
    served: SimServer, ledger_url: str, tmp_path: Path
) -> None:
    merchant = write_config(served, tmp_path, ledger_url)
    openid = merchant.users[0]
    same = {"openid": openid, "amount_fen": 288, **PACKET}
    other = {**same, "amount_fen": 300}
    # Every tenth client sends another body under the same key.
    bodies = [other if n % 10 == 3 else same for n in range(100)]
    start = threading.Barrier(100)

    with serving(merchant.config, tmp_path / "serve.log") as server:

        def call(body: dict[str, Any]) -> tuple[dict[str, Any], httpx.Response]:
            start.wait()
            return body, _pay(server.url, "order-77:cashback", body, wait=10)

        with ThreadPoolExecutor(100) as threads:
            answers = list(threads.map(call, bodies))

    [winner] = [body for body, answer in answers if answer.status_code == 201]
    for body, answer in answers:
        if body == winner:
            assert answer.status_code in (200, 201), answer.text
            assert (answer.status_code == 200) == (
                answer.headers.get("Idempotent-Replayed") == "true"
            )
        else:
            assert answer.status_code == 409, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["fields"] == ["amount_fen"]
    accepted = [answer.json() for _, answer in answers if answer.status_code != 409]
    assert len({payout["id"] for payout in accepted}) == 1
    assert accepted[0]["key"] == "order-77:cashback"
    assert _issued(merchant) == Counter({(openid, winner["amount_fen"]): 1})


def test_a_server_killed_in_the_middle_of_a_send_pays_once_when_asked_again(
    served: SimServer, ledger_url: str, tmp_path: Path
) -> None:
    merchant = write_config(served, tmp_path, ledger_url)
    body = {"openid": merchant.users[0], "amount_fen": 520, **PACKET}
    # WeChat pays, then answers 30 s late: the server dies between SENDING and the answer.
    served.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "delay", "seconds": 30, "count": 1})
    )
    log = tmp_path / "serve.log"
    with serving(merchant.config, log) as first:
        def pay_until_killed() -> None:
            with contextlib.suppress(httpx.HTTPError):
                _pay(first.url, "refund-9", body, wait=20, timeout=60)

        waiting = threading.Thread(target=pay_until_killed, daemon=True)
        waiting.start()

        def sending() -> bool:
            answer = httpx.get(f"{first.url}/v1/payouts", params={"key": "refund-9"}, headers=AUTH)
            data = answer.json()["data"]
            return bool(data) and data[0]["state"] == "SENDING"

        wait_for(sending)
        wait_for(lambda: sum(_issued(merchant).values()) == 1)
        first.kill()
    served.sim.faults.clear()

    with serving(merchant.config, log) as second:
        again = _pay(second.url, "refund-9", body, wait=25)

    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["state"] == "SENT"
    assert _issued(merchant) == Counter({(merchant.users[0], 520): 1})


def test_only_a_right_bearer_token_opens_the_api(served: SimServer, tmp_path: Path) -> None:
    merchant = write_config(served, tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    with serving(merchant.config, tmp_path / "serve.log") as server:
        body = {"openid": merchant.users[0], "amount_fen": 100, **PACKET}
        plain = httpx.post(f"{server.url}/v1/payouts", json=body, headers={"Idempotency-Key": "a"})
        wrong = httpx.post(
            f"{server.url}/v1/payouts",
            json=body,
            headers={"Idempotency-Key": "a", "Authorization": "Bearer " + "x" * 32},
        )
        listing = httpx.get(f"{server.url}/v1/payouts")
        right = _pay(server.url, "a", body, wait=5)
        health = [httpx.get(f"{server.url}{path}").status_code for path in ("/healthz", "/readyz")]

    assert [plain.status_code, wrong.status_code, listing.status_code] == [401, 401, 401]
    assert plain.headers["WWW-Authenticate"].startswith("Bearer")
    assert plain.headers["content-type"] == "application/problem+json"
    assert right.status_code == 201
    assert health == [200, 200]
    assert sum(_issued(merchant).values()) == 1  # the refused calls recorded nothing


def test_serve_refuses_a_non_loopback_address_without_tokens(
    served: SimServer, tmp_path: Path
) -> None:
    merchant = write_config(served, tmp_path, f"sqlite:///{tmp_path / 'l.db'}", tokens=False)
    done = subprocess.run(
        [*CLI_COMMAND, "serve", "-c", str(merchant.config), "--host", "0.0.0.0", "--port", "0"],  # noqa: S104
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "[api] token_file" in done.stderr
    assert "serve on" not in done.stdout


def test_metrics_show_no_openid_no_key_and_no_token(served: SimServer, tmp_path: Path) -> None:
    merchant = write_config(served, tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    with serving(merchant.config, tmp_path / "serve.log", "--access-log") as server:
        paid = [
            _pay(server.url, f"secret-key-{n}", {"openid": openid, "amount_fen": 100, **PACKET},
                 wait=10).json()
            for n, openid in enumerate(merchant.users[:3])
        ]  # fmt: skip
        served.sim.faults.add(
            parse_fault({"endpoint": "sendredpack", "action": "error", "err_code": "FREQ_LIMIT",
                         "count": 1})
        )  # fmt: skip
        limited = _pay(server.url, "secret-key-9", {"openid": merchant.users[3], "amount_fen": 100,
                                                    **PACKET}, wait=3).json()  # fmt: skip
        text = httpx.get(f"{server.url}/metrics").text

    assert limited["error"] == {
        "code": "FREQ_LIMIT", "message": limited["error"]["message"], "outcome": "not_sent"
    }
    assert 'hongbao_payouts{merchant="shop",state="SENT"} 3.0' in text
    sends = 'hongbao_wechat_requests_total{api="sendredpack",merchant="shop",result="SUCCESS"} 3.0'
    assert sends in text
    assert 'hongbao_freq_limit_answers_total{merchant="shop"} 1.0' in text
    assert 'hongbao_wechat_request_seconds_count{api="sendredpack",merchant="shop"} 4.0' in text
    for secret in [TOKEN, merchant.mch_id, *merchant.users, *(p["bill_no"] for p in paid)]:
        assert secret not in text
    assert "secret-key" not in text
    log = (tmp_path / "serve.log").read_text()
    for secret in [TOKEN, *merchant.users, "secret-key"]:
        assert secret not in log
    logged = [json.loads(line.split(" hongbao.service.access ", 1)[1])
              for line in log.splitlines() if " hongbao.service.access " in line]  # fmt: skip
    assert {"method": "POST", "path": "/v1/payouts", "status": 201} in [
        {name: entry[name] for name in ("method", "path", "status")} for entry in logged
    ]


@pytest.mark.postgres
def test_scale_out_the_server_records_and_a_worker_sends(
    served: SimServer, pg_url: str, tmp_path: Path
) -> None:
    from hongbao.engine.distributed import install_schema
    from hongbao.ledger import LedgerStore

    merchant = write_config(served, tmp_path, pg_url)
    with LedgerStore.open(pg_url) as store:
        install_schema(store.engine)
    body = {"openid": merchant.users[0], "amount_fen": 666, **PACKET}
    with serving(merchant.config, tmp_path / "serve.log") as server:
        recorded = _pay(server.url, "scale-1", body).json()
        # Nobody sends it yet: this server only records.
        assert recorded["state"] == "PLANNED"
        assert sum(_issued(merchant).values()) == 0
        worker = subprocess.Popen(
            [*CLI_COMMAND, "worker", "-c", str(merchant.config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "worker.log").open("w"),
        )
        try:
            sent = wait_for(
                lambda: (
                    httpx.get(f"{server.url}/v1/payouts/{recorded['id']}", headers=AUTH).json()
                    if sum(_issued(merchant).values()) else None
                )
            )
            wait_for(
                lambda: httpx.get(f"{server.url}/v1/payouts/{recorded['id']}", headers=AUTH)
                .json()["state"] == "SENT"
            )
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    assert sent["key"] == "scale-1"
    assert _issued(merchant) == Counter({(merchant.users[0], 666): 1})
