"""Errors as RFC 9457 `application/problem+json`, one mapping for every error the API can meet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from hongbao.engine.campaign import CampaignError
from hongbao.engine.ondemand import check_key
from hongbao.errors import (
    ConfigurationError,
    HongbaoError,
    IdempotencyConflict,
    OperationError,
    ValidationError,
)
from hongbao.ledger import LedgerLookupError

__all__ = ["PROBLEM_JSON", "install_handlers", "known_query", "problem"]

PROBLEM_JSON = "application/problem+json"
_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "invalid",
    500: "internal",
    503: "unavailable",
}
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal error",
    503: "Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem answer: `type` is `/problems/<kind>` (documented in docs/http-api.md)."""
    body: dict[str, Any] = {
        "type": f"/problems/{kind or _TYPES.get(status, 'error')}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **{name: value for name, value in extensions.items() if value is not None},
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(location: Sequence[int | str]) -> str:
    # ("body", "metadata", "k") → "metadata.k"; the location's first part says where.
    parts = [str(part) for part in location[1:]] or [str(part) for part in location]
    return ".".join(parts)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(tuple(error.get("loc", ())) == ("header", "Idempotency-Key") for error in exc.errors()):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return problem(400, "the Idempotency-Key header is required", kind="idempotency-key")
        try:
            check_key(key)
        except ValidationError as bad:
            return problem(400, f"Idempotency-Key: {bad.message}", kind="idempotency-key")
    errors = [
        {
            "field": _field(error.get("loc", ())),
            "rule": str(error.get("type", "invalid")),
            "message": str(error.get("msg", "invalid")),
        }
        for error in exc.errors()
    ]
    names = ", ".join(sorted({error["field"] for error in errors}))
    return problem(422, f"the request is invalid: {names}", errors=errors)


async def _hongbao(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HongbaoError)
    if isinstance(exc, IdempotencyConflict):
        return problem(409, exc.message, kind="idempotency-conflict", fields=list(exc.fields))
    if isinstance(exc, ValidationError):
        error = {"field": exc.field, "rule": exc.rule, "message": exc.message}
        return problem(422, exc.message, errors=[error])
    if isinstance(exc, LedgerLookupError):
        return problem(404, exc.message)
    if isinstance(exc, CampaignError):
        if exc.field is not None:
            error = {"field": exc.field, "rule": "campaign", "message": exc.message}
            return problem(422, exc.message, errors=[error])
        return problem(409, exc.message, kind="campaign-state")
    if isinstance(exc, ConfigurationError):
        # An unknown merchant name: the caller chose it.
        return problem(422, exc.message, errors=[{"field": "merchant", "rule": "known",
                                                  "message": exc.message}])
    if isinstance(exc, OperationError):
        return problem(409, exc.message)
    return problem(503, str(exc), kind="upstream")


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


async def known_query(request: Request) -> None:
    """Refuse a query parameter the route does not take: a typo (`stat=SENT`) must not widen
    a list silently."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {param.alias for param in dependant.query_params}
    for child in dependant.dependencies:
        known |= {param.alias for param in child.query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "type": "unknown", "msg": "not a parameter of this call"}
                for name in unknown
            ]
        )


def install_handlers(app: FastAPI) -> None:
    """Answer every error of `app` as a problem."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HongbaoError, _hongbao)
    app.add_exception_handler(HTTPException, _http)
