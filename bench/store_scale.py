"""SQLite's search statements alone at scale, on a database bench/search_scale.py or bench/replicate.py built.

    python bench/store_scale.py DATABASE [--queries 200] [--out bench/results/store_scale.json]

Full text (FTS5): query sets from the database's own headings, as they are
(most have chunks holding every word: ranked alone first, see
store/sqlite_sql.py) and with a word no chunk holds appended (no chunk holds
every word: the worst case), each also as one OR query ranked in full (the
statement before every-word-first), for comparison.

Vectors: the same headings embedded by `hash` under a fixed random rotation
(dense, as a language model's vectors are, so the search reads the lists
rather than scanning; bench/both_retrievers/), through the lists, and for
20 of them the exact scan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from docserver.embed.hashing import DEFAULT_DIMENSION, HashEmbedder
from docserver.store import sqlite_driver, sqlite_sql
from docserver.store.terms import query_terms

LIMIT = 20  # what the search service asks each retriever for a page of 5


def one_query(db: object, terms: list[str]) -> object:
    """The statement before every-word-first: one OR query, every match scored."""
    if len(terms) == 1:
        return sqlite_sql._ranked(db, "1", [], sqlite_sql._fts_query(terms), None, LIMIT)
    every = [sqlite_sql._fts_query(terms, "AND")]
    return sqlite_sql._ranked(db, sqlite_sql._EVERY_WORD, every, sqlite_sql._fts_query(terms), None, LIMIT)


def timed(db: object, queries: list, statement: object) -> dict[str, float]:  # type: ignore[type-arg]
    spent = []
    for terms in queries:
        started = time.perf_counter()
        statement(db, terms)  # type: ignore[operator]
        spent.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(spent, 50)), "p95_ms": float(np.percentile(spent, 95)), "queries": len(spent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", type=Path)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=Path("bench/results/store_scale.json"))
    args = parser.parse_args()
    db = sqlite_driver.connect(args.database)
    chunks = int(db.execute("SELECT max(id) FROM chunks").fetchone()[0])
    headings = sorted(
        {row[0].split(" > ")[-1].rstrip("¶") for row in db.execute("SELECT heading FROM chunks LIMIT 20000")}
    )
    random.Random(11).shuffle(headings)
    asked = [terms for heading in headings if len(terms := query_terms(heading)) >= 2][: args.queries]
    missing = [[*terms, "zqxjvw"] for terms in asked]
    current = lambda db, terms: sqlite_sql.search_text(db, terms, None, LIMIT)  # noqa: E731
    for terms in asked[:20]:  # warm the page cache
        current(db, terms)
    rows = [
        {"set": "headings", "statement": "every-word first", **timed(db, asked, current)},
        {"set": "headings", "statement": "one OR query", **timed(db, asked, one_query)},
        {"set": "headings + absent word", "statement": "every-word first", **timed(db, missing, current)},
        {"set": "headings + absent word", "statement": "one OR query", **timed(db, missing, one_query)},
    ]
    rotation = np.linalg.qr(np.random.default_rng(0).standard_normal((DEFAULT_DIMENSION,) * 2))[0]
    texts = [" ".join(terms) for terms in asked]
    dense = (np.asarray(asyncio.run(HashEmbedder().embed_batch(texts)), dtype=np.float32) @ rotation.T).astype(
        np.float32
    )
    listed = lambda db, vector: sqlite_sql.search_vector(db, vector, None, LIMIT)  # noqa: E731
    table = sqlite_sql.vector_table(db)
    exact = lambda db, vector: sqlite_sql._exact_search(db, table, vector.tobytes(), None, LIMIT)  # noqa: E731
    rows += [
        {"set": "headings, dense vectors", "statement": "vector lists", **timed(db, list(dense), listed)},
        {"set": "headings, dense vectors", "statement": "vector exact scan", **timed(db, list(dense[:20]), exact)},
    ]
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    results = [row for row in results if row.get("chunks") != chunks]
    for row in rows:
        results.append({"chunks": chunks, "label": args.label, **row})
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in results[-1].items()}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
