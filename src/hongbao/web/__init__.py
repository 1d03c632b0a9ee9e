"""The operator's dashboard (`hongbao dashboard`): campaigns, payouts, reconciliation, rules.

A Starlette app over the ledger with server-rendered Jinja2 pages, a little JavaScript for live
progress and confirmations, and Chart.js (served from the package, no CDN) for the charts. It
sits beside `hongbao.cli` above the engine: it reads the ledger and calls the engine's campaign
actions; nothing but the CLI imports it.

>>> app = create_app(DashboardSettings(store=store, token=token))  # doctest: +SKIP
"""

from hongbao.web.access import TOKEN_ENV, check_bind, is_loopback
from hongbao.web.app import SESSION_COOKIE, DashboardSettings, create_app

__all__ = [
    "SESSION_COOKIE",
    "TOKEN_ENV",
    "DashboardSettings",
    "check_bind",
    "create_app",
    "is_loopback",
]
