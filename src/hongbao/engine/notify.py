"""Rule mode's input: payment notifications received, recorded, judged, and their packets sent.

`NotifyHandler.handle_payment(xml_bytes) -> reply_bytes` is the whole contract with WeChat Pay,
for a merchant who already has a notify endpoint (Django, Flask, FastAPI…):

1. find the merchant by the notification's `mch_id`, verify the signature over every received
   field with its key (`verify_notification`); a bad signature, a `mch_id` not configured or a
   malformed body is answered FAIL and nothing is recorded;
2. judge the payment against the merchant's rules and record it, with one PLANNED payout per
   match (natural key `rule:<name>:<transaction_id>`, a bill number, frozen parameters), in ONE
   transaction (`hongbao.ledger.rules_store.RuleLedger.record`);
3. answer SUCCESS only after that commit. A crash before it means no SUCCESS, so WeChat resends;
   a duplicate (even a concurrent one) finds the payment recorded and is answered SUCCESS again
   without paying anything twice. Payments that earn nothing (below the threshold, made in an
   app, `result_code` FAIL…) are recorded with each rule's reason and answered SUCCESS, so that
   WeChat stops resending.

Sending is the dispatcher's job (`hongbao.engine.rule_dispatch`), over the ledger: `RuleService`
puts a handler and one dispatcher per merchant together, `create_app` serves them as an ASGI app
with `POST /wechatpay/notify` (what `hongbao rules serve` runs), and `RuleService.start_background`
sends from a thread beside a merchant's own handler.

>>> service = RuleService.from_config(load_config(Path("hongbao.toml")))  # doctest: +SKIP
>>> service.start_background()  # doctest: +SKIP
>>> reply = service.handler.handle_payment(request.body)  # in your view  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from types import TracebackType
from typing import Self

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hongbao.api import AsyncClient, BaseClient, Merchant
from hongbao.clock import Clock, SystemClock
from hongbao.engine.config import HongbaoConfig
from hongbao.engine.notify_samples import NotificationSamples
from hongbao.engine.notify_verify import (
    SUCCESS_REPLY,
    NotificationError,
    Rejection,
    fail_reply,
    notification_fields,
    verify_notification,
)
from hongbao.engine.rule_dispatch import RuleDispatcher
from hongbao.engine.rules import (
    AppidKind,
    Match,
    Payment,
    Rule,
    Skip,
    evaluate,
    rules_for,
)
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.errors import ConfigurationError, ValidationError
from hongbao.ledger import LedgerStore, NewPayout
from hongbao.ledger.bills import BillSerialsExhaustedError
from hongbao.ledger.rules_store import (
    MATCH,
    LedgerHistory,
    Minter,
    NewPayment,
    RecordedPayment,
    RuleBudget,
    RuleDecision,
    RuleLedger,
)
from hongbao.money import format_yuan
from hongbao.printable import printable
from hongbao.wire import xmlcodec
from hongbao.wire.bodies import BodyTooLarge, read_limited

__all__ = [
    "NOTIFY_PATH",
    "REQUEST_REFUSED",
    "NotifyHandler",
    "Preview",
    "Receipt",
    "RuleMerchant",
    "RuleService",
    "create_app",
]

logger = logging.getLogger("hongbao.engine")

NOTIFY_PATH = "/wechatpay/notify"
"""Where `create_app` receives notifications (the `notify_url` given when ordering)."""
REQUEST_REFUSED = "request_refused"
"""A rule's outcome when its red packet would break the API's rules for this merchant (an
amount or scene the merchant has not enabled, an openid too long…): nothing is sent."""

_XML = "text/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class RuleMerchant:
    """A merchant as rule mode sees it: its account, its rules and what its appids are."""

    name: str
    merchant: Merchant
    rules: tuple[Rule, ...]
    appid_kinds: Mapping[str, AppidKind] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: HongbaoConfig, name: str) -> RuleMerchant:
        """Merchant `name` of `config` with its rules (reads its key and certificate)."""
        return cls(
            name=name,
            merchant=config.merchant(name),
            rules=tuple(rules_for(config.rules.values(), name)),
            appid_kinds=config.appid_kinds(name),
        )

    def kind_of(self, appid: str) -> AppidKind:
        """What `appid` is for this merchant (UNKNOWN when not configured)."""
        return self.appid_kinds.get(appid, AppidKind.UNKNOWN)

    @property
    def budgets(self) -> list[RuleBudget]:
        """The ledger rows of this merchant's rules."""
        return [RuleBudget(rule.name, self.name, rule.budget_fen) for rule in self.rules]


