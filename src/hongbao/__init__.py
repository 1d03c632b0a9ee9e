"""hongbao: WeChat Pay cash red packets (现金红包) for merchants, paid exactly once."""

from hongbao.errors import (
    BillConflictError,
    BillFailedError,
    ConfigurationError,
    ConnectError,
    FrequencyLimitError,
    HongbaoError,
    NotSentError,
    Outcome,
    ProcessingError,
    RefusedError,
    RejectedError,
    ResponseError,
    TransportError,
    UnknownOutcomeError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "BillConflictError",
    "BillFailedError",
    "ConfigurationError",
    "ConnectError",
    "FrequencyLimitError",
    "HongbaoError",
    "NotSentError",
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
