"""The values the ledger takes and gives back: plain frozen dataclasses, no database types.

A payout's frozen parameters are the exact request parameters of its send call, `nonce_str` and
`mch_billno` included and `sign` excluded, in the order they go on the wire: signing them again
with the merchant's key reproduces a byte-identical request body, which is what makes a resend
with the same bill number safe. The bill number, amount and receiver columns are read from them,
so the row can never disagree with what is sent.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from hongbao.errors import OperationError
from hongbao.ids import validate_bill_no
from hongbao.ledger.states import CampaignState, PayoutState

__all__ = [
    "AddResult",
    "Campaign",
    "CapPolicy",
    "ClaimRequest",
    "ClaimResult",
    "CodeTotal",
    "DailyCaps",
    "EventInfo",
    "FrozenParams",
    "IllegalTransitionError",
    "LedgerLookupError",
    "NewCampaign",
    "NewPayout",
    "OpenGroup",
    "Origin",
    "Payout",
    "PayoutEvent",
    "ReissueError",
    "Scope",
    "SendApi",
    "StateTotal",
    "Transition",
    "freeze_params",
]

FrozenParams = dict[str, str | int]
"""Wire parameters of one send call: name → value, in wire order."""

_REQUIRED = ("mch_id", "mch_billno", "re_openid", "total_amount", "nonce_str")
# Never stored: a signature is derived from the key and must be recomputed, not replayed, and
# the key itself has no business in a database. (A WeCom packet's `workwx_sign` is a request
# field like any other and is kept, so a resend is the same request; the secret it is made
# with never is: docs/protocol.md §15.3.)
_FORBIDDEN = frozenset({"sign", "key", "api_key", "paySign", "secret", "wecom_secret"})


class SendApi(StrEnum):
    """The four send calls; the payout's bill number belongs to exactly one of them."""

    SENDREDPACK = "sendredpack"
    SENDGROUPREDPACK = "sendgroupredpack"
    SENDMINIPROGRAMHB = "sendminiprogramhb"
    SENDWORKWXREDPACK = "sendworkwxredpack"
    """A WeCom red packet (docs/protocol.md §15): it has no `total_num` (always 1)."""


class Origin(StrEnum):
    """Where a payout comes from; its natural key says it (`<origin>:…`)."""

    CAMPAIGN = "campaign"
    """A line of a campaign file: `campaign:<campaign id>:<openid>`."""
    RULE = "rule"
    """A payment that met a rule: `rule:<rule>:<transaction_id>`."""
    ON_DEMAND = "pay"
    """`pay(key=…)` from the merchant's backend: `pay:<mch_id>:<key>`."""

    @property
    def key_prefix(self) -> str:
        """What every natural key of this origin starts with."""
        return f"{self.value}:"


@dataclass(frozen=True, slots=True)
class Scope:
    """The payouts one dispatcher holds; the ledger turns a scope into one WHERE clause.

    Build one with `Scope.campaign`, `Scope.rules`, `Scope.on_demand` or `Scope.ids`. A scope
    names a merchant, or payout ids, or both; `origin` narrows to one origin of payouts
    (campaign payouts with `campaign_id`), `payout_ids` to a job's chunk.

    >>> Scope.rules("1900000109").describe()
    'rule payouts of merchant 1900000109'
    """

    mch_id: str | None = None
    origin: Origin | None = None
    campaign_id: int | None = None
    payout_ids: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.mch_id is None and self.payout_ids is None:
            raise ValueError("a scope needs a merchant or payout ids")
        if self.campaign_id is not None and self.origin not in (None, Origin.CAMPAIGN):
            raise ValueError(f"{self.origin} payouts belong to no campaign")

    @classmethod
    def campaign(cls, mch_id: str, campaign_id: int) -> Scope:
        """The payouts of one campaign."""
        return cls(mch_id, Origin.CAMPAIGN, campaign_id)

    @classmethod
    def rules(cls, mch_id: str) -> Scope:
        """The merchant's rule payouts (满额送)."""
        return cls(mch_id, Origin.RULE)

    @classmethod
    def on_demand(cls, mch_id: str) -> Scope:
        """The merchant's payouts on demand (`pay(key=…)`)."""
        return cls(mch_id, Origin.ON_DEMAND)

    @classmethod
    def ids(cls, payout_ids: Iterable[int], *, campaign_id: int | None = None) -> Scope:
        """Exactly these payouts (a scale-out job's chunk), of one campaign if given."""
        return cls(None, None, campaign_id, frozenset(payout_ids))

    def with_ids(self, payout_ids: Iterable[int]) -> Scope:
        """The same scope, narrowed to (or widened to the new set of) `payout_ids`."""
        return Scope(self.mch_id, self.origin, self.campaign_id, frozenset(payout_ids))

    def describe(self) -> str:
        """The scope in words, for logs and errors."""
        if self.payout_ids is not None:
            what = f"{len(self.payout_ids)} chosen payouts"
        elif self.campaign_id is not None:
            what = f"payouts of campaign {self.campaign_id}"
        elif self.origin is Origin.ON_DEMAND:
            what = "payouts on demand"
        elif self.origin is not None:
            what = f"{self.origin.value} payouts"
        else:
            what = "payouts"
        return what if self.mch_id is None else f"{what} of merchant {self.mch_id}"


