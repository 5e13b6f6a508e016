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
    return BearerGate(endpoint, credentials(settings), on_failure, resource_metadata(settings), on_success)


def credentials(settings: AuthSettings) -> Credentials:
    """The configured verifiers: static API tokens, OAuth access tokens, or both (authorization enabled)."""
    static = StaticTokens(load_tokens(settings.api_tokens_file)) if settings.api_tokens_file is not None else None
    oauth = None
    if settings.issuer is not None:
        keys = JwksCache(settings.issuer, jwks_url=settings.jwks_url, refetch_interval=settings.jwks_refetch_interval)
        oauth = JwtVerifier(settings, keys)
    return Credentials(static=static, jwt=oauth)


def resource_metadata(settings: AuthSettings) -> str | None:
    """The RFC 9728 metadata URL that challenges name, when OAuth is configured."""
    return metadata_url(settings.resource) if settings.issuer is not None else None


def admin_verifier(settings: AuthSettings) -> Credentials | None:
    """What verifies a docs:admin bearer on /metrics and /debug/pprof; None when DOCSERVER_ADMIN_AUTH=token."""
    return credentials(settings) if settings.admin_scope else None
