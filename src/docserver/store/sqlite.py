"""SqliteStore: one file holding documents, an FTS5 index (BM25) and sqlite-vec vectors.

Blocking SQLite work never runs on the event loop: reads go to a small pool
of threads, each with its own connection; writes go to one writer thread, so
a source update can span many calls inside one transaction. WAL mode lets
readers keep answering from the last committed version while a write runs.

The vector table's name is recorded in `meta`: `docserver reindex` builds a
new table beside it and switches by rewriting that name, in one transaction.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from docserver.errors import DocumentNotFoundError, StoreBusyError, StoreError
from docserver.observability.logging import get_logger
from docserver.observability.metrics import Metrics, PoolCollector
from docserver.store import sqlite_driver
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
    chunk_fingerprint,
    embedder_mismatch,
)
from docserver.store.migrations import apply_sqlite_migrations
from docserver.store.observe import QueryObserver
from docserver.store.terms import query_terms

T = TypeVar("T")
Connection = Any  # sqlite3.Connection from whichever driver sqlite_driver picked

_READER_THREADS = 4
_VECTOR_TABLE = re.compile(r"^chunk_vectors(?:_(\d+))?$")
"""Names of vector tables: `chunk_vectors`, then `chunk_vectors_1`, `_2`... one per reindex."""
_SQLITE_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
log = get_logger("docserver.store")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _fts_query(query: str) -> str | None:
    terms = query_terms(query)
    if not terms:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


class SqliteStore:
    """The default store: a single SQLite file."""

    backend = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.write_generation = 0
        """Moves after every write through this store: readers of the corpus version re-read it then."""
        self.path = Path(path)
        self._wal_path = Path(f"{self.path}-wal")
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()
        self._readers: ThreadPoolExecutor | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._write_lock = asyncio.Lock()
        self._embedder: EmbedderInfo | None = None
        """The embedder this process writes vectors with (bound, or switched to): ingests check it."""
        self._observer = QueryObserver(self.backend, None)
        # Thread-pool occupancy, reported as the pool gauges (SQLite has no
        # connection pool; its reader and writer threads play that part).
        self._stats_lock = threading.Lock()
        self._busy = 0
        self._waiting = 0

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"cannot open database {self.path}: folder {self.path.parent} does not exist")
        self._readers = ThreadPoolExecutor(_READER_THREADS, thread_name_prefix="sqlite-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        await self._write("migrate", apply_sqlite_migrations)

    async def close(self) -> None:
        for executor in (self._readers, self._writer):
            if executor is not None:
                executor.shutdown(wait=True)
        self._readers = self._writer = None
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    # -- running work off the event loop --------------------------------------

    def _connection(self) -> Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite_driver.connect(self.path)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._stats_lock:
            self._waiting -= 1
            self._busy += 1
        try:
            return fn(self._connection(), *args)
        except sqlite_driver.Error as exc:
            raise StoreError(f"database error: {exc}") from exc
        finally:
            with self._stats_lock:
                self._busy -= 1

    async def _read(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        if self._readers is None:
            raise StoreError("store is not open")
        return await self._observer.run(operation, self._submit(self._readers, fn, args))

    @property
    def change_marker(self) -> Hashable:
        """Moves with every write through this store, and with any commit by another process.

        In WAL mode every commit appends to the `-wal` file (and a checkpoint
        resets it), so its size and modification time change: two `stat`
        calls, a few microseconds, instead of a query on a reader thread.
        """
        return (self.write_generation, _stat_key(self._wal_path), _stat_key(self.path))

    async def _write(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise StoreError("store is not open")
        try:
            return await self._observer.run(operation, self._submit(self._writer, fn, args))
        finally:
            self.write_generation += 1

    def _submit(self, executor: ThreadPoolExecutor, fn: Callable[..., T], args: tuple[Any, ...]) -> Awaitable[T]:
        with self._stats_lock:
            self._waiting += 1
        return asyncio.get_running_loop().run_in_executor(executor, partial(self._call, fn, *args))

    def instrument(self, metrics: Metrics | None, *, slow_seconds: float) -> None:
        """Time every operation (and count its errors) from now on; warn when one is slow."""
        self._observer = QueryObserver(self.backend, metrics, slow_seconds=slow_seconds)
        if metrics is not None:
            metrics.register_collector(PoolCollector(self.pool_stats))

    def pool_stats(self) -> tuple[int, int, int]:
        """(active, idle, pending) over the reader and writer threads, read at scrape time."""
        busy = max(self._busy, 0)
        return busy, max(_READER_THREADS + 1 - busy, 0), max(self._waiting, 0)

    # -- metadata --------------------------------------------------------------

    async def ping(self) -> None:
        await self._read("ping", lambda db: db.execute("SELECT 1").fetchone())

    async def embedder_info(self) -> EmbedderInfo | None:
        return await self._read("embedder_info", _read_embedder)

    async def bind_embedder(self, info: EmbedderInfo) -> None:
        await self._write("bind_embedder", _bind_embedder, info)
        self._embedder = info

    async def corpus_version(self) -> int:
        row = await self._read("corpus_version", _read_corpus_version)
        return int(row[0])

    async def list_sources(self) -> list[SourceInfo]:
        rows = await self._read(
            "list_sources",
            lambda db: db.execute(
                """
                SELECT s.name, COUNT(DISTINCT d.id), COUNT(c.id), s.updated_at
                FROM sources s
                LEFT JOIN documents d ON d.source = s.name
                LEFT JOIN chunks c ON c.document_id = d.id
                GROUP BY s.name ORDER BY s.name
                """
            ).fetchall(),
        )
        return [SourceInfo(name, documents, chunks, updated) for name, documents, chunks, updated in rows]

    async def document_hashes(self, source: str) -> dict[str, str]:
        rows = await self._read(
            "document_hashes",
            lambda db: db.execute("SELECT path, content_hash FROM documents WHERE source = ?", (source,)).fetchall(),
        )
        return dict(rows)

    # -- writing ---------------------------------------------------------------

    @asynccontextmanager
    async def update_source(self, source: str) -> AsyncIterator[SqliteSourceWriter]:
        async with self._write_lock:
            try:
                await self._write("begin", _begin, source, self._embedder)
                yield SqliteSourceWriter(self, source)
            except BaseException:
                # Shielded: a cancelled ingest must still roll back, or the
                # writer connection would be left inside a transaction.
                await asyncio.shield(self._write("rollback", _rollback))
                raise
            await self._write("commit", _commit, source)

    # -- reading ---------------------------------------------------------------

    async def search_text(self, query: str, *, source: str | None, limit: int) -> list[RankedId]:
        match = _fts_query(query)
        if match is None:
            return []
        rows = await self._read("search_text", _search_text, match, source, limit)
        return [RankedId(chunk_id, -rank) for chunk_id, rank in rows]

    async def search_vector(self, vector: Vectors, *, source: str | None, limit: int) -> list[RankedId]:
        array = np.asarray(vector, dtype=np.float32)
        if not np.any(array):
            return []  # a zero vector (a query without words) has no direction to compare
        rows = await self._read("search_vector", _search_vector, array.tobytes(), source, limit)
        # sqlite-vec gives NULL distances for stored zero vectors (chunks without words).
        return [RankedId(chunk_id, 1.0 - distance) for chunk_id, distance in rows if distance is not None]

    async def get_chunks(self, chunk_ids: Sequence[int]) -> list[ChunkRecord]:
        if not chunk_ids:
            return []
        rows = await self._read("get_chunks", _get_chunks, list(chunk_ids))
        by_id = {row[0]: ChunkRecord(*row) for row in rows}
        return [by_id[chunk_id] for chunk_id in chunk_ids if chunk_id in by_id]

    async def get_document(self, document_id: int) -> Document:
        row = await self._read("get_document", _get_document, document_id)
        if row is None:
            raise DocumentNotFoundError(f"no document with id {document_id}")
        return Document(*row)

    # -- changing the embedder ---------------------------------------------------

    async def prepare_reindex(self, info: EmbedderInfo) -> None:
        async with self._write_lock:
            await self._write("reindex_prepare", _prepare_reindex, info)

    async def reindex_batch(self, after: int, limit: int) -> ReindexBatch:
        return await self._read("reindex_scan", _reindex_scan, after, limit)

    async def put_reindexed(self, chunks: Sequence[PendingChunk], vectors: Vectors) -> None:
        if len(vectors) != len(chunks):
            raise StoreError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        async with self._write_lock:
            await self._write("reindex_write", _put_reindexed, list(chunks), np.asarray(vectors, dtype=np.float32))

    async def index_reindexed(self) -> None:
        return None  # sqlite-vec compares every vector: there is no index to build

    async def switch_reindex(self, info: EmbedderInfo, version: int) -> bool:
        async with self._write_lock:
            if not await self._write("reindex_switch", _switch_reindex, info, version):
                return False
            self._embedder = info
            try:
                await self._write("reindex_cleanup", _drop_unused_vector_tables)
            except StoreError as exc:  # the next reindex drops what is left
                log.warning("reindex_cleanup_failed", backend=self.backend, error=str(exc))
        return True


class SqliteSourceWriter:
    """Writes to one source inside the store's open transaction."""

    def __init__(self, store: SqliteStore, source: str) -> None:
        self._store = store
        self._source = source
        self.stats = WriteStats()

    async def put_document(self, document: DocumentInput) -> None:
        if len(document.vectors) != len(document.chunks):
            raise StoreError(f"{document.path}: {len(document.chunks)} chunks but {len(document.vectors)} vectors")
        await self._store._write("put_document", _put_document, self._source, document)
        self.stats.written += 1
        self.stats.chunks += len(document.chunks)

    async def delete_documents(self, paths: Sequence[str]) -> None:
        if paths:
            await self._store._write("delete_documents", _delete_documents, self._source, list(paths))
            self.stats.deleted += len(paths)
            self.stats.deleted_paths.extend(paths)


