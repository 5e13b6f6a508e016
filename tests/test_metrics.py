"""Prometheus metrics in process: the contract's names, exact values for known traffic, scrapes and protection.

The app runs in process (tests/support/inprocess.py) on a fresh registry per test;
values are read with `registry.get_sample_value`. The known-traffic values
are worked out by hand from what each call does (comments say how), so a
counter that counts the wrong thing fails here, not in a dashboard.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.applications import Starlette

from conftest import CORPUS
from docserver import __version__
from docserver.app import create_app
from docserver.binding import bind_embedder
from docserver.config import Settings, load_settings
from docserver.embed.base import BatchObserver
from docserver.embed.hashing import HashEmbedder
from docserver.embed.openai import OpenAIEmbedder
from docserver.errors import EmbeddingError, StoreError
from docserver.ingest.pipeline import ingest
from docserver.observability.metrics import EMBEDDING_ERROR_REASONS, Metrics
from docserver.runtime import Runtime
from docserver.store import sqlite_driver
from docserver.store.sqlite import SqliteStore
from support.docserver_process import free_port
from support.embedding_server_fixture import start_embedding_server
from support.inprocess import http_client, mcp_client, new_metrics, serve_in_process

DOCS = Path(__file__).parents[1] / "docs" / "metrics.md"
HASH_MODEL = HashEmbedder().model
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
METRICS_TOKEN = "s3cret-token"
_SETTING_PREFIXES = ("DOCSERVER_", "LOG_", "OTEL_", "METRICS_TOKEN", "ENABLE_PROFILING", "PROFILING_")

LATENCY_LE = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.0", "5.0", "10.0", "+Inf"]
SEMCONV_LE = [
    *("0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1.0", "2.0", "5.0", "10.0"),
    *("30.0", "60.0", "120.0", "300.0", "+Inf"),
]

# The metric contract of docs/metrics.md: exposed name -> (type, label names). Dashboards and rules depend on it.
CONTRACT: dict[str, tuple[str, set[str]]] = {
    "docserver_http_requests_total": ("counter", {"method", "route", "status_code"}),
    "docserver_http_request_duration_seconds": ("histogram", {"method", "route"}),
    "docserver_active_connections": ("gauge", {"transport"}),
    "docserver_mcp_sessions_active": ("gauge", set()),
    "docserver_tool_calls_total": ("counter", {"tool", "status"}),
    "docserver_tool_call_duration_seconds": ("histogram", {"tool"}),
    "docserver_query_duration_seconds": ("histogram", {"operation", "backend"}),
    "docserver_query_errors_total": ("counter", {"operation", "backend"}),
    "docserver_embedding_duration_seconds": ("histogram", {"provider", "model"}),
    "docserver_embedding_batch_size": ("histogram", {"provider"}),
    "docserver_embedding_errors_total": ("counter", {"provider", "reason"}),
    "docserver_cache_requests_total": ("counter", {"cache", "result"}),
    "docserver_db_pool_connections": ("gauge", {"state"}),
    "docserver_db_pool_pending_requests": ("gauge", set()),
    "docserver_search_results": ("histogram", set()),
    "docserver_build_info": ("gauge", {"version", "python_version", "backend", "embedder"}),
    "mcp_server_operation_duration_seconds": ("histogram", {"mcp_method_name", "gen_ai_tool_name", "error_type"}),
    "mcp_server_session_duration_seconds": ("histogram", set()),
}
BUCKETS = {
    "docserver_http_request_duration_seconds": LATENCY_LE,
    "docserver_tool_call_duration_seconds": LATENCY_LE,
    "docserver_query_duration_seconds": LATENCY_LE,
    "docserver_embedding_duration_seconds": LATENCY_LE,
    "mcp_server_operation_duration_seconds": SEMCONV_LE,
    "mcp_server_session_duration_seconds": SEMCONV_LE,
}


# --- set-up helpers -------------------------------------------------------------------------------


def clean_settings(**overrides: Any) -> Settings:
    """Settings from the given values alone, whatever the environment running the tests holds."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(_SETTING_PREFIXES):
                patch.delenv(name)
        return load_settings(**overrides)


