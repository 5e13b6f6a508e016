"""Per-operation costs of the observability layer, in process, CPU time (best of several rounds).

    python bench/micro.py [--out bench/results/micro.json]

- metrics per tool call: the label children one search_docs call touches (15 operations);
- one JSON log line through the full pipeline, writer thread included;
- one HTTP server span, unsampled and sampled, and one child span when sampled;
- one /metrics scrape with the full label set (text and OpenMetrics).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from docserver.mcp.tools import TOOL_NAMES
from docserver.observability import tracing
from docserver.observability.context import bind_correlation_id
from docserver.observability.http_trace import ServerSpans
from docserver.observability.logging import configure_logging, get_logger
from docserver.observability.metrics import MCP_METHODS, Metrics
from docserver.observability.sampling import SamplingRule, ratio
from docserver.observability.tracing_setup import Tracing, TracingConfig, configure_tracing


def best_us(fn: Callable[[], None], n: int, rounds: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


def metrics_per_call(metrics: Metrics) -> Callable[[], None]:
    http_count = metrics.http_requests.labels("POST", "/mcp", "200")
    http_time = metrics.http_duration.labels("POST", "/mcp")
    tool_count = metrics.tool_calls.labels("search_docs", "ok")
    tool_time = metrics.tool_duration.labels("search_docs")
    operation = metrics.mcp_operation_duration.labels("tools/call", "search_docs", "")
    cache = [metrics.cache_requests.labels(name, "miss") for name in ("search", "embedding")]
    queries = [
        metrics.query_duration.labels(op, "sqlite")
        for op in ("corpus_version", "search_text", "search_vector", "get_chunks")
    ]
    embed_time = metrics.embedding_duration.labels("hash", "hash-ngram-v2-512")
    embed_size = metrics.embedding_batch_size.labels("hash")
    results = metrics.search_results
    exemplar = metrics.exemplar
    in_flight = metrics.active_connections.labels("http")

    def call() -> None:
        in_flight.inc()
        for counter in cache:
            counter.inc()
        for histogram in queries:
            histogram.observe(0.0004, exemplar())
        embed_time.observe(0.0002, exemplar())
        embed_size.observe(1)
        results.observe(5)
        operation.observe(0.002, exemplar())
        tool_count.inc()
        tool_time.observe(0.002, exemplar())
        in_flight.dec()
        http_count.inc()
        http_time.observe(0.003, exemplar())

    return call


def full_label_set(metrics: Metrics) -> None:
    """Every series a busy replica can have: the closed sets, all of them."""
    for method in ("GET", "POST", "DELETE", "other"):
        for route in ("/mcp", "/healthz", "/readyz", "/metrics", "unmatched"):
            for code in ("200", "202", "400", "401", "403", "404", "405", "406", "413", "421", "429", "500", "503"):
                metrics.http_requests.labels(method, route, code).inc()
            metrics.http_duration.labels(method, route).observe(0.01)
    for tool in (*TOOL_NAMES, "unknown"):
        for error in ("", "tool_error", "-32602", "-32601"):
            metrics.mcp_operation_duration.labels("tools/call", tool, error).observe(0.01)
        metrics.tool_calls.labels(tool, "ok").inc()
        metrics.tool_duration.labels(tool).observe(0.01)
    for method in MCP_METHODS:
        metrics.mcp_operation_duration.labels(method, "", "").observe(0.01)
    for operation in (
        "ping",
        "embedder_info",
        "bind_embedder",
        "corpus_version",
        "list_sources",
        "document_hashes",
        "begin",
        "put_document",
        "delete_documents",
        "commit",
        "rollback",
        "search_text",
        "search_vector",
        "get_chunks",
        "get_document",
        "migrate",
    ):
        metrics.query_duration.labels(operation, "sqlite").observe(0.001)
        metrics.query_errors.labels(operation, "sqlite").inc()
    for reason in ("timeout", "rate_limited", "http_error", "invalid_response", "auth", "not_found", "connection"):
        metrics.embedding_errors.labels("openai", reason).inc()
    metrics.embedding_duration.labels("openai", "text-embedding-3-small").observe(0.1)
    metrics.embedding_batch_size.labels("openai").observe(64)
    for cache in ("embedding", "search"):
        for result in ("hit", "miss"):
            metrics.cache_requests.labels(cache, result).inc()
    metrics.set_build_info(backend="sqlite", embedder="openai")


class _Discard(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def span_costs(n: int) -> dict[str, float]:
    """One request's tracing as the middleware starts it: decision, server span, one child."""
    setup = configure_tracing(TracingConfig("bench", "bench", "none", "http/protobuf", ratio(1.0)), None)
    processor = BatchSpanProcessor(_Discard())
    setup.add_processor(processor)

    def request(sampling: SamplingRule) -> Callable[[], None]:
        traced = Tracing(setup.provider, sampling)
        traced.recorder.add_processor(processor)
        spans = ServerSpans(traced)

        def run() -> None:
            started = spans.start([], [], [], "POST /mcp", lambda: {"http.route": "/mcp"})
            with tracing.span("search_text chunks_fts"):
                pass
            started.end(200)

        return run

    return {
        "unsampled request (trace context record + one child check)": best_us(request(ratio(0.0)), n),
        "sampled request (server span + one child span)": best_us(request(ratio(1.0)), n // 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/micro.json"))
    args = parser.parse_args()

    metrics = Metrics(CollectorRegistry(), tools=TOOL_NAMES, process_collectors=False)
    results: dict[str, float] = {"metrics per tool call (15 operations)": best_us(metrics_per_call(metrics), args.n)}

    with open(os.devnull, "w") as sink:
        writer = configure_logging(level="INFO", stream=sink, secrets=["sk-bench-secret-123"])
        log = get_logger("docserver.http")
        bind_correlation_id("3f2a1c9e-1111-4222-8333-444455556666")

        def line() -> None:
            log.info("http_request", method="POST", route="/mcp", path="/mcp", status_code=200, duration_ms=1.234)

        results["one JSON log line (pipeline + writer thread)"] = best_us(line, args.n)
        writer.close()

    results.update(span_costs(args.n))

    full = Metrics(CollectorRegistry(), tools=TOOL_NAMES)
    full_label_set(full)
    text = generate_latest(full.registry)
    results["/metrics scrape, full label set, text (ms)"] = best_us(lambda: generate_latest(full.registry), 50) / 1000
    results["/metrics scrape, full label set, OpenMetrics (ms)"] = (
        best_us(lambda: generate_openmetrics(full.registry), 50) / 1000
    )
    results["/metrics lines at the full label set"] = float(text.count(b"\n"))
    results["/metrics bytes at the full label set"] = float(len(text))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value:10.2f}")


if __name__ == "__main__":
    main()
