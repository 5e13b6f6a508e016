"""Bearer authentication in front of the MCP endpoint.

Every /mcp request must carry `Authorization: Bearer <token>`; the verifier
(static API tokens, OAuth access tokens) names its principal. The principal's name and readable
sources go into the ASGI scope (`PRINCIPAL_SCOPE_KEY`, `SOURCES_SCOPE_KEY`)
for the rate limiter, the tools and the log lines; the token itself goes
nowhere. Refusals are 401 with `WWW-Authenticate` (403 `insufficient_scope`
for a caller that may read nothing), counted by reason; with OAuth configured
the challenge names the protected resource metadata (RFC 9728).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from docserver.access.credentials import TokenRefused, Verifier
from docserver.access.scopes import READ
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


class BearerGate:
    """Authenticates each request to the wrapped endpoint; refuses the rest."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        on_failure: Callable[[str], None] | None = None,
        resource_metadata: str | None = None,
        on_success: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.on_failure = on_failure
        self.on_success = on_success
        self.resource_metadata = resource_metadata
        """The URL of this resource's RFC 9728 metadata, named in every challenge (OAuth configured)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        presented, reason = bearer_token(scope["headers"])
        if presented is None:
            await self._refuse(scope, send, reason or "malformed")
            return
        try:
            principal = await self.verifier.verify(presented)
        except TokenRefused as refused:
            await self._refuse(scope, send, refused.reason)
            return
        if not principal.may_read:
            await self._refuse(scope, send, "insufficient_scope")
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal.name
        scope[SOURCES_SCOPE_KEY] = principal.sources
        if self.on_success is not None:
            self.on_success()
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, reason: str) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)
        client = scope.get("client")
        log.warning("mcp_auth_failed", reason=reason, client_ip=client[0] if client else None)
        await send_challenge(send, reason, self.resource_metadata)


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


def challenge(
    reason: str, resource_metadata: str | None = None, *, realm: str = "docserver", scope: str = READ
) -> tuple[int, bytes]:
    """(status, WWW-Authenticate) for a refusal (RFC 6750): no error code when no credentials were sent.

    `resource_metadata` (RFC 9728) tells an OAuth client where to learn which authorization server to ask;
    `scope` is the one a 403 names as missing.
    """
    header = b'Bearer realm="' + realm.encode() + b'"'
    if resource_metadata is not None:
        header += b', resource_metadata="' + resource_metadata.encode() + b'"'
    if reason == "missing":
        return 401, header
    if reason == "insufficient_scope":
        return 403, header + b', error="insufficient_scope", scope="' + scope.encode() + b'"'
    return 401, header + b', error="invalid_token"'


async def send_challenge(send: Send, reason: str, resource_metadata: str | None = None) -> None:
    status, header = challenge(reason, resource_metadata)
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
