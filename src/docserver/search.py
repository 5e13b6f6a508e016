"""Hybrid search: BM25 full text and vector similarity, fused by weighted reciprocal rank.

The service owns the query path: result cache, query-embedding cache,
both retrievers, fusion and snippets. The MCP tools and the CLI call it;
neither knows which store or embedder sits underneath.

The fusion weights per embedder were chosen by measurement on the
evaluation set (`docserver eval`, docs/search.md), not by taste.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from docserver.cache import TTLCache, get_tiered, put_tiered
from docserver.embed.base import Embedder, Vectors
from docserver.errors import SearchInputError, StoreError
from docserver.observability.instruments import SearchInstruments
from docserver.observability.logging import get_logger
from docserver.store.base import (
    ChunkPlace,
    ChunkRecord,
    Document,
    RankedId,
    SourceFilter,
    SourceInfo,
    SourceRecord,
    Store,
    place_of,
)
from docserver.store.terms import query_terms
from docserver.versions import Catalog

if TYPE_CHECKING:
    from docserver.sharedcache import SharedCache  # imported lazily: redis is slow to import

MAX_QUERY_CHARS = 1000
MAX_LIMIT = 20
RRF_K = 60
"""The usual reciprocal-rank-fusion constant: damps the head of each list."""
SNIPPET_CHARS = 320
RESULTS_FORMAT = 3
"""The shape of a cached result in the shared cache: a replica of another version reads a miss, never a misread."""
CORPUS_VERSION_TTL = 1.0
"""Seconds a read corpus version is trusted at most: how soon another replica's ingest is seen."""
CHANGE_MARKER_INTERVAL = 0.1
"""Seconds between looks at the store's change marker (how soon another process on SQLite is seen)."""

log = get_logger("docserver.search")

ResultKey = tuple[int, str, str | None, str | None, int, frozenset[str] | None]
"""A cached result's key: corpus version, query, source, version, limit and the sources the caller may read."""


@dataclass(frozen=True, slots=True)
class Fusion:
    """How the full-text and vector rankings combine: weighted reciprocal-rank fusion.

    A weight of 0 leaves that retriever out (and, for vectors, the query
    embedding too): `Fusion(1, 0)` is BM25 alone, `Fusion(0, 1)` vectors alone.
    With `vectors_fill`, BM25 alone ranks, and vectors only fill the places
    it leaves empty (a query whose words no document contains).
    """

    text_weight: float = 1.0
    vector_weight: float = 1.0
    k: int = RRF_K
    vectors_fill: bool = False

    def describe(self) -> str:
        if not self.vector_weight:
            return "bm25, vectors fill" if self.vectors_fill else "bm25"
        if not self.text_weight:
            return "vector"
        return f"rrf(text={self.text_weight:g}, vector={self.vector_weight:g}, k={self.k})"


TEXT_ONLY = Fusion(1.0, 0.0)
VECTOR_ONLY = Fusion(0.0, 1.0)
FUSION_BY_PROVIDER: dict[str, Fusion] = {
    # Hashed n-grams add no meaning to BM25's words, only noise: every weight
    # given to them lowered BM25's own scores, so they only fill empty places.
    "hash": Fusion(1.0, 0.0, vectors_fill=True),
    # A semantic model: equal weights gave the best MRR of the grid, on the
    # plateau of the best hit@3, above both retrievers alone.
    "local": Fusion(1.0, 1.0, 60),
    "openai": Fusion(1.0, 1.0, 60),
}
"""The default fusion of each embedder, chosen on the evaluation set (docs/search.md)."""


@dataclass(frozen=True, slots=True)
class SearchHit(ChunkPlace):
    """One result: where it is, what it says, how well it matched."""

    snippet: str
    score: float


@dataclass(slots=True, eq=False)
class SearchPage:
    """One search's results, as the result cache keeps them.

    `rendered` is free for the reader to keep its serialised forms in, so a
    page served again from the cache is serialised once (mcp/answers.py).
    """

    hits: list[SearchHit]
    rendered: Any = None


