"""Observability overhead in instructions: steadier than CPU time on a shared machine.

    python bench/instructions.py [--calls 100 400] [--configs off ...] [--searches]
                                 [--chunks 10000] [--schedule-delay 200]
                                 [--out bench/results/instructions.json]

Each configuration runs an in-process search_docs loop (the real app through
ASGI, cache on, the test corpus) under `valgrind --tool=callgrind`, twice:
with the small and the large call count. Callgrind counts every thread's
instructions (log writer, SQLite threads, span exporter included); the
difference of the two totals divided by the difference of the call counts is
the cost of one call, start-up excluded. Trace export goes over OTLP/HTTP to
a sink in another process, so encoding and sending count, receiving does not.
The batch processor exports every 200 ms by default (`--schedule-delay`, ms):
under valgrind's slowdown that is an HTTP export every call or two, so the
count charges a sampled call most of one; at 5000 (the SDK's default) one
export carries many calls' spans, as on a busy server.

The docserver package is compiled to bytecode first: a run that compiled a
module it imports (one changed since the last run) would count the compiling.

The calls are result-cache hits after the first few, the cheapest call there
is; `--searches` turns the cache off, so every call searches the store (and a
sampled one has the store's spans under its server spans). `--chunks N`
searches the generated corpus of bench/overhead.py instead (about N chunks,
its queries in turn), ingested once outside valgrind and copied for each run:
with `--searches`, the default 10,000-chunk search of the overhead table.

Every run has OPENBLAS_NUM_THREADS=1 and PYTHONHASHSEED=0, as in
bench/server_instructions.py (which says why): otherwise OpenBLAS's spinning
worker and per-process hash seeds move a call's count by tens of k.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    STEADY_COUNTS,
    build_database,
    callgrind_total,
    compile_docserver,
    fresh_copy,
    per_call,
    write_instruction_table,
)

CONFIGS = {
    "off": {"DOCSERVER_TELEMETRY": "off", "LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"},
    "metrics+logs": {"OTEL_SDK_DISABLED": "true"},
    "+tracing 0 (unsampled)": {"OTEL_TRACE_SAMPLE_RATE": "0"},
    "+tracing 0.1": {"OTEL_TRACE_SAMPLE_RATE": "0.1"},
    "+tracing 1.0": {"OTEL_TRACE_SAMPLE_RATE": "1.0"},
    # Recorded, not exported: what a sampled request costs before its spans leave it.
    "+tracing 1.0, exporter none": {"OTEL_TRACE_SAMPLE_RATE": "1.0", "OTEL_TRACES_EXPORTER": "none"},
}
DEFAULT_CONFIGS = ["off", "metrics+logs", "+tracing 0 (unsampled)", "+tracing 0.1", "+tracing 1.0"]

LOOP = r"""
import asyncio, json, os, sys, tempfile
from pathlib import Path
import httpx
from docserver.app import create_app, new_metrics
from docserver.config import load_settings
from docserver.ingest.pipeline import ingest
from docserver.observability.logging import configure_logging
from docserver.runtime import open_runtime
from docserver.serve import start_tracing

calls = int(sys.argv[1])
# argv[2]: a folder to ingest; or, with argv[3], a ready database and argv[2] a JSON list of queries
prepared = len(sys.argv) > 3
database = sys.argv[3] if prepared else f"{tempfile.mkdtemp()}/bench.db"
settings = load_settings(store={"url": f"sqlite:///{database}"})
configure_logging(level=settings.telemetry.log_level if settings.telemetry.enabled else "WARNING",
                  stream=open(os.devnull, "w"), environment="bench")
metrics = new_metrics(settings)
request_metrics = metrics if settings.telemetry.enabled else None
tracing = start_tracing(settings, request_metrics)
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream",
           "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "search_docs"}
QUERIES = (json.loads(Path(sys.argv[2]).read_text()) if prepared else
           ["enable TLS certificate", "rotate access tokens", "build from source", "journal flush interval"])

async def main():
    async with open_runtime(settings, request_metrics) as runtime:
        if not prepared:
            await ingest(runtime.store, runtime.embedder, [Path(sys.argv[2])], "corpus")
        app = create_app(settings, runtime, metrics, tracing)
        starlette = getattr(app, "app", app)
        async with starlette.router.lifespan_context(starlette):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                for i in range(20 + calls):
                    body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                            "params": {"name": "search_docs", "_meta": META,
                                       "arguments": {"query": QUERIES[i % len(QUERIES)]}}}
                    response = await client.post("/mcp", json=body, headers=HEADERS)
                    assert response.status_code == 200, response.text
    if tracing is not None:
        tracing.shutdown(5.0)

asyncio.run(main())
"""

SINK = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from harness import trace_sink
with trace_sink() as sink:
    print(sink.url, flush=True)
    sys.stdin.read()
"""


def instructions(env: dict[str, str], calls: int, corpus: list[str], work: Path) -> int:
    return callgrind_total([sys.executable, "-c", LOOP, str(calls), *corpus], work, env)


def prepared_corpus(work: Path, chunks: int) -> tuple[Path, Path]:
    """The generated corpus ingested once (outside valgrind), and its queries as a JSON file."""
    template, queries = build_database(work, chunks)
    listed = work / "queries.json"
    listed.write_text(json.dumps(queries))
    return template, listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs=2, default=[100, 400])
    parser.add_argument("--out", type=Path, default=Path("bench/results/instructions.json"))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=DEFAULT_CONFIGS)
    parser.add_argument("--searches", action="store_true", help="result cache off: every call searches")
    parser.add_argument("--schedule-delay", type=int, default=200, help="OTEL_BSP_SCHEDULE_DELAY, ms")
    parser.add_argument("--chunks", type=int, help="search the generated corpus of about this many chunks")
    args = parser.parse_args()
    compile_docserver()
    work = Path(tempfile.mkdtemp(prefix="docserver-callgrind-"))
    tests_corpus = Path(__file__).resolve().parent.parent / "tests" / "corpus"
    prepared = prepared_corpus(work, args.chunks) if args.chunks else None

    def corpus() -> list[str]:
        if prepared is None:
            return [str(tests_corpus)]
        template, queries = prepared
        return [str(queries), str(fresh_copy(template, work, "run"))]

    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(Path(__file__).resolve().parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None
    sink_url = sink.stdout.readline().strip()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOCSERVER_", "LOG_", "OTEL_"))}
    rows = []
    try:
        for name in args.configs:
            extra = CONFIGS[name]
            env = {
                **base,
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
                "OTEL_BSP_SCHEDULE_DELAY": str(args.schedule_delay),
                **STEADY_COUNTS,
                **extra,
            }
            if args.searches:
                env["DOCSERVER_CACHE_SIZE"] = "0"
            totals = (
                instructions(env, args.calls[0], corpus(), work),
                instructions(env, args.calls[1], corpus(), work),
            )
            cost = per_call(totals, tuple(args.calls))
            rows.append({"configuration": name, "instructions_per_call": cost})
            print(f"{name:>14}: {cost / 1e6:.3f} M instructions per call", flush=True)
    finally:
        sink.stdin.close()  # type: ignore[union-attr]
        sink.wait(timeout=10)
    write_instruction_table(rows, args.out, "instructions")


if __name__ == "__main__":
    main()
