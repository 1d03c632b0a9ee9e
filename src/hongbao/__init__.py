"""hongbao: WeChat Pay cash red packets (现金红包) for merchants, paid exactly once."""

import typing

from hongbao.errors import (
    BillConflictError,
    BillFailedError,
    ConfigurationError,
    ConnectError,
    FrequencyLimitError,
    HongbaoError,
    IdempotencyConflict,
    NotSentError,
    OperationError,
    Outcome,
    ProcessingError,
    RefusedError,
    RejectedError,
    ResponseError,
    TransportError,
    UnknownOutcomeError,
    ValidationError,
)

if typing.TYPE_CHECKING:
    from hongbao.api import AsyncClient, Client, Merchant
    from hongbao.engine.ondemand import AsyncPayouts, Payouts, PayoutView

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncPayouts",
    "BillConflictError",
    "BillFailedError",
    "Client",
    "ConfigurationError",
    "ConnectError",
    "FrequencyLimitError",
    "HongbaoError",
    "IdempotencyConflict",
    "Merchant",
    "NotSentError",
    "OperationError",
    "Outcome",
    "PayoutView",
    "Payouts",
    "ProcessingError",
    "RefusedError",
    "RejectedError",
    "ResponseError",
    "TransportError",
    "UnknownOutcomeError",
    "ValidationError",
    "__version__",
]

_LAZY = frozenset({"AsyncClient", "Client", "Merchant"})
_LAZY_ENGINE = frozenset({"AsyncPayouts", "PayoutView", "Payouts"})


def __getattr__(name: str) -> object:
    # The client and the payouts are loaded on first use, so that importing a lower layer (the
    # simulator imports only hongbao.wire and the pure modules) never drags the others in.
    if name in _LAZY:
        import hongbao.api

        return getattr(hongbao.api, name)
    if name in _LAZY_ENGINE:
        import hongbao.engine.ondemand

        return getattr(hongbao.engine.ondemand, name)
    raise AttributeError(f"module 'hongbao' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY | _LAZY_ENGINE)
