"""Campaigns: many red packets from one file and one template, planned before any is sent.

The life of a campaign, each step its own call (the CLI's `hongbao campaign …` commands):

1. `create_campaign` checks the template against the API's rules (a bad one is an error naming
   the field, and nothing is recorded) and records the campaign in DRAFT, with the SHA-256 of
   its input file.
2. `plan_campaign` streams the file (a million lines never sit in memory), validates every line
   and records one payout per good line — natural key `campaign:<id>:<openid>`, a bill number
   from `LedgerStore.reserve_bill_numbers`, its frozen send parameters — then marks the campaign
   PLANNED. Planning again inserts only what is missing, so a crash part-way is repaired by
   planning again; a DRAFT campaign never runs. `dry_run=True` (or `preview`) reports the same
   figures and records nothing.
3. `hongbao.engine.runner.run_campaign` sends; `pause_campaign`, `resume_campaign` and
   `cancel_campaign` may come from any process (the runner reads the campaign's state from the
   ledger between claims).
4. `campaign_status`, `campaign_report` and `export_csv` tell what happened.

The budget is never exceeded: every claim charges it in the claim's own transaction (and a
CHECK constraint guards it), so payouts past it are SKIPPED, never sent.

>>> template = Template(amount_fen=188, send_name="Acme", wishing="Thank you",
...                     act_name="Spring", remark="Enjoy")
>>> campaign = create_campaign(store, profile, name="spring", template=template,
...                            source=Path("users.csv"), budget_fen=100_000)  # doctest: +SKIP
>>> report = plan_campaign(store, profile, campaign.id)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hongbao.api import BaseClient
from hongbao.clock import Clock, SystemClock
from hongbao.engine.campaign_input import BadLine, CampaignFile, Entry, open_campaign_file
from hongbao.engine.settings import MerchantProfile
from hongbao.engine.states import next_beijing_midnight
from hongbao.errors import OperationError, ValidationError
from hongbao.ids import BillNoError, mint_bill_no, nonces
from hongbao.ledger import (
    EXPORT_FIELDS,
    Campaign,
    CampaignState,
    CodeTotal,
    LedgerStore,
    NewCampaign,
    NewPayout,
    Origin,
    PayoutState,
    SendApi,
    StateTotal,
    export_rows,
)
from hongbao.ledger.states import OPEN_STATES
from hongbao.money import format_yuan

__all__ = [
    "ISSUED_STATES",
    "MAX_REPORTED_BAD_LINES",
    "NOT_SENT_YET_STATES",
    "OPEN_STATES",
    "UNRESOLVED_STATES",
    "CampaignError",
    "CampaignReport",
    "CampaignStatus",
    "PlanReport",
    "Template",
    "campaign_report",
    "campaign_status",
    "cancel_campaign",
    "create_campaign",
    "export_csv",
    "file_digest",
    "natural_key",
    "pause_campaign",
    "plan_campaign",
    "preview",
    "resume_campaign",
    "same_file_campaigns",
    "validate_template",
]

P = PayoutState
C = CampaignState

MAX_REPORTED_BAD_LINES = 10_000
"""Bad lines a `PlanReport` lists; `on_bad_line` sees every one."""

_SAMPLE_OPENID = "o" * 28
_BATCH = 3000
"""Payouts recorded per transaction while planning (a crash keeps whole batches)."""
_SERIALS = 10_000
"""Bill numbers reserved at a time while planning (one commit each)."""
_CHUNK = 1 << 20

ISSUED_STATES = frozenset({P.SENT, P.RECEIVED, P.REFUNDED})
"""States of a payout WeChat issued."""
UNRESOLVED_STATES = frozenset({P.SENDING, P.UNKNOWN})
"""States of a payout whose money is in an unknown state: it may have been issued."""
NOT_SENT_YET_STATES = frozenset({P.PLANNED, P.DEFERRED})
"""States of a payout not sent yet (planned, or deferred to a later try): no money has left."""


class CampaignError(OperationError):
    """A campaign cannot be created, planned or run as asked; nothing was sent."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """What every packet of a campaign has in common (a line may set its own amount).

    `api` picks the send call: SENDREDPACK (normal), SENDGROUPREDPACK (fission, `total_num`
    3–20 shares), SENDMINIPROGRAMHB (mini program) or SENDWORKWXREDPACK (WeCom: members of the
    merchant's corp, in the name of `sender_name` or of the app `agentid`, not `send_name`).
    """

    amount_fen: int
    send_name: str | None = None
    wishing: str
    act_name: str
    remark: str
    api: SendApi = SendApi.SENDREDPACK
    total_num: int = 1
    scene_id: str | None = None
    risk_info: str | None = None
    sender_name: str | None = None
    agentid: int | None = None
    sender_header_media_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The template as the ledger stores it (JSON-ready)."""
        data = asdict(self)
        data["api"] = self.api.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Template:
        """The template back from `to_dict`."""
        return cls(**{**data, "api": SendApi(data["api"])})

    def params(
        self, builder: BaseClient, *, mch_billno: str, openid: str, amount_fen: int | None = None
    ) -> dict[str, str | int]:
        """The checked send parameters for one receiver (raises `ValidationError`)."""
        return builder.send_params(
            self.api.value,
            mch_billno=mch_billno,
            re_openid=openid,
            total_amount=self.amount_fen if amount_fen is None else amount_fen,
            total_num=self.total_num,
            send_name=self.send_name,
            wishing=self.wishing,
            act_name=self.act_name,
            remark=self.remark,
            scene_id=self.scene_id,
            risk_info=self.risk_info,
            sender_name=self.sender_name,
            agentid=self.agentid,
            sender_header_media_id=self.sender_header_media_id,
        )


def validate_template(
    template: Template, profile: MerchantProfile, clock: Clock | None = None
) -> None:
    """Check a template against every rule of its API and the merchant's amounts.

    Raises `CampaignError` naming the field (`CampaignError.field`) when a packet built from it
    would be refused.
    """
    now = (clock or SystemClock()).now()
    try:
        bill = mint_bill_no(profile.mch_id, now, 0)
    except BillNoError as exc:
        raise CampaignError(f"merchant {profile.name}: {exc}", field="mch_id") from None
    try:
        template.params(BaseClient(profile.merchant), mch_billno=bill, openid=_SAMPLE_OPENID)
    except ValidationError as exc:
        raise CampaignError(f"template: {exc.message}", field=exc.field) from None
    if template.amount_fen > profile.per_user_daily_amount_fen:
        raise CampaignError(
            f"template: amount_fen {template.amount_fen} is over the per-user daily cap of "
            f"{profile.per_user_daily_amount_fen} fen",
            field="amount_fen",
        )


def natural_key(campaign_id: int, openid: str) -> str:
    """The payout intent of `openid` in a campaign: planning it twice records it once."""
    return f"{Origin.CAMPAIGN.key_prefix}{campaign_id}:{openid}"


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    with open_campaign_file(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def create_campaign(
    store: LedgerStore,
    profile: MerchantProfile,
    *,
    name: str,
    template: Template,
    source: Path,
    budget_fen: int | None = None,
    clock: Clock | None = None,
) -> Campaign:
    """Record a new campaign in DRAFT after checking its template and reading its file's digest.

    Nothing is recorded when the template is refused, the file is missing, or the name is taken.

    >>> campaign = create_campaign(store, profile, name="spring", template=template,
    ...                            source=Path("users.csv"))  # doctest: +SKIP
    """
    validate_template(template, profile, clock)
    if budget_fen is not None and budget_fen < 0:
        raise CampaignError("budget_fen must not be negative", field="budget_fen")
    digest = file_digest(source)
    try:
        return store.create_campaign(
            NewCampaign(
                name=name,
                merchant=profile.name,
                mch_id=profile.mch_id,
                api=template.api,
                template=template.to_dict(),
                budget_fen=budget_fen,
                source_name=str(source.resolve()),
                source_digest=digest,
            )
        )
    except ValueError as exc:
        raise CampaignError(str(exc), field="name") from None


def same_file_campaigns(store: LedgerStore, campaign: Campaign) -> list[Campaign]:
    """The earlier campaigns created from a file with the same content (SHA-256) as
    `campaign`'s: planning it may pay their users a second time."""
    return [
        other
        for other in store.list_campaigns()
        if other.id < campaign.id and other.source_digest == campaign.source_digest
    ]


@dataclass(slots=True)
class PlanReport:
    """What planning (or a dry run) found in the file and recorded."""

    campaign_id: int | None
    lines: int = 0
    good: int = 0
    bad: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    """The first `MAX_REPORTED_BAD_LINES` bad lines, with their numbers and reasons."""
    inserted: int = 0
    """Payouts recorded by this call (0 in a dry run or when planned before)."""
    existing: int = 0
    """Payouts that were already recorded by an earlier (maybe interrupted) planning."""
    total_fen: int = 0
    """What all good lines cost together."""
    budget_fen: int | None = None
    estimated_seconds: float = 0.0
    """How long sending takes at the merchant's rate (a lower bound)."""

    @property
    def over_budget(self) -> bool:
        """True when the good lines together cost more than the budget (the rest is skipped)."""
        return self.budget_fen is not None and self.total_fen > self.budget_fen


class _Planner:
    """Streams a campaign file into checked payouts; shared by planning and dry runs."""

    def __init__(
        self,
        profile: MerchantProfile,
        template: Template,
        report: PlanReport,
        on_bad_line: Callable[[BadLine], None] | None,
    ) -> None:
        self.profile = profile
        self.template = template
        self.report = report
        self.on_bad_line = on_bad_line
        self.builder = BaseClient(profile.merchant)

    def entries(self, source: Path) -> Iterator[tuple[Entry, int]]:
        """Good lines with their amounts; bad ones go to the report."""
        reader = CampaignFile(source)
        for item in reader:
            if isinstance(item, Entry):
                amount = self.template.amount_fen if item.amount_fen is None else item.amount_fen
                problem = self._amount_problem(amount)
                if problem is None:
                    self.report.good += 1
                    self.report.total_fen += amount
                    yield item, amount
                    continue
                shown = item.openid
                if item.amount_fen is not None:
                    shown += f",{format_yuan(amount)}"
                item = BadLine(item.line_no, problem, shown)
            self._bad(item)
        self.report.lines = reader.lines
        rate = self.profile.rate_per_minute
        self.report.estimated_seconds = self.report.good * 60.0 / rate

    def _amount_problem(self, amount: int) -> str | None:
        template = self.template
        try:
            self.profile.merchant.limits.check(amount, template.total_num, template.scene_id)
        except ValidationError as exc:
            return f"amount {format_yuan(amount)} yuan refused: {exc.message}"
        cap = self.profile.per_user_daily_amount_fen
        if amount > cap:
            return (
                f"amount {format_yuan(amount)} yuan is over the per-user daily cap of "
                f"{format_yuan(cap)} yuan"
            )
        return None

    def _bad(self, line: BadLine) -> None:
        self.report.bad += 1
        if len(self.report.bad_lines) < MAX_REPORTED_BAD_LINES:
            self.report.bad_lines.append(line)
        if self.on_bad_line is not None:
            self.on_bad_line(line)

    def payouts(
        self, store: LedgerStore, campaign: Campaign, source: Path, clock: Clock
    ) -> Iterable[NewPayout]:
        """One `NewPayout` per good line, with bill numbers reserved a batch at a time."""
        bills: Iterator[str] = iter(())
        # One moment for every bill: the ledger's serials are unique per (merchant, UTC+8 day)
        # of the bill, so every bill of the plan is dated the same day.
        minted_at = clock.now()
        first: dict[str, str | int] | None = None
        drawn = nonces()
        for entry, amount in self.entries(source):
            bill = next(bills, None)
            if bill is None:
                bills = iter(store.reserve_bill_numbers(campaign.mch_id, minted_at, _SERIALS))
                bill = next(bills)
            if first is None:
                params = first = self.template.params(
                    self.builder, mch_billno=bill, openid=entry.openid, amount_fen=amount
                )
            else:
                # Lines differ from the first only in these four values, each checked already:
                # the bill by minting, the openid by the file's parser, the amount by the
                # API's own amount rules (`_amount_problem`); the rest passed the API's checks
                # with the first line. Copying skips re-checking a million identical fields.
                params = self.builder.changed_params(
                    campaign.api.value,
                    first,
                    {
                        "mch_billno": bill,
                        "re_openid": entry.openid,
                        "total_amount": amount,
                        "nonce_str": next(drawn),
                    },
                )
            yield NewPayout(
                natural_key=natural_key(campaign.id, entry.openid),
                merchant=campaign.merchant,
                api=campaign.api,
                params=params,
                campaign_id=campaign.id,
                line_no=entry.line_no,
            )


def preview(
    profile: MerchantProfile,
    template: Template,
    source: Path,
    *,
    budget_fen: int | None = None,
    on_bad_line: Callable[[BadLine], None] | None = None,
) -> PlanReport:
    """A dry run without a campaign: count, total cost, bad lines and duration; nothing recorded.

    >>> preview(profile, template, Path("users.csv")).total_fen  # doctest: +SKIP
    188000
    """
    validate_template(template, profile)
    report = PlanReport(campaign_id=None, budget_fen=budget_fen)
    for _ in _Planner(profile, template, report, on_bad_line).entries(source):
        pass
    return report


def plan_campaign(
    store: LedgerStore,
    profile: MerchantProfile,
    campaign_id: int,
    *,
    source: Path | None = None,
    dry_run: bool = False,
    on_bad_line: Callable[[BadLine], None] | None = None,
    clock: Clock | None = None,
) -> PlanReport:
    """Record one payout per good line of the campaign's file, then mark it PLANNED.

    `source` defaults to the file the campaign was created from and must be byte-identical to
    it. Idempotent: planning again records only what is missing. With `dry_run`, only report.

    >>> report = plan_campaign(store, profile, campaign.id)  # doctest: +SKIP
    >>> report.good, report.bad, [(b.line_no, b.reason) for b in report.bad_lines][:1]
    """
    clock = clock or SystemClock()
    campaign = store.get_campaign(campaign_id)
    _check_profile(campaign, profile)
    if campaign.state not in (C.DRAFT, C.PLANNED):
        raise CampaignError(f"campaign {campaign_id} is {campaign.state}: its plan is final")
    path = source if source is not None else Path(campaign.source_name or "")
    if file_digest(path) != campaign.source_digest:
        raise CampaignError(
            f"campaign file {str(path)!r} is not the file campaign {campaign_id} was created "
            "from (its content differs)",
            field="source",
        )
    template = Template.from_dict(campaign.template)
    report = PlanReport(campaign_id=campaign_id, budget_fen=campaign.budget_fen)
    planner = _Planner(profile, template, report, on_bad_line)
    if dry_run:
        for _ in planner.entries(path):
            pass
        return report
    added = store.add_payouts(planner.payouts(store, campaign, path, clock), batch_size=_BATCH)
    report.inserted, report.existing = added.inserted, added.existing
    store.record_campaign_source(
        campaign_id,
        source_name=str(path.resolve()),
        source_digest=campaign.source_digest or "",
        lines_total=report.lines,
        lines_good=report.good,
        lines_bad=report.bad,
    )
    if campaign.state is C.DRAFT:
        store.set_campaign_state(campaign_id, C.DRAFT, C.PLANNED)
    return report


def _check_profile(campaign: Campaign, profile: MerchantProfile) -> None:
    if (campaign.merchant, campaign.mch_id) != (profile.name, profile.mch_id):
        raise CampaignError(
            f"campaign {campaign.id} pays from merchant {campaign.merchant} "
            f"({campaign.mch_id}), not {profile.name} ({profile.mch_id})",
            field="merchant",
        )


def pause_campaign(store: LedgerStore, campaign_id: int, reason: str = "paused by hand") -> bool:
    """Pause a running campaign: runners stop claiming; payouts in flight still resolve.

    Returns False when it was paused already (nothing changes: its reason stays).
    """
    if store.set_campaign_state(campaign_id, C.RUNNING, C.PAUSED, pause_reason=reason[:256]):
        return True
    state = store.get_campaign(campaign_id).state
    if state is C.PAUSED:
        return False
    raise CampaignError(f"campaign {campaign_id} is {state}: only a RUNNING one can pause")


def resume_campaign(store: LedgerStore, campaign_id: int, clock: Clock | None = None) -> int:
    """Resume a paused campaign; payouts held back by the pause become due at once.

    Payouts deferred by a daily limit keep waiting for their UTC+8 day. Returns how many
    payouts were made due; run the campaign to send them.
    """
    now = (clock or SystemClock()).now()
    if not store.set_campaign_state(campaign_id, C.PAUSED, C.RUNNING):
        state = store.get_campaign(campaign_id).state
        raise CampaignError(f"campaign {campaign_id} is {state}: only a PAUSED one can resume")
    return store.make_due(campaign_id, before=next_beijing_midnight(now))


def cancel_campaign(store: LedgerStore, campaign_id: int) -> int:
    """Cancel a campaign: its unsent payouts are CANCELLED (returned: how many).

    Payouts already in flight (SENDING, UNKNOWN) are still resolved: money may be on its way.
    """
    campaign = store.get_campaign(campaign_id)
    if campaign.state in (C.CANCELLED, C.COMPLETED):
        raise CampaignError(f"campaign {campaign_id} is {campaign.state}: nothing to cancel")
    return store.cancel_campaign(campaign_id)


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    """A campaign, its payouts by state, and what kept some from being sent."""

    campaign: Campaign
    totals: dict[PayoutState, StateTotal]
    problems: list[CodeTotal]

    @property
    def open(self) -> StateTotal:
        """Payouts not settled yet (planned, deferred, in flight)."""
        return _sum(self.totals, OPEN_STATES)


def campaign_status(store: LedgerStore, campaign_id: int) -> CampaignStatus:
    """Counts and amounts of a campaign's payouts by state, with the reasons of the troubled."""
    return CampaignStatus(
        store.get_campaign(campaign_id),
        store.totals_by_state(campaign_id),
        store.problems(campaign_id),
    )


@dataclass(frozen=True, slots=True)
class CampaignReport:
    """What a campaign paid out: counts and amounts in fen."""

    campaign_id: int
    sent: StateTotal
    """Issued by WeChat (SENT, RECEIVED and REFUNDED together)."""
    received: StateTotal
    refunded: StateTotal
    """Unclaimed after 24 h and returned to the merchant."""
    waiting: StateTotal
    """Issued, not opened yet (SENT)."""
    failed: StateTotal
    skipped: StateTotal
    """Refused by hongbao: over the budget or a daily cap."""
    cancelled: StateTotal
    unresolved: StateTotal
    """Money in an unknown state: in flight, maybe issued (SENDING, UNKNOWN)."""
    not_sent_yet: StateTotal
    """Planned or deferred: nothing has left for them yet."""


def campaign_report(store: LedgerStore, campaign_id: int) -> CampaignReport:
    """The campaign's report: sent, received, refunded, failed, unresolved (money in an unknown
    state), not sent yet, and the rest."""
    totals = store.totals_by_state(campaign_id)
    return CampaignReport(
        campaign_id=campaign_id,
        sent=_sum(totals, ISSUED_STATES),
        received=totals[P.RECEIVED],
        refunded=totals[P.REFUNDED],
        waiting=totals[P.SENT],
        failed=totals[P.FAILED],
        skipped=totals[P.SKIPPED],
        cancelled=totals[P.CANCELLED],
        unresolved=_sum(totals, UNRESOLVED_STATES),
        not_sent_yet=_sum(totals, NOT_SENT_YET_STATES),
    )


def _sum(totals: dict[PayoutState, StateTotal], states: Iterable[PayoutState]) -> StateTotal:
    chosen = [totals[state] for state in states]
    return StateTotal(sum(t.count for t in chosen), sum(t.amount_fen for t in chosen))


def export_csv(store: LedgerStore, campaign_id: int, out: TextIO) -> int:
    """Write every payout of a campaign as CSV (`hongbao.ledger.EXPORT_FIELDS`); returns rows.

    >>> with open("spring.csv", "w", newline="", encoding="utf-8") as out:  # doctest: +SKIP
    ...     export_csv(store, campaign.id, out)
    """
    store.get_campaign(campaign_id)
    writer = csv.DictWriter(out, EXPORT_FIELDS)
    writer.writeheader()
    rows = 0
    for row in export_rows(store, campaign_id):
        writer.writerow(row)
        rows += 1
    return rows
