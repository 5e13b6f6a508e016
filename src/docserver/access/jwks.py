"""The issuer's signing keys (JWKS), fetched over HTTP and cached.

The JWKS URL comes from the settings or the issuer's metadata (RFC 8414
`oauth-authorization-server`, then OIDC `openid-configuration`), whose
`issuer` must be the configured one. Keys are kept between fetches:

- a token signed with an unknown `kid` makes the cache fetch again, at most
  once per `refetch_interval` (a flood of made-up kids costs one fetch);
- keys older than `MAX_AGE` are refreshed in the background while still used,
  so a key the issuer withdrew stops working within about that;
- when the issuer cannot be reached, the cached keys keep working; without
  any, every token is refused (`unknown_key`): the cache fails closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from docserver.observability.logging import get_logger

MAX_AGE = 900.0
"""Seconds before cached keys are refreshed (in the background)."""
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT_BYTES = 1024 * 1024
"""A larger metadata or JWKS document is refused: no real key set is that big."""
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})

log = get_logger("docserver.access")

Jwk = dict[str, Any]


class JwksUnavailable(Exception):
    """The JWKS (or the issuer's metadata) could not be fetched or read."""


def metadata_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may live: RFC 8414 (path after the well-known part), then OIDC."""
    parts = urlsplit(issuer)
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    ]


async def fetch_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        response = await client.get(url, headers={"Accept": "application/json"})
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
            raise JwksUnavailable(f"{url}: HTTP {response.status_code}")
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise JwksUnavailable(f"{url}: {type(exc).__name__}") from None
    if not isinstance(document, dict):
        raise JwksUnavailable(f"{url}: not a JSON object")
    return document


async def discover_jwks_url(client: httpx.AsyncClient, issuer: str) -> str:
    """The `jwks_uri` of the issuer's metadata; JwksUnavailable when no metadata document names one."""
    failures = []
    for url in metadata_urls(issuer):
        try:
            metadata = await fetch_json(client, url)
        except JwksUnavailable as exc:
            failures.append(str(exc))
            continue
        if metadata.get("issuer") != issuer or not isinstance(metadata.get("jwks_uri"), str):
            failures.append(f"{url}: another issuer, or no jwks_uri")
            continue
        return str(metadata["jwks_uri"])
    raise JwksUnavailable("; ".join(failures))


def signing_keys(document: dict[str, Any]) -> dict[str | None, Jwk]:
    """The signature keys of a JWKS document by `kid` (encryption keys and unknown types left out)."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise JwksUnavailable("the JWKS has no `keys` list")
    usable = [
        key for key in keys if isinstance(key, dict) and key.get("kty") in SIGNING_KEY_TYPES and key.get("use") != "enc"
    ]
    return {key.get("kid") if isinstance(key.get("kid"), str) else None: key for key in usable}


class JwksCache:
    """`key(kid)`: the issuer's public key with that id, fetched when needed."""

    def __init__(
        self,
        issuer: str,
        *,
        jwks_url: str | None = None,
        refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.refetch_interval = refetch_interval
        self._clock = clock
        self._keys: dict[str | None, Jwk] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    async def key(self, kid: str | None) -> Jwk | None:
        """The key `kid` (a token without `kid`: the only key); None when the issuer has no such key."""
        found = self._lookup(kid)
        if found is not None:
            self._refresh_if_old()
            return found
        if self._may_fetch():
            async with self._lock:
                if self._lookup(kid) is None and self._may_fetch():
                    await self.refresh()
        return self._lookup(kid)

    async def refresh(self) -> None:
        """Fetches the JWKS now; on failure the keys held so far stay."""
        self._attempted_at = self._clock()
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as client:
                if self.jwks_url is None:
                    self.jwks_url = await discover_jwks_url(client, self.issuer)
                keys = signing_keys(await fetch_json(client, self.jwks_url))
        except JwksUnavailable as exc:
            log.warning("jwks_fetch_failed", issuer=self.issuer, error=str(exc), cached_keys=len(self._keys))
            return
        self._keys, self._fetched_at = keys, self._clock()
        log.info("jwks_fetched", issuer=self.issuer, keys=len(keys))

    def _lookup(self, kid: str | None) -> Jwk | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self.refetch_interval

    def _refresh_if_old(self) -> None:
        old = self._fetched_at is not None and self._clock() - self._fetched_at >= MAX_AGE
        if old and self._may_fetch() and (self._background is None or self._background.done()):
            self._attempted_at = self._clock()  # one refresh at a time, then the interval
            self._background = asyncio.get_running_loop().create_task(self.refresh())