class CapPolicy(StrEnum):
    """What a claim does with a payout that a per-user or merchant daily cap refuses."""

    DEFER = "defer"
    """Defer it to 00:00 of the next UTC+8 day (same bill number)."""
    SKIP = "skip"
    """Skip it for good (state SKIPPED, reason recorded)."""


class LedgerLookupError(OperationError, LookupError):
    """No campaign or payout with that id, name or key."""


class IllegalTransitionError(OperationError, ValueError):
    """A change of state the payout or campaign state machine does not allow."""


class ReissueError(OperationError, ValueError):
    """A re-issue with a new bill number was refused: the old bill is not definitively dead."""


def freeze_params(params: Mapping[str, object]) -> FrozenParams:
    """Check and copy send parameters for storage: every key field present, no signature."""
    frozen: dict[str, Any] = dict(params)  # each value's type is checked below
    if not _FORBIDDEN.isdisjoint(frozen):
        raise ValueError(f"frozen parameters must not contain {sorted(_FORBIDDEN & set(frozen))}")
    missing = [name for name in _REQUIRED if frozen.get(name) in (None, "")]
    if "total_num" in frozen and frozen["total_num"] in (None, ""):
        missing.append("total_num")  # optional (a WeCom packet has none), never empty
    if missing:
        raise ValueError(f"frozen parameters lack {missing}")
    for name, value in frozen.items():
        kind = type(value)
        # Exact str and int first: planning freezes a million of them.
        if kind is not str and kind is not int and not _is_wire_value(value):
            raise ValueError(f"parameter {name} must be str or int, not {kind.__name__}")
    validate_bill_no(str(frozen["mch_billno"]))
    for name in ("total_amount", "total_num"):
        if int(frozen.get(name, 1)) <= 0:
            raise ValueError(f"{name} must be positive")
    return frozen


