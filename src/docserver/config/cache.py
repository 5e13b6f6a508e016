"""settings.cache: the in-process caches and the optional Redis shared by replicas."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveFloat

from docserver.config.fields import Group, env
from docserver.config.urls import RedisUrl


class CacheSettings(Group):
    size: NonNegativeInt = env("DOCSERVER_CACHE_SIZE", 1024)
    """Entries in each in-process cache (query embeddings, search results); 0 turns caching off."""
    ttl: PositiveFloat = env("DOCSERVER_CACHE_TTL", 300.0)
    """Seconds a cached query embedding or search result stays valid."""
    redis_url: RedisUrl = env("DOCSERVER_REDIS_URL", None, repr=False)  # may carry a password
    """Optional shared cache across replicas: `redis://[:PASSWORD@]HOST:6379/0`, `rediss://` or `unix://`."""
    redis_timeout_ms: float = env("DOCSERVER_REDIS_TIMEOUT_MS", 100.0, gt=0, le=10000)
    """Milliseconds to wait for Redis before a lookup counts as a miss."""
    redis_key_prefix: str = env("DOCSERVER_REDIS_KEY_PREFIX", "docserver:", min_length=1, max_length=200)
    """Prefix of every Redis key docserver writes; one prefix per corpus database."""