@dataclass(frozen=True, slots=True)
class Receipt:
    """What handling one notification did: the answer to give, and what was recorded."""

    reply: bytes
    status: int
    """The HTTP status to answer with: 200, 400 (refused) or 500 (not recorded: resend)."""
    merchant: str | None = None
    payment: Payment | None = None
    recorded: RecordedPayment | None = None
    error: str | None = None
    """Why the notification was answered FAIL."""

    @property
    def acknowledged(self) -> bool:
        """Whether the answer is SUCCESS (WeChat stops resending)."""
        return self.reply == SUCCESS_REPLY


@dataclass(frozen=True, slots=True)
class Preview:
    """What the rules make of a notification, without recording it (`hongbao rules test`)."""

    merchant: str
    payment: Payment
    results: list[Match | Skip]
    """Each rule of the merchant, in order: a `Match` (API, amount) or a `Skip` (why not)."""
    recorded: RecordedPayment | None = None
    """The payment as the ledger already holds it (then it will not be judged again)."""


OrderCheck = Callable[[Payment], str | None]
"""Checks a payment against the merchant's own order (`out_trade_no`, `total_fee`): None when it
matches, else why not (the notification is then answered FAIL and nothing is recorded)."""


class _NoHistory:
    """The past of a customer when there is no ledger to ask: nothing happened yet."""

    def rewards(self, rule: str, openid: str, *, excluding: str) -> int:
        return 0

    def rewards_on(self, rule: str, openid: str, day: date, *, excluding: str) -> int:
        return 0

    def paid_before(self, mch_id: str, openid: str, *, excluding: str) -> bool:
        return False

    def committed_fen(self, rule: str, *, excluding: str) -> int:
        return 0


