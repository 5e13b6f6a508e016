"""PostgreSQL's reindex statements: a side column (`embedding_next`, with its own HNSW index), swapped in at the switch.

The vectors are in `embeddings`, one row per distinct embedded text, so a
reindex embeds each text once: the "chunks" it scans and hands back
(PendingChunk.chunk_id) are `embeddings` rows, each with the text of one of
its chunks. Searches keep using `embedding` while the side column fills; the
switch is catalog changes only, in one short transaction.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from docserver.errors import StoreError
from docserver.store.base import EmbedderInfo, PendingChunk, ReindexBatch, Vectors, reindex_target
from docserver.store.postgres_schema import (
    MAX_INDEXED_DIMENSION,
    MAX_PLAIN_DIMENSION,
    VECTOR_INDEX,
    Connection,
    PostgresOptions,
    bump_corpus_version,
    corpus_version,
    fetch_all,
    read_embedder,
    record_embedder,
    storage,
    vector_index_sql,
    vector_or_null,
)

NEXT_INDEX = "chunks_embedding_next_hnsw"
"""The HNSW index a reindex builds over `embedding_next`; renamed to VECTOR_INDEX at the switch."""
WRITERS_WAIT_MS = 5_000
"""How long the switch waits for ingests in flight before it lets go and tries again later."""
SWITCH_LOCK_MS = 1_000
"""How long a reindex's DDL waits for its table lock: searches queue behind a waiting ALTER TABLE."""


async def _lock_timeout(conn: Connection, milliseconds: int) -> None:
    await conn.execute("SELECT set_config('lock_timeout', %s, true)", (str(milliseconds),))


async def _staged_target(conn: Connection) -> str | None:
    """The embedder (see `reindex_target`) whose vectors `embedding_next` holds, or None without one."""
    rows = await fetch_all(
        conn,
        "SELECT value FROM meta WHERE key = 'reindex_target' AND EXISTS (SELECT 1 FROM pg_attribute "
        "WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding_next' AND NOT attisdropped)",
    )
    return str(rows[0][0]) if rows else None


async def prepare_reindex(conn: Connection, info: EmbedderInfo) -> None:
    async with conn.transaction():
        await _lock_timeout(conn, SWITCH_LOCK_MS)
        if await _staged_target(conn) == reindex_target(info):
            return  # an interrupted reindex to the same embedder: keep what it staged
        current = await read_embedder(conn)
        # Both vectors of a row must fit in its page unless TOASTed (see bind_embedder on why in-row is best).
        in_row = (current.dimension if current and current.dimension <= MAX_PLAIN_DIMENSION else 0) + info.dimension
        await conn.execute(
            "ALTER TABLE embeddings DROP COLUMN IF EXISTS embedding_next, DROP COLUMN IF EXISTS reindexed"
        )
        await conn.execute(
            sql.SQL(
                "ALTER TABLE embeddings ADD COLUMN embedding_next vector({}), "
                "ADD COLUMN reindexed boolean NOT NULL DEFAULT false"
            ).format(sql.Literal(info.dimension))
        )
        await _set_storage(conn, "embedding_next", in_row <= MAX_PLAIN_DIMENSION)
        await conn.execute(
            "INSERT INTO meta (key, value) VALUES ('reindex_target', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (reindex_target(info),),
        )


async def _set_storage(conn: Connection, column: str, plain: bool) -> None:
    await conn.execute(
        sql.SQL("ALTER TABLE embeddings ALTER COLUMN {} SET STORAGE {}").format(sql.Identifier(column), storage(plain))
    )


async def reindex_scan(conn: Connection, after: int, limit: int) -> ReindexBatch:
    rows = await fetch_all(
        conn,
        """
        SELECT e.id, c.source, c.title, c.heading, CASE WHEN e.reindexed THEN NULL ELSE c.text END, e.reindexed,
               (SELECT count(*) FROM chunks WHERE embedding_id = e.id)
        FROM embeddings e
        LEFT JOIN LATERAL (SELECT source, title, heading, text FROM chunks WHERE embedding_id = e.id LIMIT 1) c ON true
        WHERE e.id > %s ORDER BY e.id LIMIT %s
        """,
        (after, limit),
    )
    # `embeddings` rows are never rewritten for another text (a new text gets a
    # new row), so a row marked done stays done: no fingerprint needed. A row no
    # chunk points to any more (to be collected) is not embedded.
    pending = [
        PendingChunk(embedding_id, source, title, heading, text, "")
        for embedding_id, source, title, heading, text, done, _ in rows
        if not done and source is not None
    ]
    # Progress is counted in chunks (what `docserver reindex` announces), not in distinct texts.
    return ReindexBatch.of(pending, [row[0] for row in rows], limit, chunks=sum(row[6] for row in rows))


