"""Tracing end to end: real processes, real OTLP.

A loopback OTLP/HTTP receiver (tests/otlp_receiver.py) decodes what the
exporters send. The OpenAI-compatible embedding server runs as its own
process with its own OpenTelemetry SDK (tests/traced_embedding_server.py),
exporting to the same receiver, and `docserver serve` embeds every query
through it (DOCSERVER_CACHE_SIZE=0). Each docserver process gets its own
OTEL_SERVICE_NAME, so one receiver serves the whole module.

"Everything queued has been exported" is established with a barrier, not a
sleep: the BatchSpanProcessor exports in queue order, so once a span that
ended after the others has arrived, they have too. Absence after a process
exit is final, since shutdown flushes the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from conftest import CORPUS
from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver
from support.embedding_server_fixture import start_embedding_server
from support.inprocess import current_request
from support.otlp_receiver import OtlpReceiver, SpanRecord, closed_port_url

pytestmark = pytest.mark.slow

MODEL = "test-embed"
HANDSHAKE_VERSIONS = ("2025-06-18", "2025-11-25")
QUERY = "rotate access tokens"
MAX_REQUEST_BYTES = 64 * 1024
TRACED_EMBEDDING_SERVER = Path(__file__).parent / "support" / "traced_embedding_server.py"
WAIT = 15.0
"""Seconds to wait for spans that are due within 100 ms: generous for a loaded CI machine."""
EXIT_BOUND = 15.0
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


# --- ids and headers --------------------------------------------------------------------------


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


def parse(value: str) -> tuple[str, str, str]:
    """(trace_id, span_id, flags) of a traceparent docserver sent; fails unless it is valid W3C version 00."""
    version, trace_id, span_id, flags = value.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16 and flags in ("00", "01"), value
    assert trace_id == trace_id.lower() and int(trace_id, 16) and int(span_id, 16), value
    return trace_id, span_id, flags


def tool_call(name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """httpx request arguments of a raw 2026-07-28 tools/call POST, as the SDK client builds it."""
    headers, body = current_request("tools/call", {"name": name, "arguments": arguments}, name=name, meta=meta)
    return {"headers": headers, "content": body}


# --- processes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


def start_traced_embedding_server(otlp_url: str, log_path: Path) -> Any:
    """tests/traced_embedding_server.py on a free port; yields its /v1 URL once it printed `READY <port>`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    return start_embedding_server(
        "--otlp-endpoint", otlp_url, log_path=log_path, script=TRACED_EMBEDDING_SERVER, env=env
    )


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tracing_e2e")


@pytest.fixture(scope="module")
def embedding(receiver: OtlpReceiver, logs: Path) -> Iterator[str]:
    with start_traced_embedding_server(receiver.url, logs / "embedding-server.log") as (url, _process):
        yield url


def openai_settings(embedding_url: str) -> dict[str, str]:
    return {
        "DOCSERVER_EMBEDDER": "openai",
        "DOCSERVER_EMBEDDING_URL": embedding_url,
        "DOCSERVER_EMBEDDING_MODEL": MODEL,
    }


@pytest.fixture(scope="module")
def database(embedding: str, logs: Path) -> Path:
    path = logs / "docserver.db"
    result = run_cli("ingest", str(CORPUS), "--source", "corpus", env=docserver_env(path, openai_settings(embedding)))
    assert result.returncode == 0, result.stderr
    return path


class Launcher:
    """Starts `docserver serve` processes on the module's database, each under its own service name."""

    def __init__(self, database: Path, embedding_url: str, otlp_url: str, logs: Path) -> None:
        self.database = database
        self.embedding_url = embedding_url
        self.otlp_url = otlp_url
        self.logs = logs

    def env(self, service: str, **settings: str) -> dict[str, str]:
        values = {
            **openai_settings(self.embedding_url),
            "DOCSERVER_CACHE_SIZE": "0",
            "OTEL_SERVICE_NAME": service,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_url,
            "OTEL_TRACE_SAMPLE_RATE": "1",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            **settings,
        }
        return docserver_env(self.database, values)

    @contextmanager
    def start(self, service: str, **settings: str) -> Iterator[ServerProcess]:
        with start_docserver(self.env(service, **settings), self.logs / f"{service}.log") as server:
            yield server


@pytest.fixture(scope="module")
def launcher(database: Path, embedding: str, receiver: OtlpReceiver, logs: Path) -> Launcher:
    return Launcher(database, embedding, receiver.url, logs)


MAIN = "docserver-e2e"


