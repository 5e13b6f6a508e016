"""Search latency against corpus size (SQLite, hash embedder), ingest throughput, memory and size.

    python bench/search_scale.py [--sizes 1000 10000 100000]
    python bench/search_scale.py --real-docs python.db --sizes 100000 1000000 [--vector-search]

For each size: ingest a corpus through the CLI (chunks per second), let the
store finish its vector index, then one real server per cache setting:
p50/p95 of search_docs at one connection, throughput at four, and the
server's RSS.

Corpus: by default the synthetic Markdown of bench/corpus.py. With
`--real-docs DATABASE` (one `docserver ingest` wrote, e.g. from Python's
HTML docs), its chunks are exported as Markdown once and ingested again and
again, a source per copy (`docs-001`, `docs-002`...), until each size is
reached; sizes grow one database, so the ingest time of the largest is the
sum. Queries: the docs' headings.

`--vector-search` starts the server with `hash` fused with vectors as `local`
and `openai` are (bench/both_retrievers/), so every search also embeds its
query (about 0.1 ms with `hash`) and scans the vector index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from corpus import export_markdown, heading_queries, write_corpus
from harness import docserver_env, drive, finish_vector_index, fresh_copy, run_cli, serve

QUIET = {"LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}
BOTH_RETRIEVERS = Path(__file__).parent / "both_retrievers"


def ingest(folder: Path, chunks: int) -> tuple[Path, list[str], dict[str, float]]:
    docs = folder / f"corpus-{chunks}"
    queries = write_corpus(docs, chunks)
    database = folder / f"scale-{chunks}.db"
    started = time.perf_counter()
    summary = run_cli("ingest", str(docs), "--source", "bench", env=docserver_env(database, QUIET))
    seconds = time.perf_counter() - started
    stored = int(re.search(r"(\d+) chunks embedded", summary).group(1))  # type: ignore[union-attr]
    return database, queries, {"chunks": stored, "ingest_seconds": seconds, "ingest_chunks_per_s": stored / seconds}


class Replicas:
    """One growing database: copies of real docs, a source each, ingested until a size is reached."""

    def __init__(self, folder: Path, real_docs: Path) -> None:
        self.docs = folder / "real-docs"
        self.queries = export_markdown(real_docs, self.docs)
        self.database = folder / "replicas.db"
        self.copies = 0
        self.chunks = 0
        self.seconds = 0.0

    def grow(self, chunks: int) -> dict[str, float]:
        while self.chunks < chunks:
            self.copies += 1
            started = time.perf_counter()
            summary = run_cli(
                "ingest", str(self.docs), "--source", f"docs-{self.copies:03d}", env=docserver_env(self.database, QUIET)
            )
            self.seconds += time.perf_counter() - started
            self.chunks += int(re.search(r"(\d+) chunks embedded", summary).group(1))  # type: ignore[union-attr]
        return {
            "chunks": self.chunks,
            "copies": self.copies,
            "ingest_seconds": self.seconds,
            "ingest_chunks_per_s": self.chunks / self.seconds,
        }


def finish_index(database: Path) -> float:
    """Let the store bring its vector index up to date (as `serve` would in the background); seconds taken."""
    started = time.perf_counter()
    asyncio.run(finish_vector_index(database))
    return time.perf_counter() - started


def database_mb(database: Path) -> float:
    return (
        sum(
            Path(f"{database}{suffix}").stat().st_size
            for suffix in ("", "-wal")
            if Path(f"{database}{suffix}").exists()
        )
        / 2**20
    )


def search_latency(
    database: Path, queries: list[str], folder: Path, cache_size: str, calls: int, extra: dict[str, str]
) -> dict[str, float]:
    # Searches do not write: a database of gigabytes is served as it is, not copied.
    served = database if database.stat().st_size > 2**30 else fresh_copy(database, folder, "scale-run")
    env = docserver_env(served, {**QUIET, **extra, "DOCSERVER_CACHE_SIZE": cache_size})
    with serve(env, folder / "serve.log") as server:
        # With the cache on, the same queries repeat, so the measured calls are hits.
        asyncio.run(drive(server.url, queries[:50], calls=100, concurrency=1, seed=1, max_seconds=120))
        pool = queries[:50] if cache_size != "0" else queries
        one = asyncio.run(drive(server.url, pool, calls=calls, concurrency=1, seed=2, max_seconds=300))
        four = asyncio.run(drive(server.url, pool, calls=calls, concurrency=4, seed=3, max_seconds=300))
        return {
            "p50_ms": one.quantile(0.5) * 1000,
            "p95_ms": one.quantile(0.95) * 1000,
            "p99_ms": one.quantile(0.99) * 1000,
            "errors": one.errors + four.errors,
            "throughput": four.calls / four.seconds,
            "rss_mb": server.rss_mb(),
            "peak_rss_mb": server.peak_rss_mb(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--real-docs", type=Path, metavar="DATABASE")
    parser.add_argument("--vector-search", action="store_true", help="fuse vectors into every search (see above)")
    parser.add_argument("--cache", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--append", action="store_true", help="add the rows to OUT's")
    parser.add_argument("--database", type=Path, help="measure this database (from bench/replicate.py) as it is")
    parser.add_argument("--corpus", default="real-docs", help="names the --database's corpus in the results")
    parser.add_argument("--note", default="", help="kept in each row, e.g. the code measured")
    parser.add_argument("--keep", type=Path, help="folder to build in and keep (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/search_scale.json"))
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="docserver-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    extra: dict[str, str] = {}
    if args.vector_search:
        extra["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BOTH_RETRIEVERS), os.environ.get("PYTHONPATH")]))
    replicas = Replicas(work, args.real_docs) if args.real_docs else None
    previous = json.loads(args.out.read_text()) if args.append and args.out.exists() else []
    rows = []
    for size in args.sizes:
        if args.database is not None:
            database, queries = args.database, heading_queries(args.database)
            chunks = int(sqlite3.connect(database).execute("SELECT count(*) FROM chunks").fetchone()[0])
            ingested = {"chunks": chunks, "built_by": "bench/replicate.py" if args.corpus == "real-docs" else "ingest"}
        elif replicas is not None:
            ingested = replicas.grow(size)
            database, queries = replicas.database, replicas.queries
        else:
            database, queries, ingested = ingest(work, size)
        index_seconds = finish_index(database)
        measured = {**ingested, "index_seconds": index_seconds, "database_mb": database_mb(database)}
        for cache in args.cache:
            latency = search_latency(database, queries, work, "0" if cache == "off" else "4096", args.calls, extra)
            corpus = args.corpus if args.database else "real-docs" if replicas else "synthetic"
            search = "vector" if args.vector_search else "default"
            row = {"backend": "sqlite", "corpus": corpus, "search": search, "size": size, "cache": cache}
            row |= {"note": args.note} if args.note else {}
            rows.append(row | measured | latency)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(previous + rows, indent=2))


if __name__ == "__main__":
    main()
