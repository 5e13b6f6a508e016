"""PostgresStore: PostgreSQL with pgvector (HNSW, cosine) for vectors and tsvector + GIN for full text.

psycopg 3 (async) over a psycopg_pool connection pool. Reads borrow a pooled
connection in autocommit mode, so MVCC answers them from the last committed
version while a source update holds one connection inside one transaction.
Migrations run when the store opens, under an advisory lock (see
migrations/), so replicas starting together are safe.

`docserver reindex` fills a side column (`embedding_next`, with its own HNSW
index) while searches keep using `embedding`, then swaps the two columns in
one short transaction.

Failures come out as StoreError with one line for a person: the database URL
in them never carries its password, and "cannot reach the database"
(StoreUnavailableError: retrying later may work) is told apart from "the
database refused" (StoreError).
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg import AsyncConnection, errors, sql
from psycopg.adapt import AdaptersMap, Dumper
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import Format
from psycopg.types import TypeInfo
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from docserver.config import redact_url, url_password
from docserver.errors import DocumentNotFoundError, StoreBusyError, StoreError
from docserver.observability.logging import get_logger
from docserver.observability.metrics import Metrics, PoolCollector
from docserver.store.base import (
    ChunkRecord,
    Document,
    DocumentInput,
    EmbedderInfo,
    PendingChunk,
    RankedId,
    ReindexBatch,
    SourceInfo,
    Vectors,
    WriteStats,
    embedder_mismatch,
)
from docserver.store.migrations import apply_postgres_migrations
from docserver.store.observe import QueryObserver
from docserver.store.terms import query_terms

T = TypeVar("T")
Connection = AsyncConnection[tuple[Any, ...]]

log = get_logger("docserver.store")
# psycopg_pool logs every borrowed connection at INFO; its warnings (a failed
# connection attempt, a broken connection discarded) are the useful part.
logging.getLogger("psycopg.pool").setLevel(logging.WARNING)

EXTENSION = "vector"
VECTOR_INDEX = "chunks_embedding_hnsw"
MAX_INDEXED_DIMENSION = 2000
"""pgvector's HNSW indexes `vector` columns of at most 2,000 dimensions; larger ones are searched exactly."""
MAX_PLAIN_DIMENSION = 1600
"""Vectors up to this size (6.4 KB) are kept in the row; a row must fit in an 8 KB page."""
TEXT_WEIGHTS = "{0.2, 0.2, 0.6, 1.0}"
"""ts_rank_cd weights for D (text), C (unused), B (title), A (heading)."""
BIND_LOCK = 0x646F_6373_6572_7662
"""pg_advisory_xact_lock key held while an embedder is bound, so replicas starting together bind once."""
NEXT_INDEX = "chunks_embedding_next_hnsw"
"""The HNSW index a reindex builds over `embedding_next`; renamed to VECTOR_INDEX at the switch."""
WRITERS_WAIT_MS = 5_000
"""How long the switch waits for ingests in flight before it lets go and tries again later."""
SWITCH_LOCK_MS = 1_000
"""How long a reindex's DDL waits for its table lock: searches queue behind a waiting ALTER TABLE."""

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
    hnsw_ef_construction: int = 64
    hnsw_ef_search: int = 100


class StoreUnavailableError(StoreError):
    """The database cannot be reached right now; the same call may succeed later."""


class PoolExhaustedError(StoreError):
    """Every pooled connection stayed busy for the whole acquire timeout."""


