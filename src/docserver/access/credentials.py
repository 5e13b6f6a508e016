"""Who a presented bearer token belongs to: a static API token or an OAuth access token (a JWT).

A JWT has three dot-separated parts; a static token (`dsk_` and URL-safe
base64) has none, so the token's shape alone picks the verifier, and a
token is never tried against both. A refusal says why, from the closed set
of `docserver_auth_failures_total{endpoint="mcp"}` reasons.
"""

from __future__ import annotations

from typing import Protocol

from docserver.access.scopes import Principal
from docserver.access.tokens import TokenTable


class TokenRefused(Exception):
    """The token proves nothing; `reason` says why (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Verifier(Protocol):
    async def verify(self, token: bytes) -> Principal:
        """The token's principal; TokenRefused otherwise."""
        ...


class StaticTokens:
    """The static API tokens file as a verifier."""

    def __init__(self, table: TokenTable) -> None:
        self.table = table

    async def verify(self, token: bytes) -> Principal:
        principal = self.table.match(token)
        if principal is None:
            raise TokenRefused("unknown_token")
        return principal


class Credentials:
    """Routes a token to the JWT verifier or the static tokens, whichever is configured for its shape."""

    def __init__(self, *, static: Verifier | None, jwt: Verifier | None) -> None:
        self.static = static
        self.jwt = jwt

    async def verify(self, token: bytes) -> Principal:
        verifier = self.jwt if self.jwt is not None and is_jwt_shaped(token) else self.static
        if verifier is None:
            raise TokenRefused("malformed")  # not a JWT, and no static tokens configured
        return await verifier.verify(token)


def is_jwt_shaped(token: bytes) -> bool:
    return token.count(b".") == 2
