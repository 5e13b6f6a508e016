"""The Store protocol: what search and ingestion need from a backend, and nothing more.

Backends (SQLite today, PostgreSQL next) implement it; one contract test suite
runs against each. Every method is async: a backend keeps blocking work off
the event loop itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from docserver.errors import EmbedderMismatchError, StoreError

Vectors = npt.NDArray[np.float32]
"""float32 vectors: a 1-D array for one, a 2-D array (one row each) for many."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached right now; the same call may succeed later."""


@dataclass(frozen=True, slots=True)
class EmbedderInfo:
    """Which embedder produced the stored vectors; a store refuses to mix two."""

    provider: str
    model: str
    dimension: int

    def describe(self) -> str:
        return f"{self.provider}/{self.model} ({self.dimension} dimensions)"


def embedder_mismatch(stored: EmbedderInfo, configured: EmbedderInfo) -> EmbedderMismatchError:
    """The one-line refusal, with the command that fixes it."""
    return EmbedderMismatchError(
        f"the database holds vectors from {stored.describe()}, but the configured embedder is "
        f"{configured.describe()}; run `docserver reindex` to re-embed every chunk with the configured "
        "embedder (the current index stays searchable until it finishes), or configure the embedder "
        "the database holds"
    )


@dataclass(frozen=True, slots=True)
class ChunkInput:
    """One chunk to store: the text plus where it came from."""

    ordinal: int
    heading: str
    text: str
    start_line: int
    end_line: int
    anchor: str = ""
    """The `id` of the chunk's section in the document (HTML), for links to it; "" when none."""


@dataclass(frozen=True, slots=True)
class DocumentInput:
    """One file to store, with its chunks and one vector per chunk."""

    path: str
    title: str
    content_hash: str
    content: str
    chunks: Sequence[ChunkInput]
    vectors: Vectors


@dataclass(frozen=True, slots=True)
class ChunkPlace:
    """Where a chunk is: its ids, its file, its section and its lines."""

    chunk_id: int
    document_id: int
    source: str
    path: str
    """A file's path within its source, or a web page's URL."""
    title: str
    heading: str
    start_line: int
    end_line: int
    anchor: str
    """The `id` of the chunk's section (HTML), "" when it has none."""

    @property
    def url(self) -> str | None:
        """The web page's address, with the section's anchor; None for a file (no address to cite)."""
        if not self.path.startswith(("http://", "https://")):
            return None
        return f"{self.path}#{self.anchor}" if self.anchor else self.path


def place_of(chunk: ChunkPlace) -> dict[str, Any]:
    """The place fields of a chunk (or of a search hit), to build another kind of result at the same place."""
    return {field.name: getattr(chunk, field.name) for field in fields(ChunkPlace)}


@dataclass(frozen=True, slots=True)
class ChunkRecord(ChunkPlace):
    """A stored chunk, as search returns it."""

    text: str


@dataclass(frozen=True, slots=True)
class Document:
    """A stored file, whole."""

    document_id: int
    source: str
    path: str
    title: str
    content: str
    content_hash: str
    chunk_count: int
    ingested_at: str


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """A stored file, named but not read: one line of a listing."""

    document_id: int
    source: str
    path: str
    title: str


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A named collection of documents, ingested together."""

    name: str
    """The stored name: `NAME@VERSION` for a version (see docserver/versions.py)."""
    documents: int
    chunks: int
    updated_at: str
    version: str | None = None
    """The `--version` label it was ingested with; None without one."""


SourceFilter = str | tuple[str, ...] | None
"""Which sources a search reads: one (its stored name), several (a tuple of them), or every one (None)."""


@dataclass(frozen=True, slots=True)
class SourceOrigin:
    """Where a source was ingested from, recorded with its documents so `docserver refresh` can fetch it again."""

    origin: str
    """A folder or file (absolute), or a `git+…` URL."""
    options: dict[str, Any] = field(default_factory=dict)
    """What else the fetch needs (include/exclude globs, git ref and path), stored as JSON."""
    version: str | None = None
    revision: str | None = None
    """What was ingested, where the origin can say (a git commit)."""


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A source with its origin and freshness, as `docserver sources` and the freshness metrics show it."""

    name: str
    documents: int
    origin: str | None
    options: dict[str, Any]
    version: str | None
    revision: str | None
    refreshed_at: str | None
    """When the source was last ingested or refreshed successfully (ISO 8601, UTC)."""
    last_error: str | None
    """Why the latest refresh failed; None once one has succeeded since."""
    last_error_at: str | None


