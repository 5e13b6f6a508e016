"""PostgreSQL's statements (the `Statements` of StoreCore), each a coroutine on a pooled connection.

Full text is a tsvector column with a GIN index, ranked by ts_rank_cd;
vectors are a pgvector column on `embeddings`, one row per distinct embedded
text, with an HNSW index (cosine); each chunk points to its text's row
(`chunks.embedding_id`, migration 0004). Vector search is postgres_vector's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from psycopg import sql

from docserver.observability.logging import get_logger
from docserver.store.base import (
    ChunkRecord,
    Document,
    DocumentEntry,
    DocumentInput,
    EmbedderInfo,
    RankedId,
    SourceFilter,
    SourceInfo,
    Vectors,
    embedder_mismatch,
)
from docserver.store.postgres_filters import source_condition, source_filter
from docserver.store.postgres_schema import (
    BIND_LOCK,
    EMBEDDINGS_LOCK,
    MAX_INDEXED_DIMENSION,
    MAX_PLAIN_DIMENSION,
    TEXT_WEIGHTS,
    VECTOR_INDEX,
    Connection,
    PostgresOptions,
    bump_corpus_version,
    embedding_key,
    fetch_all,
    record_embedder,
    storage,
    vector_index_sql,
    vector_or_null,
)
from docserver.store.postgres_schema import (
    corpus_version as corpus_version,
)
from docserver.store.postgres_schema import (
    read_embedder as read_embedder,  # statements too
)
from docserver.store.postgres_vector import search_vector as search_vector  # the vector search's statement
from docserver.store.terms import text_score

log = get_logger("docserver.store")


async def ping(conn: Connection) -> None:
    await conn.execute("SELECT 1")


async def bind_embedder(conn: Connection, info: EmbedderInfo, options: PostgresOptions) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (BIND_LOCK,))
        current = await read_embedder(conn)
        if current == info:
            return
        has_chunks = await fetch_all(conn, "SELECT EXISTS (SELECT 1 FROM chunks)")
        if current is not None and has_chunks[0][0]:
            raise embedder_mismatch(current, info)
        # The store holds no vectors: give the column the new dimension and index it.
        await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(VECTOR_INDEX)))
        # Vectors stay in the row, uncompressed (STORAGE PLAIN), where they fit: by default those
        # over 2 KB (512 dimensions and up) go to TOAST, and sparse ones get compressed. The planner
        # sees neither, prices a full scan far too low and picks it over the HNSW index; reading
        # TOAST or decompressing on every row then makes that scan slow too.
        await conn.execute(
            sql.SQL(
                "ALTER TABLE embeddings ALTER COLUMN embedding TYPE vector({}), ALTER COLUMN embedding SET STORAGE {}"
            ).format(sql.Literal(info.dimension), storage(info.dimension <= MAX_PLAIN_DIMENSION))
        )
        if info.dimension <= MAX_INDEXED_DIMENSION:
            await conn.execute(vector_index_sql(options, dimension=info.dimension))
        else:
            log.warning(
                "vector_index_skipped",
                dimension=info.dimension,
                reason=f"HNSW indexes at most {MAX_INDEXED_DIMENSION} dimensions; vector search will scan every "
                f"chunk (set DOCSERVER_EMBEDDING_DIMENSIONS to {MAX_INDEXED_DIMENSION} or fewer)",
            )
        await record_embedder(conn, info)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def list_sources(conn: Connection) -> list[SourceInfo]:
    rows = await fetch_all(
        conn,
        """
        SELECT s.name,
               (SELECT count(*) FROM documents d WHERE d.source = s.name),
               (SELECT count(*) FROM chunks c WHERE c.source = s.name),
               s.updated_at, s.version
        FROM sources s ORDER BY s.name
        """,
    )
    return [
        SourceInfo(name, documents, chunks, _iso(updated), version)
        for name, documents, chunks, updated, version in rows
    ]


async def document_hashes(conn: Connection, source: str) -> list[tuple[Any, ...]]:
    return await fetch_all(conn, "SELECT path, content_hash FROM documents WHERE source = %s", (source,))


# -- writing: one transaction on one connection, from `begin` to `commit` --------------------------


async def begin(conn: Connection, source: str, expected: EmbedderInfo | None) -> None:
    # Two ingests of one source (from two replicas or CLIs) take turns; other sources go on in parallel.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('docserver.source:' || %s, 0))", (source,))
    # Shared with other ingests: no collection of unreferenced vectors while this one may point to them.
    await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (EMBEDDINGS_LOCK,))
    # FOR SHARE, held to the end of the ingest: a reindex's switch (FOR UPDATE on the same
    # row) waits for ingests in flight, and an ingest that starts after it sees the new embedder.
    current = await read_embedder(conn, for_share=True)
    if expected is not None and current is not None and current != expected:
        raise embedder_mismatch(current, expected)
    await conn.execute(
        "INSERT INTO sources (name, updated_at) VALUES (%s, now()) ON CONFLICT (name) DO NOTHING", (source,)
    )


async def commit(conn: Connection, source: str) -> None:
    remaining = await fetch_all(conn, "SELECT EXISTS (SELECT 1 FROM documents WHERE source = %s)", (source,))
    if remaining[0][0]:
        await conn.execute("UPDATE sources SET updated_at = now() WHERE name = %s", (source,))
    else:
        await conn.execute("DELETE FROM sources WHERE name = %s", (source,))
    await bump_corpus_version(conn)


async def put_document(conn: Connection, source: str, document: DocumentInput) -> None:
    # Chunks go with their document (ON DELETE CASCADE).
    await conn.execute("DELETE FROM documents WHERE source = %s AND path = %s", (source, document.path))
    inserted = await fetch_all(
        conn,
        """
        INSERT INTO documents (source, path, title, content_hash, content, ingested_at)
        VALUES (%s, %s, %s, %s, %s, now()) RETURNING id
        """,
        (source, document.path, document.title, document.content_hash, document.content),
    )
    vectors = np.asarray(document.vectors, dtype=np.float32)
    keys = [embedding_key(document.title, chunk.heading, chunk.text) for chunk in document.chunks]
    embedding_ids = await _embedding_ids(conn, keys, vectors)
    rows = [
        (
            inserted[0][0],
            source,
            chunk.ordinal,
            document.title,
            chunk.heading,
            chunk.text,
            chunk.start_line,
            chunk.end_line,
            chunk.anchor,
            embedding_ids[key],
        )
        for chunk, key in zip(document.chunks, keys, strict=True)
    ]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                """
                INSERT INTO chunks
                    (document_id, source, ordinal, title, heading, text, start_line, end_line, anchor, embedding_id)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                rows,
            )


