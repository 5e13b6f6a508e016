"""Exact vector search on PostgreSQL, for a filter that holds few chunks.

The HNSW graph links the vectors of every source, so a filter holding a small
part of them makes pgvector's iterative scan walk through the others' vectors:
slow, and it may still miss some of the filter's nearest. A filter of at most
EXACT_AT_MOST chunks, and fewer than EXACT_BELOW_SHARE of the vectors, is searched by reading its own vectors instead
(docs/search.md, "PostgreSQL at scale"; bench/postgres_scale.py --exact-cost). One statement decides and
searches; a filter it declines is remembered until the corpus version moves (`Declined`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from psycopg import sql

from docserver.store.base import Vectors
from docserver.store.postgres_schema import Connection

EXACT_AT_MOST = 20_000
"""A filter that holds at most this many chunks is searched exactly, without the HNSW index.

The HNSW graph links the vectors of every source. A filter holding a small
part of them (one product among eight: a sixth of the graph) makes the
iterative scan walk on through the other sources' vectors, which are nearer
the query than any of the filter's: on 300,000 chunks of distinct products,
recall@10 for one source stayed at 0.948 even at `ef_search` 800, with p95 of
24 to 28 ms. Reading that source's vectors and ordering them by distance is
exact, and costs in proportion to the chunks read (about 0.85 µs per chunk
since migration 0005: p95 13 ms at 15,030 chunks, 21 ms at 24,347). The
threshold keeps that cost under the 20 ms goal; past it the index's search
is the faster (docs/search.md, bench/postgres_scale.py --exact-cost).
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


def search_exact_sql(limit: int) -> sql.Composed:
    """The exact nearest neighbours, if the filter is small enough, in one statement. Parameters: the filter's
    sources (a list, one source too), vector, the sources again.

    Rows (exact, corpus version, chunk id, distance). The filter's vector ids come first, in the order
    of `chunks_by_source_embedding` (by source, carrying the vector id; migration 0005),
    read from that index alone, at most EXACT_AT_MOST + 1 of them, as one array: that
    read both decides whether the filter is small enough and gives the vectors to
    compare, so nothing is counted apart. The order is the index's, so the read stops
    at the cap; a table scan could not stop before it had sorted every match, so the
    planner does not read them that way (a scan that stops after so many matches reads
    the whole table first when the filter's chunks sit at its end, the newest
    ingested). One source goes as a list too: `source = 'x'` would make the order
    trivial, and the planner free to scan the table for a large source.
    When the filter holds more than EXACT_AT_MOST chunks, or EXACT_BELOW_SHARE of the
    distinct vectors or more (`pg_class.reltuples`), the one row is (false, NULL, NULL)
    and no vector is read: the caller searches through the HNSW index. Otherwise
    (true, chunk, distance) for the nearest `limit` chunks, nearest first, or one
    (true, NULL, NULL) when the filter holds no vector. Each row carries the corpus
    version the statement saw (`Declined`).

    The vectors are read by id (`embeddings_pkey`, the ids as an array), only where
    the filter points (joined instead, the planner hashed a scan of the whole table:
    85 ms against 21 ms for 13,000 chunks of 300,000). Their distances are ordered
    outside a subquery (OFFSET 0 keeps it apart), so the planner cannot order them
    through the HNSW index, which is what this avoids; nothing else is materialized
    but the array and the `limit` nearest.
    """
    return sql.SQL(
        """
        WITH picked AS MATERIALIZED (
            SELECT ARRAY(
                       SELECT c.embedding_id FROM chunks c WHERE c.source = ANY(%s)
                       ORDER BY c.source
                       LIMIT {cap}
                   ) AS ids,
                   (SELECT reltuples FROM pg_class WHERE oid = 'embeddings'::regclass) AS vectors,
                   (SELECT value FROM meta WHERE key = 'corpus_version') AS version
        ),
        decision AS MATERIALIZED (
            SELECT cardinality(ids) <= {at_most} AND (vectors < 0 OR cardinality(ids) < vectors * {share}) AS exact,
                   ids, version
            FROM picked
        ),
        nearest AS MATERIALIZED (
            SELECT id, distance FROM (
                SELECT e.id, e.embedding <=> %s AS distance
                FROM embeddings e
                WHERE (SELECT exact FROM decision)
                  AND e.embedding IS NOT NULL
                  AND e.id = ANY((SELECT ids FROM decision)::bigint[])
                OFFSET 0
            ) scanned
            ORDER BY distance, id
            LIMIT {limit}
        )
        SELECT d.exact, d.version, found.id, found.distance
        FROM decision d
        LEFT JOIN (
            SELECT c.id, n.distance FROM nearest n JOIN chunks c ON c.embedding_id = n.id AND c.source = ANY(%s)
        ) found ON true
        ORDER BY found.distance, found.id
        LIMIT {limit}
        """
    ).format(
        cap=sql.Literal(EXACT_AT_MOST + 1),
        at_most=sql.Literal(EXACT_AT_MOST),
        share=sql.Literal(float(EXACT_BELOW_SHARE)),
        limit=sql.Literal(int(limit)),
    )