class _VectorDumper(Dumper):
    """numpy float32 rows to pgvector's binary format: dimension, a reserved zero, big-endian floats."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        array = np.asarray(obj, dtype=">f4")
        return struct.pack(">HH", array.size, 0) + array.tobytes()


POSTGRES_COLLECTIONS = {
    "search_text": "chunks",
    "search_vector": "chunks",
    "get_chunks": "chunks",
    "corpus_version": "meta",
    "embedder_info": "meta",
    "bind_embedder": "meta",
    "list_sources": "sources",
    "migrate": "schema_migrations",
    "reindex_prepare": "chunks",
    "reindex_scan": "chunks",
    "reindex_write": "chunks",
    "reindex_index": "chunks",
    "reindex_switch": "meta",
}
"""Operation -> its table (`db.collection.name`): full text and vectors live on `chunks` here."""


class PostgresStore:
    """Documents and vectors in PostgreSQL (with pgvector), shared by every replica."""

    backend = "postgresql"

    def __init__(self, url: str, options: PostgresOptions | None = None) -> None:
        self.write_generation = 0
        """Moves after every write through this store: readers of the corpus version re-read it then."""
        self.url = url
        self.options = options or PostgresOptions()
        self.where = redact_url(url)
        """The URL without its password: the only form that goes into messages."""
        self._password = url_password(url)
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._embedder: EmbedderInfo | None = None
        """The embedder this process writes vectors with (bound, or switched to): ingests check it."""
        self._observer = QueryObserver(self.backend, None, collections=POSTGRES_COLLECTIONS)

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the extension and migrate (once, under a lock), then open the pool.

        Raises StoreUnavailableError when the server cannot be reached, and
        StoreError when it refuses (no pgvector, a newer schema).
        """
        if self._pool is not None:
            return
        kwargs = self._connect_kwargs()
        try:
            conn = await AsyncConnection.connect(self.url, autocommit=True, **kwargs)
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"cannot connect to the database {self.where}: {self._clean(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the database {self.where}: {self._clean(exc)}") from None
        try:
            async with conn:
                migrating = apply_postgres_migrations(conn, prepare=_ensure_pgvector)
                await self._observer.run("migrate", self._guard(migrating))
                adapters = await _adapters(conn)
        except psycopg.Error as exc:
            raise self._translate(exc) from None
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.url,
            kwargs={"autocommit": True, "context": adapters, **kwargs},
            min_size=self.options.min_size,
            max_size=self.options.max_size,
            timeout=self.options.pool_timeout,
            name="docserver",
            open=False,
        )
        try:
            await pool.open(wait=self.options.min_size > 0, timeout=self.options.connect_timeout)
        except PoolTimeout:
            raise StoreUnavailableError(
                f"cannot open connections to the database {self.where} within {self.options.connect_timeout:g} s"
            ) from None
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=5.0)

    def _connect_kwargs(self) -> dict[str, Any]:
        """Connection parameters: ours, except where the URL says otherwise (its `options` come last, so win)."""
        settings = {
            "statement_timeout": self.options.statement_timeout_ms,
            "hnsw.ef_search": self.options.hnsw_ef_search,
            # pgvector >= 0.8: a filtered (by source) HNSW scan goes on until it has enough rows.
            "hnsw.iterative_scan": "relaxed_order",
        }
        ours = " ".join(f"-c {name}={value}" for name, value in settings.items())
        try:
            url = conninfo_to_dict(self.url)
        except psycopg.Error:
            url = {}  # reported, password-free, by the connection attempt
        kwargs: dict[str, Any] = {
            "connect_timeout": max(2, math.ceil(self.options.connect_timeout)),
            "application_name": "docserver",
        }
        kwargs = {name: value for name, value in kwargs.items() if name not in url}
        kwargs["options"] = f"{ours} {url['options']}" if url.get("options") else ours
        return kwargs

    # -- running work ----------------------------------------------------------

    def _ready_pool(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise StoreUnavailableError(f"not connected to the database {self.where} yet")
        return self._pool

    async def _read(self, operation: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await self._observer.run(operation, self._borrow(fn, args, retry=True))

    @property
    def change_marker(self) -> Hashable:
        """Moves with every write through this store; other replicas' writes are seen when the version is re-read."""
        return self.write_generation

    async def _write(self, operation: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return await self._observer.run(operation, self._borrow(fn, args, retry=False))
        finally:
            self.write_generation += 1

    async def _borrow(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], *, retry: bool, wait: float | None = None
    ) -> T:
        """Run `fn(conn, *args)` on a pooled connection.

        After a database restart every idle pooled connection is dead, and the
        pool only learns it when one is used. A read that fails on a broken
        connection is tried again (the broken one is discarded on return), at
        most once per pooled connection, so the first call after a restart
        succeeds instead of the first `max_size`.
        """
        pool = self._ready_pool()
        attempts = self.options.max_size + 1 if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                async with pool.connection(timeout=wait) as conn:
                    try:
                        return await fn(conn, *args)
                    except psycopg.OperationalError:
                        if not (conn.broken and attempt < attempts):
                            raise
            except (PoolTimeout, PoolClosed) as exc:
                raise self._pool_error(exc, wait) from None
            except psycopg.Error as exc:
                raise self._translate(exc) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _guard(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except psycopg.Error as exc:
            raise self._translate(exc) from None

    def _pool_error(self, exc: Exception, timeout: float | None = None) -> StoreError:
        waited = self.options.pool_timeout if timeout is None else timeout
        if isinstance(exc, PoolClosed) or self._pool is None:
            return StoreUnavailableError(f"the connection pool to the database {self.where} is closed")
        stats = self._pool.get_stats()
        if stats.get("pool_size", 0) >= self.options.max_size:
            return PoolExhaustedError(
                f"all {self.options.max_size} database connections stayed busy for "
                f"{waited:g} s (DOCSERVER_DB_POOL_MAX_SIZE); try again shortly"
            )
        return StoreUnavailableError(
            f"no connection to the database {self.where} within {waited:g} s: it is unreachable or refusing connections"
        )

    def _translate(self, exc: psycopg.Error) -> StoreError:
        if isinstance(exc, errors.LockNotAvailable):
            return StoreBusyError("another transaction holds a lock this operation needs (lock_timeout)")
        if isinstance(exc, errors.QueryCanceled):
            return StoreError(
                f"a database query ran longer than {self.options.statement_timeout_ms} ms "
                "(DOCSERVER_DB_STATEMENT_TIMEOUT_MS) and was cancelled"
            )
        if isinstance(exc, psycopg.OperationalError):
            return StoreUnavailableError(f"lost the connection to the database {self.where}: {self._clean(exc)}")
        return StoreError(f"database error: {self._clean(exc)}")

    def _clean(self, exc: BaseException) -> str:
        """The first line of the driver's message, without the password (libpq may quote the URL)."""
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text.replace(self.url, self.where)

    # -- metrics ---------------------------------------------------------------

    def instrument(self, metrics: Metrics | None, *, slow_seconds: float) -> None:
        """Time every operation (and count its errors) from now on; export the pool gauges."""
        self._observer = QueryObserver(
            self.backend, metrics, slow_seconds=slow_seconds, collections=POSTGRES_COLLECTIONS
        )
        if metrics is not None:
            metrics.register_collector(PoolCollector(self.pool_stats))

    def pool_stats(self) -> tuple[int, int, int]:
        """(active, idle, pending) from the pool's own statistics, read at scrape time."""
        pool = self._pool
        if pool is None:
            return 0, 0, 0
        stats = pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        return max(size - idle, 0), idle, stats.get("requests_waiting", 0)

    # -- metadata --------------------------------------------------------------

    async def ping(self) -> None:
        """A trivial query, waiting at most a second; a pool busy with other work still counts as reachable."""
        try:
            await self._observer.run(
                "ping", self._borrow(_ping, (), retry=True, wait=min(self.options.pool_timeout, 1.0))
            )
        except PoolExhaustedError:
            return

    async def embedder_info(self) -> EmbedderInfo | None:
        return await self._read("embedder_info", _read_embedder)

    async def bind_embedder(self, info: EmbedderInfo) -> None:
        await self._write("bind_embedder", _bind_embedder, info, self.options)
        self._embedder = info

    async def corpus_version(self) -> int:
        return await self._read("corpus_version", _read_corpus_version)

    async def list_sources(self) -> list[SourceInfo]:
        rows = await self._read("list_sources", _fetch_all, _LIST_SOURCES, ())
        return [SourceInfo(name, documents, chunks, _iso(updated)) for name, documents, chunks, updated in rows]

    async def document_hashes(self, source: str) -> dict[str, str]:
        rows = await self._read(
            "document_hashes", _fetch_all, "SELECT path, content_hash FROM documents WHERE source = %s", (source,)
        )
        return dict(rows)

    # -- writing ---------------------------------------------------------------

    @asynccontextmanager
    async def update_source(self, source: str) -> AsyncIterator[PostgresSourceWriter]:
        """One transaction on one connection, held for the whole block."""
        pool = self._ready_pool()
        try:
            async with pool.connection() as conn, conn.transaction():
                await self._observer.run("begin", self._guard(_begin(conn, source, self._embedder)))
                yield PostgresSourceWriter(self, conn, source)
                await self._observer.run("commit", self._guard(_commit(conn, source)))
        except (PoolTimeout, PoolClosed) as exc:
            raise self._pool_error(exc) from None
        except psycopg.Error as exc:
            # The COMMIT or ROLLBACK itself failed (the connection was lost).
            raise self._translate(exc) from None
        finally:
            self.write_generation += 1  # after COMMIT: a reader then sees the new version

    # -- reading ---------------------------------------------------------------

    async def search_text(self, query: str, *, source: str | None, limit: int) -> list[RankedId]:
        terms = query_terms(query)
        if not terms:
            return []
        # websearch syntax: quoted words joined by `or`, so nothing in a query acts as an operator.
        websearch = " or ".join(f'"{term}"' for term in terms)
        rows = await self._read("search_text", _search_text, websearch, source, limit)
        return [RankedId(chunk_id, float(rank)) for chunk_id, rank in rows]

    async def search_vector(self, vector: Vectors, *, source: str | None, limit: int) -> list[RankedId]:
        array = np.asarray(vector, dtype=np.float32)
        if not np.any(array):
            return []  # a zero vector (a query without words) has no direction to compare
        rows = await self._read("search_vector", _search_vector, array, source, limit)
        # relaxed_order iterative scans may return neighbours slightly out of order.
        ranked = [RankedId(chunk_id, 1.0 - float(distance)) for chunk_id, distance in rows]
        return sorted(ranked, key=lambda item: -item.score)

    async def get_chunks(self, chunk_ids: Sequence[int]) -> list[ChunkRecord]:
        if not chunk_ids:
            return []
        rows = await self._read("get_chunks", _fetch_all, _GET_CHUNKS, (list(chunk_ids),))
        by_id = {row[0]: ChunkRecord(*row) for row in rows}
        return [by_id[chunk_id] for chunk_id in chunk_ids if chunk_id in by_id]

    async def get_document(self, document_id: int) -> Document:
        rows = await self._read("get_document", _fetch_all, _GET_DOCUMENT, (document_id,))
        if not rows:
            raise DocumentNotFoundError(f"no document with id {document_id}")
        (doc_id, source, path, title, content, content_hash, chunk_count, ingested_at) = rows[0]
        return Document(doc_id, source, path, title, content, content_hash, chunk_count, _iso(ingested_at))

    # -- changing the embedder ---------------------------------------------------

    async def prepare_reindex(self, info: EmbedderInfo) -> None:
        await self._write("reindex_prepare", _prepare_reindex, info)

    async def reindex_batch(self, after: int, limit: int) -> ReindexBatch:
        rows = await self._read("reindex_scan", _fetch_all, _REINDEX_SCAN, (after, limit))
        # Chunk rows are never rewritten (an update deletes and inserts, with new
        # identity ids), so a chunk marked done stays done: no fingerprint needed.
        pending = [
            PendingChunk(chunk_id, source, title, heading, text, "")
            for chunk_id, source, title, heading, text, done in rows
            if not done
        ]
        return ReindexBatch(pending, len(rows), rows[-1][0] if len(rows) == limit else None)

    async def put_reindexed(self, chunks: Sequence[PendingChunk], vectors: Vectors) -> None:
        rows = [
            (vector if np.any(vector) else None, chunk.chunk_id)
            for chunk, vector in zip(chunks, np.asarray(vectors, dtype=np.float32), strict=True)
        ]
        await self._write("reindex_write", _put_reindexed, rows)

    async def index_reindexed(self) -> None:
        await self._write("reindex_index", _build_next_index, self.options)

    async def switch_reindex(self, info: EmbedderInfo, version: int) -> bool:
        if not await self._write("reindex_switch", _switch_reindex, info, version):
            return False
        self._embedder = info
        return True


class PostgresSourceWriter:
    """Writes to one source inside the update's transaction, on its connection."""

    def __init__(self, store: PostgresStore, conn: Connection, source: str) -> None:
        self._store = store
        self._conn = conn
        self._source = source
        self.stats = WriteStats()

    async def put_document(self, document: DocumentInput) -> None:
        if len(document.vectors) != len(document.chunks):
            raise StoreError(f"{document.path}: {len(document.chunks)} chunks but {len(document.vectors)} vectors")
        await self._run("put_document", _put_document(self._conn, self._source, document))
        self.stats.written += 1
        self.stats.chunks += len(document.chunks)

    async def delete_documents(self, paths: Sequence[str]) -> None:
        if paths:
            await self._run("delete_documents", _delete_documents(self._conn, self._source, list(paths)))
            self.stats.deleted += len(paths)
            self.stats.deleted_paths.extend(paths)

    async def _run(self, operation: str, work: Awaitable[None]) -> None:
        await self._store._observer.run(operation, self._store._guard(work))


# -- SQL ------------------------------------------------------------------------------

_LIST_SOURCES = """
    SELECT s.name,
           (SELECT count(*) FROM documents d WHERE d.source = s.name),
           (SELECT count(*) FROM chunks c WHERE c.source = s.name),
           s.updated_at
    FROM sources s ORDER BY s.name
"""
_GET_CHUNKS = """
    SELECT c.id, c.document_id, c.source, d.path, d.title, c.heading, c.text, c.start_line, c.end_line
    FROM chunks c JOIN documents d ON d.id = c.document_id
    WHERE c.id = ANY(%s)
"""
_REINDEX_SCAN = """
    SELECT id, source, title, heading, CASE WHEN reindexed THEN NULL ELSE text END, reindexed
    FROM chunks WHERE id > %s ORDER BY id LIMIT %s
"""
_GET_DOCUMENT = """
    SELECT d.id, d.source, d.path, d.title, d.content, d.content_hash,
           (SELECT count(*) FROM chunks c WHERE c.document_id = d.id), d.ingested_at
    FROM documents d WHERE d.id = %s
"""


def search_text_sql(*, filtered: bool, limit: int) -> sql.Composed:
    """The full-text query: GIN index on `tsv`, ranked by ts_rank_cd. Parameters: query[, source]."""
    return sql.SQL(
        """
        SELECT c.id, ts_rank_cd({weights}, c.tsv, q) AS rank
        FROM chunks c, websearch_to_tsquery('docserver', %s) q
        WHERE c.tsv @@ q {filter}
        ORDER BY rank DESC, c.id
        LIMIT {limit}
        """
    ).format(
        weights=sql.Literal(TEXT_WEIGHTS),
        filter=sql.SQL("AND c.source = %s" if filtered else ""),
        limit=sql.Literal(int(limit)),
    )


def search_vector_sql(*, filtered: bool, limit: int) -> sql.Composed:
    """The nearest-neighbour query, answered from the HNSW index. Parameters: vector[, source].

    The limit is a literal, not a parameter: with a parameter, a generic plan
    cannot know the limit is small and may pick a sequential scan.
    """
    return sql.SQL(
        """
        SELECT id, embedding <=> %s AS distance
        FROM chunks
        WHERE embedding IS NOT NULL {filter}
        ORDER BY distance
        LIMIT {limit}
        """
    ).format(filter=sql.SQL("AND source = %s" if filtered else ""), limit=sql.Literal(int(limit)))


def vector_index_sql(
    options: PostgresOptions, *, name: str = VECTOR_INDEX, column: str = "embedding", concurrently: bool = False
) -> sql.Composed:
    """The HNSW index over the chunk vectors (cosine distance), built with the configured parameters."""
    return sql.SQL(
        "CREATE INDEX {concurrently}{name} ON chunks USING hnsw ({column} vector_cosine_ops) "
        "WITH (m = {m}, ef_construction = {ef})"
    ).format(
        concurrently=sql.SQL("CONCURRENTLY " if concurrently else ""),
        name=sql.Identifier(name),
        column=sql.Identifier(column),
        m=sql.Literal(int(options.hnsw_m)),
        ef=sql.Literal(int(options.hnsw_ef_construction)),
    )


async def _ping(conn: Connection) -> None:
    await conn.execute("SELECT 1")


async def _fetch_all(conn: Connection, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def _ensure_pgvector(conn: Connection) -> None:
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


async def _adapters(conn: Connection) -> AdaptersMap:
    """Adapters that send numpy vectors to `vector` parameters in binary."""
    info = await TypeInfo.fetch(conn, "vector")
    if info is None:
        raise StoreError(PGVECTOR_MISSING)
    adapters = AdaptersMap(psycopg.adapters)
    adapters.register_dumper(np.ndarray, type("VectorDumper", (_VectorDumper,), {"oid": info.oid}))
    return adapters


async def _read_corpus_version(conn: Connection) -> int:
    cursor = await conn.execute("SELECT value FROM meta WHERE key = 'corpus_version'")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _read_embedder(conn: Connection, *, for_share: bool = False) -> EmbedderInfo | None:
    cursor = await conn.execute(
        "SELECT key, value FROM meta WHERE key IN ('embedder', 'embedding_model', 'embedding_dimension')"
        + (" FOR SHARE" if for_share else "")
    )
    rows: dict[str, str] = dict(await cursor.fetchall())
    if "embedder" not in rows:
        return None
    return EmbedderInfo(rows["embedder"], rows["embedding_model"], int(rows["embedding_dimension"]))


async def _bind_embedder(conn: Connection, info: EmbedderInfo, options: PostgresOptions) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (BIND_LOCK,))
        current = await _read_embedder(conn)
        if current == info:
            return
        cursor = await conn.execute("SELECT EXISTS (SELECT 1 FROM chunks)")
        row = await cursor.fetchone()
        if current is not None and row and row[0]:
            raise embedder_mismatch(current, info)
        # The store holds no vectors: give the column the new dimension and index it.
        await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(VECTOR_INDEX)))
        # Vectors stay in the row, uncompressed (STORAGE PLAIN), where they fit: by default those
        # over 2 KB (512 dimensions and up) go to TOAST, and sparse ones get compressed. The planner
        # sees neither, prices a full scan far too low and picks it over the HNSW index; reading
        # TOAST or decompressing on every row then makes that scan slow too.
        await conn.execute(
            sql.SQL(
                "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({}), ALTER COLUMN embedding SET STORAGE {}"
            ).format(sql.Literal(info.dimension), _storage(info.dimension <= MAX_PLAIN_DIMENSION))
        )
        if info.dimension <= MAX_INDEXED_DIMENSION:
            await conn.execute(vector_index_sql(options))
        else:
            log.warning(
                "vector_index_skipped",
                dimension=info.dimension,
                reason=f"HNSW indexes at most {MAX_INDEXED_DIMENSION} dimensions; vector search will scan every "
                "chunk (set DOCSERVER_EMBEDDING_DIMENSIONS to 2000 or fewer)",
            )
        await _record_embedder(conn, info)


def _storage(plain: bool) -> sql.SQL:
    return sql.SQL("PLAIN" if plain else "EXTERNAL")


async def _record_embedder(conn: Connection, info: EmbedderInfo) -> None:
    await conn.execute(
        """
        INSERT INTO meta (key, value) VALUES ('embedder', %s), ('embedding_model', %s), ('embedding_dimension', %s)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
        """,
        (info.provider, info.model, str(info.dimension)),
    )


async def _begin(conn: Connection, source: str, expected: EmbedderInfo | None) -> None:
    # Two ingests of one source (from two replicas or CLIs) take turns; other sources go on in parallel.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('docserver.source:' || %s, 0))", (source,))
    # FOR SHARE, held to the end of the ingest: a reindex's switch (FOR UPDATE on the same
    # row) waits for ingests in flight, and an ingest that starts after it sees the new embedder.
    current = await _read_embedder(conn, for_share=True)
    if expected is not None and current is not None and current != expected:
        raise embedder_mismatch(current, expected)
    await conn.execute(
        "INSERT INTO sources (name, updated_at) VALUES (%s, now()) ON CONFLICT (name) DO NOTHING", (source,)
    )


async def _commit(conn: Connection, source: str) -> None:
    cursor = await conn.execute("SELECT EXISTS (SELECT 1 FROM documents WHERE source = %s)", (source,))
    row = await cursor.fetchone()
    if row and row[0]:
        await conn.execute("UPDATE sources SET updated_at = now() WHERE name = %s", (source,))
    else:
        await conn.execute("DELETE FROM sources WHERE name = %s", (source,))
    await conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'corpus_version'")


async def _put_document(conn: Connection, source: str, document: DocumentInput) -> None:
    # Chunks go with their document (ON DELETE CASCADE).
    await conn.execute("DELETE FROM documents WHERE source = %s AND path = %s", (source, document.path))
    cursor = await conn.execute(
        """
        INSERT INTO documents (source, path, title, content_hash, content, ingested_at)
        VALUES (%s, %s, %s, %s, %s, now()) RETURNING id
        """,
        (source, document.path, document.title, document.content_hash, document.content),
    )
    row = await cursor.fetchone()
    assert row is not None
    rows = [
        (
            row[0],
            source,
            chunk.ordinal,
            document.title,
            chunk.heading,
            chunk.text,
            chunk.start_line,
            chunk.end_line,
            vector if np.any(vector) else None,
        )
        for chunk, vector in zip(document.chunks, np.asarray(document.vectors, dtype=np.float32), strict=True)
    ]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                """
                INSERT INTO chunks (document_id, source, ordinal, title, heading, text, start_line, end_line, embedding)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                rows,
            )


async def _delete_documents(conn: Connection, source: str, paths: list[str]) -> None:
    await conn.execute("DELETE FROM documents WHERE source = %s AND path = ANY(%s)", (source, paths))


async def _search_text(conn: Connection, websearch: str, source: str | None, limit: int) -> list[tuple[Any, ...]]:
    params: tuple[Any, ...] = (websearch,) if source is None else (websearch, source)
    cursor = await conn.execute(search_text_sql(filtered=source is not None, limit=limit), params)
    return await cursor.fetchall()


async def _search_vector(conn: Connection, vector: Vectors, source: str | None, limit: int) -> list[tuple[Any, ...]]:
    params: tuple[Any, ...] = (vector,) if source is None else (vector, source)
    cursor = await conn.execute(search_vector_sql(filtered=source is not None, limit=limit), params)
    return await cursor.fetchall()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- reindex: a side column, swapped in at the switch ------------------------------------------


def _target(info: EmbedderInfo) -> str:
    return json.dumps([info.provider, info.model, info.dimension])


async def _lock_timeout(conn: Connection, milliseconds: int) -> None:
    await conn.execute("SELECT set_config('lock_timeout', %s, true)", (str(milliseconds),))


async def _meta_value(conn: Connection, key: str) -> str | None:
    cursor = await conn.execute("SELECT value FROM meta WHERE key = %s", (key,))
    row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def _has_next_column(conn: Connection) -> bool:
    cursor = await conn.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding_next' "
        "AND NOT attisdropped"
    )
    return await cursor.fetchone() is not None


async def _prepare_reindex(conn: Connection, info: EmbedderInfo) -> None:
    async with conn.transaction():
        await _lock_timeout(conn, SWITCH_LOCK_MS)
        if await _meta_value(conn, "reindex_target") == _target(info) and await _has_next_column(conn):
            return  # an interrupted reindex to the same embedder: keep what it staged
        current = await _read_embedder(conn)
        # Both vectors of a row must fit in its page unless TOASTed (see _bind_embedder on why in-row is best).
        in_row = (current.dimension if current and current.dimension <= MAX_PLAIN_DIMENSION else 0) + info.dimension
        await conn.execute("ALTER TABLE chunks DROP COLUMN IF EXISTS embedding_next, DROP COLUMN IF EXISTS reindexed")
        await conn.execute(
            sql.SQL(
                "ALTER TABLE chunks ADD COLUMN embedding_next vector({}), "
                "ADD COLUMN reindexed boolean NOT NULL DEFAULT false"
            ).format(sql.Literal(info.dimension))
        )
        await conn.execute(
            sql.SQL("ALTER TABLE chunks ALTER COLUMN embedding_next SET STORAGE {}").format(
                _storage(in_row <= MAX_PLAIN_DIMENSION)
            )
        )
        await conn.execute(
            "INSERT INTO meta (key, value) VALUES ('reindex_target', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (_target(info),),
        )


async def _put_reindexed(conn: Connection, rows: list[tuple[Any, int]]) -> None:
    # SKIP LOCKED: a chunk that an ingest in flight is deleting is left pending, not waited for.
    async with conn.transaction(), conn.cursor() as cursor:
        await cursor.executemany(
            "UPDATE chunks SET embedding_next = %s, reindexed = true "
            "WHERE id = (SELECT id FROM chunks WHERE id = %s FOR UPDATE SKIP LOCKED)",
            rows,
        )


async def _build_next_index(conn: Connection, options: PostgresOptions) -> None:
    """Build the side column's HNSW index once it is filled; CONCURRENTLY, so searches and ingests go on."""
    cursor = await conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding_next' AND NOT attisdropped"
    )
    column = await cursor.fetchone()
    if column is None or not _indexable(column[0]):
        return  # no reindex in progress, or vectors too wide for HNSW (searched exactly, as when bound)
    cursor = await conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (NEXT_INDEX,))
    row = await cursor.fetchone()
    if row is not None and row[0]:
        return
    await conn.execute("SET statement_timeout = 0")  # a large index takes minutes
    try:
        if row is not None:  # left invalid by an interrupted build
            await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(NEXT_INDEX)))
        await conn.execute(vector_index_sql(options, name=NEXT_INDEX, column="embedding_next", concurrently=True))
    finally:
        if not conn.broken:
            await conn.execute("RESET statement_timeout")


