"""The red packet API: request/response models, the err_code table, Client and AsyncClient."""

from hongbao.api.client import AsyncClient, Client
from hongbao.api.merchant import Merchant
from hongbao.api.models import (
    AmountRules,
    Receipt,
    RedpackInfo,
    RedpackStatus,
    SendResult,
    encode_risk_info,
)

__all__ = [
    "AmountRules",
    "AsyncClient",
    "Client",
    "Merchant",
    "Receipt",
    "RedpackInfo",
    "RedpackStatus",
    "SendResult",
    "encode_risk_info",
]
