"""Runtime: the store, the embedder and the search service, opened and closed together."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from docserver.config import Settings
from docserver.embed.base import Embedder
from docserver.embed.factory import open_embedder
from docserver.errors import DocserverError, EmbeddingError
from docserver.observability.metrics import Metrics
from docserver.search import SearchService
from docserver.store.base import Store
from docserver.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

EMBEDDER_CHECK_TTL = 15.0
"""Seconds a successful embedder check is trusted: probes must not hammer a paid API."""


def open_store(settings: Settings) -> Store:
    return SqliteStore(settings.sqlite_path)


class Runtime:
    """Everything a request needs, plus the readiness check over it."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.metrics = metrics
        self.service = SearchService(store, embedder, cache_size=settings.cache_size, cache_ttl=settings.cache_ttl)
        # Each layer instruments the work it owns; with metrics off they keep
        # only the slow-operation warnings.
        store.instrument(metrics, slow_seconds=settings.slow_query_ms / 1000)
        embedder.instrument(metrics, slow_seconds=settings.slow_embedding_ms / 1000)
        self.service.instrument(metrics)
        if metrics is not None:
            metrics.set_build_info(backend=store.backend, embedder=embedder.provider)
        self.draining = False
        self._embedder_checked_at = float("-inf")

    async def check(self) -> dict[str, str]:
        """Component -> "ok" or the reason it is not ready."""
        status = {"store": "ok", "embedder": "ok"}
        try:
            await self.store.ping()
        except DocserverError as exc:
            status["store"] = str(exc)
        now = time.monotonic()
        if now - self._embedder_checked_at > EMBEDDER_CHECK_TTL:
            try:
                await self.embedder.ping()
                self._embedder_checked_at = now
            except EmbeddingError as exc:
                status["embedder"] = str(exc)
        return status


@asynccontextmanager
async def open_runtime(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[Runtime]:
    """Open the store and embedder, bind the embedder to the store, close both on exit."""
    store = open_store(settings)
    embedder = open_embedder(settings)
    try:
        await store.open()
        await bind_embedder(store, embedder)
        yield Runtime(settings, store, embedder, metrics)
    finally:
        await embedder.aclose()
        await store.close()


async def bind_embedder(store: Store, embedder: Embedder) -> None:
    """Record the embedder with the store, or fail if the store holds another one's vectors."""
    resolve = getattr(embedder, "resolve_dimension", None)
    if resolve is not None:
        stored = await store.embedder_info()
        if stored is not None and (stored.provider, stored.model) == (embedder.provider, embedder.model):
            embedder.dimension = embedder.dimension or stored.dimension
        else:
            await resolve()
    await store.bind_embedder(embedder.info)
