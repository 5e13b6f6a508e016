"""settings.store: the database, its connection pool, its vector index, and what is written to it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, model_validator

from docserver.config.fields import Group, env
from docserver.config.urls import DatabaseUrl, is_postgres_url
from docserver.paths import default_database_url


class StoreSettings(Group):
    url: DatabaseUrl = Field(  # may carry a password
        default_factory=default_database_url, validation_alias="DOCSERVER_DATABASE_URL", repr=False
    )
    """Where documents and vectors live: `sqlite:///PATH` (relative to the working directory;
    `sqlite:////abs/path` for an absolute one) or `postgresql://USER:PASSWORD@HOST:PORT/DB` (needs pgvector).
    Unset: `docserver.db` in the platform's user data folder (printed at start)."""
    chunk_max_chars: int = env("DOCSERVER_CHUNK_MAX_CHARS", 1500, ge=200, le=20000)
    """Largest chunk, in characters; longer sections are split at paragraph boundaries."""
    pool_min_size: int = env("DOCSERVER_DB_POOL_MIN_SIZE", 1, ge=0, le=1000)
    """PostgreSQL: connections the pool keeps open even when idle."""
    pool_max_size: int = env("DOCSERVER_DB_POOL_MAX_SIZE", 10, ge=1, le=1000)
    """PostgreSQL: most connections the pool opens; callers beyond it wait."""
    pool_timeout: float = env("DOCSERVER_DB_POOL_TIMEOUT", 5.0, gt=0, le=600)
    """PostgreSQL: seconds a caller waits for a free pool connection before it gets an error."""
    connect_timeout: float = env("DOCSERVER_DB_CONNECT_TIMEOUT", 5.0, gt=0, le=600)
    """PostgreSQL: seconds to wait for a new connection to be established."""
    statement_timeout_ms: NonNegativeInt = env("DOCSERVER_DB_STATEMENT_TIMEOUT_MS", 30000)
    """PostgreSQL: the server cancels a statement running longer than this (0: no limit)."""
    hnsw_m: int = env("DOCSERVER_HNSW_M", 16, ge=2, le=100)
    """PostgreSQL: HNSW graph links per node, applied when the vector index is built."""
    hnsw_ef_construction: int = env("DOCSERVER_HNSW_EF_CONSTRUCTION", 200, ge=4, le=1000)
    """PostgreSQL: HNSW candidate list size while building, applied when the vector index is built."""
    hnsw_ef_search: int = env("DOCSERVER_HNSW_EF_SEARCH", 400, ge=1, le=1000)
    """PostgreSQL: HNSW candidate list size per search; higher finds more true neighbours, slower (docs/search.md)."""
    hnsw_filtered_ef_search: int = env("DOCSERVER_HNSW_FILTERED_EF_SEARCH", 500, ge=1, le=1000)
    """PostgreSQL: HNSW candidate list size of a filtered search through the index whose filter holds less than
    three quarters of the vectors; at most DOCSERVER_HNSW_EF_SEARCH, such filters keep the connection's
    (docs/search.md)."""

    @model_validator(mode="after")
    def _check_pool_and_index(self) -> StoreSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                "DOCSERVER_DB_POOL_MIN_SIZE must not be larger than DOCSERVER_DB_POOL_MAX_SIZE "
                f"({self.pool_min_size} > {self.pool_max_size})"
            )
        if self.hnsw_ef_construction < 2 * self.hnsw_m:
            raise ValueError(
                "DOCSERVER_HNSW_EF_CONSTRUCTION must be at least twice DOCSERVER_HNSW_M "
                f"({self.hnsw_ef_construction} < 2 × {self.hnsw_m}); pgvector refuses to build such an index"
            )
        return self

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "postgresql" if is_postgres_url(self.url) else "sqlite"

    @property
    def sqlite_path(self) -> str:
        return self.url.removeprefix("sqlite:///")
