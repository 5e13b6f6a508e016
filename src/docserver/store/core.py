"""StoreCore: the flow every backend shares, written once.

A backend supplies its dialect (`sql` and `reindex_sql`: one statement
function per operation, taking the backend's connection first) and how a statement runs: `_read` and
`_write` (observed, with driver errors translated to StoreError) and
`_transaction` (one write transaction for a source update). The core does
the rest: empty-input shortcuts, result order, the embedder this process
writes with, the source writer, and the instruments it was given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar, Protocol

import numpy as np

from docserver.errors import DocumentNotFoundError, StoreError
from docserver.observability.instruments import StoreInstruments
from docserver.observability.metrics import PoolCollector
from docserver.store.base import (
    ChunkRecord,
    Document,
    DocumentEntry,
    EmbedderInfo,
    PendingChunk,
    RankedId,
    ReindexBatch,
    SourceFilter,
    SourceInfo,
    SourceRecord,
    SourceWriter,
    Vectors,
)
from docserver.store.observe import COLLECTIONS, QueryObserver
from docserver.store.terms import query_terms
from docserver.store.writer import Execute, OriginStatements, TransactionWriter, WriteStatements


class Statements(WriteStatements, Protocol):
    """A dialect: what each operation runs, as `statement(connection, *args)` returning the result.

    SQLite's run on a worker thread; PostgreSQL's are coroutines. Reads return
    the domain objects (`ChunkRecord`, `RankedId`...), ready for the caller.
    """

    ping: Callable[..., Any]
    read_embedder: Callable[..., Any]
    bind_embedder: Callable[..., Any]
    corpus_version: Callable[..., Any]
    list_sources: Callable[..., Any]
    document_hashes: Callable[..., Any]
    begin: Callable[..., Any]
    commit: Callable[..., Any]
    search_text: Callable[..., Any]
    search_vector: Callable[..., Any]
    get_chunks: Callable[..., Any]
    get_document: Callable[..., Any]
    list_documents: Callable[..., Any]


class SourceStatements(OriginStatements, Protocol):
    """A dialect's statements for sources' origins and freshness (`docserver sources`, `refresh`)."""

    source_records: Callable[..., Any]
    record_refresh: Callable[..., Any]


class ReindexStatements(Protocol):
    """A dialect's statements for `docserver reindex`: stage new vectors beside the current ones, then switch."""

    prepare_reindex: Callable[..., Any]
    reindex_scan: Callable[..., Any]
    put_reindexed: Callable[..., Any]
    switch_reindex: Callable[..., Any]