async def open_corpus_store(path: Path, metrics: Metrics) -> tuple[SqliteStore, HashEmbedder]:
    """A SQLite store holding the test corpus, ingested before, then opened with `metrics`' instruments."""
    unobserved = SqliteStore(path)
    await unobserved.open()
    embedder = HashEmbedder()
    await bind_embedder(unobserved, embedder)
    await ingest(unobserved, embedder, [CORPUS], "corpus")
    await unobserved.close()
    store = SqliteStore(path, instruments=metrics.for_store())
    await store.open()
    await bind_embedder(store, embedder)
    return store, embedder


@dataclass
class Server:
    settings: Settings
    store: SqliteStore
    embedder: HashEmbedder
    metrics: Metrics

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})

    def runtime(self) -> Runtime:
        """A Runtime over the store and an embedder built with `metrics`' instruments, as `open_runtime` builds them."""
        observed = HashEmbedder(observer=BatchObserver(self.metrics.for_embedder()))
        return Runtime(self.settings, self.store, observed, self.metrics)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[Any]:
        async with serve_in_process(self.settings, self.runtime(), self.metrics) as app:
            yield app


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """The corpus in a fresh store, fresh metrics; the test body enters `server.serve()`."""
    metrics = new_metrics()
    store, embedder = await open_corpus_store(tmp_path / "docserver.db", metrics)
    settings = clean_settings(store={"url": f"sqlite:///{tmp_path / 'docserver.db'}"})
    yield Server(settings, store, embedder, metrics)
    await store.close()


# --- known traffic --------------------------------------------------------------------------------

TLS = "enable TLS certificate"
TOKENS = "rotate access tokens"
REPEATS = 3  # M: searches answered from the search cache
KNOWN_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("search_docs", {"query": TLS}),  # ok, 5 results; misses both caches; one embedding batch
    *[("search_docs", {"query": TLS})] * REPEATS,  # ok, 5 results each, search-cache hits
    ("search_docs", {"query": TOKENS, "limit": 2}),  # ok, 2 results; misses both caches; one batch
    ("search_docs", {"query": "!!!"}),  # ok, 0 results: no words, so no text query and a zero vector
    ("search_docs", {"query": TOKENS, "limit": 0}),  # error: rejected by the schema, never searched
    ("search_docs", {"query": TLS, "source": "nosuch"}),  # error: unknown source, found before any search
    ("search_docs", {"query": "   "}),  # error: blank, refused before any lookup
    ("no_such_tool", {}),  # error, counted as tool="unknown"
]
SEARCHES = sum(name == "search_docs" for name, _ in KNOWN_CALLS)  # N = 9
FAILED = 3  # K


@dataclass
class Traffic:
    registry: CollectorRegistry
    responses: Counter[tuple[str, int]]
    """(method, status) of every HTTP response the MCP client received."""

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})


async def drive_known_traffic(folder: Path, mode: str) -> Traffic:
    metrics = new_metrics()
    store, embedder = await open_corpus_store(folder / "docserver.db", metrics)
    server = Server(clean_settings(store={"url": f"sqlite:///{folder / 'docserver.db'}"}), store, embedder, metrics)
    responses: Counter[tuple[str, int]] = Counter()

    async def count(response: httpx2.Response) -> None:
        responses[(response.request.method, int(response.status_code))] += 1

    try:
        async with server.serve() as app:
            async with mcp_client(app, mode=mode, on_response=count) as client:  # type: ignore[arg-type]
                for name, arguments in KNOWN_CALLS:
                    await client.call_tool(name, arguments)
            async with http_client(app) as http:
                await http.get("/no/such/page")
    finally:
        await store.close()
    return Traffic(metrics.registry, responses)


