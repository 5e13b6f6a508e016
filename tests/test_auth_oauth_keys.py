"""The issuer's keys: discovery, an unknown `kid` and key rotation, rate-limited refetches, the JWKS down.

Over real HTTP on both sides: docserver under uvicorn fetches metadata and
JWKS from the identity provider stand-in, and the official MCP client calls.
"""

from __future__ import annotations

from docserver.access.jwks import JwksCache, metadata_urls
from docserver.config import Settings
from docserver.observability.metrics import Metrics
from docserver.runtime import Runtime
from support.idp import IdentityProvider, rsa_key
from support.oauth import Caller, docserver, failures


async def test_an_unknown_kid_is_refused_then_served_once_the_issuer_rotates_to_it(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    idp.keys["next"] = rsa_key("rsa-2")  # the provider has it, but does not publish it yet
    async with docserver(settings, indexed, idp, jwks_refetch_interval=0) as url:
        caller = Caller(url)
        assert (await caller.call(idp.mint(scope="docs:read")))["sources"]
        refused = await caller.refused(idp.mint(key="next", scope="docs:read"))
        idp.publish(idp.keys["next"], "next")
        idp.withdraw("rsa")
        rotated = await caller.call(idp.mint(key="next", scope="docs:read"))

    assert refused[0].status_code == 401
    assert failures(indexed[1], "unknown_key") == len(refused)
    assert rotated["sources"]


async def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    async with docserver(settings, indexed, idp, jwks_refetch_interval=3600) as url:
        caller = Caller(url)
        await caller.call(idp.mint(scope="docs:read"))
        fetched = idp.jwks_fetches
        for made_up in ("a", "b", "c"):
            await caller.refused(idp.mint(kid=made_up, scope="docs:read"))
        still_served = await caller.call(idp.mint(key="ec", scope="docs:read"))

    assert fetched == 1 and idp.jwks_fetches == 1  # the first token fetched; made-up kids fetch nothing more
    assert still_served["sources"]


async def test_cached_keys_keep_working_while_the_jwks_is_down(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    async with docserver(settings, indexed, idp, jwks_refetch_interval=0) as url:
        caller = Caller(url)
        await caller.call(idp.mint(scope="docs:read"))
        idp.down = True
        served = await caller.call(idp.mint(key="ec", scope="docs:read"))
        refused = await caller.refused(idp.mint(kid="rotated-while-down", scope="docs:read"))

    assert served["sources"]
    assert refused[0].status_code == 401 and failures(indexed[1], "unknown_key") == len(refused)


async def test_without_any_cached_key_a_jwks_outage_fails_closed(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    idp.down = True
    async with docserver(settings, indexed, idp) as url:
        refused = await Caller(url).refused(idp.mint(scope="docs:read"))

    assert refused[0].status_code == 401
    assert failures(indexed[1], "unknown_key") == len(refused)


async def test_oidc_discovery_finds_the_jwks_when_there_is_no_oauth_metadata(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    idp.oidc_only = True
    async with docserver(settings, indexed, idp) as url:
        listed = await Caller(url).call(idp.mint(scope="docs:read"))
    assert listed["sources"]


async def test_a_configured_jwks_url_is_used_without_discovery(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    async with docserver(settings, indexed, idp, jwks_url=f"{idp.base_url}/jwks") as url:
        listed = await Caller(url).call(idp.mint(key="ec", scope="docs:read"))
    assert listed["sources"] and idp.jwks_fetches == 1 and idp.metadata_fetches == 0


async def test_metadata_of_another_issuer_is_not_trusted(idp: IdentityProvider) -> None:
    keys = JwksCache(idp.issuer + "/realms/other")
    assert await keys.key("rsa-1") is None


def test_metadata_is_looked_up_where_rfc_8414_and_oidc_put_it() -> None:
    assert metadata_urls("https://id.example.com/realms/docs") == [
        "https://id.example.com/.well-known/oauth-authorization-server/realms/docs",
        "https://id.example.com/realms/docs/.well-known/openid-configuration",
    ]
    assert metadata_urls("https://tenant.auth0.com/") == [
        "https://tenant.auth0.com/.well-known/oauth-authorization-server",
        "https://tenant.auth0.com/.well-known/openid-configuration",
    ]