async def _embedding_ids(conn: Connection, keys: list[bytes], vectors: Vectors) -> dict[bytes, int]:
    """The `embeddings` row of each key: the stored one where the text was embedded before, else a new row.

    A vector already stored is not sent again. Nothing is locked or waited
    for: two ingests in flight that bring the same new text each add a row.
    """
    if not keys:
        return {}
    found: dict[bytes, int] = {
        bytes(key): int(id_)
        for key, id_ in await fetch_all(
            conn,
            "SELECT DISTINCT ON (key) key, id FROM embeddings WHERE key = ANY(%s) ORDER BY key, id",
            (list(set(keys)),),
        )
    }
    new: dict[bytes, Vectors] = {}
    for key, vector in zip(keys, vectors, strict=True):
        if key not in found:
            new.setdefault(key, vector)
    if new:
        values = sql.SQL(", ").join(sql.SQL("(%s, %s)") for _ in new)
        cursor = await conn.execute(
            sql.SQL("INSERT INTO embeddings (key, embedding) VALUES {} RETURNING key, id").format(values),
            [value for key, vector in new.items() for value in (key, vector_or_null(vector))],
        )
        found |= {bytes(key): int(id_) for key, id_ in await cursor.fetchall()}
    return found


async def collect_embeddings(conn: Connection) -> int:
    """Remove the `embeddings` rows that deleted chunks pointed to and no chunk points to now; how many.

    Only when no ingest is in flight (one may have pointed a chunk to such a row
    and not committed yet): otherwise the rows stay noted for the next time.
    Until then they are never found, since a vector search reads its vectors'
    chunks.
    """
    async with conn.transaction():
        locked = await fetch_all(conn, "SELECT pg_try_advisory_xact_lock(%s)", (EMBEDDINGS_LOCK,))
        if not locked[0][0]:
            return 0
        rows = await fetch_all(
            conn,
            """
            WITH noted AS (DELETE FROM embedding_orphans RETURNING embedding_id),
            gone AS (
                DELETE FROM embeddings e
                WHERE e.id IN (SELECT embedding_id FROM noted)
                  AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.embedding_id = e.id)
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
        )
    return int(rows[0][0])


async def delete_documents(conn: Connection, source: str, paths: list[str]) -> None:
    await conn.execute("DELETE FROM documents WHERE source = %s AND path = ANY(%s)", (source, paths))


# -- reading --------------------------------------------------------------------------------


RANKED_AT_MOST = 200
"""Chunks ranked (ts_rank_cd) per tier of a full-text search, at most.

ts_rank_cd reads each matching chunk's tsvector: at 1,000,000 chunks a common
word matches hundreds of thousands, and ranking them all took seconds. The GIN
index finds the matches; only the first RANKED_AT_MOST of them (in table order)
are ranked. Fewer chunks than that hold every word of a precise question, so
its ranking is exact (docs/search.md, bench/postgres_scale.py).
"""


TEXT_PLAN = "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_indexscan', 'off', true)"
"""Run first in the full-text statements' transaction: their matches come from the GIN index.

Never from a scan of the table (or of the source index) that stops at
RANKED_AT_MOST: the planner takes matches as spread evenly through the table,
and when a filter's chunks sit at its end (the newest versions, the last
ingested) that scan read 80,000 rows to find 200 (1 s at 100,000 chunks).

