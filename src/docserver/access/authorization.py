"""/mcp behind the configured credentials: static API tokens, OAuth access tokens, both, or neither."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp

from docserver.access.bearer import BearerGate
from docserver.access.credentials import Credentials, StaticTokens
from docserver.access.jwks import JwksCache
from docserver.access.jwt import JwtVerifier
from docserver.access.metadata import metadata_url
from docserver.access.tokens import load_tokens
from docserver.config.auth import AuthSettings


def authenticated(
    endpoint: ASGIApp,
    settings: AuthSettings,
    on_failure: Callable[[str], None] | None,
    on_success: Callable[[], None] | None = None,
) -> ASGIApp:
    """`endpoint` behind a BearerGate, or unchanged when no authorization is configured."""
    if not settings.enabled:
        return endpoint
    static = StaticTokens(load_tokens(settings.api_tokens_file)) if settings.api_tokens_file is not None else None
    oauth = None
    if settings.issuer is not None:
        keys = JwksCache(settings.issuer, jwks_url=settings.jwks_url, refetch_interval=settings.jwks_refetch_interval)
        oauth = JwtVerifier(settings, keys)
    resource_metadata = metadata_url(settings.resource) if oauth is not None else None
    return BearerGate(endpoint, Credentials(static=static, jwt=oauth), on_failure, resource_metadata, on_success)
