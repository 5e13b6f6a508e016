"""Grow a SQLite database to a size by copying its own sources under new names, at the SQL level.

    python bench/replicate.py TEMPLATE.db OUT.db --chunks 1000000
    python bench/replicate.py TEMPLATE.db OUT.db --chunks 1000000 --resume --retrain

Ingesting real docs through the CLI is bound by the hash embedder (a few
hundred chunks per second on this machine, loaded), too slow to reach a
million chunks often; the chunks, their full-text rows and their vectors are
copied instead, each copy a new source (`NAME-r002`, ...), through the
store's own statement for vectors, so the approximate index files them as
an ingest would. The store then finishes its index (trained for the final
size) when it opens. `--retrain` trains a new generation of lists for OUT
as it stands and files every vector in it (to measure a change to the
training on a database already grown). Identical copies: recall is measured elsewhere
(bench/vector_index.py), latency and size here.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docserver.store import sqlite_driver, sqlite_sql, sqlite_tables
from docserver.store import sqlite_vector_index as vector_index
from harness import finish_vector_index

VECTOR_BATCH = 2000


def copy_once(db: object, copy: int, documents: int, chunks: int, sources: list[str]) -> None:
    """Copy the template's first `documents` documents and `chunks` chunks as copy number `copy`."""
    doc_offset = int(db.execute("SELECT max(id) FROM documents").fetchone()[0])  # type: ignore[attr-defined]
    chunk_offset = int(db.execute("SELECT max(id) FROM chunks").fetchone()[0])  # type: ignore[attr-defined]
    names = {source: f"{source}-r{copy:03d}" for source in sources}
    db.execute("BEGIN IMMEDIATE")  # type: ignore[attr-defined]
    for old, new in names.items():
        db.execute(  # type: ignore[attr-defined]
            "INSERT INTO sources (name, updated_at, origin, options, refreshed_at) "
            "SELECT ?, updated_at, origin, options, refreshed_at FROM sources WHERE name = ?",
            (new, old),
        )
        db.execute(  # type: ignore[attr-defined]
            "INSERT INTO documents (id, source, path, title, content_hash, content, ingested_at) "
            "SELECT id + ?, ?, path, title, content_hash, content, ingested_at FROM documents "
            "WHERE source = ? AND id <= ?",
            (doc_offset, new, old, documents),
        )
    db.execute(  # type: ignore[attr-defined]
        "INSERT INTO chunks (id, document_id, ordinal, heading, text, start_line, end_line, anchor) "
        "SELECT id + ?, document_id + ?, ordinal, heading, text, start_line, end_line, anchor "
        "FROM chunks WHERE id <= ?",
        (chunk_offset, doc_offset, chunks),
    )
    db.execute(  # type: ignore[attr-defined]
        "INSERT INTO chunks_fts (rowid, title, heading, text) "
        "SELECT c.id + ?, d.title, c.heading, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
        "WHERE c.id <= ?",
        (chunk_offset, chunks),
    )
    table = sqlite_sql.vector_table(db)
    after = 0
    while True:
        rows = db.execute(  # type: ignore[attr-defined]
            f"SELECT f.chunk_id, d.source, f.embedding FROM {vector_index.full_table(table)} f "
            "JOIN chunks c ON c.id = f.chunk_id JOIN documents d ON d.id = c.document_id "
            "WHERE f.chunk_id > ? AND f.chunk_id <= ? ORDER BY f.chunk_id LIMIT ?",
            (after, chunks, VECTOR_BATCH),
        ).fetchall()
        if not rows:
            break
        after = rows[-1][0]
        vector_index.put_vectors(db, table, [(i + chunk_offset, names[s], e) for i, s, e in rows])
    db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'corpus_version'")  # type: ignore[attr-defined]
    db.execute("COMMIT")  # type: ignore[attr-defined]


def train_for(db: object, size: int, again: bool = False) -> None:
    """Train the lists for the final size once and file what is there, so each copy is filed once, as it is written.

    The store itself trains √n lists at 10,000 chunks and again at each
    fourfold growth, filing every vector anew each time; growing by copies,
    that work is done once instead.
    """
    table = sqlite_sql.vector_table(db)
    generation = vector_index.Generation.read(db, vector_index.SEARCHED, table)
    if generation is not None and generation.trained_on >= size and not again:
        return
    with sqlite_tables.immediate(db):
        vector_index.train(db, table, size)
    while not sqlite_sql.build_vector_index(db):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("template", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--chunks", type=int, required=True)
    parser.add_argument("--resume", action="store_true", help="keep OUT and its copies so far")
    parser.add_argument("--retrain", action="store_true", help="train OUT's lists anew even if trained for the size")
    args = parser.parse_args()
    asyncio.run(finish_vector_index(args.template))  # the template's own vectors copied and filed first
    if not args.resume:
        shutil.copyfile(args.template, args.out)
    template = sqlite_driver.connect(args.template)
    documents = int(template.execute("SELECT max(id) FROM documents").fetchone()[0])
    chunks = int(template.execute("SELECT max(id) FROM chunks").fetchone()[0])
    sources = [row[0] for row in template.execute("SELECT name FROM sources ORDER BY name")]
    template.close()
    db = sqlite_driver.connect(args.out)
    started = time.perf_counter()
    train_for(db, args.chunks, again=args.retrain)
    print(f"lists trained for {args.chunks} chunks in {time.perf_counter() - started:.0f} s", flush=True)
    copy = int(db.execute("SELECT max(id) FROM chunks").fetchone()[0]) // chunks
    while int(db.execute("SELECT max(id) FROM chunks").fetchone()[0]) < args.chunks:
        copy += 1
        copy_once(db, copy, documents, chunks, sources)
        print(
            f"copy {copy}: {db.execute('SELECT max(id) FROM chunks').fetchone()[0]} chunks, "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    db.close()
    started = time.perf_counter()
    asyncio.run(finish_vector_index(args.out))
    print(f"index finished in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
