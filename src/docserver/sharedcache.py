"""SharedCache: one Redis shared by every replica, as a second cache level that can never fail a search.

A lookup that Redis cannot answer in time is a miss. The first failure logs
one warning and opens a short circuit: for `retry_after` seconds lookups
skip Redis entirely, so a dead or slow Redis costs requests nothing. The next
success logs that Redis is back; only a later failure warns again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from docserver.config import redact_url
from docserver.observability.logging import get_logger

log = get_logger("docserver.cache")

RETRY_AFTER = 1.0
"""Seconds lookups skip Redis after it failed: at most one slow call per second while it is down."""


class SharedCache:
    """Byte values under `prefix`, expiring after `ttl` seconds."""

    def __init__(
        self, url: str, *, prefix: str, ttl: float, timeout: float = 0.1, retry_after: float = RETRY_AFTER
    ) -> None:
        self.prefix = prefix
        self.ttl_ms = max(int(ttl * 1000), 1)
        self.where = redact_url(url)
        self._timeout = timeout
        self._retry_after = retry_after
        # No retries: a second attempt would double the time a request waits for a cache.
        self._redis: Any = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._skip_until = 0.0
        self._failing = False

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent, expired, or Redis cannot answer now."""
        value = await self._call("get", self.prefix + key)
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes) -> None:
        await self._call("set", self.prefix + key, value, px=self.ttl_ms)

    async def _call(self, command: str, *args: Any, **kwargs: Any) -> Any:
        if self._skip_until and time.monotonic() < self._skip_until:
            return None
        try:
            # The socket timeouts bound each read and connect; this bounds the whole call.
            async with asyncio.timeout(self._timeout * 3):
                result = await getattr(self._redis, command)(*args, **kwargs)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        if self._failing:
            self._failing = False
            self._skip_until = 0.0
            log.info("shared_cache_recovered", redis=self.where)
        return result

    def _failed(self, exc: BaseException) -> None:
        self._skip_until = time.monotonic() + self._retry_after
        if not self._failing:
            self._failing = True
            log.warning(
                "shared_cache_unavailable",
                redis=self.where,
                error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                consequence="searches go on without the shared cache",
            )

    async def aclose(self) -> None:
        await self._redis.aclose()
