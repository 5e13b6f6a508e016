"""GET /metrics: the registry in the format the scraper asks for, optionally behind a token."""

from __future__ import annotations

import asyncio
import hmac

from prometheus_client.exposition import choose_encoder
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from docserver.observability.metrics import Metrics


def bearer_matches(request: Request, token: str) -> bool:
    """Constant-time check of `Authorization: Bearer <token>`, comparing bytes (non-ASCII safe)."""
    header = request.headers.get("authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Starlette decodes header bytes as Latin-1; encoding back gives the bytes that were sent.
    return hmac.compare_digest(supplied.strip().encode("latin-1"), token.encode("utf-8"))


def metrics_route(metrics: Metrics, token: SecretStr | None = None) -> Route:
    """The /metrics route. OpenMetrics (with exemplars) when the Accept header asks for it."""
    secret = token.get_secret_value() if token is not None else None
    count_failure = metrics.for_auth("metrics")

    async def endpoint(request: Request) -> Response:
        if secret is not None and not bearer_matches(request, secret):
            count_failure(_failure_reason(request))
            return PlainTextResponse(
                "unauthorized: /metrics needs Authorization: Bearer <METRICS_TOKEN>\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="docserver-metrics"'},
            )
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        # Rendering walks every series; a thread keeps the event loop answering meanwhile.
        body = await asyncio.to_thread(encoder, metrics.registry)
        return Response(body, media_type=content_type)

    return Route("/metrics", endpoint, methods=["GET"])


def _failure_reason(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        return "missing"
    return "unknown_token" if header.partition(" ")[0].lower() == "bearer" else "malformed"
