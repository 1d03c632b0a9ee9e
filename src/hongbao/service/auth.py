"""Who may call the HTTP API: bearer tokens from `[api] token_file`, and the bind rule."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from hongbao.engine.config import read_secret_file
from hongbao.errors import ConfigurationError
from hongbao.web.access import MIN_TOKEN_LENGTH, is_loopback

__all__ = ["BEARER", "Tokens", "check_bind", "load_tokens"]

BEARER = HTTPBearer(
    auto_error=False,
    description="A token of `[api] token_file` (needed when the file is set).",
)


class Tokens:
    """The accepted bearer tokens (none: the API is open, on loopback only)."""

    def __init__(self, tokens: tuple[str, ...] = ()) -> None:
        self._tokens = tuple(token.encode() for token in tokens)

    def __repr__(self) -> str:
        return f"Tokens({len(self._tokens)} tokens)"

    @property
    def open(self) -> bool:
        """True when no token is needed."""
        return not self._tokens

    def allows(self, header: str | None) -> bool:
        """Whether an `Authorization` header carries one of the tokens (constant time)."""
        if self.open:
            return True
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return False
        candidate = given.strip().encode()
        # Every token is compared, so the time says nothing about which one nearly matched.
        return any([hmac.compare_digest(candidate, token) for token in self._tokens])

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
    ) -> None:
        """The routes' dependency: 401 without a right token."""
        given = None if credentials is None else f"Bearer {credentials.credentials}"
        if not self.allows(given):
            raise HTTPException(
                401,
                "a valid bearer token is required (Authorization: Bearer TOKEN)",
                headers={"WWW-Authenticate": 'Bearer realm="hongbao"'},
            )


def load_tokens(path: Path | None) -> Tokens:
    """The tokens of `[api] token_file`: one per line, each at least 16 characters."""
    if path is None:
        return Tokens()
    where = "[api] token_file"
    lines = [line.strip() for line in read_secret_file(path, where).splitlines()]
    tokens = tuple(line for line in lines if line and not line.startswith("#"))
    if not tokens:
        raise ConfigurationError(f"{where}: {path} holds no token")
    for number, token in enumerate(tokens, 1):
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigurationError(
                f"{where}: token #{number} in {path} is shorter than {MIN_TOKEN_LENGTH} characters"
            )
    return Tokens(tokens)


def check_bind(host: str, tokens: Tokens) -> None:
    """Refuse to serve on an address other machines reach without tokens."""
    if tokens.open and not is_loopback(host):
        raise ConfigurationError(
            f"hongbao serve on {host} would be reachable from other machines without a token: "
            "set [api] token_file in the configuration, or bind to 127.0.0.1"
        )
