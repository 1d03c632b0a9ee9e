"""hongbao: WeChat Pay cash red packets (现金红包) for merchants, paid exactly once."""

import typing

from hongbao.errors import (
    BillConflictError,
    BillFailedError,
    ConfigurationError,
    ConnectError,
    FrequencyLimitError,
    HongbaoError,
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

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BillConflictError",
    "BillFailedError",
    "Client",
    "ConfigurationError",
    "ConnectError",
    "FrequencyLimitError",
    "HongbaoError",
    "Merchant",
    "NotSentError",
    "OperationError",
    "Outcome",
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


def __getattr__(name: str) -> object:
    # The client is loaded on first use, so that importing a lower layer (the simulator imports
    # only hongbao.wire and the pure modules) never drags the API layer in.
    if name in _LAZY:
        import hongbao.api

        return getattr(hongbao.api, name)
    raise AttributeError(f"module 'hongbao' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
