"""Bearer authentication in front of the MCP endpoint.

Every /mcp request must carry `Authorization: Bearer <token>`; the verifier
(static API tokens) names its principal. The principal's name and readable
sources go into the ASGI scope (`PRINCIPAL_SCOPE_KEY`, `SOURCES_SCOPE_KEY`)
for the rate limiter, the tools and the log lines; the token itself goes
nowhere. Refusals are 401 with `WWW-Authenticate` (403 `insufficient_scope`
for a caller that may read nothing), counted by reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from docserver.access.scopes import READ, Principal
from docserver.observability.context import current_correlation_id
from docserver.observability.logging import get_logger

PRINCIPAL_SCOPE_KEY = "docserver.principal"
"""The caller's name (token name or subject), in the ASGI scope of an authenticated request."""
SOURCES_SCOPE_KEY = "docserver.sources"
"""The sources the caller may read (None: all), in the ASGI scope of an authenticated request."""
MAX_AUTHORIZATION_BYTES = 8192
"""A longer Authorization header is refused unread: no token docserver accepts is that long."""
_TOKEN68 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")

log = get_logger("docserver.access")


class Verifier(Protocol):
    def match(self, presented: bytes) -> Principal | None: ...


class BearerGate:
    """Authenticates each request to the wrapped endpoint; refuses the rest."""

    def __init__(self, app: ASGIApp, verifier: Verifier, on_failure: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.verifier = verifier
        self.on_failure = on_failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        presented, reason = bearer_token(scope["headers"])
        principal = self.verifier.match(presented) if presented is not None else None
        if principal is None:
            await self._refuse(scope, send, reason or "unknown_token")
            return
        if not principal.may_read:
            await self._refuse(scope, send, "insufficient_scope")
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal.name
        scope[SOURCES_SCOPE_KEY] = principal.sources
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, reason: str) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)
        client = scope.get("client")
        log.warning("mcp_auth_failed", reason=reason, client_ip=client[0] if client else None)
        await send_challenge(send, reason)


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, str | None]:
    """(token, None) from `Authorization: Bearer <token>`, else (None, why: missing or malformed)."""
    values = [value for name, value in headers if name == b"authorization"]
    if not values:
        return None, "missing"
    if len(values) > 1 or len(values[0]) > MAX_AUTHORIZATION_BYTES:
        return None, "malformed"
    scheme, _, token = values[0].strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token or not _TOKEN68.issuperset(token):
        return None, "malformed"
    return token, None


def challenge(reason: str) -> tuple[int, bytes]:
    """(status, WWW-Authenticate) for a refusal (RFC 6750): no error code when no credentials were sent."""
    realm = b'Bearer realm="docserver"'
    if reason == "missing":
        return 401, realm
    if reason == "insufficient_scope":
        return 403, realm + b', error="insufficient_scope", scope="' + READ.encode() + b'"'
    return 401, realm + b', error="invalid_token"'


async def send_challenge(send: Send, reason: str) -> None:
    status, header = challenge(reason)
    message = "forbidden: the token grants no docs:read scope" if status == 403 else "unauthorized: " + reason
    body: dict[str, object] = {"error": message}
    if (correlation_id := current_correlation_id()) is not None:
        body["correlation_id"] = correlation_id
    encoded = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(encoded)).encode()),
        (b"www-authenticate", header),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": encoded})