def _indexable(column_type: str) -> bool:
    """Whether a `vector(N)` column is narrow enough for an HNSW index."""
    return int(column_type.removeprefix("vector(").removesuffix(")")) <= MAX_INDEXED_DIMENSION


async def _switch_reindex(conn: Connection, info: EmbedderInfo, version: int) -> bool:
    async with conn.transaction():
        # Waits for ingests in flight (each holds this row FOR SHARE, see _begin) and holds off new ones.
        await _lock_timeout(conn, WRITERS_WAIT_MS)
        await conn.execute("SELECT value FROM meta WHERE key = 'embedder' FOR UPDATE")
        if await _meta_value(conn, "reindex_target") != _target(info) or not await _has_next_column(conn):
            raise StoreError(
                f"the reindex to {info.describe()} was finished or replaced by another `docserver reindex`; "
                "run it again"
            )
        if await _read_corpus_version(conn) != version:
            return False  # an ingest committed since the last scan began
        cursor = await conn.execute("SELECT EXISTS (SELECT 1 FROM chunks WHERE NOT reindexed)")
        row = await cursor.fetchone()
        if row is None or row[0]:
            return False
        # Catalog changes only, but they need the table to themselves: searches wait for them.
        await _lock_timeout(conn, SWITCH_LOCK_MS)
        await conn.execute("ALTER TABLE chunks DROP COLUMN embedding, DROP COLUMN reindexed")
        await conn.execute("ALTER TABLE chunks RENAME COLUMN embedding_next TO embedding")
        await conn.execute(
            sql.SQL("ALTER INDEX IF EXISTS {} RENAME TO {}").format(
                sql.Identifier(NEXT_INDEX), sql.Identifier(VECTOR_INDEX)
            )
        )
        # Rows written from now on are stored as a bound embedder's are.
        await conn.execute(
            sql.SQL("ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE {}").format(
                _storage(info.dimension <= MAX_PLAIN_DIMENSION)
            )
        )
        await _record_embedder(conn, info)
        await conn.execute("DELETE FROM meta WHERE key = 'reindex_target'")
        await conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'corpus_version'")
    return True
