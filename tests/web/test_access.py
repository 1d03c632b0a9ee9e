"""Who may see the dashboard: token, sessions, CSRF, and the loopback rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hongbao.clock import FrozenClock
from hongbao.errors import ConfigurationError
from hongbao.ledger import CampaignState
from hongbao.web import SESSION_COOKIE, check_bind, is_loopback
from hongbao.web.access import SESSION_HOURS, Access
from tests.web.webkit import EVERY_ADDRESS, TOKEN, Filled, csrf_of, dashboard


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses_may_run_open(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", [EVERY_ADDRESS, "::", "192.168.1.20", "dashboard.example.com"])
def test_any_other_address_needs_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigurationError, match="set an access token"):
        check_bind(host, None)
    check_bind(host, TOKEN)


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        check_bind("127.0.0.1", "short")


def test_a_session_cookie_is_signed_and_its_csrf_token_is_its_own() -> None:
    access = Access(TOKEN)
    session, cookie = access.new_session(authenticated=True)

    assert access.read_session(cookie) == session
    assert TOKEN not in cookie
    nonce, _, issued, signature = cookie.split(".")
    assert access.read_session(f"{nonce}.1.{issued}.{'0' * len(signature)}") is None
    other, _ = access.new_session(authenticated=True)
    assert access.csrf_matches(session, access.csrf_token(session))
    assert not access.csrf_matches(session, access.csrf_token(other))
    assert not access.csrf_matches(session, None)
    # Another dashboard (another token) does not accept this one's cookies.
    assert Access("another-token-0123456789").read_session(cookie) is None


def test_an_unauthenticated_cookie_cannot_be_turned_into_an_authenticated_one() -> None:
    access = Access(TOKEN)
    _, cookie = access.new_session(authenticated=False)
    nonce, _, issued, signature = cookie.split(".")
    assert access.read_session(f"{nonce}.1.{issued}.{signature}") is None


def test_a_session_ends_after_its_hours_and_its_start_cannot_be_moved() -> None:
    clock = FrozenClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    access = Access(TOKEN, clock=clock)
    session, cookie = access.new_session(authenticated=True)
    nonce, flag, issued, signature = cookie.split(".")

    clock.advance(SESSION_HOURS * 3600)
    assert access.read_session(cookie) == session
    # A later start written into the cookie breaks its signature.
    assert access.read_session(f"{nonce}.{flag}.{int(issued) + 3600}.{signature}") is None
    clock.advance(1)
    assert access.read_session(cookie) is None


def test_without_the_token_every_page_is_refused(filled: Filled) -> None:
    with dashboard(filled.bench, token=TOKEN) as client:
        page = client.get("/")
        live = client.get("/api/campaigns")
        payout = client.get(f"/payouts/{filled.failed.id}")

    assert page.status_code == 401
    assert 'name="token"' in page.text  # the login form
    assert filled.campaign.name not in page.text
    assert live.status_code == 401
    assert live.json() == {"error": "access token needed"}
    assert payout.status_code == 401
    assert filled.failed.mch_billno not in payout.text


def test_a_wrong_token_is_401(filled: Filled) -> None:
    with dashboard(filled.bench, token=TOKEN) as client:
        bearer = client.get("/", headers={"Authorization": "Bearer wrong-token-0123456789"})
        csrf = csrf_of(client.get("/login").text)
        login = client.post("/login", data={"csrf": csrf, "token": "wrong", "next": "/"})
        after = client.get("/")

    assert bearer.status_code == 401
    assert login.status_code == 401
    assert "Wrong access token" in login.text
    assert after.status_code == 401


def test_the_right_bearer_token_opens_the_pages(filled: Filled) -> None:
    with dashboard(filled.bench, token=TOKEN) as client:
        page = client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200
    assert filled.campaign.name in page.text
    assert TOKEN not in page.text


def test_logging_in_sets_a_strict_http_only_session(filled: Filled) -> None:
    with dashboard(filled.bench, token=TOKEN) as client:
        csrf = csrf_of(client.get("/login").text)
        login = client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/rules"})
        cookie = login.headers["set-cookie"]
        page = client.get("/")
        logout = client.post("/logout", data={"csrf": csrf_of(page.text)})
        after = client.get("/")

    assert (login.status_code, login.headers["location"]) == (303, "/rules")
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    assert page.status_code == 200
    assert TOKEN not in page.text
    assert logout.status_code == 303
    assert after.status_code == 401


def test_login_redirects_only_within_the_site(filled: Filled) -> None:
    with dashboard(filled.bench, token=TOKEN) as client:
        csrf = csrf_of(client.get("/login").text)
        login = client.post(
            "/login", data={"csrf": csrf, "token": TOKEN, "next": "//evil.example.com/"}
        )
    assert login.headers["location"] == "/"


def test_a_post_without_the_csrf_token_is_refused(filled: Filled) -> None:
    bench = filled.bench
    campaign = bench.campaign(bench.sim.add_users(bench.creds.appid, 2), name="autumn")
    bench.store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
    with dashboard(bench) as client:
        client.get("/")  # a session cookie
        missing = client.post(f"/campaigns/{campaign.id}/pause", data={})
        wrong = client.post(f"/campaigns/{campaign.id}/cancel", data={"csrf": "0" * 64})
        login = client.post("/login", data={"token": TOKEN})

    assert missing.status_code == 403
    assert "CSRF" in missing.text
    assert wrong.status_code == 403
    assert login.status_code == 403
    assert bench.store.get_campaign(campaign.id).state is CampaignState.RUNNING


def test_a_bearer_post_still_needs_a_csrf_token(filled: Filled) -> None:
    bench = filled.bench
    campaign = bench.campaign(bench.sim.add_users(bench.creds.appid, 2), name="autumn")
    bench.store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
    with dashboard(bench, token=TOKEN) as client:
        refused = client.post(
            f"/campaigns/{campaign.id}/pause", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert refused.status_code == 403
    assert bench.store.get_campaign(campaign.id).state is CampaignState.RUNNING


def test_pages_forbid_framing_and_foreign_scripts(filled: Filled) -> None:
    with dashboard(filled.bench) as client:
        page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "cookie", ["abc.1.².sig", "abc.1.١٢٣.sig", "n.1.123.签名", "n.1.123.\x00", "é.1.1.x"]
)
def test_a_cookie_of_unicode_digits_or_non_ascii_is_no_session(cookie: str) -> None:
    # "²".isdigit() is true and int("²") raises; compare_digest raises on non-ASCII str.
    assert Access(TOKEN).read_session(cookie) is None


HUGE = "99999999999999999999"  # beyond 64 bits: no row has it, and a query would overflow


@pytest.mark.parametrize(
    "path",
    [
        f"/payouts/{HUGE}",
        f"/campaigns/{HUGE}",
        f"/campaigns/{HUGE}/export.csv",
        f"/api/campaigns/{HUGE}",
    ],
)
def test_an_id_beyond_64_bits_is_404_with_the_security_headers(
    filled: Filled, path: str
) -> None:
    with dashboard(filled.bench) as client:
        answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_non_ascii_cookies_csrf_fields_and_tokens_are_refused_not_500(filled: Filled) -> None:
    bench = filled.bench
    cookie = {b"cookie": "hongbao_session=é.1.1.签名".encode()}
    with dashboard(bench, token=TOKEN) as client:
        login_page = client.get("/login", headers=cookie)
        csrf = csrf_of(client.get("/login").text)
        wrong_csrf = client.post("/login", data={"csrf": "签名" * 10, "token": TOKEN})
        wrong_token = client.post("/login", data={"csrf": csrf, "token": "令牌" * 10})
        bearer = client.get("/", headers={b"authorization": "Bearer é令牌".encode()})

    assert login_page.status_code == 200
    assert wrong_csrf.status_code == 403
    assert wrong_token.status_code == 401
    assert bearer.status_code == 401


def test_an_unexpected_failure_is_a_500_with_the_security_headers(
    filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hongbao.web import app as web_app

    async def broken(self: object, request: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(web_app._Dashboard, "rules", broken)
    with dashboard(filled.bench) as client:
        answer = client.get("/rules")
    assert answer.status_code == 500
    assert "a bug" not in answer.text
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"


def test_wrong_tokens_slow_an_address_down_then_it_is_refused_but_not_the_operator(
    filled: Filled,
) -> None:
    from starlette.testclient import TestClient

    from hongbao.web.throttle import FREE, LIMIT

    with dashboard(filled.bench, token=TOKEN) as attacker:
        pauses: list[float] = []

        async def recorded(seconds: float) -> None:
            pauses.append(seconds)

        throttle = attacker.app.state.dashboard.throttle  # type: ignore[attr-defined]
        throttle._sleep = recorded
        wrong = {"Authorization": "Bearer wrong-token-0123456789"}
        answers = [attacker.get("/", headers=wrong).status_code for _ in range(LIMIT)]
        csrf = csrf_of(attacker.get("/login").text)
        login = attacker.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/"})
        right = attacker.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
        # The operator, from another address, is not held back.
        with TestClient(attacker.app, client=("10.0.0.7", 40000)) as operator:
            theirs = operator.get("/", headers={"Authorization": f"Bearer {TOKEN}"})

    assert answers == [401] * LIMIT
    assert len(pauses) == LIMIT - FREE  # the first FREE failures are answered at once
    assert pauses == sorted(pauses)
    assert pauses[0] > 0
    assert (login.status_code, right.status_code) == (429, 429)
    assert int(right.headers["retry-after"]) > 0
    assert theirs.status_code == 200


def test_wrong_login_forms_count_and_a_right_token_clears_the_count() -> None:
    import asyncio

    from hongbao.web.throttle import LIMIT, LOCKOUT, Throttle

    now = [0.0]

    async def no_wait(seconds: float) -> None:
        return None

    throttle = Throttle(now=lambda: now[0], sleep=no_wait)

    async def fail(times: int) -> None:
        for _ in range(times):
            await throttle.failed("203.0.113.9")

    asyncio.run(fail(LIMIT - 1))
    throttle.succeeded("203.0.113.9")
    asyncio.run(fail(LIMIT - 1))
    assert throttle.retry_after("203.0.113.9") is None  # cleared by the right token
    asyncio.run(fail(1))
    assert throttle.retry_after("203.0.113.9") is not None
    assert throttle.retry_after("198.51.100.1") is None
    now[0] += LOCKOUT + 1
    assert throttle.retry_after("203.0.113.9") is None


def test_wrong_login_forms_are_throttled_like_bearer_tokens(filled: Filled) -> None:
    from hongbao.web.throttle import LIMIT

    with dashboard(filled.bench, token=TOKEN) as client:

        async def no_wait(seconds: float) -> None:
            return None

        client.app.state.dashboard.throttle._sleep = no_wait  # type: ignore[attr-defined]
        csrf = csrf_of(client.get("/login").text)
        form = {"csrf": csrf, "token": "wrong", "next": "/"}
        answers = [client.post("/login", data=form).status_code for _ in range(LIMIT + 1)]
    assert answers == [401] * LIMIT + [429]
