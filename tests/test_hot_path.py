"""The hot path's cost, counted rather than timed: a guard that cannot flake.

A `search_docs` call is served in process with metrics, INFO logs and tracing
on. What it pays is counted: spans handed to export, log lines written, label
lookups made. An unsampled request must start no span at all, attach no context and
apply the sampling rule once, a sampled one
records its designed spans and starts none through the SDK, every request
writes exactly its two lines (the access line and the tool-call line), and a
warm request resolves no label child.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from prometheus_client import CollectorRegistry

from docserver.app import new_metrics
from docserver.binding import bind_embedder
from docserver.config import Settings
from docserver.embed.base import BatchObserver
from docserver.embed.hashing import HashEmbedder
from docserver.ingest.pipeline import ingest
from docserver.observability import tracing
from docserver.observability.instruments import LabelCache
from docserver.observability.recorded_span import CurrentSpan
from docserver.observability.sampling import SamplingRule, ratio
from docserver.observability.tracing_setup import Tracing
from docserver.runtime import Runtime
from docserver.store.sqlite import SqliteStore
from support.captured_logs import logging_configured
from support.inprocess import current_request, http_client, serve_in_process

CALLS = 20


class _CountingProcessor(SpanProcessor):
    """Counts the spans handed over for export, and the SDK spans started (recorded spans have no on_start)."""

    def __init__(self) -> None:
        self.finished = 0
        self.names: list[str] = []
        self.sdk_started = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.sdk_started += 1

    def on_end(self, span: Any) -> None:
        self.finished += 1
        self.names.append(span.name)


@pytest.fixture
def log_stream() -> Iterator[io.BytesIO]:
    stream = io.BytesIO()
    with logging_configured(stream, level="INFO", environment="test"):
        yield stream


def _tracing_at(rate: float) -> tuple[Tracing, _CountingProcessor]:
    provider = TracerProvider(sampler=ALWAYS_ON)
    counter = _CountingProcessor()
    tracing = Tracing(provider, ratio(rate))
    tracing.add_processor(counter)
    return tracing, counter


@pytest.fixture
def labels_resolved(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Every label child resolved through a LabelCache (a miss), in order."""
    resolved: list[tuple[str, ...]] = []
    original = LabelCache.__call__

    def counting(self: LabelCache[Any], *values: str) -> Any:
        if values not in self._children:
            resolved.append(values)
        return original(self, *values)

    monkeypatch.setattr(LabelCache, "__call__", counting)
    return resolved


async def _serve_searches(settings: Settings, tmp_path: Path, corpus: Path, tracing_: Tracing, calls: int) -> None:
    metrics = new_metrics(settings, CollectorRegistry())
    store = SqliteStore(tmp_path / "hot.db")
    await store.open()
    embedder = HashEmbedder(observer=BatchObserver(metrics.for_embedder()))
    await bind_embedder(store, embedder)
    await ingest(store, embedder, [corpus], "corpus")
    tracing_.install()
    try:
        runtime = Runtime(settings, store, embedder, metrics)
        async with serve_in_process(settings, runtime, metrics, tracing=tracing_) as app, http_client(app) as http:
            headers, body = current_request(
                "tools/call", {"name": "search_docs", "arguments": {"query": "enable TLS"}}, name="search_docs"
            )
            for _ in range(calls):
                response = await http.post("/mcp", content=body, headers=headers)
                assert response.status_code == 200
                assert response.headers["traceparent"]
    finally:
        tracing.install(None)
        await store.close()


