"""Full text on a large store: which of a huge tier's matches to rank, when not all of them.

    python bench/text_cap.py DATABASE [--cap 2000] [--queries 150] [--out bench/results/text_cap.json]

FTS5's bm25() scores every chunk that matches before it sorts: a query of
common words ranks hundreds of thousands of chunks at a million (a second for
one word held by every chunk). Bounding that means ranking some of a tier's
matches, and the choice changes the answers. This measures the choices on a
database of distinct documents (a corpus of copies cannot: every copy holds
the best chunks): for each query whose every-word tier holds more than
`--cap` matches, the page each choice returns against the exact ranking of
the whole tier, as recall@10 that counts ties (a returned chunk counts when
its exact score is at least the exact 10th best's), with the time of each.

Queries: the database's own headings (as bench/store_scale.py takes them) and
its commonest words alone and in pairs, the queries a huge tier comes from.
Choices:

- table order: the first `cap` matches in rowid order (PostgreSQL's
  RANKED_AT_MOST, store/postgres_sql.py);
- heading first: the matches with a query word in the chunk's heading, the
  first `cap` of them, in one FTS5 query (which scores the heading condition's
  words too);
- every heading match, scored exactly: the same matches, uncapped, ranked by
  the tier's own words: the tier's query with `+rowid IN (the heading
  matches)` (the `+` keeps SQLite from handing the rowids to FTS5 one at a
  time, which re-runs the query per rowid: seconds).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from docserver.store import sqlite_driver, sqlite_sql
from docserver.store.terms import STOPWORDS, query_terms

PAGE = 10
WEIGHTS = "bm25(chunks_fts, 3.0, 5.0, 1.0)"


def exact(db: object, match: str) -> list[tuple[int, float]]:
    """Every match of the tier with its bm25 score (lower is better), best first."""
    sql = f"SELECT rowid, {WEIGHTS} AS r FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY r"
    return db.execute(sql, (match,)).fetchall()  # type: ignore[attr-defined, no-any-return]


def table_order(db: object, match: str, cap: int) -> list[int]:
    sql = (
        f"SELECT rowid FROM (SELECT rowid, {WEIGHTS} AS r FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)"
        " ORDER BY r LIMIT ?"
    )
    return [row[0] for row in db.execute(sql, (match, cap, PAGE))]  # type: ignore[attr-defined]


def in_headings(terms: list[str], match: str) -> str:
    """The tier's matches with a query word in the chunk's heading, as an FTS5 query."""
    return f"({match}) AND {{heading}} : ({sqlite_sql._fts_query(terms)})"


def heading_first(db: object, terms: list[str], match: str, cap: int) -> list[int]:
    """As table order, over the tier's matches with a query word in the heading."""
    return table_order(db, in_headings(terms, match), cap)


def every_heading_match(db: object, terms: list[str], match: str) -> list[int]:
    sql = (
        f"SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? AND +rowid IN"
        f" (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?) ORDER BY {WEIGHTS} LIMIT ?"
    )
    return [row[0] for row in db.execute(sql, (match, in_headings(terms, match), PAGE))]  # type: ignore[attr-defined]


def recall(returned: list[int], scores: dict[int, float], tenth: float) -> float:
    return sum(1 for chunk in returned if scores.get(chunk, 0.0) <= tenth) / PAGE


def common_words(db: object, sample: int = 20000) -> list[str]:
    counts: collections.Counter[str] = collections.Counter()
    stride = max(1, int(db.execute("SELECT max(id) FROM chunks").fetchone()[0]) // sample)  # type: ignore[attr-defined]
    for (text,) in db.execute("SELECT text FROM chunks WHERE id % ? = 0", (stride,)):  # type: ignore[attr-defined]
        counts.update({word for word in re.findall(r"[a-z]{3,}", text.lower()) if word not in STOPWORDS})
    return [word for word, _ in counts.most_common(40)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", type=Path)
    parser.add_argument("--cap", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=Path("bench/results/text_cap.json"))
    args = parser.parse_args()
    db = sqlite_driver.connect(args.database)
    chunks = int(db.execute("SELECT count(*) FROM chunks").fetchone()[0])
    headings = sorted({row[0].split(" > ")[-1].rstrip("¶") for row in db.execute("SELECT heading FROM chunks")})
    random.Random(11).shuffle(headings)
    words = common_words(db)
    pairs = [[a, b] for a, b in zip(words[::2], words[1::2], strict=False)]
    candidates = [terms for h in headings if (terms := query_terms(h))][: args.queries * 20]
    queries = [[w] for w in words] + pairs + candidates
    rows: list[dict[str, object]] = []
    choices = ("table order", "heading first", "every heading match, scored exactly")
    per_choice: dict[str, list[tuple[float, float]]] = {name: [] for name in choices}
    exact_ms: list[float] = []
    for terms in queries:
        match = sqlite_sql._fts_query(terms, "AND")
        held = db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (match,)).fetchone()[0]
        if held <= args.cap:
            continue
        started = time.perf_counter()
        ranked = exact(db, match)
        exact_ms.append((time.perf_counter() - started) * 1000)
        scores = dict(ranked)
        tenth = ranked[min(PAGE, len(ranked)) - 1][1]
        row: dict[str, object] = {"terms": terms, "matches": held}
        for name in per_choice:
            started = time.perf_counter()
            if name == "table order":
                page = table_order(db, match, args.cap)
            elif name == "heading first":
                page = heading_first(db, terms, match, args.cap)
            else:
                page = every_heading_match(db, terms, match)
            spent = (time.perf_counter() - started) * 1000
            found = recall(page, scores, tenth)
            per_choice[name].append((found, spent))
            row[name] = {"recall": found, "ms": round(spent, 2), "returned": len(page)}
        rows.append(row)
        if len(rows) >= args.queries:
            break
    summary = {
        name: {
            "mean_recall": float(np.mean([r for r, _ in values])),
            "recall_p10": float(np.percentile([r for r, _ in values], 10)),
            "p50_ms": float(np.percentile([s for _, s in values], 50)),
            "p95_ms": float(np.percentile([s for _, s in values], 95)),
        }
        for name, values in per_choice.items()
        if values
    }
    summary["exact"] = {
        "p50_ms": float(np.percentile(exact_ms, 50)),
        "p95_ms": float(np.percentile(exact_ms, 95)),
    }
    result = {"label": args.label, "chunks": chunks, "cap": args.cap, "queries": len(rows), "summary": summary}
    print(json.dumps(result, indent=1))
    previous = json.loads(args.out.read_text()) if args.out.exists() else []
    previous.append({**result, "rows": rows})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(previous, indent=1))


if __name__ == "__main__":
    main()
