"""Caches: a small in-process LRU whose entries expire after a TTL, optionally backed by a shared Redis.

The in-process cache is the first level; the shared cache (when configured)
the second, so a result one replica computed serves the others. A lookup is
counted once, as a hit when either level had the value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import cachetools
from opentelemetry.trace import SpanKind

from docserver.config import Settings
from docserver.observability import tracing

if TYPE_CHECKING:
    from docserver.sharedcache import SharedCache  # imported lazily: redis is slow to import

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Decode = Callable[[bytes], V | None]
"""Bytes from the shared cache to a value; None when they are not a valid value (a miss)."""
Encode = Callable[[V], bytes]


class TTLCache(Generic[K, V]):
    """Least-recently-used eviction at `maxsize`; entries older than `ttl` seconds miss.

    `name` is a fixed label (`embedding`, `search`) for metrics; `counters`
    (hit, miss) are docserver_cache_requests_total{cache=name} children, or
    None with metrics off. With `maxsize=0` the cache stores nothing and
    every lookup misses. The store underneath is cachetools' TTLCache.
    """

    def __init__(
        self,
        name: str,
        *,
        maxsize: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        counters: tuple[Any, Any] | None = None,
    ) -> None:
        self.name = name
        self.maxsize = maxsize
        self.ttl = ttl
        self._entries: cachetools.TTLCache[K, V] = cachetools.TTLCache(max(maxsize, 1), ttl, timer=clock)
        self._hit_attribute = f"docserver.cache.{name}.hit"
        self._hits: Any = counters[0] if counters is not None else None
        self._misses: Any = counters[1] if counters is not None else None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        value = self.lookup(key)
        self.record(hit=value is not None)
        return value

    def record(self, *, hit: bool) -> None:
        """Count one lookup made with `lookup` (perhaps with a second level behind it)."""
        # A lookup takes microseconds: an attribute on the span doing the
        # work (the tool call) says hit or miss without a span of its own.
        span = tracing.sampled_span()
        if span is not None:
            span.set_attribute(self._hit_attribute, hit)
        counter = self._hits if hit else self._misses
        if counter is not None:
            counter.inc()

    def lookup(self, key: K) -> V | None:
        """The live value for `key`, uncounted."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        if self.maxsize > 0:
            self._entries[key] = value

    def clear(self) -> None:
        self._entries.clear()


async def get_tiered(
    local: TTLCache[K, V], shared: SharedCache | None, key: K, shared_key: Callable[[], str], decode: Decode[V]
) -> V | None:
    """Look in `local`, then in `shared` (refilling `local` from it); count the lookup once.

    `shared_key` names the entry in the shared cache; it is computed only
    when the local level misses.
    """
    value = local.lookup(key)
    if value is None and shared is not None:
        # A network call, unlike the local lookup: it gets a span of its own.
        attributes = {"docserver.cache.name": local.name, "db.system.name": "redis"}
        with tracing.span(f"cache.get {local.name}", SpanKind.CLIENT, attributes) as span:
            raw = await shared.get(f"{local.name}:{shared_key()}")
            value = decode(raw) if raw is not None else None
            if span is not None:
                span.set_attribute("docserver.cache.hit", value is not None)
        if value is not None:
            local.put(key, value)
    local.record(hit=value is not None)
    return value


async def put_tiered(
    local: TTLCache[K, V],
    shared: SharedCache | None,
    key: K,
    shared_key: Callable[[], str],
    value: V,
    encode: Encode[V],
) -> None:
    """Keep `value` in both levels."""
    local.put(key, value)
    if shared is not None:
        await shared.put(f"{local.name}:{shared_key()}", encode(value))


def open_shared_cache(settings: Settings) -> SharedCache | None:
    """The Redis cache shared by replicas, when DOCSERVER_REDIS_URL is set."""
    if settings.cache.redis_url is None:
        return None
    from docserver.sharedcache import SharedCache

    return SharedCache(
        settings.cache.redis_url,
        prefix=settings.cache.redis_key_prefix,
        ttl=settings.cache.ttl,
        timeout=settings.cache.redis_timeout_ms / 1000,
    )
