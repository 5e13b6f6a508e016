"""QueryObserver: times every store operation, counts its errors, warns when one is slow.

The store owns its queries, so it instruments them, once, here; search and
ingestion never time the store themselves.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from opentelemetry.trace import SpanKind

from docserver.observability import tracing
from docserver.observability.logging import get_logger
from docserver.observability.metrics import Metrics

T = TypeVar("T")
SQLITE_COLLECTIONS = {
    "search_text": "chunks_fts",
    "search_vector": "chunk_vectors",
    "get_chunks": "chunks",
    "corpus_version": "meta",
    "embedder_info": "meta",
    "bind_embedder": "meta",
    "list_sources": "sources",
    "migrate": "schema_migrations",
    "reindex_prepare": "chunk_vectors",
    "reindex_scan": "chunks",
    "reindex_write": "chunk_vectors",
    "reindex_switch": "meta",
    "reindex_cleanup": "chunk_vectors",
}
"""Operation -> the table it mostly reads or writes (`db.collection.name`); `documents` otherwise."""
log = get_logger("docserver.store")


class QueryObserver:
    def __init__(
        self,
        backend: str,
        metrics: Metrics | None,
        *,
        slow_seconds: float = 0.25,
        collections: dict[str, str] | None = None,
    ) -> None:
        self.backend = backend
        self.collections = SQLITE_COLLECTIONS if collections is None else collections
        self.metrics = metrics
        self.slow_seconds = slow_seconds
        self._children: dict[str, tuple[Any, Any]] = {}

    async def run(self, operation: str, work: Awaitable[T]) -> T:
        started = time.perf_counter()
        collection = self.collections.get(operation, "documents")
        attributes = {"db.system.name": self.backend, "db.operation.name": operation, "db.collection.name": collection}
        # Operation and table only: parameter values (queries, documents) never go on a span.
        with tracing.span(f"{operation} {collection}", SpanKind.CLIENT, attributes) as span:
            try:
                return await work
            except Exception as exc:
                if self.metrics is not None:
                    self._child(operation)[1].inc()
                tracing.mark_error(span, exc)
                raise
            finally:
                self._observe(operation, time.perf_counter() - started)

    def _observe(self, operation: str, elapsed: float) -> None:
        if self.metrics is not None:
            self._child(operation)[0].observe(elapsed, self.metrics.exemplar())
        if elapsed > self.slow_seconds:
            log.warning("slow_query", operation=operation, backend=self.backend, duration_ms=round(elapsed * 1000, 3))

    def _child(self, operation: str) -> tuple[Any, Any]:
        children = self._children.get(operation)
        if children is None:
            assert self.metrics is not None
            children = (
                self.metrics.query_duration.labels(operation, self.backend),
                self.metrics.query_errors.labels(operation, self.backend),
            )
            self._children[operation] = children
        return children