class CorpusVersion:
    """The store's corpus version without a database round trip per search.

    Re-read at once after a write through this process's store (its
    `write_generation` moved, an attribute read); when the store's
    `change_marker` moved (on SQLite, any commit by another process: two
    `stat` calls, so looked at most every `marker_interval` seconds); and in
    any case every `ttl` seconds (another replica's write to a shared
    PostgreSQL). Results cached under an older version are never served after that.
    """

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = CORPUS_VERSION_TTL,
        marker_interval: float = CHANGE_MARKER_INTERVAL,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._marker_interval = marker_interval
        self._clock = clock
        self._version = 0
        self._generation = -1
        self._marker: Hashable = object()
        self._marker_due = float("-inf")
        self._expires = float("-inf")

    async def current(self) -> int:
        now = self._clock()
        generation = self._store.write_generation
        stale = generation != self._generation or now >= self._expires
        if now >= self._marker_due:
            self._marker_due = now + self._marker_interval
            marker, self._marker = self._marker, self._store.change_marker
            stale = stale or marker != self._marker
        if stale:
            self._generation = generation
            self._version = await self._store.corpus_version()
            self._expires = now + self._ttl
        return self._version

    def expire(self) -> None:
        """Re-read at the next search (after a store error, the version may be what changed)."""
        self._expires = float("-inf")


