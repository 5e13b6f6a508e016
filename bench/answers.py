"""Choose the full-text ranking by measurement: field weights, heading columns, all-words-first, proximity.

    python bench/answers.py [--sets builtin python postgresql] [--embedders hash] [--only NAME...] [--label hash]
    python bench/answers.py --query-cost DATABASE   # the statement's cost, with and without the every-word tier

For each question set (`docserver eval --questions`: the built-in one and the
real-docs ones over Debian's python3.11-doc and postgresql-doc-15) and each
embedder, the corpus is ingested once, as `docserver eval` ingests it. Then
every candidate full-text ranking runs over the same chunks, straight in SQL:

- field weights of bm25() over the title, the heading and the text;
- the heading column as the whole heading path, or as its last heading alone
  (the section's own name; its parents are in the path, the title in `title`);
- all words first: chunks holding every query word, then those holding some;
- proximity: query words next to each other (NEAR groups of neighbours) count again;
- page fusion: each chunk's rank fused with its whole page's BM25 rank.

Each ranking is fused with the embedder's vectors as the server fuses them
(search.FUSION_BY_PROVIDER) and scored as `docserver eval` scores. The choice
is made on the `tune` half of every set (the best mean MRR among the rankings
that keep every easy `tune` question in the top 3) and its `test` half is
reported apart. bench/results/answers.json keeps every row, under `--label`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docserver.config import load_settings
from docserver.embed.factory import open_embedder
from docserver.evaluation.runner import DEPTH, HALVES, KINDS, Question, Scores, ingest_corpus, load_question_set
from docserver.observability.logging import configure_logging
from docserver.search import FUSION_BY_PROVIDER, MAX_LIMIT, fuse
from docserver.store import sqlite_driver
from docserver.store.base import RankedId
from docserver.store.sqlite import SqliteStore
from docserver.store.terms import query_terms

CANDIDATES = max(MAX_LIMIT * 4, 20)  # what SearchService.ranked asks each retriever for
TITLE_WEIGHTS = (0.0, 1.0, 3.0, 6.0)
HEADING_WEIGHTS = (0.0, 1.0, 2.0, 5.0, 10.0)
SHOWCASE = ("how do I change the database?", "configuration.md")
"""The README's example query over docserver's own docs/, and the file that answers it."""


@dataclass(frozen=True, slots=True)
class Ranking:
    """One candidate full-text ranking."""

    table: str  # chunks_fts (heading path) or leaf_fts (last heading only)
    title: float
    heading: float
    all_first: bool
    proximity: bool
    page: float = 0.0  # weight of the whole page's BM25 rank, fused into its chunks' ranks (0: none)

    @property
    def name(self) -> str:
        flags = ("+all-first" if self.all_first else "") + ("+near" if self.proximity else "")
        flags += f"+page{self.page:g}" if self.page else ""
        heading = "path" if self.table == "chunks_fts" else "leaf"
        return f"{heading} t{self.title:g} h{self.heading:g}{flags}"


PAGE_WEIGHTS = (0.5, 1.0, 2.0)


def rankings() -> list[Ranking]:
    grid = itertools.product(("chunks_fts", "leaf_fts"), TITLE_WEIGHTS, HEADING_WEIGHTS, (False, True), (False, True))
    paged = itertools.product(("chunks_fts",), (3.0,), (0.0, 5.0), (False, True), (False,), PAGE_WEIGHTS)
    return [Ranking(*row) for row in grid] + [Ranking(*row) for row in paged]


def quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def match_any(terms: list[str], proximity: bool) -> str:
    parts = [quoted(term) for term in terms]
    if proximity:
        parts += [f"NEAR({quoted(a)} {quoted(b)}, 3)" for a, b in itertools.pairwise(terms)]
    return " OR ".join(parts)


def run_fts(db: Any, ranking: Ranking, query: str, limit: int) -> list[int]:
    sql = (
        f"SELECT rowid FROM {ranking.table} WHERE {ranking.table} MATCH ? "
        f"ORDER BY bm25({ranking.table}, ?, ?, 1.0) LIMIT ?"
    )
    return [row[0] for row in db.execute(sql, (query, ranking.title, ranking.heading, limit))]


def text_ranked(db: Any, ranking: Ranking, terms: list[str]) -> list[RankedId]:
    if not terms:
        return []
    found = run_fts(db, ranking, match_any(terms, ranking.proximity), CANDIDATES)
    if ranking.all_first and len(terms) > 1:
        every = run_fts(db, ranking, " AND ".join(quoted(term) for term in terms), CANDIDATES)
        found = list(dict.fromkeys(every + found))[:CANDIDATES]
    ranked = [RankedId(chunk_id, -rank) for rank, chunk_id in enumerate(found)]
    if ranking.page:
        ranked = page_fused(db, ranking, terms, ranked)
    return ranked


def page_fused(db: Any, ranking: Ranking, terms: list[str], ranked: list[RankedId]) -> list[RankedId]:
    """Chunks' ranks fused with their pages' ranks (BM25 over whole pages), as field collapsing does."""
    sql = "SELECT rowid FROM page_fts WHERE page_fts MATCH ? ORDER BY bm25(page_fts, ?, 1.0) LIMIT 200"
    pages = {row[0]: rank for rank, row in enumerate(db.execute(sql, (match_any(terms, False), ranking.title)), 1)}
    scores = {}
    for rank, item in enumerate(ranked, 1):
        page = pages.get(DOCUMENT_OF[item.chunk_id])
        scores[item.chunk_id] = 1 / (60 + rank) + (ranking.page / (60 + page) if page else 0.0)
    order = sorted(scores, key=lambda chunk_id: -scores[chunk_id])
    return [RankedId(chunk_id, scores[chunk_id]) for chunk_id in order]


DOCUMENT_OF: dict[int, int] = {}


def build_leaf_table(db: Any) -> None:
    """The same chunks with the heading column holding the last heading only; and one row per page."""
    db.execute(
        "CREATE VIRTUAL TABLE page_fts USING fts5(title, content, tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    db.execute("INSERT INTO page_fts (rowid, title, content) SELECT id, title, content FROM documents")
    DOCUMENT_OF.clear()
    DOCUMENT_OF.update(db.execute("SELECT id, document_id FROM chunks").fetchall())
    db.execute(
        "CREATE VIRTUAL TABLE leaf_fts USING fts5(title, heading, text, "
        "tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    rows = db.execute("SELECT rowid, title, heading, text FROM chunks_fts").fetchall()
    db.executemany(
        "INSERT INTO leaf_fts (rowid, title, heading, text) VALUES (?, ?, ?, ?)",
        [(rowid, title, heading.rsplit(" > ", 1)[-1], text) for rowid, title, heading, text in rows],
    )


def file_rank(chunk_ids: list[int], paths: dict[int, str], answers: tuple[str, ...]) -> int | None:
    files = list(dict.fromkeys(paths[chunk_id] for chunk_id in chunk_ids))[:DEPTH]
    return next((rank for rank, path in enumerate(files, start=1) if path in answers), None)


async def measure_set(name: str, provider: str, grid: list[Ranking]) -> list[dict[str, Any]]:
    settings = load_settings()
    chosen = load_question_set(name)
    embedder = open_embedder(settings.replace(embedding={"provider": provider}))
    fusion = FUSION_BY_PROVIDER[provider]
    with tempfile.TemporaryDirectory(prefix="bench-answers-") as folder:
        path = Path(folder) / "eval.db"
        store = SqliteStore(path)
        await store.open()
        try:
            started = time.perf_counter()
            await ingest_corpus(store, embedder, settings, chosen.corpus)
            print(f"{name}/{provider}: ingested in {time.perf_counter() - started:.0f} s", flush=True)
            vectors = {
                q.id: await store.search_vector(await embedder.embed_query(q.query), source=None, limit=CANDIDATES)
                for q in chosen.questions
            }
        finally:
            await store.close()
            await embedder.aclose()
        db = sqlite_driver.connect(path)
        build_leaf_table(db)
        paths = dict(
            db.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id").fetchall()
        )
        rows = []
        for ranking in grid:
            ranks = {}
            for q in chosen.questions:
                text = text_ranked(db, ranking, query_terms(q.query))
                ranks[q.id] = file_rank(fused_ids(text, vectors[q.id], fusion), paths, q.answers)
            rows.append(row_of(name, provider, ranking, chosen.questions, ranks))
        db.close()
    return rows


def fused_ids(text: list[RankedId], vector: list[RankedId], fusion: Any) -> list[int]:
    """What SearchService.ranked returns, as chunk ids."""
    if fusion.vectors_fill:
        ids = [item.chunk_id for item in text]
        ids += [item.chunk_id for item in vector if item.chunk_id not in set(ids)]
        return ids[:MAX_LIMIT]
    fused = fuse([text, vector], k=fusion.k, weights=(fusion.text_weight, fusion.vector_weight))
    return [chunk_id for chunk_id, _ in fused[:MAX_LIMIT]]


def row_of(
    name: str, provider: str, ranking: Ranking, questions: list[Question], ranks: dict[str, int | None]
) -> dict[str, Any]:
    def scores(kind: str, half: str | None) -> dict[str, float]:
        chosen = Scores.of([ranks[q.id] for q in questions if q.kind == kind and half in (None, q.half)])
        return {"hit@1": round(chosen.hit1, 4), "hit@3": round(chosen.hit3, 4), "mrr": round(chosen.mrr, 4)}

    return {
        "set": name,
        "embedder": provider,
        "ranking": ranking.name,
        "halves": {half: {kind: scores(kind, half) for kind in KINDS} for half in HALVES},
        "all": {kind: scores(kind, None) for kind in KINDS},
        "misses": sorted(qid for qid, rank in ranks.items() if rank is None or rank > 3),
    }


def showcase(grid: list[Ranking], docs: Path) -> dict[str, int | None]:
    """The rank of configuration.md for the README's query over docs/, per ranking (reported, not chosen on)."""

    async def ingest_docs(path: Path) -> None:
        settings = load_settings()
        embedder = open_embedder(settings.replace(embedding={"provider": "hash"}))
        store = SqliteStore(path)
        await store.open()
        try:
            await ingest_corpus(store, embedder, settings, docs)
        finally:
            await store.close()

    with tempfile.TemporaryDirectory(prefix="bench-answers-") as folder:
        path = Path(folder) / "docs.db"
        asyncio.run(ingest_docs(path))
        db = sqlite_driver.connect(path)
        build_leaf_table(db)
        paths = dict(
            db.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id").fetchall()
        )
        query, answer = SHOWCASE
        result = {
            r.name: file_rank([i.chunk_id for i in text_ranked(db, r, query_terms(query))], paths, (answer,))
            for r in grid
        }
        db.close()
    return result


