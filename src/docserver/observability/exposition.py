"""GET /metrics: the registry in the format the scraper asks for, optionally behind a token."""

from __future__ import annotations

import asyncio
import hmac

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from docserver.access.admin import AdminAccess, OwnToken
from docserver.access.credentials import Verifier
from docserver.config import Settings
from docserver.observability.metrics import Metrics

REALM = "docserver-metrics"
CHALLENGE = f'Bearer realm="{REALM}"'


def metrics_token(token: str) -> OwnToken:
    """The METRICS_TOKEN check: `Authorization: Bearer <token>`, compared as bytes in constant time."""
    expected = token.encode("utf-8")

    def check(authorization: bytes | None) -> str | None:
        if authorization is None:
            return "missing"
        scheme, _, supplied = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return "malformed"
        return None if hmac.compare_digest(supplied.strip(), expected) else "unknown_token"

    return check


def metrics_access(settings: Settings, admin: Verifier | None, challenge_url: str | None = None) -> AdminAccess | None:
    """Who may scrape: METRICS_TOKEN and/or a docs:admin bearer (`admin`); None (open) when neither applies."""
    token = settings.telemetry.metrics_token
    own = metrics_token(token.get_secret_value()) if token is not None and settings.auth.admin_auth != "scope" else None
    if own is None and admin is None:
        return None
    return AdminAccess(own, admin, REALM, CHALLENGE, challenge_url)


def metrics_route(metrics: Metrics, access: AdminAccess | None = None) -> Route:
    """The /metrics route, open when `access` is None. OpenMetrics (with exemplars) when the Accept header asks."""
    count_failure = metrics.for_auth("metrics")

    async def endpoint(request: Request) -> Response:
        if access is not None:
            header = next((value for name, value in request.scope["headers"] if name == b"authorization"), None)
            reason = await access.refusal(header)
            if reason is not None:
                count_failure(reason)
                return _refused(access, reason)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        # Rendering walks every series; a thread keeps the event loop answering meanwhile.
        body = await asyncio.to_thread(encoder, metrics.registry)
        return Response(body, media_type=content_type)

    return Route("/metrics", endpoint, methods=["GET"])


def _refused(access: AdminAccess, reason: str) -> Response:
    status, challenge = access.challenge(reason)
    accepted = [
        *(["Authorization: Bearer <METRICS_TOKEN>"] if access.own is not None else []),
        *(["a bearer token with the docs:admin scope"] if access.admin is not None else []),
    ]
    needs = " or ".join(accepted)
    message = f"unauthorized: /metrics needs {needs}"
    if status == 403:
        message = "forbidden: the token lacks the docs:admin scope"
    return PlainTextResponse(message + "\n", status_code=status, headers={"WWW-Authenticate": challenge})