class SearchService:
    """Answers searches over one store with one embedder.

    Two caches, each in process and (with `shared_cache`, Redis) across
    replicas: query embeddings, keyed by embedder and query; and results,
    keyed by the corpus version as well, so an ingest through any process
    (the CLI, another replica) retires every older result at once.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        *,
        cache_size: int = 1024,
        cache_ttl: float = 300.0,
        shared_cache: SharedCache | None = None,
        fusion: Fusion | None = None,
        instruments: SearchInstruments | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.shared_cache = shared_cache
        self.fusion = fusion or FUSION_BY_PROVIDER.get(embedder.provider, Fusion())
        self.corpus_version = CorpusVersion(store, clock=clock)
        # The store's vectors are compared with this embedder whenever the corpus
        # version moves: after another process re-embedded the store (`docserver
        # reindex`), this process's query vectors would be meaningless there, so
        # it answers from full text alone until it restarts with the new embedder.
        self._checked_version: int | None = None
        self._vectors_match = True
        self.embedding_cache: TTLCache[str, Vectors] = TTLCache(
            "embedding", maxsize=cache_size, ttl=cache_ttl, clock=clock, counters=_counters(instruments, "embedding")
        )
        self.result_cache: TTLCache[ResultKey, SearchPage] = TTLCache(
            "search", maxsize=cache_size, ttl=cache_ttl, clock=clock, counters=_counters(instruments, "search")
        )
        self._result_counts = instruments.results if instruments is not None else None
        self._catalog: tuple[int, list[SourceInfo]] | None = None
        """The sources and their versions at one corpus version (only an ingest or a removal changes them)."""

    async def search(
        self,
        query: str,
        *,
        source: str | None = None,
        version: str | None = None,
        limit: int = 5,
        within: frozenset[str] | None = None,
    ) -> list[SearchHit]:
        """The best `limit` chunks for `query`, best first."""
        return (await self.search_page(query, source=source, version=version, limit=limit, within=within)).hits

    async def search_page(
        self,
        query: str,
        *,
        source: str | None = None,
        version: str | None = None,
        limit: int = 5,
        within: frozenset[str] | None = None,
    ) -> SearchPage:
        """The best `limit` chunks for `query`, as a page the result cache keeps (and its reader may annotate).

        `source` and `version` choose what is read (each source's newest version
        when `version` is None; see docserver/versions.py); `within`, when given,
        is every source the caller may read, by stored or base name.
        """
        query = query.strip()
        if not query:
            raise SearchInputError("query is empty; say what you are looking for")
        if len(query) > MAX_QUERY_CHARS:
            raise SearchInputError(f"query is longer than {MAX_QUERY_CHARS} characters; shorten it")
        if not 1 <= limit <= MAX_LIMIT:
            raise SearchInputError(f"limit must be between 1 and {MAX_LIMIT}")

        corpus = await self.corpus_version.current()
        if corpus != self._checked_version:
            await self._check_embedder(corpus)
        key = _result_key(corpus, query, source, version, limit, within)

        def shared_key() -> str:
            readable = sorted(within) if within is not None else None
            digest = _digest([query, source, version, limit, readable])
            return f"{RESULTS_FORMAT}:{corpus}:{self._embedder_key()}:{digest}"

        page = await get_tiered(self.result_cache, self.shared_cache, key, shared_key, _decode_page)
        if page is None:
            try:
                searched = (await self.catalog(corpus, within)).searched(source, version)
                page = SearchPage(await self._search(query, searched, limit))
            except StoreError:
                self.corpus_version.expire()
                raise
            await put_tiered(self.result_cache, self.shared_cache, key, shared_key, page, _encode_page)
        self._count_results(page)
        return page

    async def cached_page(
        self,
        query: str,
        *,
        source: str | None = None,
        version: str | None = None,
        limit: int = 5,
        within: frozenset[str] | None = None,
    ) -> SearchPage | None:
        """The page the in-process result cache holds for this search now; None when it holds none.

        Nothing is searched and the lookup is not counted: a caller that serves
        the page (in a form it kept on it) counts it with `served_from_cache`;
        otherwise it calls `search_page`, which looks again and counts once.
        """
        corpus = await self.corpus_version.current()
        if corpus != self._checked_version:
            return None  # search_page checks the store's embedder first
        return self.result_cache.lookup(_result_key(corpus, query.strip(), source, version, limit, within))

    def served_from_cache(self, page: SearchPage) -> None:
        """Count a page from `cached_page` served: a result-cache hit, and its result count."""
        self.result_cache.record(hit=True)
        self._count_results(page)

    def _count_results(self, page: SearchPage) -> None:
        if self._result_counts is not None:
            self._result_counts.observe(len(page.hits))

    async def _check_embedder(self, version: int) -> None:
        stored = await self.store.embedder_info()
        matches = stored is None or stored == self.embedder.info
        if not matches and (self._vectors_match or self._checked_version is None):
            log.warning(
                "embedder_mismatch",
                stored=stored.describe() if stored else None,
                configured=self.embedder.info.describe(),
                action="answering from full-text search only; restart with the embedder the store now holds",
            )
        self._vectors_match = matches
        self._checked_version = version

    async def catalog(self, corpus: int, within: frozenset[str] | None = None) -> Catalog:
        """The sources by name and version, listed once per corpus version; with `within`, a caller's share."""
        if self._catalog is None or self._catalog[0] != corpus:
            self._catalog = (corpus, await self.store.list_sources())
        return Catalog.of(self._catalog[1], within)

    async def _search(self, query: str, source: SourceFilter, limit: int) -> list[SearchHit]:
        return await self.ranked(query, source=source, limit=limit, fusion=self.fusion)

    async def ranked(self, query: str, *, source: SourceFilter, limit: int, fusion: Fusion) -> list[SearchHit]:
        """The best `limit` chunks by `fusion`, without the result cache (the evaluation compares fusions)."""
        candidates = max(limit * 4, 20)
        use_text = fusion.text_weight > 0
        use_vectors = fusion.vector_weight > 0 and self._vectors_match
        vector = await self._embed_query(query) if use_vectors else None
        text_ranked, vector_ranked = await asyncio.gather(
            self.store.search_text(query, source=source, limit=candidates) if use_text else _nothing(),
            self.store.search_vector(vector, source=source, limit=candidates) if vector is not None else _nothing(),
        )
        fused = fuse([text_ranked, vector_ranked], k=fusion.k, weights=(fusion.text_weight, fusion.vector_weight))
        if fusion.vectors_fill and len(fused) < limit and self._vectors_match:
            fused += await self._fill(query, source, candidates, {chunk_id for chunk_id, _ in fused})
        fused = fused[:limit]
        records = await self.store.get_chunks([chunk_id for chunk_id, _ in fused])
        scores = dict(fused)
        terms = query_terms(query)
        return [_hit(record, scores[record.chunk_id], terms) for record in records]

    async def _fill(
        self, query: str, source: SourceFilter, candidates: int, taken: set[int]
    ) -> list[tuple[int, float]]:
        """Vector matches not already ranked, scored below every full-text match."""
        ranked = await self.store.search_vector(await self._embed_query(query), source=source, limit=candidates)
        return [(item.chunk_id, 0.0) for item in ranked if item.chunk_id not in taken]

    def _embedder_key(self) -> str:
        """Provider, model and dimension: vectors of two embedders never meet in a shared cache."""
        return f"{self.embedder.provider}:{self.embedder.model}:{self.embedder.dimension}"

    async def _embed_query(self, query: str) -> Vectors:
        def shared_key() -> str:
            return f"{self._embedder_key()}:{_digest(query)}"

        dimension = self.embedder.dimension

        def decode(raw: bytes) -> Vectors | None:
            return np.frombuffer(raw, dtype="<f4") if len(raw) == 4 * dimension else None

        cached = await get_tiered(self.embedding_cache, self.shared_cache, query, shared_key, decode)
        if cached is not None:
            return cached
        vector = await self.embedder.embed_query(query)
        await put_tiered(self.embedding_cache, self.shared_cache, query, shared_key, vector, _encode_vector)
        return vector

    async def list_sources(self) -> list[SourceInfo]:
        return await self.store.list_sources()

    async def source_records(self) -> list[SourceRecord]:
        return await self.store.source_records()

    async def get_document(self, document_id: int) -> Document:
        return await self.store.get_document(document_id)


