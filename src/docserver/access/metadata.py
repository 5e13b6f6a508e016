"""OAuth Protected Resource Metadata (RFC 9728): how an MCP client learns where to get a token.

Served when an issuer is configured, at `/.well-known/oauth-protected-resource/mcp`
(the well-known URL of the resource `<public URL>/mcp`, RFC 9728 section 3.1)
and at `/.well-known/oauth-protected-resource` for clients that look there.
Every 401 from /mcp names the first in `WWW-Authenticate: Bearer resource_metadata=...`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from docserver.access.scopes import ADMIN, READ
from docserver.config.auth import AuthSettings

WELL_KNOWN = "/.well-known/oauth-protected-resource"
CACHE_CONTROL = "public, max-age=3600"


def metadata_url(resource: str) -> str:
    """The RFC 9728 metadata URL of `resource`: the well-known part between the host and the path."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{parts.path.rstrip('/')}"


def resource_metadata(settings: AuthSettings) -> dict[str, object]:
    return {
        "resource": settings.resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": [READ, ADMIN],
        "bearer_methods_supported": ["header"],
        "resource_name": "docserver",
    }


def metadata_routes(settings: AuthSettings) -> list[BaseRoute]:
    """The metadata routes, or none when no issuer is configured."""
    if settings.issuer is None:
        return []
    document = resource_metadata(settings)

    async def protected_resource(request: Request) -> Response:
        return JSONResponse(document, headers={"Cache-Control": CACHE_CONTROL})

    paths = [WELL_KNOWN, urlsplit(metadata_url(settings.resource)).path]
    return [Route(path, protected_resource, methods=["GET"]) for path in dict.fromkeys(paths)]
