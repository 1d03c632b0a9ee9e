"""Payouts on demand: one red packet when something happens in the merchant's backend, exactly once.

`AsyncPayouts.pay(key, …)` records the payout under the caller's idempotency key (unique per
merchant, kept forever) before anything is sent, then drives it on the dispatch core:

* the same key with the same parameters returns the same payout, whatever its state — never a
  second packet, however many callers race on the key (the ledger's unique natural key
  `pay:<mch_id>:<key>` lets one insert win; a claim is a lease only one holder gets);
* the same key with other parameters raises `IdempotencyConflict` naming each field;
* `wait=True` claims it (SENDING committed before anything leaves) and drives it to SENT, FAILED
  or a resolved UNKNOWN within `timeout`; a payout left in flight by a process that died is
  taken over once its lease ran out (gethbinfo, or a same-bill resend) — past the timeout the
  current state comes back and the drive goes on in the background;
* `wait=False` records it and returns at once: the merchant's on-demand dispatcher (started
  with the first such call, or `start()`) sends it at the merchant's pace; `hongbao payouts run`
  sends what is left after a crash.

The merchant's pace (`Pace`) is shared by this object's dispatchers; pass `pace(name)` to a
campaign run or a rule dispatcher of the same process to share it with them. On PostgreSQL the
pace is a database row that every process shares.

>>> async with AsyncPayouts.from_config("hongbao.toml") as payouts:  # doctest: +SKIP
...     view = await payouts.pay("order-8812:cashback", "oXYZ", 100, send_name="Acme",
...                              wishing="Thanks", act_name="Cashback", remark="Enjoy")
>>> view.state, view.bill_no  # doctest: +SKIP
(<PayoutState.SENT: 'SENT'>, '1900000109202612050000000001')
"""

from __future__ import annotations

import asyncio
import logging
import string
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, ParamSpec, Self, TypeVar

from hongbao.api import AsyncClient, Merchant
from hongbao.api.codes import SEND_CODES, UNKNOWN_CODE
from hongbao.clock import Clock, SystemClock, beijing_day
from hongbao.defaults import DEFAULT_PAY_TIMEOUT
from hongbao.engine.dispatch import Dispatcher, Pace, build_driver, claim_lease
from hongbao.engine.groupcommit import GroupCommitter
from hongbao.engine.payout import DriveResult, PayoutDriver
from hongbao.engine.rounds import Rounds
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.errors import ConfigurationError, IdempotencyConflict, ValidationError
from hongbao.errors import Outcome as ErrorOutcome
from hongbao.eventloop import in_thread
from hongbao.ledger import (
    LedgerStore,
    NewPayout,
    Origin,
    Payout,
    PayoutState,
    Scope,
    SendApi,
)
from hongbao.ledger.states import OPEN_STATES

__all__ = [
    "KINDS",
    "AsyncPayouts",
    "Kind",
    "PayoutView",
    "Payouts",
    "check_key",
    "check_metadata",
    "on_demand_key",
]

logger = logging.getLogger("hongbao.engine")

A = ParamSpec("A")
T = TypeVar("T")
P = PayoutState

Kind = Literal["normal", "group", "mini", "workwx"]
KINDS: Mapping[Kind, SendApi] = {
    "normal": SendApi.SENDREDPACK,
    "group": SendApi.SENDGROUPREDPACK,
    "mini": SendApi.SENDMINIPROGRAMHB,
    "workwx": SendApi.SENDWORKWXREDPACK,
}
"""The kinds of packet `pay` sends, and their send calls."""
_KIND_OF: Mapping[SendApi, Kind] = {api: kind for kind, api in KINDS.items()}

MAX_KEY = 64
_KEY_CHARS = frozenset(string.printable) - frozenset(string.whitespace)
_SERIALS = 64
"""Bill numbers a process reserves at a time (one commit; unused ones are gaps)."""
DEFAULT_TIMEOUT = DEFAULT_PAY_TIMEOUT

_FIELD_NAMES = {"re_openid": "openid", "total_amount": "amount_fen"}
"""Wire parameter → the name `pay` takes it by, for conflict messages."""
_NOT_COMPARED = frozenset({"mch_billno", "nonce_str"})
"""Minted per payout, not chosen by the caller."""


