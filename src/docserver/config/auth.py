"""settings.auth: who may call /mcp, off unless set: static API tokens, OAuth access tokens, or both."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import model_validator

from docserver.config.fields import LOWERCASE, Group, env
from docserver.config.urls import HttpUrl

MCP_PATH = "/mcp"
AdminAuth = Annotated[Literal["token", "scope", "token_or_scope"], LOWERCASE]


class AuthSettings(Group):
    api_tokens_file: Path | None = env("DOCSERVER_API_TOKENS_FILE", None)
    """TOML file of static API tokens, stored as SHA-256 hashes, each with a name and scopes
    (`docs:read`, `docs:read:<source>`, `docs:admin`). Set: /mcp needs `Authorization: Bearer <token>`."""
    issuer: HttpUrl | None = env("DOCSERVER_AUTH_ISSUER", None)
    """OAuth 2.1 authorization server (OIDC issuer) whose signed JWT access tokens /mcp accepts;
    its metadata names the JWKS. Needs DOCSERVER_PUBLIC_URL."""
    audience: str | None = env("DOCSERVER_AUTH_AUDIENCE", None)
    """The `aud` an access token must carry; unset: DOCSERVER_PUBLIC_URL + `/mcp` (RFC 8707)."""
    jwks_url: HttpUrl | None = env("DOCSERVER_AUTH_JWKS_URL", None)
    """The issuer's JWKS, when its metadata cannot be used to find it."""
    public_url: HttpUrl | None = env("DOCSERVER_PUBLIC_URL", None)
    """The URL clients reach docserver at, e.g. `https://docs.example.com`: the resource in
    `/.well-known/oauth-protected-resource` and the default audience."""
    clock_skew: float = env("DOCSERVER_AUTH_CLOCK_SKEW", 30.0, ge=0, le=300)
    """Seconds of clock difference tolerated on a token's `exp`, `nbf` and `iat`."""
    jwks_refetch_interval: float = env("DOCSERVER_AUTH_JWKS_REFETCH_INTERVAL", 30.0, ge=0, le=3600)
    """Least seconds between two JWKS fetches caused by tokens signed with an unknown key (`kid`)."""
    admin_auth: AdminAuth = env("DOCSERVER_ADMIN_AUTH", "token")
    """Who may read /metrics and /debug/pprof: `token`, their own tokens (METRICS_TOKEN, PROFILING_TOKEN);
    `scope`, a bearer token with the `docs:admin` scope (a static API token or an OAuth access token)
    instead; `token_or_scope`, either. `scope` and `token_or_scope` need DOCSERVER_API_TOKENS_FILE or
    DOCSERVER_AUTH_ISSUER."""

    @model_validator(mode="after")
    def _check_oauth(self) -> AuthSettings:
        if self.issuer is not None and self.public_url is None:
            raise ValueError(
                "DOCSERVER_AUTH_ISSUER needs DOCSERVER_PUBLIC_URL, the URL clients reach docserver at "
                "(e.g. https://docs.example.com): it names the protected resource and the default audience"
            )
        if self.admin_auth != "token" and not self.enabled:
            raise ValueError(
                f"DOCSERVER_ADMIN_AUTH={self.admin_auth} needs DOCSERVER_API_TOKENS_FILE or DOCSERVER_AUTH_ISSUER: "
                "the docs:admin scope comes from their tokens"
            )
        return self

    @property
    def admin_scope(self) -> bool:
        """Whether /metrics and /debug/pprof accept a `docs:admin` bearer token."""
        return self.admin_auth != "token"

    @property
    def enabled(self) -> bool:
        return self.api_tokens_file is not None or self.issuer is not None

    @property
    def resource(self) -> str:
        """The protected resource's identifier: the canonical URL of /mcp."""
        assert self.public_url is not None
        return self.public_url + MCP_PATH

    @property
    def expected_audience(self) -> str:
        return self.audience if self.audience is not None else self.resource
