"""The exception hierarchy. Every error says what happened to the money.

```
HongbaoError                      base: err_code, err_code_des, return_code, raw body, bill number
├── ConfigurationError            bad configuration (missing certificate, key, merchant…)
├── OperationError                hongbao declined the call itself (not WeChat): nothing was sent
│   ├── LedgerLookupError         no campaign or payout with that id (hongbao.ledger; LookupError)
│   ├── IllegalTransitionError    a change of state the state machines forbid (hongbao.ledger)
│   ├── ReissueError              no new bill number: the old one is not dead (hongbao.ledger)
│   ├── BillNoError               a bill number WeChat would refuse, or none mintable (hongbao.ids)
│   └── CampaignError             a campaign cannot be created, planned or run as asked (engine)
├── NotSentError                  the money was NOT sent: fix and resend with the SAME bill number
│   ├── ValidationError           refused locally before anything left (names the field and rule)
│   ├── ConnectError              the request never reached WeChat (connection refused, TLS, DNS)
│   ├── RejectedError             WeChat rejected it before issuing (SIGN_ERROR, PARAM_ERROR, …)
│   │   └── FrequencyLimitError   FREQ_LIMIT: back off, then resend the same bill number
│   ├── BillConflictError         FATAL_ERROR: this bill number was used with other parameters
│   └── IdempotencyConflict       pay(key): the key was paid before with other parameters
├── RefusedError                  WeChat definitively refused (limits, NOTENOUGH, risk control)
│   └── BillFailedError           SEND_FAILED: this bill number is dead; a new one is needed
└── UnknownOutcomeError           maybe sent, maybe not: query or resend the SAME bill number
    ├── TransportError            timeout, reset or HTTP error after the request left
    ├── ResponseError             the answer could not be parsed or its signature is wrong
    └── ProcessingError           PROCESSING: accepted, result pending; query after 20 minutes
```

`IllegalTransitionError`, `ReissueError` and `BillNoError` are also `ValueError`s, and
`LedgerLookupError` a `LookupError`, as they were before they joined the tree.

No message or repr ever contains the API key, a certificate password or a signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

__all__ = [
    "BillConflictError",
    "BillFailedError",
    "ConfigurationError",
    "ConnectError",
    "FrequencyLimitError",
    "HongbaoError",
    "IdempotencyConflict",
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
]


class Outcome(StrEnum):
    """What an error means for the money."""

    NOT_SENT = "not_sent"
    """Nothing was issued; resending the same bill number with the same parameters is safe."""
    REFUSED = "refused"
    """WeChat refused to issue it (for now); query before ever using a new bill number."""
    UNKNOWN = "unknown"
    """It may have been issued; only a query or a same-bill resend can tell."""


class HongbaoError(Exception):
    """Base of every hongbao error."""

    outcome: Outcome = Outcome.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        err_code: str | None = None,
        err_code_des: str | None = None,
        return_code: str | None = None,
        return_msg: str | None = None,
        raw: bytes | None = None,
        mch_billno: str | None = None,
        advice: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.err_code = err_code
        self.err_code_des = err_code_des
        self.return_code = return_code
        self.return_msg = return_msg
        self.raw = raw
        self.mch_billno = mch_billno
        self.advice = advice

    def __str__(self) -> str:
        parts = [self.message]
        if self.err_code and self.err_code not in self.message:
            parts.insert(0, f"[{self.err_code}]")
        if self.mch_billno:
            parts.append(f"(mch_billno {self.mch_billno})")
        if self.advice:
            parts.append(f"— {self.advice}")
        return " ".join(parts)

    def __repr__(self) -> str:
        fields = [f"{self.message!r}"]
        for name in ("err_code", "return_code", "mch_billno"):
            value = getattr(self, name)
            if value is not None:
                fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"


class ConfigurationError(HongbaoError):
    """The configuration is wrong or incomplete; nothing was sent."""

    outcome = Outcome.NOT_SENT


class OperationError(HongbaoError):
    """hongbao declined the call itself: an unknown id, a change of state its rules forbid, a
    campaign it cannot run as asked, a bill number it cannot use. Nothing was sent by the call."""

    outcome = Outcome.NOT_SENT


class NotSentError(HongbaoError):
    """The money was not sent; after fixing the cause, resend with the same bill number."""

    outcome = Outcome.NOT_SENT


class ValidationError(NotSentError):
    """A parameter broke a rule of the API; refused locally, before sending."""

    def __init__(self, message: str, *, field: str, rule: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.field = field
        self.rule = rule


class ConnectError(NotSentError):
    """The request never reached WeChat (connection refused, DNS failure, TLS handshake failed)."""

    failure: str | None
    """The host-failover category: 'connect_timeout', 'dns_error' or 'other_error'."""

    def __init__(self, message: str, *, failure: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.failure = failure


class RejectedError(NotSentError):
    """WeChat rejected the request before issuing anything (signature, certificate, parameters…)."""


class FrequencyLimitError(RejectedError):
    """FREQ_LIMIT: the merchant's send rate is over its cap; back off and resend the same bill."""


class BillConflictError(NotSentError):
    """FATAL_ERROR: this bill number was used before with other parameters (a bug)."""


class IdempotencyConflict(NotSentError):
    """An idempotency key already recorded with other parameters: nothing new was sent."""

    def __init__(self, message: str, *, key: str, fields: Sequence[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.key = key
        self.fields = list(fields)
        """The parameters that differ from the recorded payout's, by `pay`'s names."""


class RefusedError(HongbaoError):
    """WeChat definitively refused to issue (daily limits, balance, risk control, account state)."""

    outcome = Outcome.REFUSED


class BillFailedError(RefusedError):
    """SEND_FAILED: this bill number ended in failure; a new packet needs a new bill number."""


class UnknownOutcomeError(HongbaoError):
    """The packet may or may not have been issued: query it, or resend with the same bill number."""

    outcome = Outcome.UNKNOWN


class TransportError(UnknownOutcomeError):
    """The request may have reached WeChat but no usable answer came back (timeout, reset, 5xx)."""

    failure: str | None
    """The host-failover category, as on `ConnectError` (None when raised by a fake)."""

    def __init__(self, message: str, *, failure: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.failure = failure


class ResponseError(UnknownOutcomeError):
    """WeChat's answer could not be parsed or failed signature verification."""


class ProcessingError(UnknownOutcomeError):
    """PROCESSING: accepted and still being processed; query again after about 20 minutes."""
