"""The campaign operations over HTTP, in-process (the app on Starlette's test client) against
the simulator served over mutual TLS: an upload is a campaign once per key, each operation
answers what the CLI's does, and a template that breaks a rule records nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from hongbao.engine.config import load_config
from hongbao.ledger import LedgerStore
from hongbao.service.app import create_app
from hongbao.service.auth import load_tokens
from tests.service.servicekit import PACKET, TOKEN, Merchant, wait_for, write_config
from tests.sim_served.servedkit import wall_clock_server

pytestmark = pytest.mark.served

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def merchant(tmp_path: Path) -> Iterator[Merchant]:
    with wall_clock_server(31) as server:
        yield write_config(server, tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", users=4)


@pytest.fixture
def api(merchant: Merchant) -> Iterator[TestClient]:
    config = load_config(merchant.config)
    app = create_app(config, tokens=load_tokens(config.api_token_file))
    with TestClient(app) as client:
        yield client


def _upload(api: TestClient, merchant: Merchant, key: str, amount: int, extra: str = "") -> Any:
    lines = "".join(f"{openid}\n" for openid in merchant.users) + extra
    return api.post(
        "/v1/campaigns",
        headers={**AUTH, "Idempotency-Key": key},
        files={"file": ("openids.csv", lines.encode(), "text/csv")},
        data={"name": f"c-{key}", "amount_fen": str(amount), **PACKET},
    )


def test_an_uploaded_file_is_one_campaign_per_key_and_runs_to_the_end(
    api: TestClient, merchant: Merchant
) -> None:
    created = _upload(api, merchant, "spring", 120, extra="not an openid!\n")
    again = _upload(api, merchant, "spring", 120, extra="not an openid!\n")
    other = _upload(api, merchant, "spring", 130, extra="not an openid!\n")

    assert created.status_code == 201, created.text
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (200, "true")
    assert again.json()["id"] == created.json()["id"]
    assert other.status_code == 409
    assert other.json()["fields"] == ["amount_fen"]
    campaign = f"/v1/campaigns/{created.json()['id']}"
    planned = api.post(f"{campaign}/plan", headers=AUTH).json()
    assert (planned["state"], planned["lines_good"], planned["lines_bad"]) == ("PLANNED", 4, 1)
    assert api.post(f"{campaign}/run", headers=AUTH).status_code == 202
    done = wait_for(
        lambda: (found := api.get(campaign, headers=AUTH).json())["state"] == "COMPLETED" and found
    )
    assert done["totals"]["SENT"] == {"count": 4, "amount_fen": 480}
    paused = api.post(f"{campaign}/pause", headers=AUTH)
    assert paused.status_code == 409
    assert paused.headers["content-type"] == "application/problem+json"


def test_pause_resume_and_cancel_answer_as_the_cli_does(
    api: TestClient, merchant: Merchant
) -> None:
    created = api.post(
        "/v1/campaigns",
        headers={**AUTH, "Idempotency-Key": "json-list"},
        json={"name": "listed", "openids": merchant.users, "amount_fen": 100, **PACKET},
    ).json()
    campaign = f"/v1/campaigns/{created['id']}"

    early = api.post(f"{campaign}/run", headers=AUTH)
    api.post(f"{campaign}/plan", headers=AUTH)
    cancelled = api.post(f"{campaign}/cancel", headers=AUTH).json()
    resumed = api.post(f"{campaign}/resume", headers=AUTH)

    assert early.status_code == 409
    assert "not planned yet" in early.json()["detail"]
    assert cancelled["state"] == "CANCELLED"
    assert cancelled["totals"]["CANCELLED"] == {"count": 4, "amount_fen": 400}
    assert resumed.status_code == 409
    assert api.get("/v1/campaigns/999", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_fen": 0}, "amount_fen"),
        ({"send_name": ""}, "send_name"),
        ({"openids": []}, "openids"),
        ({"kind": "huge"}, "kind"),
        ({"surprise": 1}, "surprise"),
        ({"wishing": "祝" * 300}, "wishing"),
    ],
)
def test_a_campaign_that_breaks_a_rule_is_refused_naming_the_field(
    api: TestClient, merchant: Merchant, change: dict[str, object], field: str
) -> None:
    body = {"name": "bad", "openids": merchant.users, "amount_fen": 100, **PACKET, **change}

    answer = api.post("/v1/campaigns", headers={**AUTH, "Idempotency-Key": "bad"}, json=body)

    assert answer.status_code == 422, answer.text
    assert field in {error["field"] for error in answer.json()["errors"]}
    with LedgerStore.open(load_config(merchant.config).ledger_url) as store:
        assert store.list_campaigns() == []


def test_an_unknown_query_parameter_is_refused_not_ignored(api: TestClient) -> None:
    answer = api.get("/v1/payouts", params={"stat": "SENT"}, headers=AUTH)

    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {"field": "stat", "rule": "unknown", "message": "not a parameter of this call"}
    ]
    assert api.get("/v1/payouts", params={"state": "SENT"}, headers=AUTH).status_code == 200
