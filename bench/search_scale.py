"""Search latency against corpus size (SQLite, hash embedder), and ingest throughput.

    python bench/search_scale.py [--sizes 1000 10000 100000]

For each size: ingest a synthetic corpus through the CLI (chunks per
second), then one real server per cache setting: p50/p95 of search_docs at
one connection, and throughput at four.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from corpus import write_corpus
from harness import docserver_env, drive, fresh_copy, run_cli, serve

QUIET = {"LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}


def ingest(folder: Path, chunks: int) -> tuple[Path, list[str], dict[str, float]]:
    docs = folder / f"corpus-{chunks}"
    queries = write_corpus(docs, chunks)
    database = folder / f"scale-{chunks}.db"
    started = time.perf_counter()
    summary = run_cli("ingest", str(docs), "--source", "bench", env=docserver_env(database, QUIET))
    seconds = time.perf_counter() - started
    stored = int(re.search(r"(\d+) chunks embedded", summary).group(1))  # type: ignore[union-attr]
    return database, queries, {"chunks": stored, "ingest_seconds": seconds, "ingest_chunks_per_s": stored / seconds}


def search_latency(database: Path, queries: list[str], folder: Path, cache_size: str, calls: int) -> dict[str, float]:
    env = docserver_env(fresh_copy(database, folder, "scale-run"), {**QUIET, "DOCSERVER_CACHE_SIZE": cache_size})
    with serve(env, folder / "serve.log") as server:
        # With the cache on, the same queries repeat, so the measured calls are hits.
        asyncio.run(drive(server.url, queries[:50], calls=100, concurrency=1, seed=1, max_seconds=120))
        pool = queries[:50] if cache_size != "0" else queries
        one = asyncio.run(drive(server.url, pool, calls=calls, concurrency=1, seed=2, max_seconds=300))
        four = asyncio.run(drive(server.url, pool, calls=calls, concurrency=4, seed=3, max_seconds=300))
        return {
            "p50_ms": one.quantile(0.5) * 1000,
            "p95_ms": one.quantile(0.95) * 1000,
            "throughput": four.calls / four.seconds,
            "rss_mb": server.rss_mb(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("bench/results/search_scale.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="docserver-scale-"))
    rows = []
    for size in args.sizes:
        database, queries, ingested = ingest(work, size)
        for cache in ("off", "on"):
            latency = search_latency(database, queries, work, "0" if cache == "off" else "4096", args.calls)
            row = {"backend": "sqlite", "size": size, "cache": cache, **ingested, **latency}
            rows.append(row)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