def check_key(key: str) -> str:
    """An idempotency key: 1 to 64 printable ASCII characters, no spaces."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
        size = len(key) if isinstance(key, str) else "no"
        raise ValidationError(
            f"key must be 1 to {MAX_KEY} characters (it has {size})", field="key", rule="length"
        )
    bad = sorted({ch for ch in key if ch not in _KEY_CHARS})
    if bad:
        raise ValidationError(
            f"key may hold printable ASCII without spaces only, not {''.join(bad)!r}",
            field="key",
            rule="charset",
        )
    return key


MAX_METADATA = 20
"""Labels a payout may carry."""
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    """The caller's labels: up to 20 pairs of strings (keys ≤ 40, values ≤ 500 characters,
    printable); None or empty stands for none."""
    if not metadata:
        return None
    if len(metadata) > MAX_METADATA:
        raise ValidationError(
            f"metadata may hold at most {MAX_METADATA} keys (it has {len(metadata)})",
            field="metadata",
            rule="size",
        )
    for name, value in metadata.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_METADATA_KEY:
            raise ValidationError(
                f"metadata keys must be strings of 1 to {MAX_METADATA_KEY} characters",
                field="metadata",
                rule="key",
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise ValidationError(
                f"metadata[{name!r}] must be a string of at most {MAX_METADATA_VALUE} characters",
                field="metadata",
                rule="value",
            )
        if not (name + value).isprintable():
            raise ValidationError(
                f"metadata[{name!r}] holds control characters", field="metadata", rule="printable"
            )
    return dict(metadata)


def on_demand_key(mch_id: str, key: str) -> str:
    """The natural key of the on-demand payout `key` of merchant `mch_id`."""
    return f"{Origin.ON_DEMAND.key_prefix}{mch_id}:{key}"


def _caller_key(natural_key: str) -> str:
    # pay:<mch_id>:<key> — the mch_id has no colon.
    return natural_key.split(":", 2)[2]


Outcome = Literal["sent", "not_sent", "unknown", "pending"]
_OUTCOMES: Mapping[PayoutState, Outcome] = {
    P.SENT: "sent",
    P.RECEIVED: "sent",
    P.REFUNDED: "sent",
    P.FAILED: "not_sent",
    P.SKIPPED: "not_sent",
    P.CANCELLED: "not_sent",
    P.SENDING: "unknown",
    P.UNKNOWN: "unknown",
    P.PLANNED: "pending",
    P.DEFERRED: "pending",
}


@dataclass(frozen=True, slots=True)
class PayoutView:
    """A payout on demand as the caller sees it (its latest bill number)."""

    id: int
    key: str
    merchant: str
    mch_id: str
    kind: Kind
    bill_no: str
    openid: str
    amount_fen: int
    total_num: int
    state: PayoutState
    outcome: Outcome
    """sent (money issued), not_sent (refused or given up: nothing was paid), unknown (in
    flight or unresolved), pending (recorded, waiting for its turn or a later day)."""
    err_code: str | None
    err_code_des: str | None
    reason: str | None
    send_listid: str | None
    generation: int
    """How many earlier bill numbers WeChat reported FAILED for this key (re-issues)."""
    attempts: int
    next_attempt_at: datetime | None
    """When it is tried (or, once sent, tracked) next."""
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    received_at: datetime | None
    refunded_at: datetime | None
    refund_amount_fen: int | None
    metadata: Mapping[str, str]
    """The caller's labels, as recorded."""
    replayed: bool = field(default=False, compare=False)
    """`pay` found the key paid before: this call recorded nothing and sent nothing new (not
    part of the payout: two views of one payout in one state are equal)."""

    @classmethod
    def of(cls, payout: Payout) -> PayoutView:
        """The view of an on-demand payout row."""
        return cls(
            id=payout.id,
            key=_caller_key(payout.natural_key),
            merchant=payout.merchant,
            mch_id=payout.mch_id,
            kind=_KIND_OF[payout.api],
            bill_no=payout.mch_billno,
            openid=payout.re_openid,
            amount_fen=payout.total_amount,
            total_num=payout.total_num,
            state=payout.state,
            outcome=_OUTCOMES[payout.state],
            err_code=payout.err_code,
            err_code_des=payout.err_code_des,
            reason=payout.reason,
            send_listid=payout.send_listid,
            generation=payout.generation,
            attempts=payout.attempts,
            next_attempt_at=payout.next_attempt_at,
            created_at=payout.created_at,
            updated_at=payout.updated_at,
            sent_at=payout.sent_at,
            received_at=payout.received_at,
            refunded_at=payout.refunded_at,
            refund_amount_fen=payout.refund_amount,
            metadata=dict(payout.metadata or {}),
        )

    @property
    def settled(self) -> bool:
        """Whether the outcome is known for good (sent, or not sent)."""
        return self.state not in OPEN_STATES

    @property
    def error_outcome(self) -> ErrorOutcome | None:
        """What the payout's last error means for the money (`hongbao.errors.Outcome`)."""
        if self.err_code is None:
            return None
        return SEND_CODES.get(self.err_code, UNKNOWN_CODE).outcome