The tiers' statements are never prepared either (`prepare=False`): each is
planned for its question's words and filter. A prepared statement goes to
PostgreSQL's generic plan after five executions when that plan's estimate is
the lower, and the generic plan cannot know how many chunks the words match:
it filters the GIN matches by source row by row, in table order, instead of
intersecting them with the source index. With migration 0005's wider source
index the estimates tipped that way, and the newest versions' full text (their
chunks at the table's end) read thousands of other sources' rows per search
(p95 9 -> 31-37 ms at 100,000 chunks; docs/performance.md).
"""


COMMON_AT_MATCHES = 10_000
"""A query word held by more chunks than this is left out of what the some-words tier matches.

At 1,000,000 chunks a long question ORs words that hundreds of thousands of
chunks hold ("value", "function"), and the GIN index builds a bitmap of every
match before anything is ranked: 150-250 ms. Full-text engines leave such
words out of the match and let them count in the rank only (Lucene's common
terms). The counts come from the column's statistics (`pg_stats`, kept by
ANALYZE), so a store smaller than this never leaves a word out. The
every-word tier keeps every word: GIN intersects the lists from the rarest.
"""

COMMON_TERMS = """
    WITH common AS MATERIALIZED (
        SELECT u.lexeme, u.freq * c.reltuples AS matches
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'tsv'
        CROSS JOIN LATERAL unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS u (lexeme, freq)
        WHERE c.oid = 'chunks'::regclass
    )
    SELECT t.term
    FROM unnest(%s::text[]) AS t (term)
    CROSS JOIN LATERAL unnest(to_tsvector('docserver', t.term)) AS v
    LEFT JOIN common f ON f.lexeme = v.lexeme
    GROUP BY t.term
    HAVING min(coalesce(f.matches, 0)) > %s
"""
"""The query words every lexeme of which more than COMMON_AT_MATCHES chunks hold, by the column's statistics."""


TEXT_SOURCE = 'c.source COLLATE "C"'
"""Full text's filter column: in the collation of `chunks_by_source_for_text` (migration 0007), the compact index
its BitmapAnd reads, which no other statement can then use (the same equality, another collation)."""


