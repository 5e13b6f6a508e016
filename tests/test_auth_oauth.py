"""OAuth access tokens on /mcp: a real identity provider stand-in, a real HTTP server, the official MCP client.

The provider (tests/support/idp.py) serves its metadata and JWKS on loopback
and mints JWTs with a real RSA and a real EC key; docserver runs under
uvicorn on another loopback port and fetches the keys over HTTP, as it
would from Keycloak or Auth0. Every refusal is checked for its status, its
challenge, its reason on docserver_auth_failures_total, and that the token
appears nowhere in the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from docserver.config import Settings
from docserver.observability.metrics import Metrics
from docserver.runtime import Runtime
from support.captured_logs import capture_events
from support.idp import IdentityProvider, rsa_key
from support.oauth import Caller, docserver, failures, names


async def test_no_token_is_refused_with_the_metadata_url_then_a_valid_one_is_served(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    async with docserver(settings, indexed, idp) as url:
        caller = Caller(url)
        refused = await caller.refused(None)
        listed = await caller.call(idp.mint(scope="docs:read"))

    assert refused[0].status_code == 401
    assert refused[0].headers["www-authenticate"] == (
        f'Bearer realm="docserver", resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"'
    )
    assert names(listed) == ["corpus"]
    assert failures(indexed[1], "missing") == len(refused)


async def test_an_ec_signed_token_is_served_too(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    async with docserver(settings, indexed, idp) as url:
        listed = await Caller(url).call(idp.mint(key="ec", scope="docs:read"))
    assert names(listed) == ["corpus"]


async def test_the_protected_resource_metadata_names_the_issuer_and_scopes(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    async with docserver(settings, indexed, idp) as url, httpx.AsyncClient(base_url=url) as http:
        by_path = [await http.get("/.well-known/oauth-protected-resource" + path) for path in ("/mcp", "")]

    for answer in by_path:
        assert answer.status_code == 200
        assert answer.json() == {
            "resource": f"{url}/mcp",
            "authorization_servers": [idp.issuer],
            "scopes_supported": ["docs:read", "docs:admin"],
            "bearer_methods_supported": ["header"],
            "resource_name": "docserver",
        }


def forged(idp: IdentityProvider) -> str:
    """Signed by an attacker's RSA key under the published key's id."""
    idp.keys["forger"] = rsa_key(idp.keys["rsa"].kid)
    return idp.mint(key="forger", scope="docs:read")


NOW = int(time.time())
BAD_TOKENS: dict[str, tuple[Callable[[IdentityProvider], str], int, str]] = {
    "expired": (lambda idp: idp.mint(scope="docs:read", iat=NOW - 900, exp=NOW - 600), 401, "expired"),
    "not yet valid": (lambda idp: idp.mint(scope="docs:read", nbf=NOW + 600), 401, "expired"),
    "issued in the future": (lambda idp: idp.mint(scope="docs:read", iat=NOW + 600, exp=NOW + 900), 401, "expired"),
    "no exp": (lambda idp: idp.mint(scope="docs:read", exp=None), 401, "malformed"),
    "wrong audience": (lambda idp: idp.mint(scope="docs:read", aud="https://x.example.com/mcp"), 401, "wrong_audience"),
    "no audience": (lambda idp: idp.mint(scope="docs:read", aud=None), 401, "wrong_audience"),
    "wrong issuer": (lambda idp: idp.mint(scope="docs:read", iss="https://evil.example.com"), 401, "wrong_issuer"),
    "alg none": (lambda idp: idp.mint_unsigned(scope="docs:read"), 401, "bad_signature"),
    "HS256 with the public key": (lambda idp: idp.mint_hs256_with_public_key(scope="docs:read"), 401, "bad_signature"),
    "bad signature": (forged, 401, "bad_signature"),
    "ES256 under the RSA key id": (
        lambda idp: idp.mint(key="ec", kid="rsa-1", scope="docs:read"),
        401,
        "bad_signature",
    ),
    "not a JWT": (lambda idp: "eyJhbGciOi.eyJzdWIi.x", 401, "malformed"),
    "oversized": (lambda idp: idp.mint(scope="docs:read", padding="x" * 9000), 401, "malformed"),
    "no docs scope": (lambda idp: idp.mint(scope="openid email"), 403, "insufficient_scope"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_a_bad_token_is_refused_for_its_reason_and_never_echoed(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider, case: str
) -> None:
    mint, status, reason = BAD_TOKENS[case]
    with capture_events() as events:
        async with docserver(settings, indexed, idp) as url:
            token = mint(idp)
            refused = await Caller(url).refused(token)

    challenge = refused[0].headers["www-authenticate"]
    assert refused[0].status_code == status
    assert f'resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"' in challenge
    expected_error = 'error="insufficient_scope", scope="docs:read"' if status == 403 else 'error="invalid_token"'
    assert challenge.endswith(expected_error)
    assert failures(indexed[1], reason) == len(refused)
    assert all(token not in answer.text for answer in refused)
    assert {event["reason"] for event in events if event["event"] == "mcp_auth_failed"} == {reason}
    assert token not in repr(events) and token[-20:] not in repr(events)
