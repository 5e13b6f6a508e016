"""QueryObserver: times every store operation, counts its errors, warns when one is slow.

The store owns its queries, so it instruments them, once, here; search and
ingestion never time the store themselves.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from opentelemetry.trace import SpanKind

from docserver.observability import tracing
from docserver.observability.instruments import StoreInstruments
from docserver.observability.logging import get_logger

T = TypeVar("T")
COLLECTIONS = {
    "get_chunks": "chunks",
    "corpus_version": "meta",
    "embedder_info": "meta",
    "bind_embedder": "meta",
    "list_sources": "sources",
    "source_records": "sources",
    "record_origin": "sources",
    "record_refresh": "sources",
    "refresh_lock": "sources",
    "migrate": "schema_migrations",
    "reindex_scan": "chunks",
    "reindex_switch": "meta",
}
"""Operation -> the table it mostly reads or writes (`db.collection.name`); `documents` otherwise."""
log = get_logger("docserver.store")


def collections_for(*, text: str, vectors: str) -> Mapping[str, str]:
    """COLLECTIONS for a backend that keeps its full-text index in `text` and its vectors in `vectors`."""
    vector_work = (
        "search_vector",
        "reindex_prepare",
        "reindex_write",
        "reindex_index",
        "reindex_cleanup",
        "vector_index_build",
    )
    return MappingProxyType({**COLLECTIONS, "search_text": text, **dict.fromkeys(vector_work, vectors)})


class QueryObserver:
    def __init__(
        self,
        backend: str,
        instruments: StoreInstruments | None,
        *,
        slow_seconds: float = 0.25,
        collections: Mapping[str, str] = COLLECTIONS,
    ) -> None:
        self.backend = backend
        self.collections = collections
        self.instruments = instruments
        self.slow_seconds = slow_seconds

    async def run(self, operation: str, work: Awaitable[T]) -> T:
        started = time.perf_counter()
        collection = self.collections.get(operation, "documents")
        attributes = {"db.system.name": self.backend, "db.operation.name": operation, "db.collection.name": collection}
        # Operation and table only: parameter values (queries, documents) never go on a span.
        with tracing.span(f"{operation} {collection}", SpanKind.CLIENT, attributes) as span:
            try:
                return await work
            except Exception as exc:
                if self.instruments is not None:
                    self._series(self.instruments, operation)[1].inc()
                tracing.mark_error(span, exc)
                raise
            finally:
                self._observe(operation, time.perf_counter() - started)

    def _observe(self, operation: str, elapsed: float) -> None:
        if self.instruments is not None:
            duration, _ = self._series(self.instruments, operation)
            duration.observe(elapsed, self.instruments.exemplar())
        if elapsed > self.slow_seconds:
            log.warning("slow_query", operation=operation, backend=self.backend, duration_ms=round(elapsed * 1000, 3))

    def _series(self, instruments: StoreInstruments, operation: str) -> tuple[Any, Any]:
        """The operation's duration and error series: both exist (errors at 0) from its first run."""
        return instruments.duration(operation, self.backend), instruments.errors(operation, self.backend)