def conflicting_fields(recorded: Payout, api: SendApi, params: Mapping[str, object]) -> list[str]:
    """The fields in which a request differs from the recorded payout, by `pay`'s names."""
    names = sorted(
        _FIELD_NAMES.get(name, name)
        for name in set(recorded.params) | set(params)
        if name not in _NOT_COMPARED and recorded.params.get(name) != params.get(name)
    )
    # A different kind is a different call: its parameters differ as a consequence.
    return ["kind", *names] if recorded.api is not api else names


@dataclass(slots=True)
class _Merchant:
    profile: MerchantProfile
    pace: Pace
    client: AsyncClient | None = None
    driver: PayoutDriver | None = None
    committer: GroupCommitter | None = None
    dispatcher: Dispatcher | None = None
    recorder: Rounds[NewPayout, tuple[Payout, bool]] | None = None
    adder: Rounds[NewPayout, tuple[Payout, bool]] | None = None
    reader: Rounds[str, Payout | None] | None = None
    task: asyncio.Task[None] | None = None
    minting: asyncio.Lock = field(default_factory=asyncio.Lock)
    bills: tuple[date, Iterator[str]] | None = None


class AsyncPayouts:
    """Payouts on demand over a ledger, for one or more merchants; see the module docstring.

    Open it with `from_config` (a hongbao.toml) or with a ledger (URL or `LedgerStore`) and
    the merchants (`Merchant`s, or `MerchantProfile`s to set pace, caps and concurrency); use
    it as an async context manager, or call `aclose()`. `clients` replace the `AsyncClient`s it
    would make (tests pass in-process ones). With `dispatch=False`, payouts paid with
    `wait=False` are only recorded: `hongbao worker`s (or `hongbao payouts run`) send them.
    """

    def __init__(
        self,
        ledger: str | LedgerStore,
        profiles: Merchant | MerchantProfile | Sequence[Merchant | MerchantProfile],
        *,
        settings: RunSettings | None = None,
        clock: Clock | None = None,
        clients: Mapping[str, AsyncClient] | None = None,
        paces: Mapping[str, Pace] | None = None,
        dispatch: bool = True,
    ) -> None:
        given = [profiles] if isinstance(profiles, Merchant | MerchantProfile) else profiles
        # A bare `Merchant` gets the engine's defaults, under its mch_id as its name.
        chosen = [
            p if isinstance(p, MerchantProfile) else MerchantProfile(name=p.mch_id, merchant=p)
            for p in given
        ]
        if not chosen:
            raise ConfigurationError("payouts on demand need at least one merchant")
        self.clock: Clock = clock or SystemClock()
        self._owned = isinstance(ledger, str)
        if isinstance(ledger, str):
            ledger = LedgerStore.open(ledger, clock=self.clock)
        self.store = ledger
        self.settings = settings or RunSettings()
        sqlite = self.store.engine.dialect.name == "sqlite"
        # SQLite has one writer at a time: its calls go through one thread.
        workers = 1 if sqlite else 4 + sum(p.concurrency for p in chosen)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="hongbao-ledger")
        self._clients = dict(clients or {})
        self._merchants: dict[str, _Merchant] = {}
        for profile in chosen:
            pace = (paces or {}).get(profile.name)
            if pace is None:
                pace = (
                    Pace.local(profile, clock=self.clock)
                    if sqlite
                    else Pace.shared(self.store, profile, executor=self._executor)
                )
            self._merchants[profile.name] = _Merchant(profile, pace)
        self._default = chosen[0].name
        self._background: set[Dispatcher] = set()
        self._dispatch = dispatch
        self._closed = False

    @classmethod
    def from_config(
        cls,
        config: str | Path | Any,
        *,
        settings: RunSettings | None = None,
        clock: Clock | None = None,
        clients: Mapping[str, AsyncClient] | None = None,
        dispatch: bool = True,
    ) -> AsyncPayouts:
        """Payouts on demand for every merchant of a configuration (a path or `HongbaoConfig`)."""
        from hongbao.engine.config import HongbaoConfig, load_config

        loaded = config if isinstance(config, HongbaoConfig) else load_config(Path(config))
        profiles = [loaded.profile(name) for name in loaded.merchants]
        return cls(
            loaded.ledger_url,
            profiles,
            settings=settings,
            clock=clock,
            clients=clients,
            dispatch=dispatch,
        )

    def __repr__(self) -> str:
        return f"AsyncPayouts({self.store!r}, merchants={sorted(self._merchants)})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- paying -----------------------------------------------------------------------------

    async def pay(
        self,
        key: str,
        openid: str,
        amount_fen: int,
        *,
        send_name: str | None = None,
        wishing: str,
        act_name: str,
        remark: str,
        scene_id: str | None = None,
        risk_info: str | None = None,
        kind: Kind = "normal",
        total_num: int | None = None,
        sender_name: str | None = None,
        agentid: int | None = None,
        sender_header_media_id: str | None = None,
        merchant: str | None = None,
        metadata: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (past it, the drive goes on)
        on_recorded: Callable[[PayoutView], None] | None = None,
    ) -> PayoutView:
        """Pay one red packet under the idempotency `key`, exactly once (see the module doc).

        Raises `ValidationError` (naming the field) before anything is recorded, and
        `IdempotencyConflict` when `key` was paid with other parameters. With `wait`, returns
        once the payout is settled or `timeout` seconds passed (then in its current state).
        `metadata` (up to 20 string pairs) is kept with the payout and never sent to WeChat.
        `on_recorded` sees the payout once it is in the ledger, before anything is sent. The
        view's `replayed` says whether the key was paid before (this call recorded nothing).
        `kind="workwx"` pays a member of the merchant's WeCom corp (`openid` under the corpid),
        in the name of `sender_name` (optional avatar `sender_header_media_id`) or of the app
        `agentid`, instead of `send_name`.

        >>> view = await payouts.pay("signup:42", "oXYZ", 188, send_name="Acme",
        ...     wishing="Welcome", act_name="Signup", remark="Enjoy")  # doctest: +SKIP
        """
        check_key(key)
        labels = check_metadata(metadata)
        api = KINDS.get(kind)  # a caller without a type checker may pass anything
        if api is None:
            raise ValidationError(
                f"kind must be one of {', '.join(KINDS)}, not {kind!r}", field="kind", rule="enum"
            )
        if timeout < 0:
            raise ValueError("timeout must not be negative")
        entry = self._merchant(merchant)
        client = self._client(entry)
        natural = on_demand_key(entry.profile.mch_id, key)

        def params(bill: str, nonce: str | None) -> dict[str, str | int]:
            return client.send_params(
                api.value,
                mch_billno=bill,
                re_openid=openid,
                total_amount=amount_fen,
                send_name=send_name,
                wishing=wishing,
                act_name=act_name,
                remark=remark,
                total_num=1 if total_num is None else total_num,
                scene_id=scene_id,
                risk_info=risk_info,
                nonce_str=nonce,
                sender_name=sender_name,
                agentid=agentid,
                sender_header_media_id=sender_header_media_id,
            )

        # A replay reads what is recorded (one query a round) and records nothing.
        known = await self._reader(entry).submit(natural)
        if known is not None:
            await self._check_same(known, key, api, labels, params)
            if on_recorded is not None:
                on_recorded(PayoutView.of(known))
            return await self._replayed(entry, known, wait=wait, within=timeout)
        bill = await self._mint(entry)
        wanted = params(bill, None)  # validates every field before anything is recorded
        new = NewPayout(
            natural_key=natural,
            merchant=entry.profile.name,
            api=api,
            params=wanted,
            metadata=labels,
        )
        if wait:
            # Recorded and claimed (SENDING) in one commit, shared with the callers of the
            # same round: this caller sends it at once.
            payout, inserted = await self._recorder(entry).submit(new)
        else:
            # Recorded in one commit with the other callers of the round.
            payout, inserted = await self._adder(entry).submit(new)
        if not inserted:
            await self._check_same(payout, key, api, labels, params)
        if on_recorded is not None:
            on_recorded(PayoutView.of(payout))
        if not inserted:
            return await self._replayed(entry, payout, wait=wait, within=timeout)
        if payout.state in OPEN_STATES:
            if wait:
                payout = await self._settle(entry, payout, claimed=True, within=timeout)
            elif self._dispatch:
                await self.start(entry.profile.name)
        return PayoutView.of(payout)

    async def _check_same(
        self,
        recorded: Payout,
        key: str,
        api: SendApi,
        labels: Mapping[str, str] | None,
        params: Callable[[str, str | None], dict[str, str | int]],
    ) -> None:
        """Raise `IdempotencyConflict` unless the key's first payout had these parameters."""
        first = recorded
        if recorded.generation:
            found = await self._db(self.store.find_payout, recorded.natural_key, 0)
            assert found is not None
            first = found
        differ = conflicting_fields(first, api, params(first.mch_billno, _nonce(first)))
        if (first.metadata or None) != labels:
            differ = sorted([*differ, "metadata"])
        if differ:
            raise IdempotencyConflict(
                f"key {key!r} was paid with other parameters: {', '.join(differ)} differ "
                f"(bill {first.mch_billno}); use a new key for a new packet",
                key=key,
                fields=differ,
                mch_billno=first.mch_billno,
            )

    async def _replayed(
        self, entry: _Merchant, payout: Payout, *, wait: bool, within: float
    ) -> PayoutView:
        """A key paid before: its payout as it stands, driven to an outcome with `wait`."""
        if payout.state in OPEN_STATES:
            if wait:
                payout = await self._settle(entry, payout, claimed=False, within=within)
            elif self._dispatch:
                await self.start(entry.profile.name)
        return replace(PayoutView.of(payout), replayed=True)

    async def _settle(
        self, entry: _Merchant, payout: Payout, *, claimed: bool, within: float
    ) -> Payout:
        """Drive the key's payout on the dispatch core until it is settled, or `within` s.

        `claimed`: this caller recorded it and holds its claim (nobody can have left it in
        flight: no recovery first).
        """
        driver = self._driver(entry)
        natural = payout.natural_key
        dispatcher = Dispatcher(
            driver, Scope.ids([payout.id]), settings=self.settings, concurrency=1
        )

        def settled(result: DriveResult) -> None:
            if not result.lost and result.state not in OPEN_STATES:
                dispatcher.stop()

        dispatcher.on_result = settled
        # The caller's time, not the ledger's clock (a test's clock may stand still).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within

        async def idle(dispatcher: Dispatcher) -> bool:
            found = await self._db(self.store.find_payout, natural)
            assert found is not None
            left = deadline - loop.time()
            if found.state not in OPEN_STATES or left <= 0:
                return False
            due = found.next_attempt_at
            later = due is not None and (due - self.clock.now()).total_seconds() > left
            if found.state is not P.SENDING and later:
                return False  # deferred past the timeout: the dispatcher sends it then
            lease = found.lease_until
            if found.state is P.SENDING and lease is not None and lease <= self.clock.now():
                # Its holder let the lease run out (a crash): take it over now, not at the
                # next periodic recovery.
                await dispatcher.recover()
                return True
            # Held by another caller or process, or deferred: look again shortly.
            await asyncio.sleep(min(left, self.settings.poll_seconds / 4))
            return True

        if claimed and payout.state is P.SENDING:
            dispatcher.adopt([payout])
        run = asyncio.create_task(dispatcher.run(idle, recover=not claimed))
        done, _ = await asyncio.wait({run}, timeout=within)
        if not done:
            # Past the timeout: the drive goes on in the background; what stands now comes back.
            dispatcher.stop()
            self._keep(dispatcher, run)
        else:
            run.result()
        found = await self._reader(entry).submit(natural)
        assert found is not None
        return found

    # -- reading ----------------------------------------------------------------------------

    async def get(
        self, key: str | None = None, *, bill_no: str | None = None, merchant: str | None = None
    ) -> PayoutView | None:
        """The payout of an idempotency key (its latest bill), or of a bill number; or None."""
        entry = self._merchant(merchant)
        mch_id = entry.profile.mch_id
        if (key is None) == (bill_no is None):
            raise ValueError("get takes a key or a bill_no")
        if key is not None:
            found = await self._db(self.store.find_payout, on_demand_key(mch_id, check_key(key)))
        else:
            assert bill_no is not None
            found = await self._db(self.store.find_payout_by_bill, mch_id, bill_no)
            if found is not None and not found.natural_key.startswith(Origin.ON_DEMAND.key_prefix):
                found = None
        return None if found is None else PayoutView.of(found)

    async def list(
        self,
        *,
        state: PayoutState | None = None,
        since: datetime | None = None,
        merchant: str | None = None,
        limit: int = 100,
    ) -> list[PayoutView]:
        """On-demand payouts of a merchant, newest first: in `state`, created `since`."""
        entry = self._merchant(merchant)
        rows = await self._db(
            self.store.list_payouts,
            Scope.on_demand(entry.profile.mch_id),
            state=state,
            since=since,
            limit=limit,
        )
        return [PayoutView.of(row) for row in rows]

    async def package(self, view: PayoutView) -> str | None:
        """The `package` WeChat answered for a sent mini-program packet (for
        `wx.sendBizRedPacket`), from the payout's audit trail; None for other packets."""
        if view.kind != "mini" or view.outcome != "sent":
            return None
        events = await self._db(self.store.events, view.id)
        for event in reversed(events):
            package = (event.response or {}).get("package")
            if isinstance(package, str) and package:
                return package
        return None

    # -- the on-demand dispatcher -----------------------------------------------------------

    def profile(self, merchant: str | None = None) -> MerchantProfile:
        """The profile of a merchant (by name; None: the first)."""
        return self._merchant(merchant).profile

    def client(self, merchant: str | None = None) -> AsyncClient:
        """The merchant's `AsyncClient` (share it with a campaign run of this process)."""
        return self._client(self._merchant(merchant))

    @property
    def merchants(self) -> tuple[str, ...]:
        """The merchants' names."""
        return tuple(self._merchants)

    def pace(self, merchant: str | None = None) -> Pace:
        """The merchant's pace: share it with a campaign run or rule dispatcher of this process."""
        return self._merchant(merchant).pace

    async def start(self, merchant: str | None = None) -> None:
        """Start the merchant's on-demand dispatcher (recovery first) if it is not running."""
        entry = self._merchant(merchant)
        if entry.task is not None and not entry.task.done():
            if entry.dispatcher is not None:
                entry.dispatcher.wake()
            return
        if self._closed:
            raise ConfigurationError("these payouts are closed")
        dispatcher = entry.dispatcher = Dispatcher(
            self._driver(entry),
            Scope.on_demand(entry.profile.mch_id),
            settings=self.settings,
            keep_going=True,
        )

        async def idle(dispatcher: Dispatcher) -> bool:
            await dispatcher.wait_any()
            return True

        entry.task = asyncio.create_task(
            dispatcher.run(idle), name=f"on-demand-{entry.profile.name}"
        )

    async def run_pending(self, merchant: str | None = None) -> int:
        """Send every due on-demand payout of a merchant and resolve those left in flight by a
        crash; returns the drives done. What is not due yet (a daily cap) stays."""
        entry = self._merchant(merchant)
        dispatcher = Dispatcher(
            self._driver(entry), Scope.on_demand(entry.profile.mch_id), settings=self.settings
        )

        async def idle(dispatcher: Dispatcher) -> bool:
            return False

        await dispatcher.run(idle)
        return dispatcher.driven

    async def aclose(self) -> None:
        """Let the drives in flight finish, then close clients and the ledger this opened."""
        self._closed = True
        for entry in self._merchants.values():
            if entry.dispatcher is not None:
                entry.dispatcher.stop()
            if entry.task is not None:
                await asyncio.gather(entry.task, return_exceptions=True)
            if entry.dispatcher is not None:
                await entry.dispatcher.drain(entry.profile.lease_seconds)
            entry.task = entry.dispatcher = None
        for dispatcher in list(self._background):
            await dispatcher.drain(dispatcher.driver.profile.lease_seconds)
        self._background.clear()
        for entry in self._merchants.values():
            for rounds in (entry.recorder, entry.adder, entry.reader):
                if rounds is not None:
                    await rounds.aclose()
            if entry.committer is not None:
                await entry.committer.aclose()
            if entry.client is not None and entry.profile.name not in self._clients:
                await entry.client.aclose()
            entry.client = entry.driver = entry.committer = None
            entry.recorder = entry.adder = entry.reader = None
        self._executor.shutdown(wait=True)
        if self._owned:
            self.store.close()

    # -- helpers ----------------------------------------------------------------------------

    def _merchant(self, name: str | None) -> _Merchant:
        entry = self._merchants.get(name or self._default)
        if entry is None:
            raise ConfigurationError(
                f"no merchant named {name!r} (known: {', '.join(sorted(self._merchants))})"
            )
        return entry

    def _client(self, entry: _Merchant) -> AsyncClient:
        if entry.client is None:
            given = self._clients.get(entry.profile.name)
            entry.client = given or AsyncClient(entry.profile.merchant, clock=self.clock)
        return entry.client

    def _driver(self, entry: _Merchant) -> PayoutDriver:
        if entry.driver is None:
            # Outcomes of concurrent callers commit together: one transaction a round.
            entry.committer = GroupCommitter(self.store, executor=self._executor)
            entry.driver = build_driver(
                self.store,
                entry.profile,
                client=self._client(entry),
                settings=self.settings,
                pace=entry.pace,
                clock=self.clock,
                executor=self._executor,
                committer=entry.committer,
            )
        return entry.driver

    def _recorder(self, entry: _Merchant) -> Rounds[NewPayout, tuple[Payout, bool]]:
        """The merchant's rounds of `record_and_claim`: one commit for the callers of a round."""
        if entry.recorder is None:
            lease = claim_lease(self._driver(entry), 1)
            profile = entry.profile

            async def record(news: list[NewPayout]) -> list[tuple[Payout, bool]]:
                return await self._db(
                    self.store.record_and_claim,
                    news,
                    lease_seconds=lease,
                    caps=profile.caps,
                    on_cap=profile.cap_policy,
                )

            entry.recorder = Rounds(record)
        return entry.recorder

    def _adder(self, entry: _Merchant) -> Rounds[NewPayout, tuple[Payout, bool]]:
        """The merchant's rounds of `record`: one commit for the callers of a round."""
        if entry.adder is None:

            async def record(news: list[NewPayout]) -> list[tuple[Payout, bool]]:
                return await self._db(self.store.record, news)

            entry.adder = Rounds(record)
        return entry.adder

    def _reader(self, entry: _Merchant) -> Rounds[str, Payout | None]:
        """The merchant's rounds of reading payouts by key: one query for a round's callers."""
        if entry.reader is None:

            async def read(keys: list[str]) -> list[Payout | None]:
                found = await self._db(self.store.latest_payouts, keys)
                return [found.get(key) for key in keys]

            entry.reader = Rounds(read)
        return entry.reader

    def _keep(self, dispatcher: Dispatcher, run: asyncio.Task[None]) -> None:
        self._background.add(dispatcher)

        def forget(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                logger.error("payout on demand: drive failed", exc_info=task.exception())

        run.add_done_callback(forget)

    async def _mint(self, entry: _Merchant) -> str:
        """A new bill number of the merchant, from a block this process reserved in advance."""
        async with entry.minting:  # one reservation at a time, not one per waiting caller
            now = self.clock.now()
            day = beijing_day(now)
            if entry.bills is None or entry.bills[0] != day:
                entry.bills = (day, iter(()))
            bill = next(entry.bills[1], None)
            if bill is None:
                mch_id = entry.profile.mch_id
                reserved = await self._db(self.store.reserve_bill_numbers, mch_id, now, _SERIALS)
                entry.bills = (day, iter(reserved))
                bill = next(entry.bills[1])
            return bill

    async def _db(self, work: Callable[A, T], *args: A.args, **kwargs: A.kwargs) -> T:
        return await in_thread(self._executor, work, *args, **kwargs)


def _nonce(payout: Payout) -> str:
    return str(payout.params["nonce_str"])


class Payouts:
    """The blocking twin of `AsyncPayouts`, safe to share between threads.

    Its `AsyncPayouts` lives on an event loop of its own in a background thread, which also runs
    the on-demand dispatcher and finishes drives that outlast a call's timeout. Close it (or use
    `with`) to let them finish.

    >>> with Payouts.from_config("hongbao.toml") as payouts:  # doctest: +SKIP
    ...     view = payouts.pay("order-8812:cashback", "oXYZ", 100, send_name="Acme",
    ...                        wishing="Thanks", act_name="Cashback", remark="Enjoy")
    """

    def __init__(self, opener: Callable[[], AsyncPayouts]) -> None:
        """Prefer `Payouts.open(…)` or `Payouts.from_config(…)`; `opener` builds the
        `AsyncPayouts` inside the background loop."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="hongbao-payouts", daemon=True
        )
        self._thread.start()

        async def opened() -> AsyncPayouts:
            return opener()

        try:
            self._inner = self._call(opened())
        except BaseException:
            self._stop_loop()
            raise

    @classmethod
    def open(
        cls,
        ledger: str | LedgerStore,
        profiles: Merchant | MerchantProfile | Sequence[Merchant | MerchantProfile],
        **options: Any,
    ) -> Payouts:
        """Payouts on demand over `ledger` for these merchants (options as `AsyncPayouts`)."""
        return cls(lambda: AsyncPayouts(ledger, profiles, **options))

    @classmethod
    def from_config(cls, config: str | Path | Any, **options: Any) -> Payouts:
        """Payouts on demand for every merchant of a configuration (see `AsyncPayouts`)."""
        return cls(lambda: AsyncPayouts.from_config(config, **options))

    def __repr__(self) -> str:
        return f"Payouts({self._inner.store!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def store(self) -> LedgerStore:
        """The ledger."""
        return self._inner.store

    def pay(self, key: str, openid: str, amount_fen: int, **options: Any) -> PayoutView:
        """`AsyncPayouts.pay`, blocking."""
        return self._call(self._inner.pay(key, openid, amount_fen, **options))

    def get(
        self, key: str | None = None, *, bill_no: str | None = None, merchant: str | None = None
    ) -> PayoutView | None:
        """`AsyncPayouts.get`, blocking."""
        return self._call(self._inner.get(key, bill_no=bill_no, merchant=merchant))

    def list(self, **options: Any) -> list[PayoutView]:
        """`AsyncPayouts.list`, blocking."""
        return self._call(self._inner.list(**options))

    def pace(self, merchant: str | None = None) -> Pace:
        """`AsyncPayouts.pace`: share it with a campaign run or rule dispatcher of this process."""
        return self._inner.pace(merchant)

    def run_pending(self, merchant: str | None = None) -> int:
        """`AsyncPayouts.run_pending`, blocking."""
        return self._call(self._inner.run_pending(merchant))

    def start(self, merchant: str | None = None) -> None:
        """`AsyncPayouts.start`: the on-demand dispatcher runs in the background thread."""
        self._call(self._inner.start(merchant))

    def close(self) -> None:
        """Let the drives in flight finish, close everything, stop the background thread."""
        if self._loop.is_closed():
            return
        try:
            self._call(self._inner.aclose())
        finally:
            self._stop_loop()

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