@pytest.fixture
def tracing_work(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Sampling decisions taken, spans made current, and OpenTelemetry contexts attached by any docserver module."""
    counts = {"decisions": 0, "attached": 0, "current": 0}
    decide, attach = SamplingRule.decide, otel_context.attach
    enter_span, enter_child = tracing.enter_span, CurrentSpan.__enter__

    def counting_enter_span(span: Any) -> Any:
        counts["current"] += 1
        return enter_span(span)

    def counting_enter_child(self: CurrentSpan) -> Any:
        counts["current"] += 1
        return enter_child(self)

    def counting_decide(self: SamplingRule, *args: Any) -> bool:
        counts["decisions"] += 1
        return decide(self, *args)

    def counting_attach(context: Any) -> Any:
        counts["attached"] += 1
        return attach(context)

    monkeypatch.setattr(SamplingRule, "decide", counting_decide)
    monkeypatch.setattr(tracing, "enter_span", counting_enter_span)
    monkeypatch.setattr(CurrentSpan, "__enter__", counting_enter_child)
    for name, module in list(sys.modules.items()):
        if name.startswith("docserver.") and getattr(module, "attach", None) is attach:
            monkeypatch.setattr(module, "attach", counting_attach)
    return counts


async def test_an_unsampled_request_starts_no_span(
    settings: Settings, tmp_path: Path, corpus: Path, tracing_work: dict[str, int]
) -> None:
    tracing_, counter = _tracing_at(0.0)

    await _serve_searches(settings, tmp_path, corpus, tracing_, CALLS)

    # Nothing is built for a trace nobody keeps: no span (recorded or the SDK's), none made
    # current, no context attached, and the sampling rule applied once per request, by the middleware.
    assert counter.finished == 0
    assert counter.sdk_started == 0
    assert tracing_work["current"] == 0
    assert tracing_work["attached"] == 0
    assert tracing_work["decisions"] == CALLS


async def test_a_sampled_request_starts_its_designed_spans(settings: Settings, tmp_path: Path, corpus: Path) -> None:
    tracing_, counter = _tracing_at(1.0)

    await _serve_searches(settings, tmp_path, corpus, tracing_, 1)
    first = counter.finished
    await _serve_searches(settings, tmp_path, corpus, tracing_, 1 + CALLS)
    # The HTTP server span and the MCP span; a cache hit reads no store and embeds nothing
    # (but the corpus version is re-read once a second, which may add a store span).
    assert 2 * CALLS <= counter.finished - 2 * first <= 2 * CALLS + 1


async def test_a_searching_request_records_its_spans_without_the_sdk(
    settings: Settings, tmp_path: Path, corpus: Path, tracing_work: dict[str, int]
) -> None:
    settings = settings.model_copy(update={"cache": settings.cache.model_copy(update={"size": 0})})
    tracing_, counter = _tracing_at(1.0)

    await _serve_searches(settings, tmp_path, corpus, tracing_, 1)

    # Every call searches (cache off): the server spans and one span per store query and
    # embedding, each a recorded span; not one goes through the SDK's span machinery. A
    # server's first call also reads the store's state once (corpus version, embedder, sources).
    state = ("corpus_version meta", "embedder_info meta", "list_sources sources")
    assert sorted(name for name in counter.names if name not in state) == sorted(
        [
            "POST /mcp",
            "tools/call search_docs",
            "search_text chunks_fts",
            "embeddings hash-ngram-v2-512",
            "search_vector chunk_vectors",
            "get_chunks chunks",
        ]
    )
    assert counter.sdk_started == 0
    # Each is the current span while its work runs, in docserver's own context variable.
    assert tracing_work["current"] == counter.finished
    assert tracing_work["attached"] == 0


async def test_every_request_writes_exactly_two_log_lines(
    settings: Settings, tmp_path: Path, corpus: Path, log_stream: io.BytesIO
) -> None:
    tracing_, _ = _tracing_at(0.1)
    await _serve_searches(settings, tmp_path, corpus, tracing_, 1)
    before = _events(log_stream)

    await _serve_searches(settings, tmp_path, corpus, tracing_, 1 + CALLS)

    after = _events(log_stream)[len(before) :]
    assert after.count("http_request") == 1 + CALLS
    assert after.count("tool_call") == 1 + CALLS
    per_request = [event for event in after if event in ("http_request", "tool_call")]
    assert len(per_request) == 2 * (1 + CALLS)


async def test_a_warm_request_resolves_no_label(
    settings: Settings, tmp_path: Path, corpus: Path, labels_resolved: list[tuple[str, ...]]
) -> None:
    tracing_, _ = _tracing_at(0.1)
    metrics_calls: list[int] = []
    for calls in (2, 2 + CALLS):
        labels_resolved.clear()
        await _serve_searches(settings, tmp_path, corpus, tracing_, calls)
        metrics_calls.append(len(labels_resolved))

    assert metrics_calls[0] == metrics_calls[1]  # twenty more calls resolved nothing more


def _events(stream: io.BytesIO) -> list[str]:
    import json

    from docserver.observability.logging import active_log_writer

    writer = active_log_writer()
    assert writer is not None and writer.flush()
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines() if line.strip()]


def test_the_sdk_span_middleware_is_replaced_by_ours(settings: Settings) -> None:
    from mcp.server._otel import OpenTelemetryMiddleware

    from docserver.mcp.observe import McpObserver
    from docserver.mcp.server import build_mcp
    from docserver.search import SearchService

    class _Unused:
        provider = "hash"
        model = "unused"

    mcp = build_mcp(SearchService(None, _Unused()), None)  # type: ignore[arg-type]

    assert isinstance(mcp.middleware[0], McpObserver)
    assert not any(isinstance(item, OpenTelemetryMiddleware) for item in mcp.middleware)
