"""Where SQLite's full-text statement spends its tail: each heading query, timed, with its words' counts.

    python bench/text_tail.py DATABASE [--src SRC] [--queries 100] --label L [--out bench/results/text_tail.json]

The queries are bench/store_scale.py's (the database's own headings, two words
or more, the same shuffle), timed one by one through `search_text` of the code
under SRC (default: this checkout's `src`, so that another commit's can be timed
on the same database), after the same 20 warm-up queries. For each query the
row keeps the chunks holding each word (FTS5 counts, exact), the chunks
holding every word (the every-word tier), which say why a query is slow, and
the page returned (each distinct chunk as its document's path and ordinal, its
score and how many of its copies the page holds: copies of one chunk are alike,
so pages compare across code). FTS5's
bm25() reads the whole doclist of each query word (to count it, for its IDF)
and scores every chunk of the tier.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 20  # what the search service asks each retriever for a page of 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", type=Path)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the code to time (a checkout's src)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/text_tail.json")
    args = parser.parse_args()
    sys.path.insert(0, str(args.src))
    from docserver.store import sqlite_driver, sqlite_sql
    from docserver.store.terms import query_terms

    db = sqlite_driver.connect(args.database)
    headings = sorted(
        {row[0].split(" > ")[-1].rstrip("¶") for row in db.execute("SELECT heading FROM chunks LIMIT 20000")}
    )
    random.Random(11).shuffle(headings)  # bench/store_scale.py's queries
    asked = [terms for heading in headings if len(terms := query_terms(heading)) >= 2][: args.queries]
    for terms in asked[:20]:
        sqlite_sql.search_text(db, terms, None, LIMIT)
    timed, pages = [], []
    for terms in asked:
        started = time.perf_counter()
        ranked = sqlite_sql.search_text(db, terms, None, LIMIT)
        timed.append((time.perf_counter() - started) * 1000)
        pages.append(ranked)
    count = "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?"
    holding: dict[str, int] = {}
    rows = []
    where = "SELECT d.path, c.ordinal FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?"
    for terms, spent, ranked in zip(asked, timed, pages, strict=True):
        for term in terms:
            if term not in holding:
                holding[term] = int(db.execute(count, (sqlite_sql._fts_query([term]),)).fetchone()[0])
        tier = int(db.execute(count, (sqlite_sql._fts_query(terms, "AND"),)).fetchone()[0])
        page = _distinct([(*db.execute(where, (item.chunk_id,)).fetchone(), round(item.score, 4)) for item in ranked])
        counted = [holding[term] for term in terms]
        rows.append({"terms": terms, "holding": counted, "every_word": tier, "ms": spent, "page": page})
    chunks = int(db.execute("SELECT count(*) FROM chunks").fetchone()[0])
    summary = {
        "label": args.label,
        "chunks": chunks,
        "queries": len(rows),
        **{f"p{q}_ms": float(np.percentile(timed, q)) for q in (50, 95, 99)},
        "rows": rows,
    }
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    results = [row for row in results if (row["label"], row["chunks"]) != (args.label, chunks)] + [summary]
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in summary.items() if k != "rows"}))
    for row in sorted(rows, key=lambda row: -row["ms"])[:10]:
        words = list(zip(row["terms"], row["holding"], strict=True))
        print(f"{row['ms']:7.1f} ms  every word: {row['every_word']:>7}  {words}")


def _distinct(page: list[tuple[str, int, float]]) -> list[list[object]]:
    """The page's distinct chunks, in order, each with how many copies of it the page holds."""
    copies = collections.Counter(page)
    return [[*chunk, copies[chunk]] for chunk in dict.fromkeys(page)]


if __name__ == "__main__":
    main()
