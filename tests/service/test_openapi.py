"""The API's contract: docs/openapi.json is what the server serves at /openapi.json."""

from __future__ import annotations

import json
from pathlib import Path

from hongbao.service.openapi import document

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_checked_in_openapi_document_is_the_served_one() -> None:
    served = document()

    assert json.loads(DOCS.read_text(encoding="utf-8")) == served, (
        "the API changed: run `python -m hongbao.service.openapi > docs/openapi.json`"
    )


def test_the_document_says_what_every_payout_call_needs() -> None:
    served = document()
    create = served["paths"]["/v1/payouts"]["post"]

    assert served["openapi"].startswith("3.1")
    assert {"Idempotency-Key", "wait"} <= {p["name"] for p in create["parameters"]}
    assert {"201", "200", "400", "401", "409", "422"} <= set(create["responses"])
    assert served["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert create["security"] == [{"HTTPBearer": []}]