def _is_wire_value(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class NewCampaign:
    """A campaign to create."""

    name: str
    merchant: str
    mch_id: str
    api: SendApi
    template: Mapping[str, Any] = field(default_factory=dict)
    budget_fen: int | None = None
    source_name: str | None = None
    source_digest: str | None = None

    def __post_init__(self) -> None:
        if self.budget_fen is not None and self.budget_fen < 0:
            raise ValueError("budget_fen must be >= 0")


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign as recorded."""

    id: int
    name: str
    merchant: str
    mch_id: str
    api: SendApi
    template: dict[str, Any]
    budget_fen: int | None
    committed_fen: int
    state: CampaignState
    pause_reason: str | None
    source_name: str | None
    source_digest: str | None
    lines_total: int
    lines_good: int
    lines_bad: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewPayout:
    """An intended red packet to record before anything is sent.

    `natural_key` names the intent (`campaign:<id>:<openid>`, `rule:<name>:<transaction_id>`):
    recording the same key twice is a no-op, so planning can be re-run safely.
    """

    natural_key: str
    merchant: str
    api: SendApi
    params: Mapping[str, object]
    campaign_id: int | None = None
    line_no: int | None = None
    state: PayoutState = PayoutState.PLANNED
    reason: str | None = None
    metadata: Mapping[str, str] | None = None
    """The caller's own labels (payouts on demand): kept, returned, never sent to WeChat."""

    def __post_init__(self) -> None:
        if self.state not in (PayoutState.PLANNED, PayoutState.SKIPPED):
            raise ValueError("a new payout starts PLANNED (or SKIPPED when planning refuses it)")
        if not self.natural_key or len(self.natural_key) > 200:
            raise ValueError("natural_key must be 1 to 200 characters")


@dataclass(frozen=True, slots=True)
class Payout:
    """One intended red packet as recorded."""

    id: int
    natural_key: str
    generation: int
    previous_payout_id: int | None
    campaign_id: int | None
    line_no: int | None
    merchant: str
    mch_id: str
    api: SendApi
    mch_billno: str
    params: FrozenParams
    re_openid: str
    total_amount: int
    total_num: int
    state: PayoutState
    reason: str | None
    err_code: str | None
    err_code_des: str | None
    bill_dead: bool
    send_listid: str | None
    attempts: int
    lease_until: datetime | None
    next_attempt_at: datetime | None
    counted_day: date | None
    created_at: datetime
    updated_at: datetime
    claimed_at: datetime | None
    sent_at: datetime | None
    resolved_at: datetime | None
    received_at: datetime | None
    refunded_at: datetime | None
    refund_amount: int | None
    lease_holder: str | None = None
    """The process holding the lease (`hongbao.ledger.holders`), while `lease_until` is live."""

    metadata: Mapping[str, str] | None = None
    """The caller's own labels, as recorded (payouts on demand)."""


@dataclass(frozen=True, slots=True)
class OpenGroup:
    """Open payouts of a scope that share a state, an err_code, a reason and their lease's kind
    (`LedgerStore.open_groups`): what a dispatcher is waiting for, as the ledger sees it."""

    state: PayoutState
    err_code: str | None
    reason: str | None
    leased: bool
    """Their lease is live (they are in flight)."""
    held_here: bool
    """That lease is held by this process."""
    count: int
    next_attempt_at: datetime | None
    """The earliest next attempt among them."""
    lease_until: datetime | None
    """The latest end of their leases."""
    err_code_des: str | None
    """One of their descriptions (WeChat's text, or why nothing reached WeChat)."""


@dataclass(frozen=True, slots=True)
class EventInfo:
    """What to write into the audit trail with a transition: the call and its answer."""

    kind: str = "transition"
    request: Mapping[str, object] | None = None
    response: Mapping[str, object] | None = None
    detail: str | None = None
    err_code: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """One compare-and-set of a payout's state with its event, for `LedgerStore.transition_many`.

    `fields` are the columns the transition sets besides the state (`err_code`, `send_listid`,
    `next_attempt_at`…), as `LedgerStore.transition` takes them.
    """

    payout_id: int
    from_state: PayoutState
    to_state: PayoutState
    event: EventInfo | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PayoutEvent:
    """One row of the append-only audit trail (request and response already masked)."""

    id: int
    payout_id: int
    at: datetime
    kind: str
    from_state: PayoutState | None
    to_state: PayoutState | None
    attempt: int
    err_code: str | None
    detail: str | None
    request: dict[str, Any] | None
    response: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DailyCaps:
    """Per UTC+8 day caps checked when claiming (WeChat's defaults; None = no cap).

    A fission set counts its whole `total_amount` against the seed user: WeChat does not say how
    it counts sets (docs/protocol.md §6.1 [U]), and the upper bound can never overshoot.
    """

    per_user_count: int | None = 10
    per_user_amount_fen: int | None = 100_000
    merchant_amount_fen: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRequest:
    """What to claim, as `LedgerStore.claim` takes it (for `LedgerStore.transition_and_claim`).

    Which payouts: `scope`, or a scope made of `mch_id`, `payout_ids` and `campaign_id`.
    """

    mch_id: str | None = None
    payout_ids: Collection[int] | None = None
    limit: int = 1
    lease_seconds: float = 60.0
    caps: DailyCaps = field(default_factory=DailyCaps)
    on_cap: CapPolicy = CapPolicy.DEFER
    campaign_id: int | None = None
    scope: Scope | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be >= 1")
        if self.scope is None and self.mch_id is None and self.payout_ids is None:
            raise ValueError("claim needs a merchant or payout ids")

    @property
    def target(self) -> Scope:
        """The payouts this claim may take."""
        if self.scope is not None:
            return self.scope
        ids = None if self.payout_ids is None else frozenset(self.payout_ids)
        return Scope(self.mch_id, None, self.campaign_id, ids)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What one claim did: payouts now SENDING (leased), and those the caps or budget refused."""

    claimed: list[Payout]
    deferred: list[int]
    skipped: list[int]


@dataclass(frozen=True, slots=True)
class AddResult:
    """How many new payouts were recorded and how many keys already existed."""

    inserted: int
    existing: int


@dataclass(frozen=True, slots=True)
class StateTotal:
    """A count and an amount in fen."""

    count: int
    amount_fen: int


@dataclass(frozen=True, slots=True)
class CodeTotal:
    """Payouts of one state sharing one err_code and reason: what went wrong, how often."""

    state: PayoutState
    err_code: str | None
    reason: str | None
    count: int
    amount_fen: int