def _digest(value: object) -> str:
    """A short fixed-length name for a query (queries can be long, and carry user data)."""
    return hashlib.sha256(orjson.dumps(value)).hexdigest()[:32]


def _encode_vector(vector: Vectors) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def _result_key(
    corpus: int, query: str, source: str | None, version: str | None, limit: int, within: frozenset[str] | None
) -> ResultKey:
    """The result cache's key: search_page stores under it, cached_page looks it up."""
    return (corpus, query, source, version, limit, within)


def _encode_page(page: SearchPage) -> bytes:
    return orjson.dumps([astuple(hit) for hit in page.hits])


def _decode_page(raw: bytes) -> SearchPage | None:
    try:
        return SearchPage([SearchHit(*row) for row in orjson.loads(raw)])
    except (orjson.JSONDecodeError, TypeError):
        return None  # written by another version of docserver: a miss


def _counters(instruments: SearchInstruments | None, cache: str) -> tuple[Any, Any] | None:
    if instruments is None:
        return None
    return instruments.cache_requests(cache, "hit"), instruments.cache_requests(cache, "miss")


async def _nothing() -> list[RankedId]:
    return []


def fuse(
    rankings: Sequence[Sequence[RankedId]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Weighted reciprocal-rank fusion: list i adds weights[i] / (k + rank) for the chunks it ranks."""
    scores: dict[int, float] = {}
    for index, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[index]
        for rank, item in enumerate(ranking, start=1):
            scores[item.chunk_id] = scores.get(item.chunk_id, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def _hit(record: ChunkRecord, score: float, terms: list[str]) -> SearchHit:
    return SearchHit(**place_of(record), snippet=snippet(record.text, terms), score=round(score, 6))


def snippet(text: str, terms: list[str], size: int = SNIPPET_CHARS) -> str:
    """About `size` characters of `text`, around the first query term it contains."""
    flat = " ".join(text.split())
    if len(flat) <= size:
        return flat
    lowered = flat.lower()
    positions = [pos for pos in (lowered.find(term) for term in terms) if pos >= 0]
    start = max(0, min(positions) - size // 4) if positions else 0
    start = min(start, len(flat) - size)
    if start > 0:
        space = flat.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    piece = flat[start : start + size].rstrip()
    return ("…" if start > 0 else "") + piece + ("…" if start + size < len(flat) else "")