async def put_reindexed(conn: Connection, chunks: list[PendingChunk], vectors: Vectors) -> None:
    rows: list[tuple[Any, int]] = [
        (vector_or_null(vector), chunk.chunk_id) for chunk, vector in zip(chunks, vectors, strict=True)
    ]
    # SKIP LOCKED: a chunk that an ingest in flight is deleting is left pending, not waited for.
    async with conn.transaction(), conn.cursor() as cursor:
        await cursor.executemany(
            "UPDATE embeddings SET embedding_next = %s, reindexed = true "
            "WHERE id = (SELECT id FROM embeddings WHERE id = %s FOR UPDATE SKIP LOCKED)",
            rows,
        )


async def build_next_index(conn: Connection, options: PostgresOptions) -> None:
    """Build the side column's HNSW index once it is filled; CONCURRENTLY, so searches and ingests go on."""
    column = await fetch_all(
        conn,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding_next' AND NOT attisdropped",
    )
    dimension = _dimension(column[0][0]) if column else None
    if dimension is None or dimension > MAX_INDEXED_DIMENSION:
        return  # no reindex in progress, or vectors too wide for HNSW (searched exactly, as when bound)
    valid = await fetch_all(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (NEXT_INDEX,))
    if valid and valid[0][0]:
        return
    await conn.execute("SET statement_timeout = 0")  # a large index takes minutes
    try:
        if valid:  # left invalid by an interrupted build
            await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(NEXT_INDEX)))
        await conn.execute(
            vector_index_sql(options, dimension=dimension, name=NEXT_INDEX, column="embedding_next", concurrently=True)
        )
    finally:
        if not conn.broken:
            await conn.execute("RESET statement_timeout")


def _dimension(column_type: str) -> int:
    """N of a `vector(N)` column."""
    return int(column_type.removeprefix("vector(").removesuffix(")"))


async def switch_reindex(conn: Connection, info: EmbedderInfo, version: int) -> bool:
    async with conn.transaction():
        # Waits for ingests in flight (each holds this row FOR SHARE, see `begin`) and holds off new ones.
        await _lock_timeout(conn, WRITERS_WAIT_MS)
        await conn.execute("SELECT value FROM meta WHERE key = 'embedder' FOR UPDATE")
        if await _staged_target(conn) != reindex_target(info):
            raise StoreError(
                f"the reindex to {info.describe()} was finished or replaced by another `docserver reindex`; "
                "run it again"
            )
        if await corpus_version(conn) != version:
            return False  # an ingest committed since the last scan began
        missing = await fetch_all(
            conn,
            "SELECT EXISTS (SELECT 1 FROM embeddings e WHERE NOT e.reindexed "
            "AND EXISTS (SELECT 1 FROM chunks c WHERE c.embedding_id = e.id))",
        )
        if missing[0][0]:
            return False
        # Catalog changes only, but they need the table to themselves: searches wait for them.
        await _lock_timeout(conn, SWITCH_LOCK_MS)
        await conn.execute("ALTER TABLE embeddings DROP COLUMN embedding, DROP COLUMN reindexed")
        await conn.execute("ALTER TABLE embeddings RENAME COLUMN embedding_next TO embedding")
        await conn.execute(
            sql.SQL("ALTER INDEX IF EXISTS {} RENAME TO {}").format(
                sql.Identifier(NEXT_INDEX), sql.Identifier(VECTOR_INDEX)
            )
        )
        # Rows written from now on are stored as a bound embedder's are.
        await _set_storage(conn, "embedding", info.dimension <= MAX_PLAIN_DIMENSION)
        await record_embedder(conn, info)
        await conn.execute("DELETE FROM meta WHERE key = 'reindex_target'")
        await bump_corpus_version(conn)
    return True
