"""Injected faults: what `POST /__sim/faults` arms and every API request draws from.

A fault matches one endpoint (or `*`), fires with its `probability` (own seeded generator) and
is spent after `count` firings; without `count` it stays armed until `DELETE /__sim/faults`.

| action | what the caller sees | was the request processed? |
|---|---|---|
| `error` | that `err_code` with the spec's text (`return_code=FAIL` for numeric codes) | no |
| `http_status` | that HTTP status with a non-XML body | no |
| `delay` | the normal answer, `seconds` late (a timeout if the client gives up first) | yes |
| `hang` | no answer for `seconds` (default 3600), then a 504 | no |
| `pay_then_drop` | the connection closes without an answer | yes |
| `processing` | PROCESSING; the record stays SENDING, resolved `seconds` later (600) | yes |

A `processing` fault that matches a gethbinfo call is spent without effect (queries answer).

>>> table = FaultTable()
>>> _ = table.add(parse_fault({"endpoint": "sendredpack", "action": "error",
...                            "err_code": "SYSTEMERROR", "count": 1}))
>>> table.draw("sendredpack").err_code, table.draw("sendredpack")
('SYSTEMERROR', None)
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hongbao.sim.entities import Api

__all__ = ["ENDPOINTS", "Fault", "FaultAction", "FaultSpecError", "FaultTable", "parse_fault"]

ENDPOINTS = frozenset(api.value for api in Api) | {"*"}
_CODE = re.compile(r"[A-Za-z0-9_]{1,32}")


class FaultAction(StrEnum):
    """What an armed fault does to a matching request."""

    ERROR = "error"
    HTTP_STATUS = "http_status"
    DELAY = "delay"
    HANG = "hang"
    PAY_THEN_DROP = "pay_then_drop"
    PROCESSING = "processing"


class FaultSpecError(ValueError):
    """A fault description that cannot be armed; the message says which field and why."""


@dataclass(slots=True)
class Fault:
    """One armed fault."""

    endpoint: str
    action: FaultAction
    err_code: str | None = None
    status: int | None = None
    seconds: float | None = None
    count: int | None = None
    """Firings left; None = until cleared."""
    probability: float = 1.0
    seed: int | None = None
    id: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The fault as the control API shows it."""
        doc: dict[str, Any] = {
            "id": self.id,
            "endpoint": self.endpoint,
            "action": self.action.value,
            "probability": self.probability,
            "count": self.count,
        }
        for name in ("err_code", "status", "seconds", "seed"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        return doc


def _number(doc: Mapping[str, object], name: str) -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultSpecError(f"{name} must be a number, got {value!r}")
    return float(value)


def _integer(doc: Mapping[str, object], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultSpecError(f"{name} must be an integer, got {value!r}")
    return value


def parse_fault(doc: Mapping[str, object]) -> Fault:
    """Validate a fault description (the JSON body of `POST /__sim/faults`)."""
    endpoint = doc.get("endpoint", "*")
    if endpoint not in ENDPOINTS:
        raise FaultSpecError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
    try:
        action = FaultAction(str(doc.get("action")))
    except ValueError:
        choices = [a.value for a in FaultAction]
        got = doc.get("action")
        raise FaultSpecError(f"action must be one of {choices}, got {got!r}") from None
    err_code = doc.get("err_code")
    if err_code is not None and not (isinstance(err_code, str) and _CODE.fullmatch(err_code)):
        raise FaultSpecError(f"err_code must be a code such as 'SYSTEMERROR', got {err_code!r}")
    if action is FaultAction.ERROR and not err_code:
        raise FaultSpecError("action 'error' needs an err_code")
    status = _integer(doc, "status")
    if action is FaultAction.HTTP_STATUS and (status is None or not 100 <= status <= 599):
        raise FaultSpecError("action 'http_status' needs a status between 100 and 599")
    seconds = _number(doc, "seconds")
    if seconds is not None and seconds < 0:
        raise FaultSpecError("seconds must not be negative")
    if action is FaultAction.DELAY and not seconds:
        raise FaultSpecError("action 'delay' needs seconds > 0")
    count = _integer(doc, "count")
    if count is not None and count < 1:
        raise FaultSpecError("count must be at least 1 (omit it to keep the fault armed)")
    probability = _number(doc, "probability")
    if probability is not None and not 0 < probability <= 1:
        raise FaultSpecError("probability must be in (0, 1]")
    seed = _integer(doc, "seed")
    return Fault(
        endpoint=str(endpoint),
        action=action,
        err_code=str(err_code) if err_code else None,
        status=status,
        seconds=seconds,
        count=count,
        probability=1.0 if probability is None else probability,
        seed=seed,
        rng=random.Random(seed),  # noqa: S311 - reproducible chaos, not secrecy
    )


class FaultTable:
    """The armed faults, in the order they were armed; the first that fires wins."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        """Arm `fault` and give it an id."""
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        """The faults still armed."""
        with self._lock:
            return list(self._faults)

    def draw(self, endpoint: str) -> Fault | None:
        """The fault that fires for a request to `endpoint`, if any (spends one firing)."""
        if not self._faults:  # the common case, without taking the lock
            return None
        with self._lock:
            for fault in self._faults:
                if fault.endpoint not in ("*", endpoint):
                    continue
                if fault.probability < 1.0 and fault.rng.random() >= fault.probability:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                return fault
            return None
