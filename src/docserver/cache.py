"""A small in-process LRU cache whose entries expire after a TTL."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from docserver.observability import tracing
from docserver.observability.metrics import Metrics

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Least-recently-used eviction at `maxsize`; entries older than `ttl` seconds miss.

    `name` is a fixed label (`embedding`, `search`) for metrics. With
    `maxsize=0` the cache stores nothing and every lookup misses.
    """

    def __init__(self, name: str, *, maxsize: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._hit_attribute = f"docserver.cache.{name}.hit"
        self._hits: Any = None
        self._misses: Any = None

    def instrument(self, metrics: Metrics | None) -> None:
        """Count hits and misses as docserver_cache_requests_total{cache=name}."""
        if metrics is not None:
            self._hits = metrics.cache_requests.labels(self.name, "hit")
            self._misses = metrics.cache_requests.labels(self.name, "miss")

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        value = self._lookup(key)
        # A lookup takes microseconds: an attribute on the span doing the
        # work (the tool call) says hit or miss without a span of its own.
        span = tracing.sampled_span()
        if span is not None:
            span.set_attribute(self._hit_attribute, value is not None)
        counter = self._misses if value is None else self._hits
        if counter is not None:
            counter.inc()
        return value

    def _lookup(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self.maxsize <= 0:
            return
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
