"""A filter's share of the HNSW graph, and the `hnsw.ef_search` its search through the index gets.

pgvector's HNSW scan keeps `hnsw.ef_search` candidates from the whole graph and
the filter is applied to them: a filter holding a share s of the vectors keeps
about s × ef_search of them, so its 10 nearest are in effect the graph's 10 / s
nearest, which a list of the same length finds less well. A filter past the
exact search's thresholds (postgres_exact) that holds less than
RAISED_BELOW_SHARE of the vectors is searched with a longer list
(`PostgresOptions.hnsw_filtered_ef_search`, set for its statement alone); a
larger one, and a search without a filter, keep the connection's
(docs/search.md; bench/postgres_filtered_ef.py). Since migration 0006 the index
is built with `ef_construction` 200, whose graph gives such filters that recall
at a list of 500 instead of 800 (at 400 on one build, not on another). A filtered
`ef_search` no longer than the connection's reads no share
(PostgresStore._vector_search_options).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from psycopg import sql

from docserver.store.postgres_schema import Connection

RAISED_BELOW_SHARE = 3 / 4
"""A filter holding fewer chunks than this share of the distinct vectors gets the filtered `ef_search`.

Measured on 300,000 chunks of distinct products (71,058 vectors) at `ef_search`
400: eight filters of 0.31 to 0.72 of the vectors had recall@10 0.917 to 0.944,
one of 0.81 had 0.956, the newest versions (1.0) 0.963; at 800 the eight had
0.954 to 0.971 (at 700, two of them 0.935 and 0.942). The threshold lies between
the largest share measured under 0.95 and the smallest above it. The graph's size comes from the table's statistics
(`pg_class.reltuples`, kept by ANALYZE and autovacuum); unknown (-1) before the
first ANALYZE, when no filter gets the longer list.
"""


GRAPH_SIZE = "SELECT reltuples FROM pg_class WHERE oid = 'embeddings'::regclass"
"""The distinct vectors the HNSW graph holds, by the table's statistics (-1 before the first ANALYZE)."""


def held_sql(cap: int) -> sql.Composed:
    """How many chunks the filter holds, counted no further than `cap`. Parameters: its sources (a list).

    Counted from the index on `chunks (source)` alone (index only, in the index's
    order, as postgres_exact reads them), so the count stops at `cap`: the newest
    versions of every source, about as many chunks as the graph holds vectors, cost
    `cap` index entries and no more: 1.9 ms for 24,347 chunks, 5.0 ms for the newest
    versions (53,294 entries read) on 300,000 chunks of distinct products, once per
    filter and corpus version. The cap is a literal, as in the exact statement, so the
    plan is made knowing where the count stops.
    """
    return sql.SQL(
        "SELECT count(*) FROM (SELECT 1 FROM chunks c WHERE c.source = ANY(%s) ORDER BY c.source LIMIT {cap}) held"
    ).format(cap=sql.Literal(cap))


async def ef_search_for(conn: Connection, sources: Sequence[str], raised: int) -> int | None:
    """`raised` when `sources` hold less than RAISED_BELOW_SHARE of the vectors; None (the connection's) otherwise.

    Run once per filter and corpus version (`postgres_exact.Declined` keeps the answer). Never prepared:
    planned each time for the sources it counts, as the exact statement is.
    """
    cursor = await conn.execute(GRAPH_SIZE)
    row = await cursor.fetchone()
    vectors = float(row[0]) if row is not None else -1.0
    if vectors <= 0:
        return None  # not analyzed yet: the connection's
    share = vectors * RAISED_BELOW_SHARE
    cursor = await conn.execute(held_sql(math.ceil(share)), (list(sources),), prepare=False)
    held = await cursor.fetchone()
    return raised if held is not None and held[0] < share else None
