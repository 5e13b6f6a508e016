"""Vector search on PostgreSQL: the HNSW index's nearest chunks, or the exact search of a small filter.

Vectors are a pgvector column on `embeddings`, one row per distinct embedded
text, with an HNSW index (cosine, over the vectors at half precision:
postgres_schema.indexed); each chunk points to its text's row
(`chunks.embedding_id`, migration 0004). A filter of few chunks is searched
exactly instead (postgres_exact); past that, a filter holding a small share of the
vectors keeps a longer candidate list than the connection's (postgres_share).
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from docserver.store.base import RankedId, SourceFilter, Vectors
from docserver.store.postgres_exact import Declined, search_exactly
from docserver.store.postgres_filters import source_condition, source_filter
from docserver.store.postgres_schema import MAX_INDEXED_DIMENSION, Connection, indexed
from docserver.store.postgres_share import ef_search_for


def search_vector_sql(*, filtered: bool | sql.SQL, limit: int, dimension: int) -> sql.Composed:
    """The nearest-neighbour query, answered from the HNSW index. Parameters: `vector_values`, then [source, source].

    The index holds each distinct vector once (`embeddings`), at half precision
    (postgres_schema.indexed): the query orders by the same expression (`walked`), so
    the planner answers it from the index, and the rows it returns carry their
    full-precision distance (the first parameter), by which they are ranked. A
    vector is a candidate when one of its chunks passes the filter (checked in
    `chunks_by_embedding`, index only), and the iterative scan reads on until it
    has `limit` of them. Then each vector's chunks under the filter, nearest first,
    each row with the corpus version the statement saw (postgres_exact.Declined).
    Both orders are by the index's distance: the planner then takes the CTE's rows
    as sorted already and reads chunks only until it has `limit` of them (a vector
    held by 45 copies fills 45 places). Ordered by the full-precision distance
    instead, it sorted every chunk of all `limit` vectors first: 3,600 rows at
    1,000,000 chunks, twice the whole search's time without a filter.
    Vectors wider than the index can hold (`dimension`) have no index: they are
    ordered by the full-precision distance itself, computed once per vector.
    The limit is a literal, not a parameter: with a parameter, a generic plan
    cannot know the limit is small and may pick a sequential scan.
    """
    walked: sql.Composable = sql.SQL("")
    order = sql.SQL("distance")
    if dimension <= MAX_INDEXED_DIMENSION:
        expression = sql.SQL("{} <=> {}").format(
            indexed(sql.SQL("e.embedding"), dimension), indexed(sql.SQL("%s"), dimension)
        )
        walked, order = sql.SQL(", {} AS walked").format(expression), sql.SQL("walked")
    return sql.SQL(
        """
        WITH nearest AS MATERIALIZED (
            SELECT e.id, e.embedding <=> %s AS distance{walked}
            FROM embeddings e
            WHERE e.embedding IS NOT NULL
              AND EXISTS (SELECT 1 FROM chunks c WHERE c.embedding_id = e.id {filter})
            ORDER BY {order}
            LIMIT {limit}
        )
        SELECT c.id, n.distance, (SELECT value FROM meta WHERE key = 'corpus_version')
        FROM nearest n JOIN chunks c ON c.embedding_id = n.id {filter}
        ORDER BY n.{order}
        LIMIT {limit}
        """
    ).format(filter=source_filter("c.source", filtered), walked=walked, order=order, limit=sql.Literal(int(limit)))


def vector_values(vector: Vectors) -> tuple[Vectors, ...]:
    """`search_vector_sql`'s vector parameters: the full-precision distance's, and the index's when it has one."""
    return (vector, vector) if len(vector) <= MAX_INDEXED_DIMENSION else (vector,)


async def search_vector(
    conn: Connection,
    vector: Vectors,
    source: SourceFilter,
    limit: int,
    declined: Declined | None = None,
    filtered_ef_search: int | None = None,
) -> list[RankedId]:
    """The HNSW index's nearest chunks; exact instead when the filter holds few chunks (postgres_exact).

    A filter `declined` notes as past the thresholds at the corpus version the HNSW
    statement sees goes to the index alone; at another version it is decided again.
    A filtered search through the index keeps `filtered_ef_search` candidates (that statement
    alone) when its filter holds less than postgres_share.RAISED_BELOW_SHARE of the vectors.
    """
    condition, params = source_condition("c.source", source)
    if source is None:
        return _ranked(await _nearest_indexed(conn, vector, condition, params, limit))
    names = [source] if isinstance(source, str) else list(source)
    noted = declined.get(names) if declined is not None else None
    if noted is not None and declined is not None:
        indexed = await _nearest_indexed(conn, vector, condition, params, limit, noted.ef_search)
        if indexed and indexed[0][2] == noted.version:
            return _ranked(indexed)  # nothing committed since: still past the thresholds
        declined.forget(names)
    exact, version = await search_exactly(conn, vector, names, limit)
    if exact is not None:
        return _ranked(exact)
    ef_search = None if filtered_ef_search is None else await ef_search_for(conn, names, filtered_ef_search)
    if declined is not None:
        declined.note(names, version, ef_search)
    return _ranked(await _nearest_indexed(conn, vector, condition, params, limit, ef_search))


def _ranked(rows: list[tuple[Any, ...]]) -> list[RankedId]:
    ranked = [RankedId(row[0], 1.0 - float(row[1])) for row in rows]
    # relaxed_order iterative scans may return neighbours slightly out of order, and the index's
    # order is by the half-precision distance: ranked by the full-precision one.
    return sorted(ranked, key=lambda item: -item.score)


async def _nearest_indexed(
    conn: Connection,
    vector: Vectors,
    condition: sql.SQL,
    params: tuple[Any, ...],
    limit: int,
    ef_search: int | None = None,
) -> list[tuple[Any, ...]]:
    """(chunk id, distance, corpus version) through the HNSW index (`search_vector_sql`); with `ef_search`,
    that many candidates for this statement alone (set locally in its own transaction), else the connection's."""
    query = search_vector_sql(filtered=condition, limit=limit, dimension=len(vector))
    values = (*vector_values(vector), *params, *params)
    if ef_search is None:
        return await (await conn.execute(query, values)).fetchall()
    async with conn.transaction():
        await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(int(ef_search)),))
        return await (await conn.execute(query, values)).fetchall()
