"""PostgreSQL schema helpers the statements share: pgvector, the vector index, `meta` values."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection, errors, sql
from psycopg.adapt import AdaptersMap

from docserver.errors import StoreError
from docserver.store.base import EmbedderInfo, Vectors

Connection = AsyncConnection[tuple[Any, ...]]


EXTENSION = "vector"
VECTOR_INDEX = "chunks_embedding_hnsw"
MAX_INDEXED_DIMENSION = 4000
"""The HNSW index holds each vector at half precision (`halfvec`, see `indexed`), which pgvector indexes up to
4,000 dimensions (a full-precision `vector` up to 2,000): 3,072-dimension models are indexed too. Larger vectors
are searched exactly."""
MAX_PLAIN_DIMENSION = 1600
"""Vectors up to this size (6.4 KB) are kept in the row; a row must fit in an 8 KB page."""
TEXT_WEIGHTS = "{0.2, 0.2, 0.6, 1.0}"
"""ts_rank_cd weights for D (text), C (unused), B (title), A (heading)."""
BIND_LOCK = 0x646F_6373_6572_7662
"""pg_advisory_xact_lock key held while an embedder is bound, so replicas starting together bind once."""
EMBEDDINGS_LOCK = 0x646F_6373_6572_7645
"""Held shared by every ingest's transaction, and exclusively (tried, never waited for) by the collection of
`embeddings` rows no chunk points to: an ingest may point new chunks at a row it found, so none may be in flight."""

PGVECTOR_MISSING = (
    "the PostgreSQL server has no pgvector extension, which docserver needs for vector search; install it "
    "on the database server (Debian/Ubuntu: apt install postgresql-NN-pgvector; RHEL: dnf install pgvector_NN; "
    "Docker: the pgvector/pgvector image; managed services: enable the 'vector' extension) and start docserver again"
)


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """Pool sizing, timeouts and HNSW parameters (the DOCSERVER_DB_* and DOCSERVER_HNSW_* settings)."""

    min_size: int = 1
    max_size: int = 10
    pool_timeout: float = 5.0
    connect_timeout: float = 5.0
    statement_timeout_ms: int = 30_000
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 400
    hnsw_filtered_ef_search: int = 500
    """`hnsw.ef_search` of a search under a filter that goes through the HNSW index holding less than
    postgres_share.RAISED_BELOW_SHARE of the vectors; at most `hnsw_ef_search`, such a filter keeps the
    connection's and its share is not read (docs/configuration.md, DOCSERVER_HNSW_FILTERED_EF_SEARCH)."""


# -- setting up a database ------------------------------------------------------------


async def ensure_pgvector(conn: Connection) -> None:
    """Create the extension if it is missing; say how to install it when the server does not have it."""
    cursor = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (EXTENSION,))
    if await cursor.fetchone():
        return
    cursor = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (EXTENSION,))
    if not await cursor.fetchone():
        raise StoreError(PGVECTOR_MISSING)
    try:
        await conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(EXTENSION)))
    except errors.InsufficientPrivilege:
        raise StoreError(
            "pgvector is installed on the PostgreSQL server but not enabled in this database, and this user "
            "may not enable it; ask a database owner or superuser to run: CREATE EXTENSION vector;"
        ) from None


async def vector_adapters(conn: Connection) -> AdaptersMap:
    """Adapters for pooled connections: pgvector's, which send numpy vectors to `vector` parameters in binary."""
    try:
        await register_vector_async(conn)
    except psycopg.ProgrammingError:  # the database has no `vector` type
        raise StoreError(PGVECTOR_MISSING) from None
    return AdaptersMap(conn.adapters)


def indexed(column: sql.Composable, dimension: int) -> sql.Composed:
    """What the HNSW index holds and a search through it orders by: the vector at half precision.

    Half the bytes of a `vector` per distance the graph walk computes, so less memory
    read per search (a faster search at the same `ef_search`), and an index half the
    size; recall moved by less than two builds of the same index differ, the few rows
    returned being ranked by their full-precision distance (bench/postgres_filtered_ef.py
    --variant-of; docs/performance.md).
    The dimension is part of the expression (pgvector needs it to index), so a query
    must cast to the same `halfvec(N)` for the planner to match it to the index.
    """
    return sql.SQL("{}::halfvec({})").format(column, sql.Literal(int(dimension)))


def vector_index_sql(
    options: PostgresOptions,
    *,
    dimension: int,
    name: str = VECTOR_INDEX,
    column: str = "embedding",
    concurrently: bool = False,
) -> sql.Composed:
    """The HNSW index over the distinct vectors (`embeddings`, cosine, at half precision: `indexed`), built with the
    configured parameters; `dimension` is the column's (`vector(N)`)."""
    return sql.SQL(
        "CREATE INDEX {concurrently}{name} ON embeddings USING hnsw (({expression}) halfvec_cosine_ops) "
        "WITH (m = {m}, ef_construction = {ef})"
    ).format(
        concurrently=sql.SQL("CONCURRENTLY " if concurrently else ""),
        name=sql.Identifier(name),
        expression=indexed(sql.Identifier(column), dimension),
        m=sql.Literal(int(options.hnsw_m)),
        ef=sql.Literal(int(options.hnsw_ef_construction)),
    )


def embedding_key(title: str, heading: str, text: str) -> bytes:
    """What identifies a chunk's vector in `embeddings`: a SHA-256 of the parts its embedded text is made of.

    Chunks with the same title, heading and text are embedded from the same
    text, so they share one vector (versions side by side repeat most sections).
    The lengths keep the parts apart. Migration 0004 computes the same key in SQL.
    """
    parts = f"{len(title)}:{title}{len(heading)}:{heading}{text}"
    return hashlib.sha256(parts.encode()).digest()


def storage(plain: bool) -> sql.SQL:
    """How a vector column is stored: in the row (PLAIN) where it fits, else out of line, uncompressed."""
    return sql.SQL("PLAIN" if plain else "EXTERNAL")


# -- meta --------------------------------------------------------------------------------


async def fetch_all(conn: Connection, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def corpus_version(conn: Connection) -> int:
    rows = await fetch_all(conn, "SELECT value FROM meta WHERE key = 'corpus_version'")
    return int(rows[0][0]) if rows else 0


async def read_embedder(conn: Connection, *, for_share: bool = False) -> EmbedderInfo | None:
    rows: dict[str, str] = dict(
        await fetch_all(
            conn,
            "SELECT key, value FROM meta WHERE key IN ('embedder', 'embedding_model', 'embedding_dimension')"
            + (" FOR SHARE" if for_share else ""),
        )
    )
    if "embedder" not in rows:
        return None
    return EmbedderInfo(rows["embedder"], rows["embedding_model"], int(rows["embedding_dimension"]))


async def record_embedder(conn: Connection, info: EmbedderInfo) -> None:
    await conn.execute(
        """
        INSERT INTO meta (key, value) VALUES ('embedder', %s), ('embedding_model', %s), ('embedding_dimension', %s)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
        """,
        (info.provider, info.model, str(info.dimension)),
    )


async def bump_corpus_version(conn: Connection) -> None:
    await conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'corpus_version'")


def vector_or_null(vector: Vectors) -> Vectors | None:
    """NULL for a zero vector (a chunk without words): it has no direction, so vector search leaves it out."""
    return vector if np.any(vector) else None
