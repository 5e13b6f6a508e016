"""A real `docserver serve` behind API tokens: what its logs and traces say about callers, and what they never say."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CORPUS
from docserver.access.tokens import new_token, token_entry
from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver
from support.inprocess import current_request
from support.otlp_receiver import OtlpReceiver, SpanRecord

pytestmark = pytest.mark.slow

TOKEN = new_token()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


def _serve(folder: Path, receiver: OtlpReceiver, **settings: str) -> Iterator[ServerProcess]:
    database = folder / "docserver.db"
    assert run_cli("ingest", str(CORPUS), "--source", "corpus", env=docserver_env(database)).returncode == 0
    tokens = folder / "tokens.toml"
    tokens.write_text(token_entry("ci-bot", TOKEN, ["docs:read"]))
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACE_SAMPLE_RATE": "1.0",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    env = docserver_env(database, {"DOCSERVER_API_TOKENS_FILE": str(tokens), **traced, **settings})
    with start_docserver(env, folder / "serve.log") as process:
        yield process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[ServerProcess]:
    yield from _serve(tmp_path_factory.mktemp("auth_logs"), receiver)


def server_spans(receiver: OtlpReceiver, trace_id: str) -> list[SpanRecord]:
    """The request's HTTP and MCP server spans, once both have arrived."""

    def both(spans: list[SpanRecord]) -> list[SpanRecord] | None:
        mine = [span for span in spans if span.trace_id == trace_id and span.kind == "SERVER"]
        return mine if len(mine) == 2 else None

    return receiver.wait_for(both)


def traced_search(server: ServerProcess, correlation_id: str) -> str:
    """A search with the token and a sampled traceparent; its trace id."""
    trace_id = secrets.token_hex(16)
    headers, body = current_request("tools/call", {"name": "search_docs", "arguments": {"query": "install"}})
    headers = {
        **headers,
        "Mcp-Name": "search_docs",
        "Authorization": f"Bearer {TOKEN}",
        "X-Correlation-ID": correlation_id,
        "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
    }
    response = httpx.post(server.mcp_url, headers=headers, content=body, timeout=10)
    assert response.status_code == 200, response.text
    return trace_id


def request_lines(server: ServerProcess, correlation_id: str, timeout: float = 15) -> dict[str, dict[str, Any]]:
    """The request's lines by event, once its access line is written (the server logs from a thread)."""
    deadline = time.monotonic() + timeout
    while True:
        complete = server.log_path.read_text().rpartition("\n")[0].splitlines()
        mine = [json.loads(line) for line in complete if correlation_id in line and line.startswith("{")]
        by_event = {line["event"]: line for line in mine if line.get("correlation_id") == correlation_id}
        if "http_request" in by_event or time.monotonic() > deadline:
            return by_event
        time.sleep(0.02)  # polling the file; the access line, not the sleep, is what is awaited


def test_the_access_and_tool_lines_name_the_principal_never_the_token(server: ServerProcess) -> None:
    headers, body = current_request("tools/call", {"name": "search_docs", "arguments": {"query": "install"}})
    headers = {**headers, "Mcp-Name": "search_docs", "Authorization": f"Bearer {TOKEN}", "X-Correlation-ID": "auth-1"}
    response = httpx.post(server.mcp_url, headers=headers, content=body, timeout=10)
    assert response.status_code == 200, response.text

    by_event = request_lines(server, "auth-1")
    assert by_event["http_request"]["principal"] == "ci-bot"
    assert by_event["tool_call"]["principal"] == "ci-bot"
    assert TOKEN not in server.log_path.read_text()


def test_a_refused_request_logs_the_reason_and_no_token(server: ServerProcess) -> None:
    headers, body = current_request("tools/list")
    headers = {**headers, "Authorization": "Bearer dsk_a-guess", "X-Correlation-ID": "auth-2"}
    response = httpx.post(server.mcp_url, headers=headers, content=body, timeout=10)

    assert response.status_code == 401
    by_event = request_lines(server, "auth-2")
    assert by_event["mcp_auth_failed"]["reason"] == "unknown_token"
    assert by_event["http_request"]["status_code"] == 401 and "principal" not in by_event["http_request"]
    assert "dsk_a-guess" not in server.log_path.read_text()


def test_the_http_and_mcp_spans_name_the_principal_as_enduser_never_the_token(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    spans = server_spans(receiver, traced_search(server, "auth-3"))

    assert {span.name: span.attributes.get("enduser.id") for span in spans} == {
        "POST /mcp": "ci-bot",
        "tools/call search_docs": "ci-bot",
    }
    assert not any(TOKEN in str(span.attributes) for span in receiver.spans())


def test_trace_enduser_false_keeps_the_principal_out_of_spans(tmp_path: Path, receiver: OtlpReceiver) -> None:
    for process in _serve(tmp_path, receiver, DOCSERVER_TRACE_ENDUSER="false"):
        spans = server_spans(receiver, traced_search(process, "auth-4"))
        assert [span.attributes.get("enduser.id") for span in spans] == [None, None]
        assert request_lines(process, "auth-4")["http_request"]["principal"] == "ci-bot"
