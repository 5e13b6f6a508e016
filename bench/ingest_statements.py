"""Where the SQLite store's ingest time goes: each statement kind of `put_document`, timed.

    python bench/ingest_statements.py [--chunks 200000] [--out bench/results/ingest_statements.json]

Writes the synthetic corpus of bench/corpus.py, chunks and embeds it (`hash`,
the text ingest embeds) first, then writes every document through the store's own statements in one
transaction, as `docserver ingest` does, timing each `execute` by the
statement it runs. Chunking and embedding are left out: the store's share
is what is asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from corpus import write_corpus
from docserver.embed.hashing import HashEmbedder
from docserver.ingest.chunk import chunk_document
from docserver.ingest.pipeline import embedding_text
from docserver.store import sqlite_driver, sqlite_sql
from docserver.store.base import ChunkInput, DocumentInput
from docserver.store.migrations import apply_sqlite_migrations


class TimedConnection:
    """A connection that adds each statement's time to `spent`, by the statement's first words."""

    def __init__(self, db: Any, spent: Counter[str]) -> None:
        self._db = db
        self._spent = spent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def _timed(self, run: Any, sql: str, args: tuple[Any, ...]) -> Any:
        started = time.perf_counter()
        try:
            return run(sql, *args)
        finally:
            self._spent[" ".join(sql.split("(")[0].split()[:5])] += time.perf_counter() - started

    def execute(self, sql: str, *args: Any) -> Any:
        return self._timed(self._db.execute, sql, args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._timed(self._db.executemany, sql, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest_statements.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="docserver-ingest-statements-"))
    write_corpus(work / "corpus", args.chunks)
    embedder = HashEmbedder()
    documents = []
    for path in sorted((work / "corpus").iterdir()):
        text = path.read_text(encoding="utf-8")
        title, chunks = chunk_document(text, ".md")
        inputs = [ChunkInput(i, c.heading, c.text, c.start_line, c.end_line, c.anchor) for i, c in enumerate(chunks)]
        vectors = asyncio.run(embedder.embed_batch([embedding_text(title, chunk) for chunk in inputs]))
        documents.append(DocumentInput(path.name, title, path.name, text, inputs, vectors))
    raw = sqlite_driver.connect(work / "ingest.db")
    apply_sqlite_migrations(raw)
    sqlite_sql.bind_embedder(raw, embedder.info)
    spent: Counter[str] = Counter()
    db = TimedConnection(raw, spent)
    started = time.perf_counter()
    sqlite_sql.begin(db, "bench", None)
    for document in documents:
        sqlite_sql.put_document(db, "bench", document)
    sqlite_sql.commit(db, "bench")
    total = time.perf_counter() - started
    raw.close()
    shutil.rmtree(work)  # a database of gigabytes at a million chunks
    chunks = sum(len(document.chunks) for document in documents)
    result = {
        "chunks": chunks,
        "seconds": total,
        "chunks_per_s": chunks / total,
        "statements": [
            {"statement": statement, "seconds": seconds, "share": seconds / total}
            for statement, seconds in spent.most_common()
        ],
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