@pytest.fixture(scope="module")
def server(launcher: Launcher) -> Iterator[ServerProcess]:
    """Collector up, every request sampled, spans gzip-compressed (the receiver must decode them)."""
    settings = {"DOCSERVER_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES), "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
    with launcher.start(MAIN, **settings) as process:
        yield process


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


# --- reading traces ---------------------------------------------------------------------------------


def by_name(spans: list[SpanRecord], name: str, service: str = MAIN) -> list[SpanRecord]:
    return [span for span in spans if span.name == name and span.service_name == service]


def one(spans: list[SpanRecord], name: str, service: str = MAIN, **attributes: Any) -> SpanRecord:
    matches = [
        span
        for span in by_name(spans, name, service)
        if all(span.attributes.get(key) == value for key, value in attributes.items())
    ]
    assert len(matches) == 1, (name, attributes, matches)
    return matches[0]


def in_trace(spans: list[SpanRecord], trace_id: str) -> list[SpanRecord]:
    return [span for span in spans if span.trace_id == trace_id]


def children(spans: list[SpanRecord], parent: SpanRecord) -> list[SpanRecord]:
    return [span for span in spans if span.parent_span_id == parent.span_id and span.trace_id == parent.trace_id]


def search_trace_complete(
    trace_id: str, *, under_http: bool = True
) -> Callable[[list[SpanRecord]], list[SpanRecord] | None]:
    """The spans of `trace_id` once the tool call, its store queries and the embedding server's span are in
    (and the HTTP server span above the tool call, when it is in the same trace)."""

    def complete(spans: list[SpanRecord]) -> list[SpanRecord] | None:
        trace = in_trace(spans, trace_id)
        names = {(span.service_name, span.name) for span in trace}
        needed = {
            (MAIN, "tools/call search_docs"),
            (MAIN, "get_chunks chunks"),
            (MAIN, "POST"),
            ("embedding-server", "POST /v1/embeddings"),
        }
        tool_spans = by_name(trace, "tools/call search_docs")
        http_done = any(span.span_id in {t.parent_span_id for t in tool_spans} for span in trace)
        return trace if needed <= names and (http_done or not under_http) else None

    return complete


def metric_value(http: httpx.Client, server: ServerProcess, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(http.get(f"{server.url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in server.logs().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue  # a line still being written
    return lines


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll `condition` (a log file, a metric: things that cannot notify) until truthy or `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(0.05)


async def call_search(
    url: str, mode: str, headers: dict[str, str], meta: dict[str, Any] | None = None
) -> CallToolResult:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        return await client.call_tool("search_docs", {"query": QUERY}, meta=meta)


# --- one trace across HTTP, MCP, cache, embedding (both services) and store ------------------------


@pytest.fixture(scope="module")
def legacy_trace(server: ServerProcess, receiver: OtlpReceiver) -> tuple[str, str, list[SpanRecord]]:
    """A handshake-era MCP client's search_docs call under the client's span (traceparent header)."""
    trace_id, client_span = new_trace_id(), new_span_id()
    result = asyncio.run(call_search(server.mcp_url, "legacy", {"traceparent": traceparent(trace_id, client_span)}))
    assert not result.is_error
    return trace_id, client_span, receiver.wait_for(search_trace_complete(trace_id), WAIT)


def test_the_http_server_span_is_the_clients_child(legacy_trace: tuple[str, str, list[SpanRecord]]) -> None:
    _, client_span, spans = legacy_trace
    tool = one(spans, "tools/call search_docs")
    [http_span] = [span for span in spans if span.span_id == tool.parent_span_id]

    assert (http_span.name, http_span.kind) == ("POST /mcp", "SERVER")
    assert http_span.parent_span_id == client_span
    assert http_span.attributes["http.request.method"] == "POST"
    assert http_span.attributes["http.route"] == "/mcp"
    assert http_span.attributes["http.response.status_code"] == 200


def test_the_tool_call_span_has_the_mcp_semantic_convention_attributes(
    legacy_trace: tuple[str, str, list[SpanRecord]],
) -> None:
    _, _, spans = legacy_trace
    tool = one(spans, "tools/call search_docs")
    [http_span] = [span for span in spans if span.span_id == tool.parent_span_id]

    assert tool.kind == "SERVER"
    assert tool.attributes["mcp.method.name"] == "tools/call"
    assert tool.attributes["gen_ai.tool.name"] == "search_docs"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["mcp.protocol.version"] in HANDSHAKE_VERSIONS
    assert tool.attributes["jsonrpc.request.id"]
    assert len(tool.attributes["mcp.session.id"]) >= 16
    assert "error.type" not in tool.attributes
    assert tool.attributes["docserver.correlation_id"] == http_span.attributes["docserver.correlation_id"]


def test_the_embedding_spans_chain_into_the_embedding_servers_span(
    legacy_trace: tuple[str, str, list[SpanRecord]],
) -> None:
    _, _, spans = legacy_trace
    tool = one(spans, "tools/call search_docs")
    embedding = one(spans, f"embeddings {MODEL}")
    outbound = one(spans, "POST")
    remote = one(spans, "POST /v1/embeddings", service="embedding-server")

    assert (embedding.kind, embedding.parent_span_id) == ("CLIENT", tool.span_id)
    assert embedding.attributes["gen_ai.operation.name"] == "embeddings"
    assert embedding.attributes["gen_ai.request.model"] == MODEL
    assert embedding.attributes["gen_ai.provider.name"] == "openai"
    assert embedding.attributes["docserver.embedding.batch_size"] == 1
    assert (outbound.kind, outbound.parent_span_id) == ("CLIENT", embedding.span_id)
    assert outbound.attributes["http.request.method"] == "POST"
    assert outbound.attributes["http.response.status_code"] == 200
    assert outbound.attributes["url.full"].endswith("/v1/embeddings")
    assert (remote.kind, remote.parent_span_id) == ("SERVER", outbound.span_id)


def test_store_queries_are_client_spans_with_db_attributes(legacy_trace: tuple[str, str, list[SpanRecord]]) -> None:
    _, _, spans = legacy_trace
    tool = one(spans, "tools/call search_docs")
    queries = [span for span in spans if "db.system.name" in span.attributes]

    assert {span.attributes["db.operation.name"] for span in queries} >= {"search_text", "search_vector", "get_chunks"}
    for query in queries:
        assert query.kind == "CLIENT"
        assert query.parent_span_id == tool.span_id
        assert query.attributes["db.system.name"] == "sqlite"
        assert query.attributes["db.collection.name"]
        assert query.name == f"{query.attributes['db.operation.name']} {query.attributes['db.collection.name']}"


def cache_hit(spans: list[SpanRecord], tool: SpanRecord, cache: str) -> Any:
    """Hit or miss of a cache lookup during the tool call, in either form docserver may record it:
    `docserver.cache.{cache}.hit` on the tool call's span, or a `cache.get {cache}` child span."""
    attribute = f"docserver.cache.{cache}.hit"
    if attribute in tool.attributes:
        return tool.attributes[attribute]
    lookup = one(spans, f"cache.get {cache}")
    assert lookup.parent_span_id == tool.span_id
    return lookup.attributes["docserver.cache.hit"]


def test_cache_lookups_record_hit_or_miss(legacy_trace: tuple[str, str, list[SpanRecord]]) -> None:
    _, _, spans = legacy_trace
    tool = one(spans, "tools/call search_docs")

    for cache in ("search", "embedding"):
        assert cache_hit(spans, tool, cache) is False  # DOCSERVER_CACHE_SIZE=0


def test_every_child_lies_inside_its_parents_time(legacy_trace: tuple[str, str, list[SpanRecord]]) -> None:
    # The tool call's request, from its HTTP span down to the embedding server. (A notification's
    # span may outlive its HTTP span: the transport answers 202 before the message is handled.)
    _, _, spans = legacy_trace
    tool = one(spans, "tools/call search_docs")
    [root] = [span for span in spans if span.span_id == tool.parent_span_id]
    pending, checked = [root], set()
    while pending:
        parent = pending.pop()
        for child in children(spans, parent):
            assert parent.start_ns <= child.start_ns <= child.end_ns <= parent.end_ns, (parent.name, child.name)
            pending.append(child)
            checked.add(child.name)
    assert checked >= {
        "tools/call search_docs",
        f"embeddings {MODEL}",
        "POST",
        "POST /v1/embeddings",
        "search_text chunks_fts",
        "search_vector chunk_vectors",
        "get_chunks chunks",
    }


def test_the_whole_call_is_one_trace(legacy_trace: tuple[str, str, list[SpanRecord]], receiver: OtlpReceiver) -> None:
    trace_id, client_span, spans = legacy_trace
    correlation_id = one(spans, "tools/call search_docs").attributes["docserver.correlation_id"]

    def rooted(all_spans: list[SpanRecord]) -> list[SpanRecord] | None:
        # Every span descends from the client's span: one tree per HTTP request, no orphans. (A parent
        # that ends after its child, like the GET /mcp of the SSE stream span, arrives after it.)
        trace = in_trace(all_spans, trace_id)
        ids = {span.span_id for span in trace} | {client_span}
        return trace if all(span.parent_span_id in ids for span in trace) else None

    trace = receiver.wait_for(rooted, WAIT)

    same_request = [
        span for span in receiver.spans() if span.attributes.get("docserver.correlation_id") == correlation_id
    ]
    assert {span.trace_id for span in same_request} == {trace_id}
    roots = {span.name for span in trace if span.parent_span_id == client_span}
    assert roots <= {"POST /mcp", "GET /mcp", "DELETE /mcp"}


def test_no_span_attribute_contains_the_query(legacy_trace: tuple[str, str, list[SpanRecord]]) -> None:
    _, _, spans = legacy_trace
    for span in spans:
        for key, value in span.attributes.items():
            assert QUERY not in str(value), (span.name, key)
        assert QUERY not in span.name


def test_the_legacy_event_stream_has_a_span_for_its_lifetime(
    legacy_trace: tuple[str, str, list[SpanRecord]], receiver: OtlpReceiver
) -> None:
    trace_id, _, _ = legacy_trace

    def stream_and_request(spans: list[SpanRecord]) -> tuple[SpanRecord, SpanRecord] | None:
        trace = in_trace(spans, trace_id)
        for stream in by_name(trace, "SSE stream"):
            for get in trace:
                if get.span_id == stream.parent_span_id:
                    return stream, get
        return None

    stream, get = receiver.wait_for(stream_and_request, WAIT)

    assert (get.name, get.kind) == ("GET /mcp", "SERVER")
    assert get.start_ns <= stream.start_ns <= stream.end_ns <= get.end_ns


def test_a_tool_error_marks_the_tool_call_span(
    server: ServerProcess, receiver: OtlpReceiver, http: httpx.Client
) -> None:
    trace_id = new_trace_id()
    request = tool_call("get_document", {"id": 999_999})
    request["headers"]["traceparent"] = traceparent(trace_id, new_span_id())

    response = http.post(server.mcp_url, **request)

    assert response.json()["result"]["isError"] is True
    [span] = receiver.wait_for(lambda spans: by_name(in_trace(spans, trace_id), "tools/call get_document"), WAIT)
    assert span.attributes["error.type"] == "tool_error"
    assert span.status_code == "ERROR"


def test_outbound_calls_carry_tracestate_baggage_and_the_correlation_id(
    server: ServerProcess, receiver: OtlpReceiver, http: httpx.Client
) -> None:
    trace_id, correlation_id = new_trace_id(), f"outbound-{secrets.token_hex(6)}"
    request = tool_call("search_docs", {"query": QUERY})
    request["headers"].update(
        {
            "traceparent": traceparent(trace_id, new_span_id()),
            "tracestate": TRACESTATE,
            "baggage": "tenant=acme",
            "X-Correlation-ID": correlation_id,
        }
    )

    assert http.post(server.mcp_url, **request).status_code == 200

    spans = receiver.wait_for(search_trace_complete(trace_id), WAIT)
    remote = one(spans, "POST /v1/embeddings", service="embedding-server")
    assert remote.attributes["http.request.header.tracestate"] == (TRACESTATE,)
    assert "tenant=acme" in remote.attributes["http.request.header.baggage"][0]
    assert remote.attributes["http.request.header.x-correlation-id"] == (correlation_id,)


# --- SEP-414: context in params._meta --------------------------------------------------------------


def test_a_meta_traceparent_parents_the_tool_call_and_links_the_http_span(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    trace_id, meta_span = new_trace_id(), new_span_id()
    meta = {"traceparent": traceparent(trace_id, meta_span)}

    result = asyncio.run(call_search(server.mcp_url, "auto", {}, meta=meta))

    assert not result.is_error
    spans = receiver.wait_for(search_trace_complete(trace_id, under_http=False), WAIT)
    tool = one(spans, "tools/call search_docs")
    assert tool.parent_span_id == meta_span
    [link] = [link for link in tool.links if link.attributes.get("docserver.link") == "http_server_span"]
    http_span = receiver.wait_for(lambda all_spans: [s for s in all_spans if s.span_id == link.span_id], WAIT)[0]
    assert (http_span.name, http_span.kind, http_span.trace_id) == ("POST /mcp", "SERVER", link.trace_id)
    assert http_span.trace_id != trace_id
    assert http_span.attributes["docserver.correlation_id"] == tool.attributes["docserver.correlation_id"]
    # The work below the tool call follows the _meta trace.
    assert one(spans, f"embeddings {MODEL}").parent_span_id == tool.span_id
    assert one(spans, "POST /v1/embeddings", service="embedding-server").trace_id == trace_id


def meta_search(server: ServerProcess, receiver: OtlpReceiver, http: httpx.Client, **meta: str) -> SpanRecord:
    """search_docs with W3C context only in `params._meta`; the embedding server's span of that call."""
    trace_id = new_trace_id()
    meta["traceparent"] = traceparent(trace_id, new_span_id())
    response = http.post(server.mcp_url, **tool_call("search_docs", {"query": QUERY}, meta=meta))
    assert response.status_code == 200
    spans = receiver.wait_for(search_trace_complete(trace_id, under_http=False), WAIT)
    return one(spans, "POST /v1/embeddings", service="embedding-server")


def test_a_meta_tracestate_travels_on_to_the_embedding_server(
    server: ServerProcess, receiver: OtlpReceiver, http: httpx.Client
) -> None:
    remote = meta_search(server, receiver, http, tracestate="rojo=1")

    assert remote.attributes["http.request.header.tracestate"] == ("rojo=1",)


def test_a_meta_baggage_travels_on_to_the_embedding_server(
    server: ServerProcess, receiver: OtlpReceiver, http: httpx.Client
) -> None:
    remote = meta_search(server, receiver, http, baggage="tenant=globex")

    assert "tenant=globex" in remote.attributes.get("http.request.header.baggage", ("",))[0]


# --- invalid inbound context: a new trace, never an error --------------------------------------------

BAD_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
BAD_SPAN = "00f067aa0ba902b7"
INVALID_TRACEPARENTS = {
    "uppercase": f"00-{BAD_TRACE.upper()}-{BAD_SPAN}-01",
    "version-ff": f"ff-{BAD_TRACE}-{BAD_SPAN}-01",
    "zero-trace-id": f"00-{'0' * 32}-{BAD_SPAN}-01",
    "zero-span-id": f"00-{BAD_TRACE}-{'0' * 16}-01",
    "short-trace-id": f"00-{BAD_TRACE[:-2]}-{BAD_SPAN}-01",
    "version-00-with-suffix": f"00-{BAD_TRACE}-{BAD_SPAN}-01-extra",
    "non-hex": f"00-{BAD_TRACE[:-1]}z-{BAD_SPAN}-01",
    "garbage": "traceparent? never heard of it",
}


@pytest.mark.parametrize("value", list(INVALID_TRACEPARENTS.values()), ids=list(INVALID_TRACEPARENTS))
def test_an_invalid_traceparent_starts_a_new_trace_and_the_call_succeeds(
    server: ServerProcess, receiver: OtlpReceiver, http: httpx.Client, value: str
) -> None:
    request = tool_call("list_sources", {})
    request["headers"]["traceparent"] = value

    response = http.post(server.mcp_url, **request)

    assert response.status_code == 200, response.text
    assert response.json()["result"]["isError"] is False
    trace_id, span_id, flags = parse(response.headers["traceparent"])
    assert trace_id != BAD_TRACE and flags == "01"
    [root] = receiver.wait_for(lambda spans: [s for s in spans if s.span_id == span_id], WAIT)
    assert (root.trace_id, root.parent_span_id, root.name) == (trace_id, "", "POST /mcp")


def test_two_traceparent_headers_start_a_new_trace(server: ServerProcess, http: httpx.Client) -> None:
    first, second = new_trace_id(), new_trace_id()
    headers = [("traceparent", traceparent(first, new_span_id())), ("traceparent", traceparent(second, new_span_id()))]

    response = http.get(f"{server.url}/healthz", headers=headers)

    assert response.status_code == 200
    assert parse(response.headers["traceparent"])[0] not in (first, second)


# --- propagation out: every response carries the server span's context --------------------------------


def _responses() -> dict[str, tuple[Callable[[httpx.Client, ServerProcess, dict[str, str]], httpx.Response], int]]:
    def mcp(extra: dict[str, str], content: bytes | str | None = None) -> Callable[..., httpx.Response]:
        def send(http: httpx.Client, server: ServerProcess, headers: dict[str, str]) -> httpx.Response:
            request = tool_call("list_sources", {})
            body = request["content"] if content is None else content
            return http.post(server.mcp_url, headers={**request["headers"], **extra, **headers}, content=body)

        return send

    def unknown_session(http: httpx.Client, server: ServerProcess, headers: dict[str, str]) -> httpx.Response:
        session = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": "2025-11-25",
            "Mcp-Session-Id": "0" * 32,
        }
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        return http.post(server.mcp_url, headers={**session, **headers}, content=body)

    return {
        "200-healthz": (lambda http, server, headers: http.get(f"{server.url}/healthz", headers=headers), 200),
        "200-mcp": (mcp({}), 200),
        "404-unmatched": (lambda http, server, headers: http.get(f"{server.url}/no/such/page", headers=headers), 404),
        "404-unknown-session": (unknown_session, 404),
        "403-foreign-origin": (mcp({"Origin": "http://evil.example"}), 403),
        "413-oversized": (mcp({}, b" " * (MAX_REQUEST_BYTES + 1)), 413),
    }


RESPONSES = _responses()


@pytest.mark.parametrize("case", list(RESPONSES))
def test_every_response_carries_the_server_spans_traceparent_and_the_tracestate(
    server: ServerProcess, http: httpx.Client, case: str
) -> None:
    send, status = RESPONSES[case]
    trace_id, client_span = new_trace_id(), new_span_id()

    response = send(http, server, {"traceparent": traceparent(trace_id, client_span), "tracestate": TRACESTATE})

    assert response.status_code == status, response.text
    answered_trace, answered_span, flags = parse(response.headers["traceparent"])
    assert (answered_trace, flags) == (trace_id, "01")
    assert answered_span != client_span
    assert response.headers["tracestate"] == TRACESTATE


@pytest.mark.parametrize("case", list(RESPONSES))
def test_a_response_without_inbound_context_starts_a_trace_and_sends_no_tracestate(
    server: ServerProcess, http: httpx.Client, case: str
) -> None:
    send, status = RESPONSES[case]

    response = send(http, server, {})

    assert response.status_code == status, response.text
    parse(response.headers["traceparent"])
    assert "tracestate" not in response.headers


def test_a_malformed_tracestate_is_dropped_and_the_traceparent_kept(server: ServerProcess, http: httpx.Client) -> None:
    trace_id = new_trace_id()
    too_many = ",".join(f"k{index}=v" for index in range(33))

    response = http.get(
        f"{server.url}/healthz", headers={"traceparent": traceparent(trace_id, new_span_id()), "tracestate": too_many}
    )

    assert parse(response.headers["traceparent"])[0] == trace_id
    assert "tracestate" not in response.headers


# --- sampling ------------------------------------------------------------------------------------------

SAMPLED_REQUESTS = 400


SAMPLING = {
    "rate-0": ({"OTEL_TRACE_SAMPLE_RATE": "0"}, 0.0),
    "rate-0.25": ({"OTEL_TRACE_SAMPLE_RATE": "0.25"}, 0.25),
    "rate-1": ({"OTEL_TRACE_SAMPLE_RATE": "1"}, 1.0),
    "sampler-parentbased_traceidratio-0.25": (
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
        0.25,
    ),
}


@pytest.fixture(scope="module", params=list(SAMPLING))
def rated(request: pytest.FixtureRequest, launcher: Launcher) -> Iterator[tuple[float, ServerProcess, str]]:
    """A server sampling new traces at a known rate: (rate, server, its service name)."""
    settings, rate = SAMPLING[request.param]
    service = f"docserver-{request.param}"
    with launcher.start(service, **settings) as process:
        yield rate, process, service


def barrier(http: httpx.Client, server: ServerProcess, receiver: OtlpReceiver, service: str) -> SpanRecord:
    """A request with an inbound sampled flag; once its span has arrived, every span ended before it has too."""
    trace_id, client_span = new_trace_id(), new_span_id()
    response = http.get(f"{server.url}/healthz", headers={"traceparent": traceparent(trace_id, client_span)})
    assert response.status_code == 200
    spans = receiver.wait_for(
        lambda spans: [s for s in spans if s.trace_id == trace_id and s.service_name == service], WAIT
    )
    [span] = spans
    assert span.parent_span_id == client_span
    return span


def test_the_sampled_fraction_matches_the_rate(
    rated: tuple[float, ServerProcess, str], receiver: OtlpReceiver, http: httpx.Client
) -> None:
    rate, server, service = rated
    prefix = f"sampling-{secrets.token_hex(4)}-"
    decided: dict[str, bool] = {}
    for index in range(SAMPLED_REQUESTS):
        response = http.get(f"{server.url}/healthz", headers={"X-Correlation-ID": f"{prefix}{index}"})
        trace_id, _, flags = parse(response.headers["traceparent"])
        decided[trace_id] = flags == "01"

    barrier(http, server, receiver, service)

    received = [
        span
        for span in receiver.spans()
        if span.service_name == service and str(span.attributes.get("docserver.correlation_id", "")).startswith(prefix)
    ]
    sampled = sum(decided.values())
    expected = SAMPLED_REQUESTS * rate
    sigma = (SAMPLED_REQUESTS * rate * (1 - rate)) ** 0.5
    assert abs(sampled - expected) <= 4 * sigma, (sampled, expected)
    assert len(received) == sampled
    assert {span.trace_id for span in received} == {trace for trace, kept in decided.items() if kept}
    assert {(span.name, span.kind) for span in received} <= {("GET /healthz", "SERVER")}


def test_an_inbound_sampled_flag_is_recorded_whatever_the_rate(
    rated: tuple[float, ServerProcess, str], receiver: OtlpReceiver, http: httpx.Client
) -> None:
    _, server, service = rated

    span = barrier(http, server, receiver, service)

    assert span.name == "GET /healthz"


def test_an_inbound_unsampled_flag_is_not_recorded_whatever_the_rate(
    rated: tuple[float, ServerProcess, str], receiver: OtlpReceiver, http: httpx.Client
) -> None:
    _, server, service = rated
    trace_id = new_trace_id()

    response = http.get(f"{server.url}/healthz", headers={"traceparent": traceparent(trace_id, new_span_id(), "00")})
    barrier(http, server, receiver, service)

    assert parse(response.headers["traceparent"])[::2] == (trace_id, "00")
    assert not [span for span in receiver.spans() if span.trace_id == trace_id]


# --- correlation: logs and exemplars -----------------------------------------------------------------------


def test_log_lines_carry_the_trace_and_span_ids_of_the_spans(
    server: ServerProcess, receiver: OtlpReceiver, http: httpx.Client, logs: Path
) -> None:
    trace_id, correlation_id = new_trace_id(), f"logs-{secrets.token_hex(6)}"
    request = tool_call("search_docs", {"query": QUERY})
    request["headers"].update({"traceparent": traceparent(trace_id, new_span_id()), "X-Correlation-ID": correlation_id})

    response = http.post(server.mcp_url, **request)

    assert response.status_code == 200
    spans = receiver.wait_for(search_trace_complete(trace_id), WAIT)
    tool = one(spans, "tools/call search_docs")
    http_span = one(spans, "POST /mcp")
    mine = wait_until(
        lambda: (
            [line for line in log_lines(server) if line.get("correlation_id") == correlation_id]
            if any(
                line.get("event") == "http_request" and line.get("correlation_id") == correlation_id
                for line in log_lines(server)
            )
            else None
        ),
        what="the request's access log line",
    )
    events = {line["event"]: line for line in mine}
    assert (events["http_request"]["trace_id"], events["http_request"]["span_id"]) == (trace_id, http_span.span_id)
    assert (events["tool_call"]["trace_id"], events["tool_call"]["span_id"]) == (trace_id, tool.span_id)
    assert {line.get("trace_id") for line in mine} == {trace_id}
    # The embedding service's own log line joins the same trace, by the traceparent docserver sent.
    remote = wait_until(
        lambda: [
            json.loads(line)
            for line in (logs / "embedding-server.log").read_text().splitlines()
            if correlation_id in line
        ],
        what="the embedding server's log line",
    )
    assert [line["trace_id"] for line in remote] == [trace_id]


def test_openmetrics_exemplars_point_at_traces_the_collector_has(
    server: ServerProcess, receiver: OtlpReceiver, http: httpx.Client
) -> None:
    request = tool_call("search_docs", {"query": QUERY})
    assert http.post(server.mcp_url, **request).status_code == 200

    scrape = http.get(f"{server.url}/metrics", headers={"Accept": OPENMETRICS})

    assert scrape.headers["content-type"].startswith("application/openmetrics-text")
    exemplars = [
        (sample.name, sample.exemplar.labels["trace_id"])
        for family in openmetrics_families(scrape.text)
        for sample in family.samples
        if sample.exemplar is not None
    ]
    names = {name for name, _ in exemplars}
    for name in (
        "docserver_http_request_duration_seconds_bucket",
        "docserver_tool_call_duration_seconds_bucket",
        "docserver_embedding_duration_seconds_bucket",
        "docserver_query_duration_seconds_bucket",
        "mcp_server_operation_duration_seconds_bucket",
    ):
        assert name in names, sorted(names)
    for _, trace_id in exemplars:
        receiver.wait_for(
            lambda spans, t=trace_id: [s for s in spans if s.trace_id == t and s.service_name == MAIN], WAIT
        )


# --- resilience: a collector that is down or stuck ---------------------------------------------------------

LATENCY_SAMPLES = 100
EXPORT_FAILED = {"reason": "export_failed"}


def median_latency(http: httpx.Client, server: ServerProcess) -> float:
    request = tool_call("search_docs", {"query": QUERY})
    for _ in range(10):  # warm up the connection and the server's code paths
        http.post(server.mcp_url, **request)
    timings = []
    for _ in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        response = http.post(server.mcp_url, **request)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.json()["result"]["isError"] is False
    return statistics.median(timings)


def export_failures(http: httpx.Client, server: ServerProcess) -> float:
    return metric_value(http, server, "docserver_trace_spans_dropped_total", EXPORT_FAILED)


def export_complaints(server: ServerProcess) -> list[dict[str, Any]]:
    """Warning and error lines about trace export: docserver's own, and the OpenTelemetry SDK's."""
    return [
        line
        for line in log_lines(server)
        if line.get("level") in ("warning", "error")
        and (line.get("event") == "trace_export_failed" or str(line.get("logger", "")).startswith("opentelemetry"))
    ]


def fail_exports(http: httpx.Client, server: ServerProcess, batches: int) -> None:
    """Make `batches` more exports fail, one after the other (each request's spans leave in a batch of their own)."""
    for _ in range(batches):
        before = export_failures(http, server)
        assert http.post(server.mcp_url, **tool_call("list_sources", {})).status_code == 200
        wait_until(lambda b=before: export_failures(http, server) > b, timeout=30, what="export_failed to grow")


@pytest.fixture(scope="module")
def collector_up_latency(server: ServerProcess) -> float:
    with httpx.Client(timeout=30) as http:
        return median_latency(http, server)


@pytest.fixture(scope="module", params=["refused", "hangs"])
def broken(request: pytest.FixtureRequest, launcher: Launcher) -> Iterator[ServerProcess]:
    """docserver exporting to a closed port, or to a collector that accepts and never answers (1 s timeout)."""
    with contextlib.ExitStack() as stack:
        if request.param == "refused":
            endpoint = closed_port_url()
        else:
            endpoint = stack.enter_context(OtlpReceiver(mode="hang")).url
        broken_launcher = Launcher(launcher.database, launcher.embedding_url, endpoint, launcher.logs)
        yield stack.enter_context(broken_launcher.start(f"docserver-{request.param}", OTEL_EXPORTER_OTLP_TIMEOUT="1"))


def test_a_broken_collector_does_not_slow_requests(
    broken: ServerProcess, collector_up_latency: float, http: httpx.Client
) -> None:
    latency = median_latency(http, broken)

    assert latency <= 2 * collector_up_latency + 0.020, (latency, collector_up_latency)


def test_spans_that_cannot_be_exported_are_counted(broken: ServerProcess, http: httpx.Client) -> None:
    before = export_failures(http, broken)

    assert http.post(broken.mcp_url, **tool_call("list_sources", {})).status_code == 200

    wait_until(lambda: export_failures(http, broken) > before, timeout=30, what="export_failed to grow")


def test_docserver_warns_once_about_failed_exports(broken: ServerProcess, http: httpx.Client) -> None:
    fail_exports(http, broken, 3)

    warned = wait_until(
        lambda: [line for line in log_lines(broken) if line.get("event") == "trace_export_failed"],
        what="the export warning",
    )
    assert len(warned) == 1


def test_failed_exports_do_not_flood_the_log(broken: ServerProcess, http: httpx.Client) -> None:
    fail_exports(http, broken, 3)

    complaints = export_complaints(broken)
    assert len(complaints) <= 1, [(line.get("logger"), str(line.get("event"))[:80]) for line in complaints]


def test_sigterm_exits_in_bounded_time_while_the_collector_is_broken(broken: ServerProcess, http: httpx.Client) -> None:
    for _ in range(20):  # spans queued behind a failing exporter
        assert http.post(broken.mcp_url, **tool_call("list_sources", {})).status_code == 200
    started = time.monotonic()

    broken.process.send_signal(signal.SIGTERM)
    code = broken.process.wait(timeout=EXIT_BOUND + 15)

    assert code == 0
    assert time.monotonic() - started <= EXIT_BOUND


# --- shutdown -----------------------------------------------------------------------------------------------


def test_sigterm_exports_queued_spans_within_a_bounded_time(
    launcher: Launcher, receiver: OtlpReceiver, http: httpx.Client
) -> None:
    service = "docserver-sigterm"
    with launcher.start(service, OTEL_BSP_SCHEDULE_DELAY="60000") as server:
        traces = []
        for _ in range(5):
            response = http.get(f"{server.url}/healthz")
            traces.append(parse(response.headers["traceparent"])[0])
        assert not [span for span in receiver.spans() if span.service_name == service]  # still queued
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=EXIT_BOUND + 15)
        exit_seconds = time.monotonic() - started

    assert code == 0
    assert exit_seconds <= EXIT_BOUND
    received = {span.trace_id for span in receiver.spans() if span.service_name == service}
    assert set(traces) <= received


def test_sigterm_with_a_stuck_collector_and_default_timeouts_exits_within_the_bound(
    launcher: Launcher, http: httpx.Client
) -> None:
    with OtlpReceiver(mode="hang") as stuck:
        stuck_launcher = Launcher(launcher.database, launcher.embedding_url, stuck.url, launcher.logs)
        with stuck_launcher.start("docserver-stuck") as server:  # the exporter's default 10 s timeout
            request = tool_call("search_docs", {"query": QUERY})
            for _ in range(30):  # ~300 spans: one batch stuck in export, more queued behind it
                assert http.post(server.mcp_url, **request).status_code == 200
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            try:
                code = server.process.wait(timeout=EXIT_BOUND)
            except subprocess.TimeoutExpired:
                server.process.kill()
                code = server.process.wait()
            exit_seconds = time.monotonic() - started
            lines = log_lines(server)

    assert exit_seconds <= EXIT_BOUND
    assert code == 0
    # What could not leave in time is said once, not silently lost.
    gave_up = [line for line in lines if line.get("level") == "warning" and "shutdown" in str(line.get("event"))]
    assert len(gave_up) == 1, [line.get("event") for line in lines if line.get("level") != "info"]


# --- ingest -----------------------------------------------------------------------------------------------------


def test_ingest_exports_its_pipeline_spans(embedding: str, receiver: OtlpReceiver, logs: Path) -> None:
    service = "docserver-ingest"
    settings = {
        **openai_settings(embedding),
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACE_SAMPLE_RATE": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }

    result = run_cli(
        "ingest", str(CORPUS), "--source", "corpus", env=docserver_env(logs / "ingest-traced.db", settings)
    )

    assert result.returncode == 0, result.stderr
    # The process has exited, and exit flushes the queue: what is missing now never comes.
    spans = [span for span in receiver.spans() if span.service_name == service]
    names = {span.name for span in spans}
    assert {"ingest corpus", "ingest.discover", "ingest.chunk", "ingest.embed", "ingest.write"} <= names
    [root] = by_name(spans, "ingest corpus", service)
    assert all(span.trace_id == root.trace_id for span in spans)


# --- off switches ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [{"OTEL_SDK_DISABLED": "true"}, {"DOCSERVER_TELEMETRY": "off"}],
    ids=["otel-sdk-disabled", "telemetry-off"],
)
def test_tracing_off_means_no_spans_and_no_traceparent(
    launcher: Launcher, receiver: OtlpReceiver, http: httpx.Client, setting: dict[str, str]
) -> None:
    service = f"docserver-off-{secrets.token_hex(3)}"
    sampled = traceparent(new_trace_id(), new_span_id())
    with launcher.start(service, **setting) as server:
        health = http.get(f"{server.url}/healthz", headers={"traceparent": sampled})
        request = tool_call("search_docs", {"query": QUERY})
        request["headers"]["traceparent"] = sampled
        search = http.post(server.mcp_url, **request)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=EXIT_BOUND + 15) == 0

    assert health.status_code == 200 and search.status_code == 200
    assert search.json()["result"]["isError"] is False
    assert "traceparent" not in health.headers and "traceparent" not in search.headers
    # Shutdown flushes whatever a provider had queued: after exit, absence is final.
    assert not [span for span in receiver.spans() if span.service_name == service]