def search_text_sql(*, filtered: bool | sql.SQL, limit: int, every: bool = True) -> sql.Composed:
    """One tier of the full-text query: GIN index on `tsv`, ranked by ts_rank_cd.

    Both rank by the any-word query. The `every` tier (parameters: any word,
    every word[, source]) holds the chunks with every query word; the other
    (parameters: any word, some word, every word[, source]) those with some but
    not all, where "some" leaves out the words most chunks hold (COMMON_AT_MATCHES).
    The first tier comes first in the results (as on SQLite; docs/search.md),
    and the second is read only when the first leaves places. `filtered`: True for one source's filter, or the
    source condition itself.
    """
    return sql.SQL(
        """
        SELECT m.id, ts_rank_cd({weights}, m.tsv, websearch_to_tsquery('docserver', %s)) AS rank
        FROM (
            SELECT c.id, c.tsv FROM chunks c
            WHERE c.tsv @@ websearch_to_tsquery('docserver', %s) {others} {filter}
            LIMIT {ranked}
        ) m
        ORDER BY rank DESC, m.id
        LIMIT {limit}
        """
    ).format(
        weights=sql.Literal(TEXT_WEIGHTS),
        others=sql.SQL("" if every else "AND NOT c.tsv @@ websearch_to_tsquery('docserver', %s)"),
        filter=source_filter(TEXT_SOURCE, filtered),
        ranked=sql.Literal(RANKED_AT_MOST),
        limit=sql.Literal(int(limit)),
    )


async def search_text(conn: Connection, terms: list[str], source: SourceFilter, limit: int) -> list[RankedId]:
    # websearch syntax: quoted words joined by `or` (any word) or by spaces (every
    # word), so nothing in a query acts as an operator.
    quoted = [f'"{term}"' for term in terms]
    any_word, every_word = " or ".join(quoted), " ".join(quoted)
    condition, params = source_condition(TEXT_SOURCE, source)
    async with conn.transaction():
        await conn.execute(TEXT_PLAN)
        every_tier = search_text_sql(filtered=condition, limit=limit)
        cursor = await conn.execute(every_tier, (any_word, every_word, *params), prepare=False)  # see TEXT_PLAN
        rows = await cursor.fetchall()
        ranked = [RankedId(chunk_id, text_score(True, float(rank))) for chunk_id, rank in rows]
        if len(ranked) < limit and len(terms) > 1:
            common = {row[0] for row in await fetch_all(conn, COMMON_TERMS, (terms, COMMON_AT_MATCHES))}
            rare = [f'"{term}"' for term in terms if term not in common]
            if not rare:
                return ranked  # only words most chunks hold: the vector retriever fills the page
            cursor = await conn.execute(
                search_text_sql(filtered=condition, limit=limit - len(ranked), every=False),
                (any_word, " or ".join(rare), every_word, *params),
                prepare=False,
            )
            rows = await cursor.fetchall()
            ranked += [RankedId(chunk_id, text_score(False, float(rank))) for chunk_id, rank in rows]
    return ranked


async def get_chunks(conn: Connection, chunk_ids: list[int]) -> list[ChunkRecord]:
    rows = await fetch_all(
        conn,
        """
        SELECT c.id, c.document_id, c.source, d.path, d.title, c.heading, c.start_line, c.end_line, c.anchor, c.text
        FROM chunks c JOIN documents d ON d.id = c.document_id
        WHERE c.id = ANY(%s)
        """,
        (chunk_ids,),
    )
    return [ChunkRecord(*row) for row in rows]


async def get_document(conn: Connection, document_id: int) -> Document | None:
    rows = await fetch_all(
        conn,
        """
        SELECT d.id, d.source, d.path, d.title, d.content, d.content_hash,
               (SELECT count(*) FROM chunks c WHERE c.document_id = d.id), d.ingested_at
        FROM documents d WHERE d.id = %s
        """,
        (document_id,),
    )
    if not rows:
        return None
    document_id, source, path, title, content, content_hash, chunk_count, ingested_at = rows[0]
    return Document(document_id, source, path, title, content, content_hash, chunk_count, _iso(ingested_at))


async def list_documents(conn: Connection, sources: list[str] | None, after: int, limit: int) -> list[DocumentEntry]:
    rows = await fetch_all(
        conn,
        """
        SELECT id, source, path, title FROM documents
        WHERE id > %s AND (%s::text[] IS NULL OR source = ANY(%s::text[])) ORDER BY id LIMIT %s
        """,
        (after, sources, sources, limit),
    )
    return [DocumentEntry(*row) for row in rows]
