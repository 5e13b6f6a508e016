"""The local embedding model at 10,000 chunks: search latency, throughput, memory and start-up.

    python bench/local_model.py [--chunks 10000] [--calls 300] [--threads 1 2] [--backends torch]

Ingests one synthetic corpus twice (the built-in hash embedder and the local
all-MiniLM-L6-v2 model), then serves each with the caches off, so every call
embeds its query and searches: p50/p95 of search_docs at one connection,
throughput and p95 at four, server CPU per call, resident memory and the time
from launch to a healthy /healthz. The local server runs once per torch
thread count and backend (DOCSERVER_LOCAL_BACKEND) given; the ONNX export is
made before the first timed start, so start-up is that of a start that finds it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from corpus import write_corpus
from harness import docserver_env, fresh_copy, measure, run_cli, serve

QUIET = {"LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true", "DOCSERVER_CACHE_SIZE": "0"}


def ingest(docs: Path, database: Path, embedder: str, backend: str) -> dict[str, float]:
    env = docserver_env(
        database,
        {
            **QUIET,
            "DOCSERVER_EMBEDDER": embedder,
            "DOCSERVER_INGEST_TORCH_THREADS": "2",
            "DOCSERVER_LOCAL_BACKEND": backend,
        },
    )
    started = time.perf_counter()
    summary = run_cli("ingest", str(docs), "--source", "bench", env=env)
    seconds = time.perf_counter() - started
    stored = int(re.search(r"(\d+) chunks embedded", summary).group(1))  # type: ignore[union-attr]
    return {"chunks": stored, "ingest_seconds": seconds, "ingest_chunks_per_s": stored / seconds}


def serve_and_measure(
    database: Path, folder: Path, queries: list[str], embedder: str, threads: int, calls: int, backend: str
) -> dict[str, float]:
    env = docserver_env(
        fresh_copy(database, folder, f"run-{embedder}-{threads}-{backend}"),
        {
            **QUIET,
            "DOCSERVER_EMBEDDER": embedder,
            "DOCSERVER_TORCH_THREADS": str(threads),
            "DOCSERVER_LOCAL_BACKEND": backend,
        },
    )
    launched = time.perf_counter()
    with serve(env, folder / f"serve-{embedder}.log") as server:
        startup = time.perf_counter() - launched
        idle_rss = server.rss_mb()
        one = measure(server, queries, calls=calls, concurrency=1, seed=11)
        four = measure(server, queries, calls=calls, concurrency=4, seed=12)
    return {
        "startup_s": startup,
        "idle_rss_mb": idle_rss,
        "p50_ms": one["p50_ms"],
        "p95_ms": one["p95_ms"],
        "cpu_ms_per_call": one["cpu_us_per_call"] / 1000,
        "c4_throughput": four["throughput"],
        "c4_p95_ms": four["p95_ms"],
        "rss_mb": four["rss_mb"],
        "peak_rss_mb": four["peak_rss_mb"],
        "errors": one["errors"] + four["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "onnx"])
    parser.add_argument("--out", type=Path, default=Path("bench/results/local_model.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="docserver-local-"))
    docs = work / "corpus"
    queries = write_corpus(docs, args.chunks)
    rows = []
    if "onnx" in args.backends:
        from docserver.embed.local import LocalEmbedder

        LocalEmbedder(backend="onnx")  # the export, made once into the user cache folder, untimed
    runs = [("hash", [1], "torch")] + [("local", args.threads, backend) for backend in args.backends]
    for embedder, thread_counts, backend in runs:
        database = work / f"{embedder}-{backend}.db"
        ingested = ingest(docs, database, embedder, backend)
        for threads in thread_counts:
            row = {
                "embedder": embedder,
                "backend": backend if embedder == "local" else None,
                "torch_threads": threads if embedder == "local" else None,
                **ingested,
                **serve_and_measure(database, work, queries, embedder, threads, args.calls, backend),
            }
            rows.append(row)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