@pytest.fixture(scope="module")
def known_traffic(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Traffic]:
    """The known traffic, driven once per MCP client mode and module."""
    driven: dict[str, Traffic] = {}

    def get(mode: str) -> Traffic:
        if mode not in driven:
            driven[mode] = asyncio.run(drive_known_traffic(tmp_path_factory.mktemp(f"traffic-{mode}"), mode))
        return driven[mode]

    return get


def expected(name: str, labels: dict[str, str], value: float, *, bug: str | None = None) -> Any:
    label_text = ",".join(f"{key}={val}" for key, val in labels.items())
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(name, labels, value, id=f"{name}{{{label_text}}}", marks=marks)


def search_docs(status: str) -> dict[str, str]:
    return {"tool": "search_docs", "status": status}


def sqlite(operation: str) -> dict[str, str]:
    return {"operation": operation, "backend": "sqlite"}


def tools_call(tool: str, error_type: str) -> dict[str, str]:
    return {"mcp_method_name": "tools/call", "gen_ai_tool_name": tool, "error_type": error_type}


KNOWN_VALUES = [
    expected("docserver_tool_calls_total", search_docs("ok"), SEARCHES - FAILED),
    expected("docserver_tool_calls_total", search_docs("error"), FAILED),
    expected("docserver_tool_call_duration_seconds_count", {"tool": "search_docs"}, SEARCHES),
    expected("docserver_tool_calls_total", {"tool": "unknown", "status": "error"}, 1),
    expected("docserver_tool_calls_total", {"tool": "unknown", "status": "ok"}, 0),
    # Hits: the M repeats. Misses: the first TLS search, TOKENS, "!!!" and the unknown source
    # (its key differs by source). The schema error and the blank query never look.
    expected("docserver_cache_requests_total", {"cache": "search", "result": "hit"}, REPEATS),
    expected("docserver_cache_requests_total", {"cache": "search", "result": "miss"}, 4),
    # The unknown source is refused before its query is embedded: no embedding cache hit.
    expected("docserver_cache_requests_total", {"cache": "embedding", "result": "hit"}, 0),
    expected("docserver_cache_requests_total", {"cache": "embedding", "result": "miss"}, 3),
    expected("docserver_embedding_duration_seconds_count", {"provider": "hash", "model": HASH_MODEL}, 3),
    expected("docserver_embedding_batch_size_sum", {"provider": "hash"}, 3),
    # A store query for each search that missed the cache and had words: TLS, TOKENS.
    expected("docserver_query_duration_seconds_count", sqlite("search_text"), 2),
    expected("docserver_query_duration_seconds_count", sqlite("search_vector"), 2),
    expected("docserver_query_duration_seconds_count", sqlite("get_chunks"), 2),
    # The sources are listed once (the first search's miss: they only change with the corpus version, and
    # the unknown source is checked against them); "!!!" found nothing, so the store is asked whether it is empty.
    expected("docserver_query_duration_seconds_count", sqlite("list_sources"), 2),
    expected("docserver_query_errors_total", sqlite("search_text"), 0),
    # Successful searches: 4 x 5 results, 2 and 0.
    expected("docserver_search_results_sum", {}, 22),
    expected("docserver_search_results_count", {}, SEARCHES - FAILED),
    expected("docserver_search_results_bucket", {"le": "0.0"}, 1),
    expected("mcp_server_operation_duration_seconds_count", tools_call("search_docs", ""), SEARCHES - FAILED),
    expected("mcp_server_operation_duration_seconds_count", tools_call("search_docs", "tool_error"), FAILED),
    expected("mcp_server_operation_duration_seconds_count", tools_call("unknown", "tool_error"), 1),
    expected("docserver_http_requests_total", {"method": "GET", "route": "unmatched", "status_code": "404"}, 1),
]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(("name", "labels", "value"), KNOWN_VALUES)
def test_known_traffic_gives_exact_values(
    known_traffic: Callable[[str], Traffic], mode: str, name: str, labels: dict[str, str], value: float
) -> None:
    assert known_traffic(mode).value(name, labels) == value


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_corpus_version_is_read_once_not_per_search(known_traffic: Callable[[str], Traffic], mode: str) -> None:
    reads = known_traffic(mode).value("docserver_query_duration_seconds_count", sqlite("corpus_version"))
    # Once at the first search; again only when a second has passed or the store's files changed.
    assert reads is not None and 1 <= reads <= 2 < SEARCHES


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_every_mcp_post_is_counted_by_status_code(known_traffic: Callable[[str], Traffic], mode: str) -> None:
    traffic = known_traffic(mode)
    posts = {status: count for (method, status), count in traffic.responses.items() if method == "POST"}
    counted = {
        status: traffic.value(
            "docserver_http_requests_total", {"method": "POST", "route": "/mcp", "status_code": str(status)}
        )
        for status in posts
    }
    assert posts and counted == posts
    assert traffic.value("docserver_http_request_duration_seconds_count", {"method": "POST", "route": "/mcp"}) == sum(
        posts.values()
    )