async def search_exactly(
    conn: Connection, vector: Vectors, sources: Sequence[str], limit: int
) -> tuple[list[tuple[Any, ...]] | None, str]:
    """(chunk id, distance) of the exact nearest chunks of `sources`, nearest first, or None when they hold
    more than EXACT_AT_MOST chunks, or EXACT_BELOW_SHARE of the vectors or more (the caller searches
    through the HNSW index); and the corpus version that holds for."""
    # Never prepared: planned each time for the sources it reads. A cached generic plan guesses how many
    # chunks they hold; guessing few, it would fetch and sort all of a large filter's rows.
    names = list(sources)
    cursor = await conn.execute(search_exact_sql(limit), (names, vector, names), prepare=False)
    rows = await cursor.fetchall()
    exact, version = rows[0][0], rows[0][1]
    if not exact:
        return None, version
    return [(chunk_id, distance) for _, _, chunk_id, distance in rows if chunk_id is not None], version


class Noted(NamedTuple):
    """What `Declined` keeps of a filter: the corpus version it was found past the thresholds at, and the
    `hnsw.ef_search` of its searches through the index (None: the connection's; postgres_share)."""

    version: str
    ef_search: int | None = None


class Declined:
    """The filters found past the thresholds, each with the corpus version it was found at (one store's).

    A filter of more chunks than EXACT_AT_MOST (the newest versions of every source)
    would otherwise pay for reading EXACT_AT_MOST + 1 vector ids before every search
    through the HNSW index. A filter's chunks change only with a commit, and every
    commit moves the corpus version (the store's change signal, whichever process or
    replica wrote): so while the version stays, the decision stands, and so does the
    `ef_search` chosen for it from its share of the vectors (postgres_share). The HNSW
    statement reads the version in its own snapshot; when it is not the one noted,
    the filter is decided again (`postgres_vector.search_vector`). The share of the
    vectors (`pg_class.reltuples`) may drift without a commit; a decision stands
    until the next one all the same.
    """

    MAX_FILTERS = 1024
    """Noted at most; past it all are forgotten (a process reads few distinct filters: one per source and version)."""

    def __init__(self) -> None:
        self._noted: dict[tuple[str, ...], Noted] = {}

    def get(self, sources: Sequence[str]) -> Noted | None:
        """What was noted of `sources` found past the thresholds; None when not noted."""
        return self._noted.get(tuple(sources))

    def note(self, sources: Sequence[str], version: str, ef_search: int | None = None) -> None:
        if len(self._noted) >= self.MAX_FILTERS:
            self._noted.clear()
        self._noted[tuple(sources)] = Noted(version, ef_search)

    def forget(self, sources: Sequence[str]) -> None:
        self._noted.pop(tuple(sources), None)
