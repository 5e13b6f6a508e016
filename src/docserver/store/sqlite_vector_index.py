"""SQLite's approximate vector index: a coarse pass over int8 vectors, then exact re-scoring.

sqlite-vec searches exactly, by scanning every vector: about 0.8 ms per
1,000 chunks at 512 dimensions. Beside each vector table `T` the index keeps
two tables: `T_coarse`, a vec0 table of the same vectors quantised to int8
(a quarter of the bytes, scanned 1.3-1.6 times as fast), and `T_full`, the full
vectors as plain rows, for re-scoring the few candidates the coarse pass keeps
(vec0 reads one vector by id slowly; a rowid table reads 200 in under a
millisecond). Int8 rather than binary: bits lose the hash embedder's sparse
query vectors (recall@10 0.3-0.5 on real docs, see docs/search.md).

The index is used once it is complete for `T` (meta `vector_index` names
`T`) and the store holds at least MIN_INDEXED_CHUNKS chunks; below that the
exact scan is as fast. A database from before the index gets it built in
the background, BUILD_BATCH vectors per write transaction, resumable from
the last chunk id copied (meta `vector_index_cursor`).
"""

from __future__ import annotations

from typing import Any

from docserver.store.base import SourceFilter
from docserver.store.sqlite_tables import Connection, meta, set_meta, source_condition, table_exists

MIN_INDEXED_CHUNKS = 10_000
"""From about this many chunks the two passes beat the exact scan (p50 6.7 against 9.1 ms at 10,000; docs/search.md)."""
CANDIDATES_PER_RESULT = 10
"""The coarse pass keeps this many candidates per result asked for (at least MIN_CANDIDATES)."""
MIN_CANDIDATES = 200
MAX_CANDIDATES = 4096  # sqlite-vec's largest k
BUILD_BATCH = 5000


def coarse_table(table: str) -> str:
    return f"{table}_coarse"


def full_table(table: str) -> str:
    return f"{table}_full"


def create_index_tables(db: Connection, table: str, dimension: int) -> None:
    db.execute(
        f"CREATE VIRTUAL TABLE {coarse_table(table)} USING vec0("
        f"chunk_id INTEGER PRIMARY KEY, source TEXT PARTITION KEY, embedding INT8[{int(dimension)}])"
    )
    db.execute(f"CREATE TABLE {full_table(table)} (chunk_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL)")


def has_index(db: Connection, table: str) -> bool:
    return table_exists(db, coarse_table(table))


def put_vectors(db: Connection, table: str, rows: list[tuple[int, str, bytes]]) -> None:
    """Store (chunk id, source, float32 bytes) rows in `table`, and in its index when it has one."""
    db.executemany(f"INSERT INTO {table} (chunk_id, source, embedding) VALUES (?, ?, ?)", rows)
    if has_index(db, table):
        _index_rows(db, table, rows)


def delete_vectors(db: Connection, table: str, chunk_ids: list[int]) -> None:
    marks = ",".join("?" * len(chunk_ids))
    db.execute(f"DELETE FROM {table} WHERE chunk_id IN ({marks})", chunk_ids)
    if has_index(db, table):
        db.execute(f"DELETE FROM {coarse_table(table)} WHERE chunk_id IN ({marks})", chunk_ids)
        db.execute(f"DELETE FROM {full_table(table)} WHERE chunk_id IN ({marks})", chunk_ids)


def _index_rows(db: Connection, table: str, rows: list[tuple[int, str, bytes]]) -> None:
    coarse = coarse_table(table)
    db.executemany(f"DELETE FROM {coarse} WHERE chunk_id = ?", [(row[0],) for row in rows])
    db.executemany(
        f"INSERT INTO {coarse} (chunk_id, source, embedding) VALUES (?, ?, vec_quantize_int8(?, 'unit'))", rows
    )
    db.executemany(
        f"INSERT OR REPLACE INTO {full_table(table)} (chunk_id, embedding) VALUES (?, ?)",
        [(chunk_id, embedding) for chunk_id, _, embedding in rows],
    )


def mark_complete(db: Connection, table: str) -> None:
    set_meta(db, {"vector_index": table})
    db.execute("DELETE FROM meta WHERE key = 'vector_index_cursor'")


def usable(db: Connection, table: str) -> bool:
    """The index covers `table`, and the store is large enough for it to pay."""
    if meta(db, "vector_index") != table:
        return False
    largest = db.execute("SELECT max(id) FROM chunks").fetchone()[0]  # a rowid lookup, not a count
    return bool(largest) and int(largest) >= MIN_INDEXED_CHUNKS


def candidates_for(limit: int) -> int:
    return min(max(limit * CANDIDATES_PER_RESULT, MIN_CANDIDATES), MAX_CANDIDATES)


def search(db: Connection, table: str, vector: bytes, source: SourceFilter, limit: int) -> list[Any]:
    """(chunk id, cosine distance) of the best `limit`: int8 candidates, re-scored with the full vectors."""
    condition, names = source_condition("source", source)  # several sources: candidates from each
    sql = f"SELECT chunk_id FROM {coarse_table(table)} WHERE embedding MATCH vec_quantize_int8(?, 'unit') AND k = ?"
    ids = [row[0] for row in db.execute(sql + condition, [vector, candidates_for(limit), *names])]
    if not ids:
        return []
    return db.execute(  # type: ignore[no-any-return]
        f"SELECT chunk_id, vec_distance_cosine(embedding, ?) AS distance FROM {full_table(table)} "
        f"WHERE chunk_id IN ({','.join('?' * len(ids))}) ORDER BY distance LIMIT ?",
        [vector, *ids, limit],
    ).fetchall()


def build_step(db: Connection, table: str) -> bool:
    """Index the next BUILD_BATCH vectors of `table` (inside the caller's write transaction); True once complete."""
    if meta(db, "vector_index") == table:
        return True
    if not has_index(db, table):
        dimension = meta(db, "embedding_dimension")
        if dimension is None:  # no embedder bound yet: bind_embedder creates the index with the table
            return True
        create_index_tables(db, table, int(dimension))
        set_meta(db, {"vector_index_cursor": "0"})
    cursor = int(meta(db, "vector_index_cursor") or 0)
    rows = db.execute(
        f"SELECT chunk_id, source, embedding FROM {table} WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?",
        (cursor, BUILD_BATCH),
    ).fetchall()
    if rows:
        _index_rows(db, table, rows)
        set_meta(db, {"vector_index_cursor": str(rows[-1][0])})
    if len(rows) < BUILD_BATCH:
        mark_complete(db, table)
        return True
    return False
