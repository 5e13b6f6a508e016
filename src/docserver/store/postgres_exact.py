"""Exact vector search on PostgreSQL, for a filter that holds few chunks.

The HNSW graph links the vectors of every source, so a filter holding a small
part of them makes pgvector's iterative scan walk through the others' vectors:
slow, and it may still miss some of the filter's nearest. A filter of at most
EXACT_AT_MOST chunks, and fewer than EXACT_BELOW_SHARE of the vectors, is searched by reading its own vectors instead
(docs/search.md, "PostgreSQL at scale"; bench/postgres_scale.py --exact-cost).
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from docserver.store.base import Vectors
from docserver.store.postgres_schema import Connection

EXACT_AT_MOST = 15_000
"""A filter that holds at most this many chunks is searched exactly, without the HNSW index.

The HNSW graph links the vectors of every source. A filter holding a small
part of them (one product among eight: a sixth of the graph) makes the
iterative scan walk on through the other sources' vectors, which are nearer
the query than any of the filter's: on 300,000 chunks of distinct products,
recall@10 for one source stayed at 0.948 even at `ef_search` 800, with p95 of
24 to 28 ms. Reading that source's vectors and ordering them by distance is
exact, and costs in proportion to the chunks read: the threshold is where
that cost meets the index's (docs/search.md, bench/postgres_scale.py).
"""


EXACT_BELOW_SHARE = 1 / 3
"""...and holds fewer chunks than this share of the distinct vectors (the HNSW graph's size).

A filter holding much of the graph is found quickly by the iterative scan, and
found well: recall@10 0.950 to 0.965 for one source of Python's and PostgreSQL's
docs replicated (about 12,000 chunks, half of 22,278 vectors), where the exact
search costs twice as much. Below a third it fell under 0.95 on the distinct
products (0.73 to 0.90 for one source, 0.935 for a third of the vectors). The
graph's size comes from the table's statistics (`pg_class.reltuples`, kept by
ANALYZE and autovacuum); unknown (-1) before the first ANALYZE, when the count
alone decides.
"""


def filtered_chunks_sql(condition: sql.SQL) -> sql.Composed:
    """How many chunks pass the filter, counted up to EXACT_AT_MOST + 1 (index only, on `chunks_by_source`);
    and how many vectors `embeddings` holds, by its statistics."""
    return sql.SQL(
        "SELECT (SELECT count(*) FROM (SELECT FROM chunks c WHERE true {filter} LIMIT {cap}) AS under), "
        "(SELECT reltuples FROM pg_class WHERE oid = 'embeddings'::regclass)"
    ).format(filter=condition, cap=sql.Literal(EXACT_AT_MOST + 1))


EXACT_PLAN = "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_indexonlyscan', 'off', true)"
"""Run first in the exact search's transaction: the filter's chunks come from `chunks_by_source`.

A cached generic plan cannot know how many chunks the filter holds, guesses a
quarter of the table, and reads the ids from all of `chunks_by_embedding`
(whose first column is the vector, not the source): 35 ms against 21 ms for
13,000 chunks of 300,000, and more for several sources.
"""


def search_exact_sql(condition: sql.SQL, limit: int) -> sql.Composed:
    """The nearest neighbours by an ordered scan of the filter's own vectors. Parameters: vector, source, source.

    The vectors the filter's chunks point to, each compared once, the nearest
    `limit` kept; then their chunks under the filter, as in `search_vector_sql`.
    The ids go in as an array, so `embeddings` is read through its primary key,
    in id order, only where the filter points (joined, the planner hashed a
    scan of the whole table: 85 ms against 21 ms for 13,000 chunks of 300,000).
    The CTE is materialized so the planner cannot order by distance through the
    HNSW index, which is what this avoids.
    """
    return sql.SQL(
        """
        WITH scanned AS MATERIALIZED (
            SELECT e.id, e.embedding <=> %s AS distance
            FROM embeddings e
            WHERE e.embedding IS NOT NULL
              AND e.id = ANY(ARRAY(SELECT c.embedding_id FROM chunks c WHERE true {filter}))
        ),
        nearest AS MATERIALIZED (
            SELECT id, distance FROM scanned ORDER BY distance, id LIMIT {limit}
        )
        SELECT c.id, n.distance
        FROM nearest n JOIN chunks c ON c.embedding_id = n.id {filter}
        ORDER BY n.distance, c.id
        LIMIT {limit}
        """
    ).format(filter=condition, limit=sql.Literal(int(limit)))


async def search_exactly(
    conn: Connection, vector: Vectors, condition: sql.SQL, params: tuple[Any, ...], limit: int
) -> list[tuple[Any, ...]] | None:
    """(chunk id, distance) of the exact nearest chunks under the filter, nearest first; None when it holds
    more than EXACT_AT_MOST chunks, or EXACT_BELOW_SHARE of the vectors or more (the caller searches
    through the HNSW index)."""
    counted = await (await conn.execute(filtered_chunks_sql(condition), params)).fetchone()
    if counted is None:
        return None
    chunks, vectors = int(counted[0]), float(counted[1])
    if chunks > EXACT_AT_MOST or (vectors >= 0 and chunks >= vectors * EXACT_BELOW_SHARE):
        return None
    async with conn.transaction():
        await conn.execute(EXACT_PLAN)
        cursor = await conn.execute(search_exact_sql(condition, limit), (vector, *params, *params))
        return await cursor.fetchall()
