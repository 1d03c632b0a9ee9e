"""The red packet API: request/response models, the err_code table, Client and AsyncClient.

`BaseClient` is what both clients build on without I/O: the signed parameters of a request
(`send_params`, `jsapi_params`) and the reading of answers, for code that stores a request
before it is sent.
"""

from hongbao.api._base import BaseClient
from hongbao.api.client import AsyncClient, Client
from hongbao.api.merchant import Merchant
from hongbao.api.models import (
    AmountRules,
    Receipt,
    RedpackInfo,
    RedpackStatus,
    SendResult,
    WorkwxRedpackInfo,
    WorkwxSendResult,
    encode_risk_info,
)

__all__ = [
    "AmountRules",
    "AsyncClient",
    "BaseClient",
    "Client",
    "Merchant",
    "Receipt",
    "RedpackInfo",
    "RedpackStatus",
    "SendResult",
    "WorkwxRedpackInfo",
    "WorkwxSendResult",
    "encode_risk_info",
]
