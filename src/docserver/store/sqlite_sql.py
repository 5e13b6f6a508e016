"""SQLite's statements (the `Statements` of StoreCore), run on the store's threads.

Full text lives in the FTS5 table `chunks_fts` (BM25), vectors in a sqlite-vec
table whose name `meta` records (see sqlite_tables).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from docserver.store import sqlite_vector_index as vector_index
from docserver.store.base import (
    ChunkRecord,
    Document,
    DocumentEntry,
    RankedId,
    SourceFilter,
    SourceInfo,
    embedder_mismatch,
)
from docserver.store.sqlite_tables import (
    Connection,
    bump_corpus_version,
    create_vector_table,
    embedder_meta,
    immediate,
    now,
    set_meta,
    snapshot,
    source_condition,
    table_exists,
    vector_table,
)
from docserver.store.sqlite_tables import read_embedder as read_embedder  # a statement too
from docserver.store.terms import text_score

if TYPE_CHECKING:
    from docserver.store.base import DocumentInput, EmbedderInfo, Vectors


def ping(db: Connection) -> None:
    db.execute("SELECT 1").fetchone()


def corpus_version(db: Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = 'corpus_version'").fetchone()[0])


def bind_embedder(db: Connection, info: EmbedderInfo) -> None:
    current = read_embedder(db)
    if current == info:
        return
    has_chunks = db.execute("SELECT EXISTS (SELECT 1 FROM chunks)").fetchone()[0]
    if current is not None and has_chunks:
        raise embedder_mismatch(current, info)
    db.execute("BEGIN IMMEDIATE")
    try:
        table = vector_table(db)
        for name in (table, *vector_index.index_tables(table)):
            db.execute(f"DROP TABLE IF EXISTS {name}")
        for key in (vector_index.SEARCHED, vector_index.BUILDING, vector_index.RETIRED):
            db.execute("DELETE FROM meta WHERE key = ?", (key,))
        create_vector_table(db, table, info.dimension)
        vector_index.create_index_tables(db, table)
        vector_index.mark_complete(db, table)
        set_meta(db, embedder_meta(info))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def list_sources(db: Connection) -> list[SourceInfo]:
    rows = db.execute(
        """
        SELECT s.name, COUNT(DISTINCT d.id), COUNT(c.id), s.updated_at, s.version
        FROM sources s
        LEFT JOIN documents d ON d.source = s.name
        LEFT JOIN chunks c ON c.document_id = d.id
        GROUP BY s.name ORDER BY s.name
        """
    ).fetchall()
    return [SourceInfo(*row) for row in rows]


def document_hashes(db: Connection, source: str) -> list[tuple[str, str]]:
    return db.execute("SELECT path, content_hash FROM documents WHERE source = ?", (source,)).fetchall()  # type: ignore[no-any-return]


# -- writing: one transaction on the writer thread, from `begin` to `commit` or `rollback` --------


def begin(db: Connection, source: str, expected: EmbedderInfo | None) -> None:
    db.execute("BEGIN IMMEDIATE")
    # Checked under the write lock that a reindex's switch takes too: once the
    # index has moved to another embedder, this process's vectors do not belong in it.
    current = read_embedder(db)
    if expected is not None and current is not None and current != expected:
        raise embedder_mismatch(current, expected)
    db.execute("INSERT OR IGNORE INTO sources (name, updated_at) VALUES (?, ?)", (source, now()))


def rollback(db: Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")


def commit(db: Connection, source: str) -> None:
    remaining = db.execute("SELECT COUNT(*) FROM documents WHERE source = ?", (source,)).fetchone()[0]
    if remaining:
        db.execute("UPDATE sources SET updated_at = ? WHERE name = ?", (now(), source))
    else:
        db.execute("DELETE FROM sources WHERE name = ?", (source,))
    bump_corpus_version(db)
    db.execute("COMMIT")


def _delete_chunks_of(db: Connection, document_ids: list[int]) -> None:
    table = vector_table(db)
    marks = ",".join("?" * len(document_ids))
    chunk_ids = [row[0] for row in db.execute(f"SELECT id FROM chunks WHERE document_id IN ({marks})", document_ids)]
    for start in range(0, len(chunk_ids), 500):
        part = chunk_ids[start : start + 500]
        chunk_marks = ",".join("?" * len(part))
        db.execute(f"DELETE FROM chunks_fts WHERE rowid IN ({chunk_marks})", part)
        vector_index.delete_vectors(db, table, part)
    db.execute(f"DELETE FROM chunks WHERE document_id IN ({marks})", document_ids)


def put_document(db: Connection, source: str, document: DocumentInput) -> None:
    row = db.execute("SELECT id FROM documents WHERE source = ? AND path = ?", (source, document.path)).fetchone()
    if row is not None:
        _delete_chunks_of(db, [row[0]])
        db.execute("DELETE FROM documents WHERE id = ?", (row[0],))
    document_id = db.execute(
        "INSERT INTO documents (source, path, title, content_hash, content, ingested_at) VALUES (?, ?, ?, ?, ?, ?)",
        (source, document.path, document.title, document.content_hash, document.content, now()),
    ).lastrowid
    vectors = []
    for chunk, vector in zip(document.chunks, document.vectors, strict=True):
        chunk_id = db.execute(
            "INSERT INTO chunks (document_id, ordinal, heading, text, start_line, end_line, anchor)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (document_id, chunk.ordinal, chunk.heading, chunk.text, chunk.start_line, chunk.end_line, chunk.anchor),
        ).lastrowid
        db.execute(
            "INSERT INTO chunks_fts (rowid, title, heading, text) VALUES (?, ?, ?, ?)",
            (chunk_id, document.title, chunk.heading, chunk.text),
        )
        vectors.append((chunk_id, source, np.asarray(vector, dtype=np.float32).tobytes()))
    vector_index.put_vectors(db, vector_table(db), vectors)


def delete_documents(db: Connection, source: str, paths: list[str]) -> None:
    for start in range(0, len(paths), 500):
        part = paths[start : start + 500]
        marks = ",".join("?" * len(part))
        ids = [
            row[0]
            for row in db.execute(f"SELECT id FROM documents WHERE source = ? AND path IN ({marks})", [source, *part])
        ]
        if ids:
            _delete_chunks_of(db, ids)
            db.execute(f"DELETE FROM documents WHERE id IN ({','.join('?' * len(ids))})", ids)


# -- reading ----------------------------------------------------------------------------


_EVERY_WORD = "f.rowid IN (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?)"


def _fts_query(terms: list[str], operator: str = "OR") -> str:
    return f" {operator} ".join('"' + term.replace('"', '""') + '"' for term in terms)


def search_text(db: Connection, terms: list[str], source: SourceFilter, limit: int) -> list[RankedId]:
    # bm25() weights: title, heading, text. A word in a heading says more
    # about what a chunk is for than the same word in passing. Chunks that
    # hold every query word come first, then those that hold some (text_score).
    # FTS5 scores every match before it sorts, so the cost grows with the
    # matches: the chunks holding every word are ranked first, alone, and
    # when they fill the page the chunks holding some (many more, at a
    # million chunks) are never scored. The answer is the same either way.
    counts = word_counts(db, terms)
    # A word no chunk holds (a typo, another product's name) can neither
    # match nor rank: the tiers are those of the words the store holds.
    # Kept, it empties the every-word tier, and a query of common words
    # then had every chunk holding any of them scored.
    terms = [term for term in terms if counts[term]]
    if counts.chunks >= RELAX_FROM_CHUNKS:
        # A large store also leaves out the words most chunks hold, which
        # rank nothing and cost a pass over their doclists (see informative).
        terms = informative(terms, counts)
    if not terms:
        return []
    if len(terms) == 1:  # every match holds every word
        return _ranked(db, "1", [], _fts_query(terms), source, limit)
    every_word = _ranked(db, "1", [], _fts_query(terms, "AND"), source, limit)
    if len(every_word) >= limit:
        return every_word
    if counts.chunks >= RELAX_FROM_CHUNKS:
        # A large store ranks the best tier that has any match, and stops:
        # every word, then all words but one. The page may be short (the
        # vectors fill it); the chunks holding fewer words (a common word's
        # hundreds of thousands, at a million chunks) are scored only when
        # no chunk holds more.
        if every_word:
            return every_word
        if 2 < len(terms) <= MAX_RELAXED_TERMS and (most := _ranked(db, "0", [], _all_but_one(terms), source, limit)):
            return most
    return _ranked(db, _EVERY_WORD, [_fts_query(terms, "AND")], _fts_query(terms), source, limit)


RELAX_FROM_CHUNKS = 100_000
"""From this many chunks, search_text leaves out words most chunks hold and returns the first tier with a match."""
MAX_RELAXED_TERMS = 8


def informative(terms: list[str], counts: WordCounts) -> list[str]:
    """The terms without those more than half the chunks hold, unless every term is one of them.

    bm25() gives such a word no weight (FTS5 clamps its IDF to 1e-6), yet
    matching it costs a pass over its whole doclist (to count it, to merge
    it): at a million chunks, 30 to 40 ms for each word every chunk holds
    (a product's name or version in every page title).
    """
    return [term for term in terms if counts[term] * 2 <= counts.chunks] or terms


class WordCounts(dict[str, int]):
    """How many chunks hold each word, as far as the tiers need: see count_word."""

    def __init__(self, chunks: int, largest_id: int) -> None:
        super().__init__()
        self.chunks = chunks
        self.largest_id = largest_id


_WORD_COUNTS: dict[str, tuple[tuple[int, int], WordCounts]] = {}
"""Per database path: the corpus version and largest chunk id the counts were taken at, and the counts."""
_MAX_COUNTED = 50_000
_STATE = "SELECT (SELECT value FROM meta WHERE key = 'corpus_version'), coalesce((SELECT max(id) FROM chunks), 0)"
"""The corpus version and the largest chunk id (a rowid lookup, not a count), in one statement."""


def word_counts(db: Connection, terms: list[str]) -> WordCounts:
    """How many chunks hold each term (count_word), counted once per database file and corpus version.

    The counts are kept until a write (any process's) moves the corpus version. The
    largest chunk id is part of the key too: a file deleted and made again at the same
    path starts its versions again, and must not meet the old file's counts.
    """
    with snapshot(db):
        path = db.execute("PRAGMA database_list").fetchone()[2]
        version, largest_id = db.execute(_STATE).fetchone()
        state = (int(version), int(largest_id))
        counted_at, counts = _WORD_COUNTS.get(path, (None, None))
        if counts is None or counted_at != state or len(counts) > _MAX_COUNTED:
            counts = WordCounts(int(db.execute("SELECT count(*) FROM chunks").fetchone()[0]), state[1])
            _WORD_COUNTS[path] = (state, counts)
        for term in terms:
            if term not in counts:
                counts[term] = count_word(db, _fts_query([term]), counts)
    return counts


COUNTED_EXACTLY_BELOW = 2_000
SAMPLES, SAMPLE_ROWS = 4, 256


def count_word(db: Connection, match: str, counts: WordCounts) -> int:
    """How many chunks hold a word: exact below COUNTED_EXACTLY_BELOW and above half the chunks.

    FTS5 counts a word by reading its doclist, and a common word's is long
    (30 to 40 ms for a word every chunk of a million holds). So a word held
    by more chunks than that is first sampled: SAMPLES windows of SAMPLE_ROWS
    consecutive chunk ids, spread over the ids. Only when more than 40% of the
    samples hold it is it counted, up to one more than half the chunks; else
    COUNTED_EXACTLY_BELOW stands for it. A sample that misses only keeps a
    word in the query (the tiers as before); it never leaves one out.
    """
    half = counts.chunks // 2 + 1
    count = "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)"
    first = int(db.execute(count, (match, min(COUNTED_EXACTLY_BELOW, half))).fetchone()[0])
    if first < COUNTED_EXACTLY_BELOW or first == half:
        return first
    window = "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ? AND rowid BETWEEN ? AND ?"
    windows = [(start, min(start + SAMPLE_ROWS, counts.largest_id + 1)) for start in _sample_starts(counts.largest_id)]
    sampled = sum(db.execute(window, (match, start, end - 1)).fetchone()[0] for start, end in windows)
    if sampled * 10 <= sum(end - start for start, end in windows) * 4:
        return COUNTED_EXACTLY_BELOW
    return int(db.execute(count, (match, half)).fetchone()[0])


def _sample_starts(largest_id: int) -> list[int]:
    return [1 + sample * largest_id // SAMPLES for sample in range(SAMPLES)]


def _all_but_one(terms: list[str]) -> str:
    """An FTS5 query matching the chunks that hold every term but (at most) one."""
    return " OR ".join(f"({_fts_query(terms[:skip] + terms[skip + 1 :], 'AND')})" for skip in range(len(terms)))


def _ranked(
    db: Connection, every: str, params: list[Any], match: str, source: SourceFilter, limit: int
) -> list[RankedId]:
    """The best `limit` chunks that `match`, BM25-ranked within their tier (`every`: holds every word)."""
    sql = f"SELECT f.rowid, bm25(chunks_fts, 3.0, 5.0, 1.0) AS rank, {every} AS every FROM chunks_fts f"
    params = [*params, match]
    if source is not None:
        # CROSS JOIN keeps the full-text match first: left to choose, the
        # planner scans every document of the source and probes the index
        # per chunk, which takes seconds on a large source.
        sql += " CROSS JOIN chunks c ON c.id = f.rowid CROSS JOIN documents d ON d.id = c.document_id"
    condition, names = source_condition("d.source", source)
    sql += " WHERE chunks_fts MATCH ?" + condition
    params += names
    sql += " ORDER BY every DESC, rank LIMIT ?"
    params.append(limit)
    rows = db.execute(sql, params).fetchall()
    return [RankedId(chunk_id, text_score(every, -rank)) for chunk_id, rank, every in rows]


def search_vector(db: Connection, vector: Vectors, source: SourceFilter, limit: int) -> list[RankedId]:
    with snapshot(db):
        table = vector_table(db)
        if not table_exists(db, table):
            return []
        generation = vector_index.searched(db, table) if vector_index.dense(vector) else None
        rows = [] if generation is None else vector_index.search(db, table, generation, vector.tobytes(), source, limit)
        if len(rows) < limit:  # exact: a small store, a sparse query, or a filter the nearest lists left short
            rows = _exact_search(db, table, vector.tobytes(), source, limit)
    # sqlite-vec gives NULL distances for stored zero vectors (chunks without words).
    return [RankedId(chunk_id, 1.0 - distance) for chunk_id, distance in rows if distance is not None]


def _exact_search(db: Connection, table: str, vector: bytes, source: SourceFilter, limit: int) -> list[Any]:
    condition, names = source_condition("source", source)
    knn = f"SELECT chunk_id, distance FROM {table} WHERE embedding MATCH ? AND k = ?{condition} ORDER BY distance"
    if not isinstance(source, tuple):
        return db.execute(knn, [vector, limit, *names]).fetchall()  # type: ignore[no-any-return]
    # With several sources sqlite-vec finds `k` in each; the outer LIMIT (which sqlite-vec
    # refuses beside `k`, hence MATERIALIZED) keeps the best `k` of them all.
    sql = f"WITH knn AS MATERIALIZED ({knn}) SELECT chunk_id, distance FROM knn ORDER BY distance LIMIT ?"
    return db.execute(sql, [vector, limit, *names, limit]).fetchall()  # type: ignore[no-any-return]


def build_vector_index(db: Connection) -> bool:
    """One step of building the current vector table's index (its own write transaction); True once complete."""
    with immediate(db):
        return vector_index.build_step(db, vector_table(db))


def get_chunks(db: Connection, chunk_ids: list[int]) -> list[ChunkRecord]:
    marks = ",".join("?" * len(chunk_ids))
    rows = db.execute(
        f"""
        SELECT c.id, c.document_id, d.source, d.path, d.title, c.heading, c.start_line, c.end_line, c.anchor, c.text
        FROM chunks c JOIN documents d ON d.id = c.document_id
        WHERE c.id IN ({marks})
        """,
        chunk_ids,
    ).fetchall()
    return [ChunkRecord(*row) for row in rows]


def get_document(db: Connection, document_id: int) -> Document | None:
    row = db.execute(
        """
        SELECT d.id, d.source, d.path, d.title, d.content, d.content_hash,
               (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id), d.ingested_at
        FROM documents d WHERE d.id = ?
        """,
        (document_id,),
    ).fetchone()
    return None if row is None else Document(*row)


def list_documents(db: Connection, sources: list[str] | None, after: int, limit: int) -> list[DocumentEntry]:
    where = "" if sources is None else f" AND source IN ({', '.join('?' * len(sources))})"
    rows = db.execute(
        f"SELECT id, source, path, title FROM documents WHERE id > ?{where} ORDER BY id LIMIT ?",
        (after, *(sources or ()), limit),
    ).fetchall()
    return [DocumentEntry(*row) for row in rows]
