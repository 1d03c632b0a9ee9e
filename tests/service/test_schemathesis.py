"""Property-based tests generated from the live server's `/openapi.json` (schemathesis): every
operation, with requests both valid and not, answers without a 5xx and as its schema says
(status codes, content types, headers and bodies).

One `hongbao serve` (the served simulator over mutual TLS) serves the module's tests, once over a
SQLite ledger and once over PostgreSQL. The operations are read from the live document and
driven through schemathesis's Python API (its pytest loader of a schema from a fixture does not
run on pytest 9)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Err, Ok
from schemathesis.openapi import from_url
from schemathesis.schemas import BaseSchema

from tests.service.servicekit import PACKET, TOKEN, Served, serving, write_config
from tests.sim_served.servedkit import wall_clock_server

pytestmark = pytest.mark.served

EXAMPLES = 50  # per operation and mode: the module takes about 30 s


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`hongbao serve` (sending itself) over a fresh ledger, SQLite or PostgreSQL, its
    merchant's users paid once already (so reads find something)."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    if request.param == "sqlite":
        ledger_url = f"sqlite:///{tmp}/ledger.db"
    else:
        ledger_url = request.getfixturevalue("make_pg_url")()
    with wall_clock_server(13) as server:
        merchant = write_config(server, tmp, ledger_url)
        with serving(merchant.config, tmp / "serve.log", "--send") as process:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for number, openid in enumerate(merchant.users):
                body = {"openid": openid, "amount_fen": 100 + number, **PACKET}
                answer = httpx.post(
                    f"{process.url}/v1/payouts?wait=5",
                    json=body,
                    headers={**headers, "Idempotency-Key": f"seed-{number}"},
                )
                assert answer.status_code == 201, answer.text
            yield process


# A request the schema allows may still break a rule it cannot state (an amount WeChat refuses,
# an unknown merchant's name): 422 names the field and the rule. Any other refusal is a failure.
ACCEPTED = ["2xx", "401", "404", "409", "422"]


@pytest.fixture(scope="module")
def api_schema(served: Served) -> BaseSchema:
    """The live server's OpenAPI document."""
    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}}
    )
    return from_url(f"{served.url}/openapi.json", config=config)


def check_operation(operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode) -> None:
    """Up to `EXAMPLES` generated requests to `operation`, each answer checked."""

    @given(operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # the same requests on every run: CI stays reproducible
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def requests(case: Case[Any]) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=40)

    requests()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_contract(api_schema: BaseSchema, mode: GenerationMode) -> None:
    failures: dict[str, str] = {}
    results = list(api_schema.get_all_operations())
    assert not [result.err() for result in results if isinstance(result, Err)]
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 10  # the payouts', the campaigns' and the operations' routes
    for operation in operations:
        try:
            check_operation(operation, mode)
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label  # nothing there to break
        except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, together
            failures[operation.label] = f"{type(exc).__name__}: {exc}"
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
