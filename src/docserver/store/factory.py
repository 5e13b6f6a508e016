"""open_store: the store the database URL names, built from Settings with its instruments."""

from __future__ import annotations

from docserver.config import Settings
from docserver.observability.metrics import Metrics
from docserver.store.base import Store
from docserver.store.sqlite import SqliteStore


def open_store(settings: Settings, metrics: Metrics | None = None) -> Store:
    """The store the database URL names (closed: call `open`), timing its queries into `metrics`."""
    instruments = metrics.for_store() if metrics else None
    slow_seconds = settings.telemetry.slow_query_ms / 1000
    if settings.store.backend == "postgresql":
        # Imported here: psycopg costs SQLite users start-up time for nothing.
        from docserver.store.postgres import PostgresOptions, PostgresStore

        options = PostgresOptions(
            min_size=settings.store.pool_min_size,
            max_size=settings.store.pool_max_size,
            pool_timeout=settings.store.pool_timeout,
            connect_timeout=settings.store.connect_timeout,
            statement_timeout_ms=settings.store.statement_timeout_ms,
            hnsw_m=settings.store.hnsw_m,
            hnsw_ef_construction=settings.store.hnsw_ef_construction,
            hnsw_ef_search=settings.store.hnsw_ef_search,
            hnsw_filtered_ef_search=settings.store.hnsw_filtered_ef_search,
        )
        return PostgresStore(settings.store.url, options, instruments=instruments, slow_seconds=slow_seconds)
    return SqliteStore(settings.store.sqlite_path, instruments=instruments, slow_seconds=slow_seconds)
