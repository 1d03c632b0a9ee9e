"""Who may see the dashboard: the bind rule, the access token, sessions and CSRF tokens.

* On a loopback address the dashboard may run open; on any other it refuses to start without
  an access token (`check_bind`).
* The token is compared in constant time; a browser logs in once and gets a session cookie,
  a script sends `Authorization: Bearer <token>`.
* A session is a random nonce and its start time signed with HMAC (key derived from the token,
  or random when the dashboard runs open): nothing is kept in memory, nothing in the cookie
  reveals the token, and a session ends `SESSION_HOURS` after it began (log in again).
* Every POST must carry the session's CSRF token, an HMAC of the session nonce.

>>> check_bind("0.0.0.0", None)
Traceback (most recent call last):
...
hongbao.errors.ConfigurationError: the dashboard on 0.0.0.0 is reachable from other machines ...
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from hongbao.clock import Clock, SystemClock
from hongbao.defaults import DASHBOARD_TOKEN_ENV as TOKEN_ENV
from hongbao.errors import ConfigurationError

__all__ = [
    "MIN_TOKEN_LENGTH",
    "SESSION_HOURS",
    "TOKEN_ENV",
    "Access",
    "Session",
    "check_bind",
    "is_loopback",
]

MIN_TOKEN_LENGTH = 16
"""A shorter token is refused: it would be guessable."""
SESSION_HOURS = 12
"""A session cookie is honoured this long after it was issued: a stolen one does not last."""


def is_loopback(host: str) -> bool:
    """True when `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token, and any token too short to be safe."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"the dashboard's access token must be at least {MIN_TOKEN_LENGTH} characters"
        )
    if token is None and not is_loopback(host):
        raise ConfigurationError(
            f"the dashboard on {host} is reachable from other machines: set an access token "
            f"({TOKEN_ENV} or --token-file) or bind to 127.0.0.1"
        )


@dataclass(frozen=True, slots=True)
class Session:
    """A browser session: its nonce, and whether it logged in with the token."""

    nonce: str
    authenticated: bool


class Access:
    """The access token (None: open) and the signing of sessions and CSRF tokens."""

    def __init__(self, token: str | None, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._token = token.encode() if token is not None else None
        seed = self._token if self._token is not None else secrets.token_bytes(32)
        # Sessions outlive a restart when a token is set; an open dashboard's die with it.
        self._key = hmac.new(seed, b"hongbao dashboard sessions", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"Access(open={self.open})"

    @property
    def open(self) -> bool:
        """True when no token is needed."""
        return self._token is None

    def token_matches(self, given: str) -> bool:
        """Whether `given` is the token (constant time)."""
        if self._token is None:
            return True
        return hmac.compare_digest(_utf8(given), self._token)

    def bearer_matches(self, header: str | None) -> bool | None:
        """None without an `Authorization: Bearer` header, else whether its token is right."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return self.token_matches(value.strip())

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self, *, authenticated: bool) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        session = Session(secrets.token_urlsafe(18), authenticated or self.open)
        issued = int(self._clock.now().timestamp())
        body = f"{session.nonce}.{int(session.authenticated)}.{issued}"
        return session, f"{body}.{self._sign(body)}"

    def read_session(self, cookie: str | None) -> Session | None:
        """The session a cookie carries; None if absent, expired or not signed by this dashboard."""
        if not cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3:
            return None
        nonce, flag, issued = parts
        if not nonce or flag not in ("0", "1") or not (issued.isascii() and issued.isdigit()):
            return None
        if not hmac.compare_digest(_utf8(signature), _utf8(self._sign(body))):
            return None
        age = self._clock.now().timestamp() - int(issued)
        if not 0 <= age <= SESSION_HOURS * 3600:
            return None
        return Session(nonce, flag == "1" or self.open)

    def csrf_token(self, session: Session) -> str:
        """The CSRF token of a session, to put in every form it posts."""
        return self._sign(f"csrf:{session.nonce}")

    def csrf_matches(self, session: Session | None, given: str | None) -> bool:
        """Whether a posted CSRF token belongs to the session (constant time)."""
        if session is None or not given:
            return False
        return hmac.compare_digest(_utf8(given), _utf8(self.csrf_token(session)))


def _utf8(text: str) -> bytes:
    # compare_digest takes str only when it is ASCII (TypeError otherwise): anything a client
    # sends is compared as bytes.
    return text.encode("utf-8", "replace")