def choose(rows: list[dict[str, Any]], provider: str) -> str:
    """The best mean tune-half MRR over every set, among rankings with every easy tune question in the top 3."""
    by_ranking: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["embedder"] == provider:
            by_ranking.setdefault(row["ranking"], []).append(row)

    def mrr(items: list[dict[str, Any]]) -> float:
        return sum(item["halves"]["tune"][kind]["mrr"] for item in items for kind in KINDS) / (2 * len(items))

    keep = {
        name: items
        for name, items in by_ranking.items()
        if all(i["halves"]["tune"]["easy"]["hit@3"] == 1.0 for i in items)
    }
    return max(keep, key=lambda name: mrr(keep[name]))


def query_cost(path: Path, rounds: int) -> dict[str, Any]:
    """The store's full-text statement against the same statement without the every-word tier, interleaved.

    Over a database `docserver ingest` wrote; the queries are every question of every set.
    """
    from docserver.store import sqlite_sql

    db = sqlite_driver.connect(path)
    plain = (
        "SELECT rowid, bm25(chunks_fts, 3.0, 5.0, 1.0) AS rank FROM chunks_fts "
        "WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?"
    )
    queries = [
        query_terms(q.query) for name in ("builtin", "python", "postgresql") for q in load_question_set(name).questions
    ]
    spent = {"any word, by bm25": [], "every word first": []}
    for _ in range(rounds):
        for terms in queries:
            started = time.perf_counter()
            db.execute(plain, (sqlite_sql._fts_query(terms), CANDIDATES)).fetchall()
            middle = time.perf_counter()
            sqlite_sql.search_text(db, terms, None, CANDIDATES)
            spent["any word, by bm25"].append(middle - started)
            spent["every word first"].append(time.perf_counter() - middle)
    chunks = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    db.close()
    cost = {
        name: {
            "p50_ms": round(1000 * sorted(v)[len(v) // 2], 3),
            "p95_ms": round(1000 * sorted(v)[int(len(v) * 0.95)], 3),
        }
        for name, v in spent.items()
    }
    return {"chunks": chunks, "queries": len(queries), "rounds": rounds, **cost}


def dumped(runs: dict[str, Any]) -> str:
    """The results file: one line per row, so that a rerun's diff shows the rows that moved."""
    parts = []
    for label, run in runs.items():
        if "rows" not in run:
            parts.append(f"  {json.dumps(label)}: {json.dumps(run)}")
            continue
        head = {key: value for key, value in run.items() if key != "rows"}
        rows = ",\n".join("    " + json.dumps(row, separators=(",", ":")) for row in run["rows"])
        parts.append(f'  {json.dumps(label)}: {json.dumps(head)[:-1]}, "rows": [\n{rows}\n  ]}}')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["builtin", "python", "postgresql"])
    parser.add_argument("--embedders", nargs="+", default=["hash"])
    parser.add_argument("--label", default="hash", help="the run's name in the results file (runs are merged)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/answers.json"))
    parser.add_argument("--only", nargs="+", help="only the rankings whose name contains one of these")
    parser.add_argument("--query-cost", type=Path, help="time the full-text statement on this database, and stop")
    args = parser.parse_args()
    if args.query_cost:
        cost = query_cost(args.query_cost, rounds=5)
        merged = json.loads(args.out.read_text()) if args.out.exists() else {}
        merged["query_cost"] = cost
        args.out.write_text(dumped(merged))
        print(json.dumps(cost, indent=2))
        return
    configure_logging(level="WARNING", log_format="console", service_name="bench", environment="bench")
    grid = [r for r in rankings() if not args.only or any(part in r.name for part in args.only)]
    rows = [
        row
        for provider in args.embedders
        for name in args.sets
        for row in asyncio.run(measure_set(name, provider, grid))
    ]
    chosen = {provider: choose(rows, provider) for provider in args.embedders}
    result = {"rankings": len(grid), "chosen": chosen, "showcase": showcase(grid, Path("docs")), "rows": rows}
    merged = json.loads(args.out.read_text()) if args.out.exists() else {}
    merged[args.label] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumped(merged))
    print(json.dumps(chosen))


if __name__ == "__main__":
    main()
