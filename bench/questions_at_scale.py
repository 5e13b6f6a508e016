"""A real-docs question set through SQLite's full-text statement on a large copied store.

    python bench/questions_at_scale.py DATABASE [--src SRC] [--questions python] --label L
        [--out bench/results/questions_at_scale.json]

`docserver eval` ingests its set into a store of its own, far below the
100,000 chunks from which the store plans full text differently
(RELAX_FROM_CHUNKS in store/sqlite_sql.py). This asks the set's questions of a
database bench/replicate.py grew from the same docs, through `search_text` of
the code under SRC (default: this checkout's `src`), and scores each as
`docserver eval` scores BM25: the files in the order they first appear, the
rank of the answer file among the first 10. Copies share their paths, so a
page of copies of one chunk is one file. Each row keeps the files and the
scores, so that two commits' pages compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 20  # what the search service asks each retriever for a page of 5
DEPTH = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", type=Path)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the code to ask (a checkout's src)")
    parser.add_argument("--questions", default="python", help="a set under src/docserver/evaluation/realdocs")
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/questions_at_scale.json")
    args = parser.parse_args()
    sys.path.insert(0, str(args.src))
    from docserver.store import sqlite_driver, sqlite_sql
    from docserver.store.terms import query_terms

    questions_file = ROOT / "src/docserver/evaluation/realdocs" / f"{args.questions}.toml"
    questions = tomllib.loads(questions_file.read_text())["question"]
    db = sqlite_driver.connect(args.database)
    path_of = "SELECT d.path FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?"
    rows = []
    for question in questions:
        ranked = sqlite_sql.search_text(db, query_terms(question["query"]), None, LIMIT)
        files = list(dict.fromkeys(db.execute(path_of, (item.chunk_id,)).fetchone()[0] for item in ranked))
        answers = set(question["answers"])
        rank = next((n for n, path in enumerate(files[:DEPTH], 1) if path in answers), None)
        scores = [round(item.score, 4) for item in ranked]
        rows.append({"id": question["id"], "kind": question["kind"], "rank": rank, "files": files, "scores": scores})
    chunks = int(db.execute("SELECT count(*) FROM chunks").fetchone()[0])
    summary = {
        "label": args.label,
        "questions": args.questions,
        "chunks": chunks,
        "hit@1": sum(row["rank"] == 1 for row in rows) / len(rows),
        "hit@3": sum(row["rank"] is not None and row["rank"] <= 3 for row in rows) / len(rows),
        "mrr": sum(1 / row["rank"] for row in rows if row["rank"]) / len(rows),
        "rows": rows,
    }
    key = (args.label, args.questions, chunks)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    results = [row for row in results if (row["label"], row["questions"], row["chunks"]) != key] + [summary]
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items() if k != "rows"}))


if __name__ == "__main__":
    main()