class StoreCore(ABC):
    """The Store protocol over a dialect; subclasses add connections and their SQL."""

    backend: str
    transient_errors: tuple[type[Exception], ...] = ()
    sql: Statements
    reindex_sql: ReindexStatements
    sources_sql: SourceStatements
    collections: ClassVar[Mapping[str, str]] = COLLECTIONS

    def __init__(
        self,
        *,
        instruments: StoreInstruments | None,
        slow_seconds: float,
        serialized: AbstractAsyncContextManager[Any],
    ) -> None:
        self._observer = QueryObserver(
            self.backend, instruments, slow_seconds=slow_seconds, collections=self.collections
        )
        self._serialized = serialized
        """Held by the reindex steps that write (SQLite's single writer connection takes turns)."""
        self._embedder: EmbedderInfo | None = None
        """The embedder this process writes vectors with (bound, or switched to): ingests check it."""
        self.write_generation = 0
        if instruments is not None:
            instruments.register_collector(PoolCollector(self.pool_stats))

    # -- what a backend supplies ---------------------------------------------------

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def pool_stats(self) -> tuple[int, int, int]:
        """(active, idle, pending) connections (or worker threads), read at scrape time."""

    @abstractmethod
    async def _read(self, operation: str, statement: Callable[..., Any], *args: Any) -> Any: ...

    @abstractmethod
    async def _write(self, operation: str, statement: Callable[..., Any], *args: Any) -> Any: ...

    @abstractmethod
    def refresh_lock(self, source: str) -> AbstractAsyncContextManager[bool]:
        """See Store.refresh_lock: each backend locks in its own way."""

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Execute]:
        """One write transaction: committed when the block exits cleanly, rolled back otherwise."""

    def _vector_search_options(self) -> tuple[Any, ...]:
        """What the backend's `search_vector` statement takes after (vector, source, limit): nothing by default."""
        return ()

    async def _after_switch(self) -> None:
        """Tidy up after a reindex switched (still holding `_serialized`)."""
        return None  # nothing to tidy unless the backend keeps leftovers (SQLite's old vector tables)

    # -- metadata --------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read("ping", self.sql.ping)

    async def embedder_info(self) -> EmbedderInfo | None:
        info: EmbedderInfo | None = await self._read("embedder_info", self.sql.read_embedder)
        return info

    async def bind_embedder(self, info: EmbedderInfo) -> None:
        await self._write("bind_embedder", self.sql.bind_embedder, info)
        self._embedder = info

    async def corpus_version(self) -> int:
        return int(await self._read("corpus_version", self.sql.corpus_version))

    async def list_sources(self) -> list[SourceInfo]:
        sources: list[SourceInfo] = await self._read("list_sources", self.sql.list_sources)
        return sources

    async def document_hashes(self, source: str) -> dict[str, str]:
        return dict(await self._read("document_hashes", self.sql.document_hashes, source))

    async def source_records(self) -> list[SourceRecord]:
        records: list[SourceRecord] = await self._read("source_records", self.sources_sql.source_records)
        return records

    async def record_refresh(self, source: str, *, error: str | None) -> None:
        async with self._serialized:  # SQLite: not inside an ingest's transaction on the writer connection
            await self._write("record_refresh", self.sources_sql.record_refresh, source, error)

    # -- writing -----------------------------------------------------------------------

    @asynccontextmanager
    async def update_source(self, source: str) -> AsyncIterator[SourceWriter]:
        try:
            async with self._transaction() as execute:
                await execute("begin", self.sql.begin, source, self._embedder)
                yield TransactionWriter(source, execute, self.sql, self.sources_sql)
                await execute("commit", self.sql.commit, source)
        finally:
            self.write_generation += 1  # after COMMIT (or rollback): readers re-read the corpus version

    @property
    def change_marker(self) -> Hashable:
        """Moves after every write through this store; a backend may add what it can see of other processes'."""
        return self.write_generation

    # -- reading -----------------------------------------------------------------------

    async def search_text(self, query: str, *, source: SourceFilter, limit: int) -> list[RankedId]:
        terms = query_terms(query)
        if not terms or source == ():
            return []
        ranked: list[RankedId] = await self._read("search_text", self.sql.search_text, terms, source, limit)
        return ranked

    async def search_vector(self, vector: Vectors, *, source: SourceFilter, limit: int) -> list[RankedId]:
        array = np.asarray(vector, dtype=np.float32)
        if not np.any(array) or source == ():
            return []  # a zero vector (a query without words) has no direction to compare; no source, no chunk
        statement, extra = self.sql.search_vector, self._vector_search_options()
        ranked: list[RankedId] = await self._read("search_vector", statement, array, source, limit, *extra)
        return ranked

    async def get_chunks(self, chunk_ids: Sequence[int]) -> list[ChunkRecord]:
        if not chunk_ids:
            return []
        chunks: list[ChunkRecord] = await self._read("get_chunks", self.sql.get_chunks, list(chunk_ids))
        by_id = {chunk.chunk_id: chunk for chunk in chunks}
        return [by_id[chunk_id] for chunk_id in chunk_ids if chunk_id in by_id]

    async def get_document(self, document_id: int) -> Document:
        document: Document | None = await self._read("get_document", self.sql.get_document, document_id)
        if document is None:
            raise DocumentNotFoundError(f"no document with id {document_id}")
        return document

    async def list_documents(self, sources: Sequence[str] | None, *, after: int, limit: int) -> list[DocumentEntry]:
        chosen = None if sources is None else list(sources)
        entries: list[DocumentEntry] = await self._read("list_documents", self.sql.list_documents, chosen, after, limit)
        return entries

    # -- changing the embedder -----------------------------------------------------------

    async def prepare_reindex(self, info: EmbedderInfo) -> None:
        async with self._serialized:
            await self._write("reindex_prepare", self.reindex_sql.prepare_reindex, info)

    async def reindex_batch(self, after: int, limit: int) -> ReindexBatch:
        batch: ReindexBatch = await self._read("reindex_scan", self.reindex_sql.reindex_scan, after, limit)
        return batch

    async def put_reindexed(self, chunks: Sequence[PendingChunk], vectors: Vectors) -> None:
        if len(vectors) != len(chunks):
            raise StoreError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        rows = np.asarray(vectors, dtype=np.float32)
        async with self._serialized:
            await self._write("reindex_write", self.reindex_sql.put_reindexed, list(chunks), rows)

    async def index_reindexed(self) -> None:
        return None  # nothing to build unless the backend indexes vectors (see PostgresStore)

    async def switch_reindex(self, info: EmbedderInfo, version: int) -> bool:
        async with self._serialized:
            if not await self._write("reindex_switch", self.reindex_sql.switch_reindex, info, version):
                return False
            self._embedder = info
            self.write_generation += 1
            await self._after_switch()
        return True
