"""Ingest speed of real documentation: from disk, crawled over loopback, and refreshed by conditional GETs.

    PYTHONPATH=src python bench/crawl.py [--out bench/results/crawl.json]

Doc sets: Python's HTML docs (Debian python3.11-doc) and PostgreSQL's
(postgresql-doc-15). For each, with the default (hash) embedder into a fresh
SQLite database:
- disk: `docserver ingest FOLDER` (the default excludes leave out `_sources/` etc.);
- crawl: the folder served by `python -m http.server` in its own process,
  crawled from its `index.html` (DOCSERVER_CRAWL_RATE=10000: loopback, no
  politeness wait; concurrency 4, the default);
- refresh: the crawled source refreshed at once: every page answers 304.
Figures are wall-clock pages/s and chunks/s plus the benchmark process's CPU
seconds (the HTTP server's are not counted), on a shared 2-core machine:
compare ratios within one run rather than absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from docserver.binding import bind_embedder
from docserver.embed.hashing import HashEmbedder
from docserver.sources.filters import FileFilter
from docserver.sources.git import GitRepositories
from docserver.sources.origin import parse_origin
from docserver.sources.request import SourceRequest
from docserver.sources.service import Outcome, Sources
from docserver.sources.web import CrawlLimits, WebCrawler
from docserver.store.sqlite import SqliteStore

DOC_SETS = {
    "python3.11-doc": Path("/usr/share/doc/python3.11/html"),
    "postgresql-doc-15": Path("/usr/share/doc/postgresql-doc-15/html"),
}
LIMITS = CrawlLimits(rate=10_000.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}/index.html"
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def timed(run: Callable[[], Awaitable[Outcome]]) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    outcome = await run()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    assert outcome.summary is not None
    summary = outcome.summary
    return {
        "pages": summary.files,
        "changed": summary.changed,
        "chunks": summary.chunks,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "pages_per_s": round(summary.files / seconds, 1),
        "chunks_per_s": round(summary.chunks / seconds, 1),
    }


async def measure(name: str, folder: Path, work: Path) -> dict[str, Any]:
    store = SqliteStore(work / f"{name}.db")
    await store.open()
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    sources = Sources(store, embedder, GitRepositories(work / "git"), WebCrawler(work / "web", LIMITS), max_chars=1500)
    server, start = serve(folder)
    try:
        disk = SourceRequest("disk", parse_origin(str(folder)), FileFilter(), paths=(str(folder),))
        web = SourceRequest("web", parse_origin(start), FileFilter())
        return {
            "disk": await timed(lambda: sources.ingest(disk)),
            "crawl": await timed(lambda: sources.ingest(web)),
            "refresh_304": await timed(lambda: sources.ingest(web)),
        }
    finally:
        server.terminate()
        server.wait()
        await store.close()


async def main_async() -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        for name, folder in DOC_SETS.items():
            results[name] = await measure(name, folder, Path(work))
            print(name, json.dumps(results[name]), flush=True)
    results["settings"] = {"crawl_rate": LIMITS.rate, "crawl_concurrency": LIMITS.concurrency, "embedder": "hash"}
    results["machine"] = "shared 2-core VM, other jobs running: compare ratios within this run"
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/crawl.json"))
    out = parser.parse_args().out
    results = asyncio.run(main_async())
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