class NotifyHandler:
    """Verifies, judges and records payment notifications of the configured merchants.

    Thread-safe and synchronous (it waits for the ledger's commit): call it from a web
    framework's view, or from a thread pool under asyncio. `on_recorded(merchant, payout_ids)`
    is told of new payouts after each commit (a dispatcher's `wake`).

    >>> handler = NotifyHandler(RuleLedger(store.engine), [RuleMerchant.from_config(config,
    ...     "shop")])  # doctest: +SKIP
    >>> handler.handle_payment(body)  # doctest: +SKIP
    b'<xml><return_code><![CDATA[SUCCESS]]></return_code>...'
    """

    def __init__(
        self,
        ledger: RuleLedger | None,
        merchants: Iterable[RuleMerchant],
        *,
        order_check: OrderCheck | None = None,
        on_recorded: Callable[[str, list[int]], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.merchants: dict[str, RuleMerchant] = {}
        for merchant in merchants:
            mch_id = merchant.merchant.mch_id
            if mch_id in self.merchants:
                raise ConfigurationError(
                    f"merchants {self.merchants[mch_id].name} and {merchant.name} have the same "
                    f"mch_id {mch_id}: a notification could not tell whose rules apply"
                )
            self.merchants[mch_id] = merchant
        self._builders = {mch_id: BaseClient(m.merchant) for mch_id, m in self.merchants.items()}
        self.order_check = order_check
        self.on_recorded = on_recorded

    def __repr__(self) -> str:
        return f"NotifyHandler(merchants={sorted(m.name for m in self.merchants.values())})"

    def handle_payment(self, xml_bytes: bytes) -> bytes:
        """Handle one notification; returns the XML answer (SUCCESS only once recorded).

        >>> return HttpResponse(handler.handle_payment(request.body),  # doctest: +SKIP
        ...                     content_type="text/xml")
        """
        return self.receive(xml_bytes).reply

    def receive(self, xml_bytes: bytes) -> Receipt:
        """`handle_payment` with the details: HTTP status, payment, what was recorded."""
        try:
            merchant, payment = self._verify(xml_bytes)
        except NotificationError as exc:
            logger.warning("payment notification refused: %s", printable(exc.message))
            return Receipt(exc.reply, 400, error=exc.message)
        if self.order_check is not None:
            problem = self.order_check(payment)
            if problem is not None:
                logger.warning(
                    "payment %s refused: %s", printable(payment.transaction_id), printable(problem)
                )
                return Receipt(fail_reply(problem), 400, merchant.name, payment, error=problem)
        if self.ledger is None:
            raise ConfigurationError("this handler has no ledger to record payments in")
        try:
            recorded = self.ledger.record(
                _new_payment(payment, merchant.name),
                merchant.budgets,
                lambda history, mint: self._decide(merchant, payment, history, mint),
            )
        except (SQLAlchemyError, BillSerialsExhaustedError):
            # No SUCCESS without a commit: WeChat resends, and the next delivery tries again.
            logger.exception("payment %s could not be recorded", printable(payment.transaction_id))
            message = "the payment could not be recorded; resend later"
            return Receipt(fail_reply(message), 500, merchant.name, payment, error=message)
        if recorded.new:
            logger.info(
                "payment %s recorded: %s",
                printable(payment.transaction_id),
                ", ".join(f"{r.rule}={r.outcome}" for r in recorded.results) or "no rule",
            )
            if recorded.payout_ids and self.on_recorded is not None:
                self.on_recorded(merchant.name, recorded.payout_ids)
        return Receipt(SUCCESS_REPLY, 200, merchant.name, payment, recorded)

    def preview(self, xml_bytes: bytes) -> Preview:
        """Verify a notification and judge it as it would be now; nothing is recorded.

        Raises `NotificationError` as `handle_payment` would answer FAIL.
        """
        merchant, payment = self._verify(xml_bytes)

        def judge(history: LedgerHistory | _NoHistory) -> list[Match | Skip]:
            return evaluate(payment, merchant.rules, appid_kind=merchant.kind_of, history=history)

        if self.ledger is None:
            return Preview(merchant.name, payment, judge(_NoHistory()))
        recorded = self.ledger.find_payment(payment.transaction_id)
        return Preview(merchant.name, payment, self.ledger.judge_only(judge), recorded)

    def _verify(self, body: bytes) -> tuple[RuleMerchant, Payment]:
        fields = notification_fields(body)
        mch_id = fields.get("mch_id")
        merchant = self.merchants.get(mch_id) if isinstance(mch_id, str) else None
        if merchant is None:
            raise NotificationError(
                f"mch_id {mch_id or 'missing'} is not a merchant with rules here",
                rejection=Rejection.MERCHANT,
            )
        payment = verify_notification(
            body, mch_id=merchant.merchant.mch_id, api_key=merchant.merchant.api_key
        )
        return merchant, payment

    def _decide(
        self, merchant: RuleMerchant, payment: Payment, history: LedgerHistory, mint: Minter
    ) -> list[RuleDecision]:
        builder = self._builders[merchant.merchant.mch_id]
        decisions = []
        for result in evaluate(
            payment, merchant.rules, appid_kind=merchant.kind_of, history=history
        ):
            if isinstance(result, Skip):
                decisions.append(
                    RuleDecision(result.rule, result.key, result.reason.value, result.detail)
                )
                continue
            template = result.template
            try:
                params = builder.send_params(
                    result.api.value,
                    mch_billno=mint(),
                    re_openid=payment.openid,
                    total_amount=result.amount_fen,
                    send_name=template.send_name,
                    wishing=template.wishing,
                    act_name=template.act_name,
                    remark=template.remark,
                    scene_id=template.scene_id,
                )
            except (ValidationError, ConfigurationError) as exc:
                # Recorded, not retried: resending the notification would not make it valid.
                logger.warning(
                    "rule %s cannot pay %s: %s", result.rule, printable(result.key), printable(exc)
                )
                decisions.append(RuleDecision(result.rule, result.key, REQUEST_REFUSED, str(exc)))
                continue
            decisions.append(
                RuleDecision(
                    result.rule,
                    result.key,
                    MATCH,
                    f"{result.api.value} {format_yuan(result.amount_fen)} yuan",
                    result.amount_fen,
                    NewPayout(result.key, result.merchant, result.api, params),
                )
            )
        return decisions


def _new_payment(payment: Payment, merchant: str) -> NewPayment:
    return NewPayment(
        transaction_id=payment.transaction_id,
        merchant=merchant,
        mch_id=payment.mch_id,
        appid=payment.appid,
        openid=payment.openid,
        trade_type=payment.trade_type,
        total_fee=payment.total_fee,
        cash_fee=payment.cash_fee,
        out_trade_no=payment.out_trade_no,
        result_code=payment.result_code,
        time_end=payment.time_end,
        attach=payment.attach,
        fields=payment.fields,
    )


class RuleService:
    """Rule mode in one process: a `NotifyHandler` and a `RuleDispatcher` per merchant.

    `async with service:` runs the dispatchers (recovery first) in the running loop and, on
    exit, stops them and closes what the service opened. Store calls go through one executor:
    one thread on SQLite (one writer at a time anyway), several on PostgreSQL.
    """

    def __init__(
        self,
        handler: NotifyHandler,
        dispatchers: Mapping[str, RuleDispatcher],
        *,
        executor: ThreadPoolExecutor,
        store: LedgerStore | None = None,
        samples: NotificationSamples | None = None,
    ) -> None:
        self.handler = handler
        self.samples = samples
        self.dispatchers = dict(dispatchers)
        self.executor = executor
        self._owned_store = store
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None
        handler.on_recorded = self._recorded

    @classmethod
    def from_config(
        cls,
        config: HongbaoConfig,
        *,
        store: LedgerStore | None = None,
        clock: Clock | None = None,
        settings: RunSettings | None = None,
        clients: Mapping[str, AsyncClient] | None = None,
        send: bool = True,
        order_check: OrderCheck | None = None,
        samples: NotificationSamples | None = None,
    ) -> RuleService:
        """Everything for the rules of `config`: its ledger, merchants, profiles, dispatchers.

        `store` defaults to the configured ledger (opened and closed by the service);
        `clients` (by merchant name) replace the AsyncClients the dispatchers would make;
        `send=False` records without sending (no dispatcher); `samples` keeps each verified
        notification's body (`hongbao rules serve --save-notifications`).

        >>> async with RuleService.from_config(config) as service:  # doctest: +SKIP
        ...     receipt = await service.receive(body)
        """
        if not config.rules:
            raise ConfigurationError(
                f"{config.path}: no [rules.NAME] section: rule mode has nothing to do"
            )
        clock = clock or SystemClock()
        settings = settings or config.run
        names = sorted({rule.merchant for rule in config.rules.values()})
        profiles: dict[str, MerchantProfile] = {name: config.profile(name) for name in names}
        merchants = [RuleMerchant.from_config(config, name) for name in names]
        owned = None
        if store is None:
            store = owned = LedgerStore.open(config.ledger_url, clock=clock)
        try:
            ledger = RuleLedger(store.engine, clock=clock)
            ledger.ensure_budgets([budget for m in merchants for budget in m.budgets])
        except BaseException:
            if owned is not None:
                owned.close()
            raise
        sqlite = store.engine.dialect.name == "sqlite"
        workers = 1 if sqlite else 4 + sum(p.concurrency for p in profiles.values())
        executor = ThreadPoolExecutor(workers, thread_name_prefix="hongbao-ledger")
        dispatchers = {}
        if send:
            dispatchers = {
                name: RuleDispatcher(
                    store,
                    profile,
                    settings=settings,
                    client=(clients or {}).get(name),
                    clock=clock,
                    executor=executor,
                )
                for name, profile in profiles.items()
            }
        handler = NotifyHandler(ledger, merchants, order_check=order_check)
        return cls(handler, dispatchers, executor=executor, store=owned, samples=samples)

    def _recorded(self, merchant: str, payout_ids: list[int]) -> None:
        dispatcher = self.dispatchers.get(merchant)
        if dispatcher is not None:
            dispatcher.wake()

    async def receive(self, xml_bytes: bytes) -> Receipt:
        """`NotifyHandler.receive` off the event loop (the ledger's commit blocks); a verified
        notification is saved to `samples`, if any."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._receive, xml_bytes)

    def _receive(self, xml_bytes: bytes) -> Receipt:
        receipt = self.handler.receive(xml_bytes)
        if self.samples is not None and receipt.payment is not None:
            self.samples.save(receipt.payment.transaction_id, xml_bytes)
        return receipt

    async def __aenter__(self) -> Self:
        self._tasks = [
            asyncio.create_task(dispatcher.run(), name=f"rules-{name}")
            for name, dispatcher in self.dispatchers.items()
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop the dispatchers (sends in flight finish), then close what the service owns."""
        for dispatcher in self.dispatchers.values():
            dispatcher.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.close()

    def close(self) -> None:
        """Release the executor and, if the service opened it, the ledger."""
        self.executor.shutdown(wait=True)
        if self._owned_store is not None:
            self._owned_store.close()
            self._owned_store = None

    def start_background(self) -> None:
        """Run the dispatchers in a thread of their own, beside a synchronous web app.

        >>> service.start_background()  # doctest: +SKIP
        >>> ...  # views call service.handler.handle_payment(body)
        >>> service.stop_background()  # doctest: +SKIP
        """
        if self._thread is not None:
            raise RuntimeError("the service is already running in the background")
        started = threading.Event()

        async def main() -> None:
            async with self:
                started.set()
                await asyncio.gather(*self._tasks, return_exceptions=True)

        self._thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="hongbao-rules", daemon=True
        )
        self._thread.start()
        started.wait()

    def stop_background(self) -> None:
        """Stop what `start_background` started and wait for it."""
        if self._thread is None:
            return
        for dispatcher in self.dispatchers.values():
            dispatcher.stop()
        self._thread.join()
        self._thread = None


def create_app(service: RuleService) -> Starlette:
    """The ASGI app of rule mode: `POST /wechatpay/notify`; its lifespan runs `service`.

    >>> uvicorn.run(create_app(RuleService.from_config(config)), port=8000)  # doctest: +SKIP
    """

    async def notify(request: Request) -> Response:
        # Read with the parser's own limit: a larger body is refused before it is held.
        try:
            body = await read_limited(request, xmlcodec.MAX_BODY_BYTES)
        except BodyTooLarge as exc:
            return Response(fail_reply(str(exc)), status_code=413, media_type=_XML)
        receipt = await service.receive(body)
        return Response(receipt.reply, status_code=receipt.status, media_type=_XML)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with service:
            yield

    return Starlette(routes=[Route(NOTIFY_PATH, notify, methods=["POST"])], lifespan=lifespan)
