"""Following one request across services, the way an operator does with a log aggregator.

`docserver serve` (openai embedder) and the OpenAI-compatible embedding
server run as two processes, each writing JSON lines to its own file. After
a search with a known correlation id both are stopped, the two files are
merged and loaded into a real query engine (DuckDB's `read_json`), and one
`WHERE correlation_id = ...` must return every line of that request from
both processes, in time order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from conftest import CORPUS
from support.docserver_process import docserver_env, run_cli, start_docserver
from support.embedding_server_fixture import start_embedding_server
from test_logging import CONTRACT_FIELDS, RFC3339_UTC, tool_call_request

pytestmark = pytest.mark.slow

EMBEDDING_FIELDS = ("timestamp", "level", "event", "logger", "service_name")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@dataclass
class Aggregated:
    merged: Path
    docserver_log: Path
    embedding_log: Path
    correlation_id: str
    traced_correlation_id: str
    direct_correlation_id: str
    embedding_requests: int

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with duckdb.connect() as db:
            return db.execute(sql, [str(self.merged), *params]).fetchall()

    def by_correlation_id(self, correlation_id: str) -> list[tuple[Any, ...]]:
        """(timestamp, service_name, event, trace_id) of one request, from both processes, oldest first."""
        return self.query(
            """
            SELECT timestamp, service_name, event, trace_id
            FROM read_json(?, format = 'newline_delimited', sample_size = -1)
            WHERE correlation_id = ?
            ORDER BY timestamp
            """,
            correlation_id,
        )


def _search(http: httpx.Client, mcp_url: str, query: str, headers: dict[str, str]) -> None:
    request_headers, body = tool_call_request("search_docs", {"query": query})
    response = http.post(mcp_url, headers={**request_headers, **headers}, content=body)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["isError"] is False, response.text


@pytest.fixture(scope="module")
def aggregated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aggregated]:
    workdir = tmp_path_factory.mktemp("aggregation")
    embedding_log = workdir / "embedding-server.jsonl"
    docserver_log = workdir / "docserver.jsonl"
    run = uuid.uuid4().hex[:12]
    ids = {"plain": f"agg-{run}", "traced": f"agg-traced-{run}", "direct": f"agg-direct-{run}"}
    with start_embedding_server(log_path=embedding_log) as (url, _process), httpx.Client(timeout=30) as http:
        env = docserver_env(
            workdir / "docserver.db",
            {
                "DOCSERVER_EMBEDDER": "openai",
                "DOCSERVER_EMBEDDING_URL": url,
                "DOCSERVER_EMBEDDING_MODEL": "test-embed",
                "OTEL_TRACES_EXPORTER": "none",
            },
        )
        ingested = run_cli("ingest", str(CORPUS), "--source", "corpus", env=env)
        assert ingested.returncode == 0, ingested.stderr
        with start_docserver(env, docserver_log) as server:
            _search(http, server.mcp_url, f"how do I build from source {run}", {"X-Correlation-ID": ids["plain"]})
            traced = {"X-Correlation-ID": ids["traced"], "traceparent": TRACEPARENT}
            _search(http, server.mcp_url, f"rotate access tokens {run}", traced)
        direct = {"X-Correlation-ID": ids["direct"], "traceparent": TRACEPARENT}
        http.post(f"{url}/embeddings", json={"model": "test-embed", "input": ["hello"]}, headers=direct)
        requests = http.get(url.removesuffix("/v1") + "/admin/stats").json()["requests"]
    # Both processes have exited: their files are complete. Merge them as a log shipper would.
    merged = workdir / "merged.jsonl"
    merged.write_bytes(docserver_log.read_bytes() + embedding_log.read_bytes())
    yield Aggregated(merged, docserver_log, embedding_log, ids["plain"], ids["traced"], ids["direct"], requests)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def test_both_services_write_one_json_object_per_line(aggregated: Aggregated) -> None:
    docserver, embedding = _lines(aggregated.docserver_log), _lines(aggregated.embedding_log)

    assert all(set(CONTRACT_FIELDS) <= set(line) for line in docserver)
    assert all(set(EMBEDDING_FIELDS) <= set(line) for line in embedding)
    assert all(RFC3339_UTC.match(line["timestamp"]) for line in docserver + embedding)
    assert {line["service_name"] for line in embedding} == {"embedding-server"}


def test_the_embedding_server_logs_one_line_per_embedding_request(aggregated: Aggregated) -> None:
    events = [line["event"] for line in _lines(aggregated.embedding_log)]

    assert events == ["embeddings_request"] * aggregated.embedding_requests


def test_the_embedding_server_takes_the_trace_id_from_traceparent(aggregated: Aggregated) -> None:
    [line] = [
        line
        for line in _lines(aggregated.embedding_log)
        if line.get("correlation_id") == aggregated.direct_correlation_id
    ]

    assert line["trace_id"] == TRACE_ID


def test_one_correlation_id_finds_the_request_in_both_processes_in_time_order(aggregated: Aggregated) -> None:
    rows = aggregated.by_correlation_id(aggregated.correlation_id)

    services = [service for _, service, _, _ in rows]
    events = [event for _, _, event, _ in rows]
    assert set(services) == {"docserver", "embedding-server"}
    assert {"http_request", "tool_call", "embeddings_request"} <= set(events), events
    # Causal order, read off the merged timeline: the provider answered, then the tool finished, then the request.
    assert events.index("embeddings_request") < events.index("tool_call") < events.index("http_request"), events
    assert events[-1] == "http_request"


def test_the_timestamp_column_is_a_real_time_not_text(aggregated: Aggregated) -> None:
    [(kind,)] = aggregated.query(
        "SELECT DISTINCT typeof(timestamp) FROM read_json(?, format = 'newline_delimited', sample_size = -1)"
    )

    assert kind.startswith("TIMESTAMP"), kind


def test_every_line_of_a_traced_request_carries_the_client_trace_id(aggregated: Aggregated) -> None:
    rows = aggregated.by_correlation_id(aggregated.traced_correlation_id)

    assert {service for _, service, _, _ in rows} == {"docserver", "embedding-server"}
    assert [trace_id for _, _, _, trace_id in rows] == [TRACE_ID] * len(rows)


def test_a_request_without_traceparent_still_has_one_trace_id_in_both_processes(aggregated: Aggregated) -> None:
    rows = aggregated.by_correlation_id(aggregated.correlation_id)

    trace_ids = {trace_id for _, _, _, trace_id in rows}
    assert len(trace_ids) == 1 and None not in trace_ids, rows
    assert trace_ids != {TRACE_ID}
