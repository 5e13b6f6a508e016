"""A filter's share of the HNSW graph, and the `hnsw.ef_search` its search through the index gets.

pgvector's HNSW scan keeps `hnsw.ef_search` candidates from the whole graph and
the filter is applied to them: a filter holding a share s of the vectors keeps
about s × ef_search of them, so its 10 nearest are in effect the graph's 10 / s
nearest, which a list of the same length finds less well. A filter past the
exact search's thresholds (postgres_exact) that holds less than
RAISED_BELOW_SHARE of the vectors is searched with a longer list
(`PostgresOptions.hnsw_filtered_ef_search`, set for its statement alone); a
larger one, and a search without a filter, keep the connection's
(docs/search.md; bench/postgres_filtered_ef.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from docserver.store.postgres_schema import Connection

RAISED_BELOW_SHARE = 3 / 4
"""A filter holding fewer chunks than this share of the distinct vectors gets the filtered `ef_search`.

Measured on 300,000 chunks of distinct products (71,058 vectors) at `ef_search`
400: filters of 0.34 to 0.62 of the vectors had recall@10 0.917 to 0.933, one of
0.81 had 0.956, the newest versions (1.0) 0.963; at 800 those under 0.62 had
0.954 to 0.969. The graph's size comes from the table's statistics
(`pg_class.reltuples`, kept by ANALYZE and autovacuum); unknown (-1) before the
first ANALYZE, when no filter gets the longer list.
"""


def held_share_sql() -> sql.Composed:
    """Whether the filter holds fewer chunks than RAISED_BELOW_SHARE of the vectors. Parameters: its sources (a list).

    Its chunks are counted from the index on `chunks (source)` alone (index
    only, in the index's order, as postgres_exact reads them), and no further than the
    share: the newest versions of every source, about as many chunks as the graph
    holds vectors, cost that many index entries and no more. Run once per filter
    and corpus version (`postgres_exact.Declined` keeps the answer).
    """
    return sql.SQL(
        """
        WITH graph AS MATERIALIZED (
            SELECT reltuples * {share} AS cap FROM pg_class WHERE oid = 'embeddings'::regclass
        )
        SELECT (SELECT cap FROM graph) > 0 AND count(*) < (SELECT cap FROM graph)
        FROM (
            SELECT 1 FROM chunks c WHERE c.source = ANY(%s)
            ORDER BY c.source
            LIMIT (SELECT greatest(ceil(cap), 0)::bigint FROM graph)
        ) held
        """
    ).format(share=sql.Literal(float(RAISED_BELOW_SHARE)))


async def ef_search_for(conn: Connection, sources: Sequence[str], raised: int) -> int | None:
    """`raised` when `sources` hold less than RAISED_BELOW_SHARE of the vectors; None (the connection's) otherwise."""
    cursor = await conn.execute(held_share_sql(), (list(sources),), prepare=False)
    row = await cursor.fetchone()
    return raised if row is not None and row[0] else None