# -- SQL, run on the store's threads ----------------------------------------------


def _meta(db: Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(db: Connection, values: dict[str, str]) -> None:
    db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))


def _checked_table(name: str) -> str:
    """`name`, if it is a vector table's name: it is spliced into SQL."""
    if not _VECTOR_TABLE.match(name):
        raise StoreError(f"the database names an unexpected vector table {name!r}")
    return name


def _vector_table(db: Connection) -> str:
    """The vector table searches and ingests use now."""
    return _checked_table(_meta(db, "vector_table") or "chunk_vectors")


def _table_exists(db: Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _create_vector_table(db: Connection, name: str, dimension: int) -> None:
    db.execute(
        f"CREATE VIRTUAL TABLE {_checked_table(name)} USING vec0("
        "chunk_id INTEGER PRIMARY KEY, source TEXT PARTITION KEY, "
        f"embedding FLOAT[{int(dimension)}] distance_metric=cosine)"
    )


def _embedder_meta(info: EmbedderInfo) -> dict[str, str]:
    return {"embedder": info.provider, "embedding_model": info.model, "embedding_dimension": str(info.dimension)}


@contextmanager
def _snapshot(db: Connection) -> Iterator[None]:
    """One read transaction: its statements see one committed version, even if a reindex switches tables meanwhile."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("ROLLBACK")


@contextmanager
def _immediate(db: Connection) -> Iterator[None]:
    """A write transaction; StoreBusyError when another process keeps the write lock past the busy timeout."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite_driver.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) in _SQLITE_BUSY or "locked" in str(exc):
            raise StoreBusyError("another process is writing to the database") from None
        raise
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _read_corpus_version(db: Connection) -> tuple[str]:
    return db.execute("SELECT value FROM meta WHERE key = 'corpus_version'").fetchone()  # type: ignore[no-any-return]


def _read_embedder(db: Connection) -> EmbedderInfo | None:
    rows = dict(
        db.execute(
            "SELECT key, value FROM meta WHERE key IN ('embedder', 'embedding_model', 'embedding_dimension')"
        ).fetchall()
    )
    if "embedder" not in rows:
        return None
    return EmbedderInfo(rows["embedder"], rows["embedding_model"], int(rows["embedding_dimension"]))


def _bind_embedder(db: Connection, info: EmbedderInfo) -> None:
    current = _read_embedder(db)
    if current == info:
        return
    has_chunks = db.execute("SELECT EXISTS (SELECT 1 FROM chunks)").fetchone()[0]
    if current is not None and has_chunks:
        raise embedder_mismatch(current, info)
    db.execute("BEGIN IMMEDIATE")
    try:
        table = _vector_table(db)
        db.execute(f"DROP TABLE IF EXISTS {table}")
        _create_vector_table(db, table, info.dimension)
        _set_meta(db, _embedder_meta(info))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _begin(db: Connection, source: str, expected: EmbedderInfo | None) -> None:
    db.execute("BEGIN IMMEDIATE")
    # Checked under the write lock that a reindex's switch takes too: once the
    # index has moved to another embedder, this process's vectors do not belong in it.
    current = _read_embedder(db)
    if expected is not None and current is not None and current != expected:
        raise embedder_mismatch(current, expected)
    db.execute("INSERT OR IGNORE INTO sources (name, updated_at) VALUES (?, ?)", (source, _now()))


def _rollback(db: Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")


def _commit(db: Connection, source: str) -> None:
    remaining = db.execute("SELECT COUNT(*) FROM documents WHERE source = ?", (source,)).fetchone()[0]
    if remaining:
        db.execute("UPDATE sources SET updated_at = ? WHERE name = ?", (_now(), source))
    else:
        db.execute("DELETE FROM sources WHERE name = ?", (source,))
    db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'corpus_version'")
    db.execute("COMMIT")


def _delete_chunks_of(db: Connection, document_ids: list[int]) -> None:
    table = _vector_table(db)
    marks = ",".join("?" * len(document_ids))
    chunk_ids = [row[0] for row in db.execute(f"SELECT id FROM chunks WHERE document_id IN ({marks})", document_ids)]
    for start in range(0, len(chunk_ids), 500):
        part = chunk_ids[start : start + 500]
        chunk_marks = ",".join("?" * len(part))
        db.execute(f"DELETE FROM chunks_fts WHERE rowid IN ({chunk_marks})", part)
        db.execute(f"DELETE FROM {table} WHERE chunk_id IN ({chunk_marks})", part)
    db.execute(f"DELETE FROM chunks WHERE document_id IN ({marks})", document_ids)


def _put_document(db: Connection, source: str, document: DocumentInput) -> None:
    row = db.execute("SELECT id FROM documents WHERE source = ? AND path = ?", (source, document.path)).fetchone()
    if row is not None:
        _delete_chunks_of(db, [row[0]])
        db.execute("DELETE FROM documents WHERE id = ?", (row[0],))
    document_id = db.execute(
        "INSERT INTO documents (source, path, title, content_hash, content, ingested_at) VALUES (?, ?, ?, ?, ?, ?)",
        (source, document.path, document.title, document.content_hash, document.content, _now()),
    ).lastrowid
    table = _vector_table(db)
    for chunk, vector in zip(document.chunks, document.vectors, strict=True):
        chunk_id = db.execute(
            "INSERT INTO chunks (document_id, ordinal, heading, text, start_line, end_line) VALUES (?, ?, ?, ?, ?, ?)",
            (document_id, chunk.ordinal, chunk.heading, chunk.text, chunk.start_line, chunk.end_line),
        ).lastrowid
        db.execute(
            "INSERT INTO chunks_fts (rowid, title, heading, text) VALUES (?, ?, ?, ?)",
            (chunk_id, document.title, chunk.heading, chunk.text),
        )
        db.execute(
            f"INSERT INTO {table} (chunk_id, source, embedding) VALUES (?, ?, ?)",
            (chunk_id, source, np.asarray(vector, dtype=np.float32).tobytes()),
        )


def _delete_documents(db: Connection, source: str, paths: list[str]) -> None:
    for start in range(0, len(paths), 500):
        part = paths[start : start + 500]
        marks = ",".join("?" * len(part))
        ids = [
            row[0]
            for row in db.execute(f"SELECT id FROM documents WHERE source = ? AND path IN ({marks})", [source, *part])
        ]
        if ids:
            _delete_chunks_of(db, ids)
            db.execute(f"DELETE FROM documents WHERE id IN ({','.join('?' * len(ids))})", ids)


def _search_text(db: Connection, match: str, source: str | None, limit: int) -> list[tuple[int, float]]:
    # bm25() weights: title, heading, text. A word in a heading says more
    # about what a chunk is for than the same word in passing.
    sql = """
        SELECT f.rowid, bm25(chunks_fts, 3.0, 5.0, 1.0) AS rank
        FROM chunks_fts f
    """
    params: list[Any] = [match]
    if source is not None:
        # CROSS JOIN keeps the full-text match first: left to choose, the
        # planner scans every document of the source and probes the index
        # per chunk, which takes seconds on a large source.
        sql += " CROSS JOIN chunks c ON c.id = f.rowid CROSS JOIN documents d ON d.id = c.document_id"
        sql += " WHERE chunks_fts MATCH ? AND d.source = ?"
        params.append(source)
    else:
        sql += " WHERE chunks_fts MATCH ?"
    sql += " ORDER BY rank LIMIT ?"
    params.append(limit)
    return db.execute(sql, params).fetchall()  # type: ignore[no-any-return]


def _search_vector(db: Connection, blob: bytes, source: str | None, limit: int) -> list[tuple[int, float]]:
    with _snapshot(db):
        table = _vector_table(db)
        if not _table_exists(db, table):
            return []
        sql = f"SELECT chunk_id, distance FROM {table} WHERE embedding MATCH ? AND k = ?"
        params: list[Any] = [blob, limit]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        return db.execute(sql + " ORDER BY distance", params).fetchall()  # type: ignore[no-any-return]


def _get_chunks(db: Connection, chunk_ids: list[int]) -> list[tuple[Any, ...]]:
    marks = ",".join("?" * len(chunk_ids))
    return db.execute(  # type: ignore[no-any-return]
        f"""
        SELECT c.id, c.document_id, d.source, d.path, d.title, c.heading, c.text, c.start_line, c.end_line
        FROM chunks c JOIN documents d ON d.id = c.document_id
        WHERE c.id IN ({marks})
        """,
        chunk_ids,
    ).fetchall()


def _get_document(db: Connection, document_id: int) -> tuple[Any, ...] | None:
    return db.execute(  # type: ignore[no-any-return]
        """
        SELECT d.id, d.source, d.path, d.title, d.content, d.content_hash,
               (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id), d.ingested_at
        FROM documents d WHERE d.id = ?
        """,
        (document_id,),
    ).fetchone()


# -- reindex: a staging vector table, switched to by rewriting `vector_table` ----------


def _target(info: EmbedderInfo) -> str:
    return json.dumps([info.provider, info.model, info.dimension])


def _staging_table(db: Connection, info: EmbedderInfo) -> str:
    """The table staged for `info`; StoreError when another reindex replaced or finished it."""
    name = _meta(db, "reindex_table")
    if name is None or _meta(db, "reindex_target") != _target(info) or not _table_exists(db, _checked_table(name)):
        raise StoreError(
            f"the reindex to {info.describe()} was finished or replaced by another `docserver reindex`; run it again"
        )
    return name


def _drop_vector_tables(db: Connection, keep: set[str]) -> None:
    """Drop every vector table (and its shadow tables) not in `keep`: leftovers of earlier reindexes."""
    names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for name in names:
        if _VECTOR_TABLE.match(name) and name not in keep:
            db.execute(f"DROP TABLE {name}")


def _drop_unused_vector_tables(db: Connection) -> None:
    with _immediate(db):
        staging = _meta(db, "reindex_table")
        _drop_vector_tables(db, {_vector_table(db), *([staging] if staging else [])})
        if staging is None:
            db.execute("DELETE FROM reindex_fingerprints")


def _prepare_reindex(db: Connection, info: EmbedderInfo) -> None:
    with _immediate(db):
        staging = _meta(db, "reindex_table")
        if staging is not None and _meta(db, "reindex_target") == _target(info) and _table_exists(db, staging):
            return  # an interrupted reindex to the same embedder: keep what it staged
        current = _vector_table(db)
        _drop_vector_tables(db, {current})
        db.execute("DELETE FROM reindex_fingerprints")
        match = _VECTOR_TABLE.match(current)
        generation = int(match.group(1) or 0) if match else 0
        staging = f"chunk_vectors_{generation + 1}"
        _create_vector_table(db, staging, info.dimension)
        _set_meta(db, {"reindex_table": staging, "reindex_target": _target(info)})


def _reindex_scan(db: Connection, after: int, limit: int) -> ReindexBatch:
    rows = db.execute(
        """
        SELECT c.id, d.source, d.title, c.heading, c.text, f.fingerprint
        FROM chunks c JOIN documents d ON d.id = c.document_id
        LEFT JOIN reindex_fingerprints f ON f.chunk_id = c.id
        WHERE c.id > ? ORDER BY c.id LIMIT ?
        """,
        (after, limit),
    ).fetchall()
    pending = []
    for chunk_id, source, title, heading, text, staged in rows:
        # Compared by content, not by id: a chunk id freed by a delete is given to the next new chunk.
        fingerprint = chunk_fingerprint(source, title, heading, text)
        if fingerprint != staged:
            pending.append(PendingChunk(chunk_id, source, title, heading, text, fingerprint))
    return ReindexBatch(pending, len(rows), rows[-1][0] if len(rows) == limit else None)


def _put_reindexed(db: Connection, chunks: list[PendingChunk], vectors: Vectors) -> None:
    with _immediate(db):
        table = _meta(db, "reindex_table")
        if table is None or not _table_exists(db, _checked_table(table)):
            raise StoreError("the reindex was finished or replaced by another `docserver reindex`; run it again")
        for chunk, vector in zip(chunks, vectors, strict=True):
            db.execute(f"DELETE FROM {table} WHERE chunk_id = ?", (chunk.chunk_id,))
            db.execute(
                f"INSERT INTO {table} (chunk_id, source, embedding) VALUES (?, ?, ?)",
                (chunk.chunk_id, chunk.source, vector.tobytes()),
            )
        db.executemany(
            "INSERT OR REPLACE INTO reindex_fingerprints (chunk_id, fingerprint) VALUES (?, ?)",
            [(chunk.chunk_id, chunk.fingerprint) for chunk in chunks],
        )


def _switch_reindex(db: Connection, info: EmbedderInfo, version: int) -> bool:
    # BEGIN IMMEDIATE: the write lock every ingest holds for its whole transaction.
    with _immediate(db):
        staging = _staging_table(db, info)
        if int(_meta(db, "corpus_version") or 0) != version:
            return False  # an ingest committed since the last scan began
        orphans = db.execute(
            "SELECT f.chunk_id FROM reindex_fingerprints f LEFT JOIN chunks c ON c.id = f.chunk_id WHERE c.id IS NULL"
        ).fetchall()
        for (chunk_id,) in orphans:  # vectors of chunks deleted since they were staged
            db.execute(f"DELETE FROM {staging} WHERE chunk_id = ?", (chunk_id,))
            db.execute("DELETE FROM reindex_fingerprints WHERE chunk_id = ?", (chunk_id,))
        missing = db.execute(
            "SELECT EXISTS (SELECT 1 FROM chunks c LEFT JOIN reindex_fingerprints f ON f.chunk_id = c.id "
            "WHERE f.chunk_id IS NULL)"
        ).fetchone()[0]
        if missing:
            return False
        _set_meta(db, {"vector_table": staging, **_embedder_meta(info)})
        db.execute("DELETE FROM meta WHERE key IN ('reindex_table', 'reindex_target')")
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'corpus_version'")
    return True
