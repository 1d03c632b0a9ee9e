"""The dashboard: a Starlette app over the ledger, pages rendered on the server with Jinja2.

```
GET  /                          campaigns: state, progress, money sent/received/refunded/…
GET  /campaigns/{id}            one campaign: states, send rate vs cap, curves, failures
GET  /campaigns/{id}/export.csv its payouts as CSV (hongbao.ledger.EXPORT_FIELDS)
POST /campaigns/{id}/{action}   pause | resume | cancel | retry (CSRF token, confirmed in the page)
GET  /api/campaigns[/{id}]      live progress (JSON), polled by the pages
GET  /payouts?q=…               payouts by openid or bill number
GET  /payouts/{id}              one payout and its append-only event history (masked)
GET  /reconcile                 the latest reconciliation of each campaign
POST /reconcile/{id}            reconcile a campaign against WeChat (in the background)
GET  /rules                     rule mode: hits, budgets, packets
GET  /login  POST /login  POST /logout
```

Every page but `/login` and `/static` needs the access token when one is set (a session
cookie after logging in, or `Authorization: Bearer`); a wrong token is a 401, and every POST
without its session's CSRF token a 403. Nothing secret is rendered: the ledger holds no key,
and payout parameters and events are masked again before display.

>>> app = create_app(DashboardSettings(store=LedgerStore.open(url)))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from hongbao import __version__
from hongbao.clock import CST
from hongbao.engine.campaign import (
    CampaignError,
    campaign_status,
    cancel_campaign,
    pause_campaign,
    resume_campaign,
)
from hongbao.engine.retry import RetryReport, retry_payouts
from hongbao.ledger import (
    EXPORT_FIELDS,
    LedgerLookupError,
    LedgerStore,
    display_url,
    export_rows,
)
from hongbao.ledger.rules_store import RuleLedger
from hongbao.ledger.views import recent_on_demand, search_payouts, totals_by_campaign
from hongbao.money import format_yuan
from hongbao.web.access import Access, Session
from hongbao.web.pages import (
    CampaignSummary,
    explain_problems,
    outcome_chart,
    send_chart,
    summarise,
)
from hongbao.web.reconciling import Reconciler, Reconciliations
from hongbao.web.throttle import Throttle
from hongbao.wire.bodies import BodyTooLarge, read_limited
from hongbao.wire.masking import mask

__all__ = ["SESSION_COOKIE", "DashboardSettings", "create_app"]

SESSION_COOKIE = "hongbao_session"
_HERE = Path(__file__).parent
logger = logging.getLogger("hongbao.web")

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
_SEARCH_LIMIT = 50
_FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 16_384
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, kw_only=True)
class DashboardSettings:
    """What the dashboard shows and who may see it."""

    store: LedgerStore
    token: str | None = field(default=None, repr=False)
    """The access token; None runs open (allowed on loopback only: see `access.check_bind`)."""
    rate_caps: Mapping[str, int] = field(default_factory=dict)
    """Send calls per minute allowed per merchant name (`rate_per_minute`), for the charts."""
    rule_names: Sequence[str] = ()
    """Rules of the configuration, shown even before the ledger has judged a payment."""
    reconciler: Reconciler | None = None
    """Reconciles a campaign against WeChat; None when the merchants are not configured."""
    poll_seconds: float = 2.0
    """How often the pages ask for live progress."""


def _time(value: datetime | None) -> str:
    return value.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _pretty_json(value: object) -> str:
    """JSON to read on a page: Chinese as text, not \\uXXXX (the template escapes the HTML)."""
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["yuan"] = format_yuan
    env.filters["cst"] = _time
    env.filters["pretty_json"] = _pretty_json
    return Jinja2Templates(env=env)


class _Dashboard:
    """The handlers, bound to one ledger and one access policy."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.store = settings.store
        self.access = Access(settings.token)
        self.throttle = Throttle()
        self.templates = _templates()
        self.reconciliations = Reconciliations(settings.reconciler)

    # -- plumbing --------------------------------------------------------------------------

    def render(
        self, request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        session: Session = request.state.session
        base = {
            "csrf": self.access.csrf_token(session),
            "open": self.access.open,
            "logged_in": session.authenticated and not self.access.open,
            "ledger": display_url(self.store.engine.url),
            "version": __version__,
            "poll_ms": int(self.settings.poll_seconds * 1000),
        }
        return self.templates.TemplateResponse(
            request, name, {**base, **context}, status_code=status_code
        )

    async def checked_form(self, request: Request) -> dict[str, str]:
        """The posted form, once its CSRF token proved it comes from this session's page.

        The dashboard's forms are small and URL-encoded: read here without a multipart parser.
        """
        try:
            body = await read_limited(request, _MAX_FORM_BYTES)
        except BodyTooLarge:
            raise HTTPException(413, "form too large") from None
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        pairs = parse_qsl(body.decode("utf-8", "replace")) if kind == _FORM_TYPE else []
        form = dict(pairs)
        if not self.access.csrf_matches(request.state.session, form.get("csrf")):
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
        return form

    async def summary(self, campaign_id: int) -> CampaignSummary:
        def read() -> CampaignSummary:
            campaign = self.store.get_campaign(campaign_id)
            return summarise(campaign, self.store.totals_by_state(campaign_id))

        return await self._lookup(read)

    async def _lookup(self, read: Callable[[], T]) -> T:
        try:
            return await run_in_threadpool(read)
        except LedgerLookupError as exc:
            raise HTTPException(404, str(exc)) from None

    async def summaries(self) -> list[CampaignSummary]:
        def read() -> list[CampaignSummary]:
            campaigns = self.store.list_campaigns()
            totals = totals_by_campaign(self.store.engine)
            return [summarise(c, totals.get(c.id, {})) for c in reversed(campaigns)]

        result: list[CampaignSummary] = await run_in_threadpool(read)
        return result

    # -- access ----------------------------------------------------------------------------

    async def guard(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Sessions, the access check and the security headers of every response."""
        cookie = None
        session = self.access.read_session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            session, cookie = self.access.new_session(authenticated=False)
        request.state.session = session
        path = request.url.path
        address = request.client.host if request.client else ""
        header = request.headers.get("authorization")
        tries_token = header is not None or (path == "/login" and request.method == "POST")
        locked = self.throttle.retry_after(address) if tries_token else None
        bearer = None if locked else self.access.bearer_matches(header)
        public = path == "/login" or path.startswith("/static/")
        if locked:
            response: Response = PlainTextResponse(
                "too many wrong access tokens from this address: try again later",
                status_code=429,
                headers={"Retry-After": str(locked)},
            )
        elif bearer is False:
            await self.throttle.failed(address)
            response = PlainTextResponse("wrong access token", status_code=401)
        elif public or bearer or session.authenticated:
            try:
                response = await call_next(request)
            except Exception:
                # Answered here rather than by Starlette's outermost handler, so that a 500
                # carries the same headers as every other page.
                logger.exception("dashboard failed on %r", path)
                response = PlainTextResponse("internal error", status_code=500)
        elif path.startswith("/api/"):
            response = JSONResponse({"error": "access token needed"}, status_code=401)
        else:
            response = self.login_page(request, status_code=401, next_path=path)
        if bearer:
            self.throttle.succeeded(address)
        if bearer is not None:
            response.headers["WWW-Authenticate"] = "Bearer"
        if cookie is not None:
            self._set_cookie(request, response, cookie)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @staticmethod
    def _set_cookie(request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    def login_page(
        self,
        request: Request,
        *,
        status_code: int = 200,
        next_path: str = "/",
        wrong: bool = False,
    ) -> Response:
        return self.render(
            request,
            "login.html",
            {"next": next_path, "wrong": wrong},
            status_code=status_code,
        )

    async def login_form(self, request: Request) -> Response:
        return self.login_page(request, next_path=_local(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        form = await self.checked_form(request)
        token = form.get("token", "")
        next_path = _local(form.get("next"))
        address = request.client.host if request.client else ""
        if not token or not self.access.token_matches(token):
            await self.throttle.failed(address)
            return self.login_page(request, status_code=401, next_path=next_path, wrong=True)
        self.throttle.succeeded(address)
        # A new session on login: a nonce seen before logging in is never trusted after.
        _, cookie = self.access.new_session(authenticated=True)
        response = RedirectResponse(next_path, status_code=303)
        self._set_cookie(request, response, cookie)
        return response

    async def logout(self, request: Request) -> Response:
        await self.checked_form(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- campaigns -------------------------------------------------------------------------

    async def campaigns(self, request: Request) -> Response:
        return self.render(request, "campaigns.html", {"summaries": await self.summaries()})

    async def campaigns_live(self, request: Request) -> Response:
        return JSONResponse({"campaigns": [s.live() for s in await self.summaries()]})

    async def campaign(self, request: Request) -> Response:
        campaign_id = _path_id(request, "campaign_id")

        def read() -> dict[str, Any]:
            status = campaign_status(self.store, campaign_id)
            cap = self.settings.rate_caps.get(status.campaign.merchant)
            engine = self.store.engine
            return {
                "cap": cap,
                "summary": summarise(status.campaign, status.totals),
                "totals": status.totals,
                "problems": explain_problems(status.problems),
                "sends": send_chart(engine, campaign_id, cap),
                "outcomes": outcome_chart(engine, campaign_id),
            }

        context = await self._lookup(read)
        context["done"] = request.query_params.get("done")
        context["retried"] = _count(request.query_params.get("retried"))
        context["left"] = _count(request.query_params.get("left"))
        return self.render(request, "campaign.html", context)

    async def campaign_live(self, request: Request) -> Response:
        summary = await self.summary(_path_id(request, "campaign_id"))
        return JSONResponse(summary.live())

    async def export(self, request: Request) -> Response:
        summary = await self.summary(_path_id(request, "campaign_id"))

        def lines() -> Iterator[str]:
            out = io.StringIO()
            writer = csv.DictWriter(out, EXPORT_FIELDS)
            writer.writeheader()
            for row in export_rows(self.store, summary.campaign.id):
                writer.writerow(row)
                if out.tell() > 64_000:
                    yield out.getvalue()
                    out.seek(0)
                    out.truncate()
            yield out.getvalue()

        filename = quote(f"campaign-{summary.campaign.id}.csv")
        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment; filename={filename}"},
        )

    async def act(self, request: Request) -> Response:
        await self.checked_form(request)
        campaign_id = _path_id(request, "campaign_id")
        action = request.path_params["action"]
        actions: dict[str, Callable[[], object]] = {
            "pause": lambda: pause_campaign(self.store, campaign_id, "paused from the dashboard"),
            "resume": lambda: resume_campaign(self.store, campaign_id),
            "cancel": lambda: cancel_campaign(self.store, campaign_id),
            "retry": lambda: retry_payouts(self.store, campaign_id),
        }
        if action not in actions:
            raise HTTPException(404, f"no action {action!r}: pause, resume, cancel or retry")
        try:
            result = await self._lookup(actions[action])
        except CampaignError as exc:
            return self.render(
                request, "message.html", {"title": "Not done", "message": str(exc)}, 409
            )
        done = f"/campaigns/{campaign_id}?done={action}"
        if isinstance(result, RetryReport):
            done += f"&retried={result.retried}&left={result.unsafe}"
        return RedirectResponse(done, status_code=303)

    # -- payouts ---------------------------------------------------------------------------

    async def payouts(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        engine = self.store.engine
        if query:
            found = await run_in_threadpool(search_payouts, engine, query, limit=_SEARCH_LIMIT)
            recent = []
        else:
            found = []
            recent = await run_in_threadpool(recent_on_demand, engine, limit=_SEARCH_LIMIT)
        return self.render(
            request,
            "payouts.html",
            {"q": query, "found": found, "recent": recent, "limit": _SEARCH_LIMIT},
        )

    async def payout(self, request: Request) -> Response:
        payout_id = _path_id(request, "payout_id")

        def read() -> dict[str, Any]:
            payout = self.store.get_payout(payout_id)
            return {
                "payout": payout,
                "params": mask(payout.params),
                "events": [
                    (
                        event,
                        mask(event.request) if event.request is not None else None,
                        mask(event.response) if event.response is not None else None,
                    )
                    for event in self.store.events(payout_id)
                ],
            }

        return self.render(request, "payout.html", await self._lookup(read))

    # -- reconciliation and rules ----------------------------------------------------------

    async def reconcile_page(self, request: Request) -> Response:
        campaigns = await run_in_threadpool(self.store.list_campaigns)
        return self.render(
            request,
            "reconcile.html",
            {
                "campaigns": list(reversed(campaigns)),
                "jobs": self.reconciliations.jobs(),
                "available": self.reconciliations.available,
            },
        )

    async def reconcile(self, request: Request) -> Response:
        await self.checked_form(request)
        if not self.reconciliations.available:
            raise HTTPException(409, "reconciliation needs the merchants' configuration")
        campaign_id = _path_id(request, "campaign_id")
        campaign = await self._lookup(lambda: self.store.get_campaign(campaign_id))
        self.reconciliations.start(campaign)
        return RedirectResponse(f"/reconcile#campaign-{campaign_id}", status_code=303)

    async def rules(self, request: Request) -> Response:
        summaries = await run_in_threadpool(RuleLedger(self.store.engine).summaries)
        known = {summary.rule for summary in summaries}
        waiting = [name for name in self.settings.rule_names if name not in known]
        return self.render(request, "rules.html", {"summaries": summaries, "waiting": waiting})


def _local(path: str | None) -> str:
    """A redirect target on this site only (never `//other.host` or a full URL)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _count(text: str | None) -> int | None:
    """A count carried in a redirect's query (None when absent or not a number)."""
    return int(text) if text is not None and text.isdigit() and len(text) < 19 else None


_MAX_ID = 2**63 - 1  # the ledger's BIGINT: a larger id cannot exist, and would overflow a query


def _path_id(request: Request, name: str) -> int:
    """The id in the path (routed as `{name:int}`); 404 for one no row can have."""
    value = int(request.path_params[name])
    if value > _MAX_ID:
        raise HTTPException(404, f"no such {name.removesuffix('_id')}: {value}")
    return value


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    dashboard: _Dashboard = request.app.state.dashboard
    if not hasattr(request.state, "session"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code)
    title = {403: "Refused", 404: "Not found", 409: "Not possible"}.get(exc.status_code, "Error")
    return dashboard.render(
        request, "message.html", {"title": title, "message": exc.detail}, exc.status_code
    )


def create_app(settings: DashboardSettings) -> Starlette:
    """The dashboard's ASGI app over `settings.store` (which the caller opens and closes)."""
    dashboard = _Dashboard(settings)
    routes: list[tuple[str, Handler, list[str]]] = [
        ("/", dashboard.campaigns, ["GET"]),
        ("/campaigns/{campaign_id:int}", dashboard.campaign, ["GET"]),
        ("/campaigns/{campaign_id:int}/export.csv", dashboard.export, ["GET"]),
        ("/campaigns/{campaign_id:int}/{action}", dashboard.act, ["POST"]),
        ("/api/campaigns", dashboard.campaigns_live, ["GET"]),
        ("/api/campaigns/{campaign_id:int}", dashboard.campaign_live, ["GET"]),
        ("/payouts", dashboard.payouts, ["GET"]),
        ("/payouts/{payout_id:int}", dashboard.payout, ["GET"]),
        ("/reconcile", dashboard.reconcile_page, ["GET"]),
        ("/reconcile/{campaign_id:int}", dashboard.reconcile, ["POST"]),
        ("/rules", dashboard.rules, ["GET"]),
        ("/login", dashboard.login_form, ["GET"]),
        ("/login", dashboard.login, ["POST"]),
        ("/logout", dashboard.logout, ["POST"]),
    ]
    app = Starlette(
        routes=[
            *(Route(path, endpoint, methods=methods) for path, endpoint, methods in routes),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=dashboard.guard)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.dashboard = dashboard
    return app