@dataclass(frozen=True, slots=True)
class RankedId:
    """A chunk id with the score one retriever gave it (higher is better)."""

    chunk_id: int
    score: float


@dataclass(frozen=True, slots=True)
class PendingChunk:
    """A chunk that `docserver reindex` has still to embed with the new embedder."""

    chunk_id: int
    source: str
    title: str
    heading: str
    text: str
    fingerprint: str
    """What the store read (see `chunk_fingerprint`); handed back with the vector, so a chunk
    rewritten in between is noticed and embedded again."""


def reindex_target(info: EmbedderInfo) -> str:
    """How a reindex records (in `meta`) the embedder it stages vectors for."""
    return json.dumps([info.provider, info.model, info.dimension])


def chunk_fingerprint(source: str, title: str, heading: str, text: str) -> str:
    """A digest of everything a chunk's vector (and its vector-table row) is made from."""
    return hashlib.sha256("\x1f".join((source, title, heading, text)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ReindexBatch:
    """One step of the scan over every chunk, in id order."""

    pending: list[PendingChunk]
    """The chunks of this step that have no vector from the new embedder yet."""
    scanned: int
    """Chunks looked at in this step (on PostgreSQL, the chunks of the distinct texts it looked at)."""
    last_id: int | None
    """Continue the scan after this id; None once the scan has reached the end."""

    @classmethod
    def of(
        cls, pending: list[PendingChunk], scanned_ids: Sequence[int], limit: int, chunks: int | None = None
    ) -> ReindexBatch:
        """The batch for a scan step that read `scanned_ids` (in order), asking for at most `limit`;
        `chunks`: how many chunks those rows stand for, when not one each."""
        scanned = len(scanned_ids) if chunks is None else chunks
        return cls(pending, scanned, scanned_ids[-1] if len(scanned_ids) == limit else None)


@dataclass(slots=True)
class WriteStats:
    """What one source update changed."""

    written: int = 0
    deleted: int = 0
    chunks: int = 0
    deleted_paths: list[str] = field(default_factory=list)


class SourceWriter(Protocol):
    """Changes to one source inside one transaction.

    Nothing is visible to readers until the `async with` block exits cleanly;
    an exception (or a crash) leaves the previous version untouched.
    """

    async def put_document(self, document: DocumentInput) -> None: ...

    async def delete_documents(self, paths: Sequence[str]) -> None: ...

    async def delete_all(self) -> None:
        """Delete every document of the source (the source goes too, when the update commits)."""

    async def record_origin(self, origin: SourceOrigin) -> None:
        """Record where the source came from, and that it was refreshed successfully now."""

    @property
    def stats(self) -> WriteStats: ...


@runtime_checkable
class Store(Protocol):
    """A document store with full-text and vector search."""

    backend: str
    """A fixed label: `sqlite` or `postgresql`."""
    transient_errors: tuple[type[Exception], ...]
    """The errors after which the same call may succeed later (the database is down); empty for SQLite."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError when the store cannot answer a trivial query."""

    async def embedder_info(self) -> EmbedderInfo | None:
        """The embedder recorded with the stored vectors, or None for an empty store."""

    async def bind_embedder(self, info: EmbedderInfo) -> None:
        """Record `info`, or raise EmbedderMismatchError if vectors from another embedder exist."""

    async def corpus_version(self) -> int:
        """A number that grows with every committed source update (cache keys use it)."""

    async def vector_index_built(self) -> None:
        """Return once the index work a write started in the background is done (SQLite's approximate
        vector index); at once where the index is kept up to date by the writes themselves."""

    @property
    def write_generation(self) -> int:
        """A counter that moves after every write through this store object."""

    @property
    def change_marker(self) -> Hashable:
        """A value that moves whenever the data may have changed, read without a database round trip.

        It moves after a write through this store object; where the backend
        can tell (SQLite's files), after other processes' writes too.
        """

    async def list_sources(self) -> list[SourceInfo]: ...

    async def document_hashes(self, source: str) -> dict[str, str]:
        """path -> content hash of every document stored for `source`."""

    async def source_records(self) -> list[SourceRecord]:
        """Every source with its origin and freshness, by name."""

    async def record_refresh(self, source: str, *, error: str | None) -> None:
        """Record a refresh of a stored source that wrote no documents: successful (error None) or failed."""

    def update_source(self, source: str) -> AbstractAsyncContextManager[SourceWriter]:
        """A transaction that replaces part or all of one source atomically."""

    def refresh_lock(self, source: str) -> AbstractAsyncContextManager[bool]:
        """Hold the right to refresh `source` for the block, across processes: True when taken, False when
        another holder (process or task) has it. Never waits; released when the block exits or the process dies."""

    async def search_text(self, query: str, *, source: SourceFilter, limit: int) -> list[RankedId]:
        """Full-text (BM25) search; an empty list when nothing matches."""

    async def search_vector(self, vector: Vectors, *, source: SourceFilter, limit: int) -> list[RankedId]:
        """Nearest chunks by cosine similarity."""

    async def get_chunks(self, chunk_ids: Sequence[int]) -> list[ChunkRecord]:
        """The chunks with these ids, in the order given (missing ids are left out)."""

    async def get_document(self, document_id: int) -> Document:
        """Raise DocumentNotFoundError when there is no such document."""

    async def list_documents(self, sources: Sequence[str] | None, *, after: int, limit: int) -> list[DocumentEntry]:
        """Up to `limit` documents with ids above `after`, by id; only those of `sources` unless it is None."""

    # -- changing the embedder (`docserver reindex`): new vectors are built beside the
    # current ones, which keep answering searches until `switch_reindex` swaps them in.

    async def prepare_reindex(self, info: EmbedderInfo) -> None:
        """Make room for vectors from `info` beside the current ones.

        The staged vectors of an interrupted reindex to the same embedder are kept
        (only what is missing gets embedded); those for another embedder are dropped.
        Raises StoreBusyError when a writer holds the lock this needs.
        """

    async def reindex_batch(self, after: int, limit: int) -> ReindexBatch:
        """The next `limit` chunks with an id above `after`, and which of them still need a new vector."""

    async def put_reindexed(self, chunks: Sequence[PendingChunk], vectors: Vectors) -> None:
        """Stage the new vectors (one row each) of `chunks`, in one short transaction.

        Raises StoreBusyError when a writer holds the lock this needs.
        """

    async def index_reindexed(self) -> None:
        """Make the staged vectors quick to search before they are switched in.

        PostgreSQL builds their HNSW index (without blocking searches or ingests,
        but after waiting for ingests in flight); SQLite has nothing to do.
        """

    async def switch_reindex(self, info: EmbedderInfo, version: int) -> bool:
        """Make the staged vectors the index, in one short transaction, if they are complete.

        Under the lock that ingests take, checks that the corpus is still at
        `version` (read before the last scan began) and that every chunk has a
        staged vector; then swaps the vectors, records `info` and bumps the corpus
        version. Returns False, changing nothing, when an ingest committed since
        (scan again). Raises StoreBusyError when the lock is not granted in time.
        """