# --- the contract: names, types, labels, buckets -----------------------------------------------------


def exposed_name(family: Any) -> str:
    """The name a scraper sees: the client drops `_total` from counter families and `_info` from info."""
    suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
    return str(family.name) + suffix


def families(registry: CollectorRegistry) -> dict[str, Any]:
    return {exposed_name(family): family for family in registry.collect()}


@pytest.mark.parametrize("name", list(CONTRACT))
def test_contract_metric_has_its_type_and_labels(known_traffic: Callable[[str], Traffic], name: str) -> None:
    family = families(known_traffic("auto").registry).get(name)
    assert family is not None, f"{name} is not exported"
    kind, labels = CONTRACT[name]
    assert family.samples, f"{name} has no series after the known traffic, so its labels cannot be checked"
    assert (family.type, {key for sample in family.samples for key in sample.labels} - {"le"}) == (kind, labels)


@pytest.mark.parametrize("name", list(BUCKETS))
def test_duration_histogram_has_the_contract_buckets(known_traffic: Callable[[str], Traffic], name: str) -> None:
    family = families(known_traffic("legacy").registry)[name]
    bounds: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            series = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            bounds.setdefault(series, []).append(sample.labels["le"])
    assert bounds, f"{name} has no buckets"
    assert all(les == BUCKETS[name] for les in bounds.values()), bounds


def test_search_results_have_a_zero_bucket(known_traffic: Callable[[str], Traffic]) -> None:
    family = families(known_traffic("auto").registry)["docserver_search_results"]
    assert next(s.labels["le"] for s in family.samples if s.name.endswith("_bucket")) == "0.0"


def test_build_info_is_one_and_names_the_build(known_traffic: Callable[[str], Traffic]) -> None:
    [sample] = families(known_traffic("auto").registry)["docserver_build_info"].samples
    labels = {
        "version": __version__,
        "python_version": platform.python_version(),
        "backend": "sqlite",
        "embedder": "hash",
    }
    assert (sample.labels, sample.value) == (labels, 1.0)


# --- sessions ---------------------------------------------------------------------------------------


async def test_a_legacy_session_is_active_while_open_and_not_after(server: Server) -> None:
    async with server.serve() as app:
        async with mcp_client(app, mode="legacy") as client:
            await client.list_tools()
            during = server.value("docserver_mcp_sessions_active")
        after = server.value("docserver_mcp_sessions_active")
    assert (during, after) == (1.0, 0.0)


async def test_a_closed_legacy_session_records_its_duration(server: Server) -> None:
    async with server.serve() as app:
        async with mcp_client(app, mode="legacy") as client:
            await client.list_tools()
            during = server.value("mcp_server_session_duration_seconds_count")
        after = server.value("mcp_server_session_duration_seconds_count")
    assert (during, after) == (0.0, 1.0)


