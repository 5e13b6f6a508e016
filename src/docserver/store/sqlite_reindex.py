"""SQLite's reindex statements: a staging vector table, switched to by rewriting `vector_table` in `meta`."""

from __future__ import annotations

from docserver.errors import StoreError
from docserver.store import sqlite_vector_index as vector_index
from docserver.store.base import (
    EmbedderInfo,
    PendingChunk,
    ReindexBatch,
    Vectors,
    chunk_fingerprint,
    reindex_target,
)
from docserver.store.sqlite_tables import (
    VECTOR_TABLE,
    Connection,
    bump_corpus_version,
    checked_table,
    create_vector_table,
    embedder_meta,
    immediate,
    meta,
    set_meta,
    table_exists,
    vector_table,
)


def _staging_table(db: Connection, info: EmbedderInfo) -> str:
    """The table staged for `info`; StoreError when another reindex replaced or finished it."""
    name = meta(db, "reindex_table")
    if name is None or meta(db, "reindex_target") != reindex_target(info) or not table_exists(db, checked_table(name)):
        raise StoreError(
            f"the reindex to {info.describe()} was finished or replaced by another `docserver reindex`; run it again"
        )
    return name


def _drop_vector_tables(db: Connection, keep: set[str]) -> None:
    """Drop every vector table (its shadow tables, its index) not in `keep`: leftovers of earlier reindexes."""
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for name in sorted(names):
        if VECTOR_TABLE.match(name) and name not in keep:
            for table in (name, *vector_index.index_tables(name)):
                if table in names:
                    db.execute(f"DROP TABLE {table}")


def drop_unused_vector_tables(db: Connection) -> None:
    with immediate(db):
        staging = meta(db, "reindex_table")
        _drop_vector_tables(db, {vector_table(db), *([staging] if staging else [])})
        if staging is None:
            db.execute("DELETE FROM reindex_fingerprints")


def prepare_reindex(db: Connection, info: EmbedderInfo) -> None:
    with immediate(db):
        staging = meta(db, "reindex_table")
        if staging is not None and meta(db, "reindex_target") == reindex_target(info) and table_exists(db, staging):
            return  # an interrupted reindex to the same embedder: keep what it staged
        current = vector_table(db)
        _drop_vector_tables(db, {current})
        db.execute("DELETE FROM reindex_fingerprints")
        match = VECTOR_TABLE.match(current)
        generation = int(match.group(1) or 0) if match else 0
        staging = f"chunk_vectors_{generation + 1}"
        create_vector_table(db, staging, info.dimension)
        vector_index.create_index_tables(db, staging)
        set_meta(db, {"reindex_table": staging, "reindex_target": reindex_target(info)})


def reindex_scan(db: Connection, after: int, limit: int) -> ReindexBatch:
    rows = db.execute(
        """
        SELECT c.id, d.source, d.title, c.heading, c.text, f.fingerprint
        FROM chunks c JOIN documents d ON d.id = c.document_id
        LEFT JOIN reindex_fingerprints f ON f.chunk_id = c.id
        WHERE c.id > ? ORDER BY c.id LIMIT ?
        """,
        (after, limit),
    ).fetchall()
    pending = []
    for chunk_id, source, title, heading, text, staged in rows:
        # Compared by content, not by id: a chunk id freed by a delete is given to the next new chunk.
        fingerprint = chunk_fingerprint(source, title, heading, text)
        if fingerprint != staged:
            pending.append(PendingChunk(chunk_id, source, title, heading, text, fingerprint))
    return ReindexBatch.of(pending, [row[0] for row in rows], limit)


def put_reindexed(db: Connection, chunks: list[PendingChunk], vectors: Vectors) -> None:
    with immediate(db):
        table = meta(db, "reindex_table")
        if table is None or not table_exists(db, checked_table(table)):
            raise StoreError("the reindex was finished or replaced by another `docserver reindex`; run it again")
        vector_index.delete_vectors(db, table, [chunk.chunk_id for chunk in chunks])
        rows = [(chunk.chunk_id, chunk.source, vector.tobytes()) for chunk, vector in zip(chunks, vectors, strict=True)]
        vector_index.put_vectors(db, table, rows)
        db.executemany(
            "INSERT OR REPLACE INTO reindex_fingerprints (chunk_id, fingerprint) VALUES (?, ?)",
            [(chunk.chunk_id, chunk.fingerprint) for chunk in chunks],
        )


def switch_reindex(db: Connection, info: EmbedderInfo, version: int) -> bool:
    # BEGIN IMMEDIATE: the write lock every ingest holds for its whole transaction.
    with immediate(db):
        staging = _staging_table(db, info)
        if int(meta(db, "corpus_version") or 0) != version:
            return False  # an ingest committed since the last scan began
        orphans = db.execute(
            "SELECT f.chunk_id FROM reindex_fingerprints f LEFT JOIN chunks c ON c.id = f.chunk_id WHERE c.id IS NULL"
        ).fetchall()
        for (chunk_id,) in orphans:  # vectors of chunks deleted since they were staged
            vector_index.delete_vectors(db, staging, [chunk_id])
            db.execute("DELETE FROM reindex_fingerprints WHERE chunk_id = ?", (chunk_id,))
        missing = db.execute(
            "SELECT EXISTS (SELECT 1 FROM chunks c LEFT JOIN reindex_fingerprints f ON f.chunk_id = c.id "
            "WHERE f.chunk_id IS NULL)"
        ).fetchone()[0]
        if missing:
            return False
        set_meta(db, {"vector_table": staging, **embedder_meta(info)})
        if vector_index.has_index(db, staging):  # staged with its index (not by an older docserver)
            vector_index.mark_complete(db, staging)
        db.execute("DELETE FROM meta WHERE key IN ('reindex_table', 'reindex_target')")
        bump_corpus_version(db)
    return True
