"""`drive_payout` through random sequences of simulator faults, crashes and time (hypothesis).

Each rule is something a dispatcher or the world does: claim and drive a payout, recover the
stale ones, re-issue dead bills, arm a fault in the simulator, kill the process at the next
request or right after the next ledger write, move the clock, drain or refill the balance.
The dispatcher commits its outcomes alone or, as the runner does, through a group committer.
A crash is a `BaseException` nothing on the way up handles; afterwards only the ledger is left
(a fresh driver, fresh pacers). After every step the invariants are checked against the
simulator's ledger, the ground truth; at the end the world turns calm and everything must
settle: every intent paid exactly once (SENT or later in the ledger), for its amount.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hongbao.clock import FrozenClock
from hongbao.engine.groupcommit import GroupCommitter
from hongbao.engine.payout import PayoutDriver, drive_payout
from hongbao.engine.settings import MerchantProfile
from hongbao.ledger import (
    ClaimResult,
    EventInfo,
    LedgerStore,
    Payout,
    PayoutState,
    Transition,
    upgrade,
)
from hongbao.sim.app import Simulator
from hongbao.sim.entities import ISSUED
from hongbao.sim.faults import parse_fault
from hongbao.sim.state import MerchantSettings
from tests.engine.enginekit import (
    START,
    Bench,
    Crash,
    CrashingTransport,
    merchant_of,
)

T = TypeVar("T")
P = PayoutState

USERS = 6
IN_FLIGHT = frozenset({P.SENDING, P.UNKNOWN})
ISSUED_LEDGER = frozenset({P.SENT, P.RECEIVED, P.REFUNDED})
FAULTS: dict[str, dict[str, Any]] = {
    "systemerror": {"action": "error", "err_code": "SYSTEMERROR"},
    "freq_limit": {"action": "error", "err_code": "FREQ_LIMIT"},
    "bad_gateway": {"action": "http_status", "status": 502},
    "hang": {"action": "hang"},
    "pay_then_drop": {"action": "pay_then_drop"},
    "processing": {"action": "processing", "seconds": 600},
}
"""Faults that never lie about a bill: WeChat's own answers come from the simulator's model."""
STORE_CALLS = ("claim", "claim_stale", "transition", "record_event", "reissue")

_SIM: Simulator | None = None


def shared_simulator() -> Simulator:
    """One simulator for every example (its CA is costly to make); `reset()` between them."""
    global _SIM
    if _SIM is None:
        _SIM = Simulator(clock=FrozenClock(START), seed=3)
    _SIM.reset()
    return _SIM


def run(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


class CrashingStore(LedgerStore):
    """The ledger as the dying process sees it: one armed call dies before or after it commits."""

    armed: tuple[str, str] | None = None

    def _around(self, name: str, call: Callable[[], T]) -> T:
        armed = self.armed
        if armed is not None and armed[0] == name:
            self.armed = None
            if armed[1] == "before":
                raise Crash(f"killed before {name}")
            call()
            raise Crash(f"killed after {name} committed")
        return call()

    def claim(self, *args: Any, **kwargs: Any) -> ClaimResult:
        return self._around("claim", lambda: super(CrashingStore, self).claim(*args, **kwargs))

    def claim_stale(self, *args: Any, **kwargs: Any) -> list[Payout]:
        return self._around(
            "claim_stale", lambda: super(CrashingStore, self).claim_stale(*args, **kwargs)
        )

    def transition(self, *args: Any, **kwargs: Any) -> bool:
        return self._around(
            "transition", lambda: super(CrashingStore, self).transition(*args, **kwargs)
        )

    def transition_many(
        self, transitions: Sequence[Transition], *, wait: bool = True
    ) -> list[bool]:
        # A group committer's round is the "transition" write of its drives.
        return self._around(
            "transition",
            lambda: super(CrashingStore, self).transition_many(transitions, wait=wait),
        )

    def record_event(self, payout_id: int, event: EventInfo) -> None:
        self._around(
            "record_event", lambda: super(CrashingStore, self).record_event(payout_id, event)
        )

    def reissue(self, payout_id: int, params: Any, *, retry: bool = False) -> Payout:
        return self._around(
            "reissue", lambda: super(CrashingStore, self).reissue(payout_id, params, retry=retry)
        )


class PayoutMachine(RuleBasedStateMachine):
    """One merchant, a handful of intents, and a dispatcher that may die at any step."""

    def __init__(self) -> None:
        super().__init__()
        sim = shared_simulator()
        assert isinstance(sim.clock, FrozenClock)
        self.clock = sim.clock
        self.tmp = Path(tempfile.mkdtemp(prefix="hongbao-machine-"))
        url = f"sqlite:///{self.tmp / 'ledger.db'}"
        upgrade(url)
        creds = sim.create_merchant(MerchantSettings())
        self.ledger = LedgerStore.open(url, clock=self.clock)
        self.store = CrashingStore(self.ledger.engine, clock=self.clock)
        profile = MerchantProfile(name="shop", merchant=merchant_of(creds), lease_seconds=60)
        self.bench = Bench(
            sim=sim,
            clock=self.clock,
            creds=creds,
            store=self.ledger,
            profile=profile,
            users=sim.add_users(creds.appid, USERS),
            tmp=self.tmp,
        )
        self.transport = CrashingTransport(self.bench.transport())
        self.intents: dict[str, int] = {}
        self.commits = "alone"
        self.driver = self._new_driver()

    @initialize(commits=st.sampled_from(["alone", "rounds", "inline rounds"]))
    def choose_commits(self, commits: str) -> None:
        """Commit each outcome alone, or in rounds through a group committer on a thread, or
        (the runner's way on SQLite) on the event loop's thread."""
        self.commits = commits
        self.driver = self._new_driver()

    def _new_driver(self) -> PayoutDriver:
        """What a restarted process has: the ledger, and nothing it held in memory."""
        self.store.armed = None
        self.transport.crash = None
        committer = None
        if self.commits != "alone":
            committer = GroupCommitter(self.store, inline=self.commits == "inline rounds")
        client = self.bench.client(transport=self.transport)
        return self.bench.driver(client, store=self.store, committer=committer)

    def _survive(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            run(work())
        except Crash:
            self.driver = self._new_driver()

    # -- the dispatcher ---------------------------------------------------------------------

    @precondition(lambda self: len(self.intents) < USERS)
    @rule(amount=st.integers(100, 400))
    def intend(self, amount: int) -> None:
        openid = self.bench.users[len(self.intents)]
        self.bench.add_payout(openid, amount)
        self.intents[openid] = amount

    @rule()
    def claim_and_drive(self) -> None:
        async def work() -> None:
            batch = await self.driver.db(
                self.store.claim, self.bench.mch_id, limit=1, lease_seconds=60
            )
            for payout in batch.claimed:
                await drive_payout(payout, self.driver)

        self._survive(work)

    @rule()
    def recover(self) -> None:
        async def work() -> None:
            stale = await self.driver.db(
                self.store.claim_stale, self.bench.mch_id, limit=USERS, lease_seconds=60
            )
            for payout in stale:
                await drive_payout(payout, self.driver)

        self._survive(work)

    @rule()
    def reissue_dead(self) -> None:
        async def work() -> None:
            for payout in self.ledger.dead_bills(mch_id=self.bench.mch_id, max_generation=2):
                await self.driver.reissue(payout)

        self._survive(work)

    # -- the world --------------------------------------------------------------------------

    @rule(
        fault=st.sampled_from(sorted(FAULTS)),
        endpoint=st.sampled_from(["sendredpack", "gethbinfo", "*"]),
        count=st.integers(1, 3),
    )
    def arm_fault(self, fault: str, endpoint: str, count: int) -> None:
        self.bench.sim.faults.add(
            parse_fault({**FAULTS[fault], "endpoint": endpoint, "count": count})
        )

    @rule(when=st.sampled_from(["before", "after"]))
    def crash_at_next_request(self, when: str) -> None:
        self.transport.arm(when)

    @rule(call=st.sampled_from(STORE_CALLS), when=st.sampled_from(["before", "after"]))
    def crash_at_next_ledger_call(self, call: str, when: str) -> None:
        self.store.armed = (call, when)

    @rule(seconds=st.sampled_from([1, 61, 301, 601, 1201, 25 * 3600]))
    def time_passes(self, seconds: int) -> None:
        self.bench.sim.move_clock(advance_seconds=seconds)

    @rule(balance=st.sampled_from([0, 250, 10**7]))
    def set_balance(self, balance: int) -> None:
        self.bench.sim.state.update_merchant(
            self.bench.mch_id, MerchantSettings(balance_fen=balance)
        )

    # -- the truth --------------------------------------------------------------------------

    def payouts(self) -> list[Payout]:
        return self.ledger.find_payouts(list(PayoutState), limit=1000)

    def paid_bills(self) -> dict[str, int]:
        _, records = self.bench.sim.state.ledger(self.bench.mch_id)
        return {r.mch_billno: r.total_amount for r in records if r.status in ISSUED}

    @invariant()
    def each_intent_is_paid_at_most_once(self) -> None:
        paid = self.paid_bills()
        per_intent = Counter(p.natural_key for p in self.payouts() if p.mch_billno in paid)
        assert all(count == 1 for count in per_intent.values()), per_intent

    @invariant()
    def the_ledger_never_denies_a_paid_bill(self) -> None:
        paid = self.paid_bills()
        for payout in self.payouts():
            if payout.mch_billno in paid:
                assert payout.state in IN_FLIGHT | ISSUED_LEDGER, payout
                assert paid[payout.mch_billno] == payout.total_amount
            if payout.state in ISSUED_LEDGER:
                assert payout.mch_billno in paid, payout

    def teardown(self) -> None:
        try:
            self._settle()
        finally:
            self.ledger.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _settle(self) -> None:
        """The world turns calm: every intent must end paid exactly once, for its amount."""
        sim = self.bench.sim
        sim.faults.clear()
        self.set_balance(10**7)
        self.driver = self._new_driver()
        for _ in range(40):
            if not any(p.state not in ISSUED_LEDGER | {P.FAILED} for p in self.payouts()):
                break
            self.time_passes(1201)
            self.reissue_dead()
            self.recover()
            for _ in range(USERS):
                self.claim_and_drive()
        paid = self.paid_bills()
        final = {p.natural_key: p for p in self.payouts() if p.state is not P.FAILED}
        assert {p.re_openid for p in final.values()} == set(self.intents)
        for payout in final.values():
            assert payout.state in ISSUED_LEDGER, payout
            assert paid[payout.mch_billno] == self.intents[payout.re_openid]
        assert sum(paid.values()) == sum(self.intents.values())
        assert Counter(_openids(self.payouts(), paid)) == Counter(self.intents.keys())


def _openids(payouts: Iterable[Payout], paid: dict[str, int]) -> list[str]:
    return [p.re_openid for p in payouts if p.mch_billno in paid]


PayoutMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPayoutMachine = PayoutMachine.TestCase