async def test_the_current_protocol_opens_no_session(server: Server) -> None:
    async with server.serve() as app, mcp_client(app, mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        await client.call_tool("list_sources", {})
        during = server.value("docserver_mcp_sessions_active")
    after = (server.value("docserver_mcp_sessions_active"), server.value("mcp_server_session_duration_seconds_count"))
    assert (during, after) == (0.0, (0.0, 0.0))


async def test_an_open_event_stream_is_counted_until_it_ends(server: Server) -> None:
    sse = {"transport": "sse"}
    async with server.serve() as app:
        async with mcp_client(app, mode="legacy") as client:
            await client.list_tools()
            # The handshake-era client opens its GET event stream in the background.
            await until(lambda: server.value("docserver_active_connections", sse) == 1.0)
        after = server.value("docserver_active_connections", sse)
    assert after == 0.0


# --- embedding errors by reason ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_embedding_server() -> Iterator[str]:
    """An embedding server that wants `Authorization: Bearer sk-right`."""
    with start_embedding_server("--api-key", "sk-right") as (url, _process):
        yield url


def embedding_errors(metrics: Metrics) -> dict[str, float | None]:
    registry = metrics.registry
    return {
        reason: registry.get_sample_value("docserver_embedding_errors_total", {"provider": "openai", "reason": reason})
        for reason in sorted(EMBEDDING_ERROR_REASONS)
    }


async def failing_embedding(base_url: str, **options: Any) -> Metrics:
    """One query embedding through an instrumented OpenAIEmbedder that must fail; its metrics."""
    metrics = new_metrics()
    embedder = OpenAIEmbedder(
        base_url=base_url,
        model=options.pop("model", "test-embed"),
        max_retries=0,
        observer=BatchObserver(metrics.for_embedder(), slow_seconds=60),
        **options,
    )
    try:
        with pytest.raises(EmbeddingError):
            await embedder.embed_query("enable TLS")
    finally:
        await embedder.aclose()
    return metrics


FAULTS = [
    pytest.param({"mode": "error", "status": 500}, {}, "http_error", id="500"),
    pytest.param({"mode": "rate_limit"}, {}, "rate_limited", id="429"),
    pytest.param({"mode": "bad_json"}, {}, "invalid_response", id="bad-json"),
    pytest.param({"mode": "wrong_count"}, {}, "invalid_response", id="wrong-count"),
    pytest.param({"mode": "slow", "delay": 2}, {"timeout": 0.2}, "timeout", id="timeout"),
    pytest.param({"mode": "none"}, {"model": "missing-model"}, "not_found", id="404-model"),
]


@pytest.mark.parametrize(("fault", "options", "reason"), FAULTS)
async def test_an_embedding_failure_is_counted_once_by_reason(
    embedding_server: str, fault: dict[str, Any], options: dict[str, Any], reason: str
) -> None:
    async with httpx.AsyncClient() as admin:
        answer = await admin.post(embedding_server.removesuffix("/v1") + "/admin/fault", json={**fault, "count": 1})
        assert answer.status_code == 200

    metrics = await failing_embedding(embedding_server, **options)

    assert embedding_errors(metrics) == {name: float(name == reason) for name in sorted(EMBEDDING_ERROR_REASONS)}


async def test_a_rejected_api_key_is_counted_as_auth(keyed_embedding_server: str) -> None:
    metrics = await failing_embedding(keyed_embedding_server, api_key="sk-wrong")
    assert embedding_errors(metrics)["auth"] == 1.0


async def test_an_unreachable_embedding_api_is_counted_as_connection() -> None:
    metrics = await failing_embedding(f"http://127.0.0.1:{free_port()}/v1")
    assert embedding_errors(metrics)["connection"] == 1.0


async def test_a_failed_batch_is_still_timed(embedding_server: str) -> None:
    async with httpx.AsyncClient() as admin:
        await admin.post(embedding_server.removesuffix("/v1") + "/admin/fault", json={"mode": "error", "count": 1})
    metrics = await failing_embedding(embedding_server)
    labels = {"provider": "openai", "model": "test-embed"}
    assert metrics.registry.get_sample_value("docserver_embedding_duration_seconds_count", labels) == 1.0


# --- store errors and pool gauges ------------------------------------------------------------------------


async def test_a_failing_store_operation_is_counted_and_timed(server: Server) -> None:
    server.runtime()
    saboteur = sqlite_driver.connect(server.store.path)
    try:
        # A real failure: the table disappears under the store's connections.
        saboteur.execute("ALTER TABLE documents RENAME TO documents_gone")
        with pytest.raises(StoreError, match="no such table"):
            await server.store.get_document(1)
    finally:
        saboteur.close()
    labels = {"operation": "get_document", "backend": "sqlite"}
    counts = (
        server.value("docserver_query_errors_total", labels),
        server.value("docserver_query_duration_seconds_count", labels),
    )
    assert counts == (1.0, 1.0)


def pool(server: Server) -> tuple[float | None, float | None, float | None]:
    return (
        server.value("docserver_db_pool_connections", {"state": "active"}),
        server.value("docserver_db_pool_connections", {"state": "idle"}),
        server.value("docserver_db_pool_pending_requests"),
    )


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Poll `condition` (the thing awaited) until it holds."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


async def test_pool_gauges_at_rest_show_five_idle_threads(server: Server) -> None:
    server.runtime()
    await server.store.vector_index_built()  # at rest: the index step an opened store starts has ended
    await server.store.list_sources()
    assert pool(server) == (0.0, 5.0, 0.0)  # 4 reader threads + 1 writer, none busy


async def test_pool_gauges_show_a_busy_writer_and_a_waiting_caller(server: Server) -> None:
    server.runtime()
    store = server.store
    blocker = sqlite_driver.connect(store.path)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the store's writer thread waits in SQLite

    async def write() -> None:
        async with store.update_source("blocked"):
            pass

    writing = asyncio.create_task(write())
    try:
        await until(lambda: store.pool_stats()[0] == 1)
        queued = asyncio.create_task(store.bind_embedder(server.embedder.info))  # waits for the one writer
        await until(lambda: store.pool_stats()[2] == 1)
        during = pool(server)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await writing
    await queued
    await store.vector_index_built()  # the index step a write starts in the background (store/sqlite.py)
    assert (during, pool(server)) == ((1.0, 4.0, 1.0), (0.0, 5.0, 0.0))


# --- exposition formats and exemplars ------------------------------------------------------------------


async def scrape_after_a_tool_call(server: Server, accept: str | None) -> httpx.Response:
    server.metrics.exemplar = lambda: {"trace_id": TRACE_ID}
    async with server.serve() as app:
        async with mcp_client(app) as client:
            await client.call_tool("search_docs", {"query": TLS})
        async with http_client(app) as http:
            return await http.get("/metrics", headers={"Accept": accept} if accept else {})


async def test_openmetrics_scrape_carries_the_trace_id_as_an_exemplar(server: Server) -> None:
    response = await scrape_after_a_tool_call(server, OPENMETRICS)
    exemplar = f'# {{trace_id="{TRACE_ID}"}}'
    carriers = [line.partition("{")[0] for line in response.text.splitlines() if exemplar in line]
    assert "docserver_tool_call_duration_seconds_bucket" in carriers, carriers


async def test_openmetrics_scrape_is_openmetrics(server: Server) -> None:
    response = await scrape_after_a_tool_call(server, OPENMETRICS)
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.text.endswith("# EOF\n")


async def test_plain_scrape_is_prometheus_text_without_exemplars(server: Server) -> None:
    response = await scrape_after_a_tool_call(server, None)
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "docserver_tool_call_duration_seconds_bucket" in response.text
    assert " # {" not in response.text


# --- METRICS_TOKEN ---------------------------------------------------------------------------------------


@asynccontextmanager
async def token_protected(server: Server, token: str = METRICS_TOKEN) -> AsyncIterator[httpx.AsyncClient]:
    server.settings = server.settings.replace(telemetry={"metrics_token": SecretStr(token)})
    async with server.serve() as app, http_client(app) as http:
        yield http


REFUSED = [
    pytest.param({}, id="no-header"),
    pytest.param({"Authorization": b"Bearer wrong-token"}, id="wrong-token"),
    pytest.param({"Authorization": "Bearer sécret-tøken".encode()}, id="non-ascii-token"),
    pytest.param({"Authorization": f"Basic {METRICS_TOKEN}".encode()}, id="wrong-scheme"),
    pytest.param({"Authorization": b"Bearer"}, id="empty-token"),
]


@pytest.mark.parametrize("headers", REFUSED)
async def test_metrics_token_refuses_with_401_and_a_challenge(server: Server, headers: dict[str, bytes]) -> None:
    async with token_protected(server) as http:
        response = await http.get("/metrics", headers=headers)
    assert (response.status_code, response.headers.get("www-authenticate", "")[:7]) == (401, "Bearer ")
    assert "docserver_build_info" not in response.text


async def test_metrics_token_admits_the_right_bearer_token(server: Server) -> None:
    async with token_protected(server) as http:
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert "docserver_build_info{" in response.text


async def test_metrics_token_failures_are_counted(server: Server) -> None:
    async with token_protected(server) as http:
        for case in REFUSED:
            await http.get("/metrics", headers=case.values[0])
        await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    by_reason = {
        reason: server.value("docserver_auth_failures_total", {"endpoint": "metrics", "reason": reason})
        for reason in ("missing", "malformed", "unknown_token")
    }
    assert by_reason == {"missing": 1, "malformed": 1, "unknown_token": 3}
    assert sum(value or 0 for value in by_reason.values()) == len(REFUSED)


async def test_a_non_ascii_metrics_token_sent_as_utf8_is_admitted(server: Server) -> None:
    async with token_protected(server, "sécret-tøken") as http:
        response = await http.get("/metrics", headers={"Authorization": "Bearer sécret-tøken".encode()})
    assert response.status_code == 200


# --- route labels ---------------------------------------------------------------------------------------


async def test_a_request_to_a_parametrized_route_is_labelled_with_its_template(server: Server) -> None:
    server.settings = server.settings.replace(profiling={"enabled": True, "token": SecretStr("x")})
    async with server.serve() as app, http_client(app) as http:
        response = await http.get("/debug/pprof/goroutine")
    assert response.status_code == 401
    labels = {"method": "GET", "route": "/debug/pprof/{name:path}", "status_code": "401"}
    assert server.value("docserver_http_requests_total", labels) == 1.0


# --- DOCSERVER_TELEMETRY=off ----------------------------------------------------------------------------


def telemetry_off(server: Server) -> Runtime:
    server.settings = server.settings.replace(telemetry={"switch": "off"})
    return Runtime(server.settings, server.store, server.embedder, None)  # as serve_http builds it


def test_telemetry_off_serves_the_bare_starlette_app(server: Server) -> None:
    runtime = telemetry_off(server)
    app = create_app(server.settings, runtime, server.metrics)
    assert type(app) is Starlette


async def test_telemetry_off_records_no_tool_call_or_request(server: Server) -> None:
    runtime = telemetry_off(server)
    async with serve_in_process(server.settings, runtime, server.metrics) as app:
        async with mcp_client(app) as client:
            result = await client.call_tool("search_docs", {"query": TLS})
        async with http_client(app) as http:
            scrape = await http.get("/metrics")
    assert not result.is_error
    assert scrape.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape.text)
        for sample in family.samples
    }
    assert samples[("docserver_tool_calls_total", (("status", "ok"), ("tool", "search_docs")))] == 0.0
    assert not [key for key in samples if key[0].startswith(("docserver_http_", "docserver_cache_", "mcp_server_op"))]


# --- docs/metrics.md -------------------------------------------------------------------------------------


def documented_names() -> set[str]:
    return set(re.findall(r"\b[a-z][a-z0-9_]*\b", DOCS.read_text()))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_docs_list_every_exported_metric(known_traffic: Callable[[str], Traffic], mode: str) -> None:
    exported = set(families(known_traffic(mode).registry))
    assert sorted(exported - documented_names()) == []
