"""Structured JSON logs: the pipeline in process, then a real `docserver serve`.

In process, `configure_logging` writes to a file in tmp_path and each test
reads it after `writer.flush()`. Against the subprocess, the server's stdout
goes to a log file; a test notes how many lines the file has, sends its
request, and waits for that request's `http_request` line: the access line
is written last, after everything else the request logged, by the one
writer thread, so every line after the mark belongs to that request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CORPUS
from docserver import __version__
from docserver.app import create_app
from docserver.config import Settings
from docserver.observability.context import bind_correlation_id, reset_correlation_id
from docserver.observability.correlation import new_correlation_id
from docserver.observability.logging import configure_logging, event_line, get_logger
from docserver.observability.logwriter import LogWriter
from docserver.observability.middleware import ObservabilityMiddleware
from docserver.runtime import Runtime
from support.captured_logs import logging_configured
from support.docserver_process import ServerProcess, _wait_healthy, docserver_env, free_port, run_cli, start_docserver
from support.inprocess import current_request, http_scope

CONTRACT_FIELDS = ("timestamp", "level", "event", "logger", "service_name", "service_version", "environment")
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
MAX_REQUEST_BYTES = 64 * 1024
EMBEDDING_MODEL = "test-embed"


# --- in process: the pipeline -------------------------------------------------------


@dataclass
class CapturedLogs:
    writer: LogWriter
    path: Path

    def raw(self) -> bytes:
        assert self.writer.flush(), "the log writer did not drain its queue"
        return self.path.read_bytes()

    def lines(self) -> list[dict[str, Any]]:
        """Every line, each parsed as one JSON object (bytes split on \\n only, as log shippers do)."""
        return [json.loads(line) for line in self.raw().split(b"\n") if line]


@pytest.fixture(name="configure")
def configure_fixture(tmp_path: Path) -> Iterator[Callable[..., CapturedLogs]]:
    """`configure(**kwargs)` runs configure_logging into a file; logging is restored afterwards."""
    opened = 0
    with contextlib.ExitStack() as stack:

        def run(**kwargs: Any) -> CapturedLogs:
            nonlocal opened
            path = tmp_path / f"log-{opened}.jsonl"
            opened += 1
            stream = stack.enter_context(path.open("wb"))
            writer = stack.enter_context(logging_configured(stream, **kwargs))
            return CapturedLogs(writer, path)

        yield run


def test_every_line_is_one_json_object_with_the_contract_fields(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure(service_name="docserver-test", environment="staging")

    get_logger("docserver.test").info("search_completed", hits=3)

    [line] = logs.lines()
    assert {key: line[key] for key in CONTRACT_FIELDS} == {
        "timestamp": line["timestamp"],
        "level": "info",
        "event": "search_completed",
        "logger": "docserver.test",
        "service_name": "docserver-test",
        "service_version": __version__,
        "environment": "staging",
    }
    assert line["hits"] == 3


def test_timestamp_is_rfc3339_utc_ending_in_z(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure()

    get_logger("docserver.test").info("tick")

    [line] = logs.lines()
    assert RFC3339_UTC.match(line["timestamp"]), line["timestamp"]


def test_event_data_cannot_overwrite_reserved_fields(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure(service_name="docserver", environment="production")
    forged = {
        "timestamp": "1970-01-01T00:00:00Z",
        "level": "critical",
        "logger": "forged",
        "service_name": "forged",
        "service_version": "0.0.0",
        "environment": "forged",
        "correlation_id": "forged",
    }
    token = bind_correlation_id("real-id")
    try:
        get_logger("docserver.test").info("login", **forged)
    finally:
        reset_correlation_id(token)

    [line] = logs.lines()
    assert line["level"] == "info"
    assert line["logger"] == "docserver.test"
    assert (line["service_name"], line["service_version"], line["environment"]) == (
        "docserver",
        __version__,
        "production",
    )
    assert line["correlation_id"] == "real-id"
    assert line["timestamp"] != forged["timestamp"]


def test_a_stdlib_extra_cannot_overwrite_the_event(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure()

    logging.getLogger("somelib").warning("disk almost full", extra={"event": "forged"})

    [line] = logs.lines()
    assert line["event"] == "disk almost full"


@pytest.mark.parametrize("name", ["uvicorn.error", "asyncio", "mcp"])
def test_stdlib_loggers_come_out_as_the_same_json(configure: Callable[..., CapturedLogs], name: str) -> None:
    logs = configure(service_name="docserver", environment="test")

    logging.getLogger(name).warning("library says %s", "hello")

    [line] = logs.lines()
    assert line["event"] == "library says hello"
    assert (line["level"], line["logger"]) == ("warning", name)
    assert set(CONTRACT_FIELDS) <= set(line)
    assert RFC3339_UTC.match(line["timestamp"])


def _fail() -> None:
    raise ValueError("the index is corrupt")


def test_an_exception_is_structured_with_type_message_and_frames(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure()

    try:
        _fail()
    except ValueError:
        get_logger("docserver.test").exception("rebuild_failed")

    [line] = logs.lines()
    assert line["level"] == "error"
    [exception] = line["exception"]
    assert (exception["exc_type"], exception["exc_value"]) == ("ValueError", "the index is corrupt")
    assert [frame["name"] for frame in exception["frames"]][-1] == "_fail"
    assert all({"filename", "lineno", "name"} <= set(frame) for frame in exception["frames"])


async def test_an_unhandled_exception_in_a_request_is_logged_once_with_the_correlation_id(
    configure: Callable[..., CapturedLogs], settings: Settings, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = configure()

    async def broken_check() -> dict[str, str]:
        raise RuntimeError("store exploded")

    monkeypatch.setattr(runtime, "check", broken_check)
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/readyz", headers={"X-Correlation-ID": "req-boom-1"})

    assert response.status_code == 500
    assert response.headers["x-correlation-id"] == "req-boom-1"
    assert response.json()["correlation_id"] == "req-boom-1"
    lines = logs.lines()
    with_exception = [line for line in lines if "exception" in line]
    assert len(with_exception) == 1, lines
    [logged] = with_exception
    assert logged["correlation_id"] == "req-boom-1"
    assert logged["exception"][-1]["exc_type"] == "RuntimeError"
    assert logged["exception"][-1]["exc_value"] == "store exploded"
    assert sum(line["event"] == "http_request" and line["status_code"] == 500 for line in lines) == 1


def test_console_format_is_readable_text_not_json(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure(log_format="console")

    get_logger("docserver.test").warning("cache_cold", entries=0)

    text = logs.raw().decode()
    assert "cache_cold" in text and "entries=0" in text and "docserver.test" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_log_level_drops_lines_below_it(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure(level="WARNING")

    get_logger("docserver.test").info("routine")
    logging.getLogger("uvicorn.error").info("routine from a library")
    get_logger("docserver.test").warning("unusual")
    logging.getLogger("uvicorn.error").warning("unusual from a library")

    assert [line["event"] for line in logs.lines()] == ["unusual", "unusual from a library"]


def test_debug_level_lets_debug_lines_through(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure(level="DEBUG")

    get_logger("docserver.test").debug("details")

    assert [line["event"] for line in logs.lines()] == ["details"]


def test_a_hot_event_line_is_the_line_the_pipeline_writes(configure: Callable[..., CapturedLogs]) -> None:
    """The fast path (access and tool-call lines) and structlog agree on fields, order and redaction."""
    logs = configure(environment="staging", secrets=["s3cret-value"])
    fields = {
        "method": "POST",
        "route": "/mcp",
        "path": "/mcp?token=s3cret-value",
        "status_code": 200,
        "duration_ms": 1.5,
    }
    token = bind_correlation_id("hot-path-id")
    try:
        event_line("http_request", "docserver.http", scan=("path",))(dict(fields))
        get_logger("docserver.http").info("http_request", **fields)
    finally:
        reset_correlation_id(token)

    fast, pipeline = logs.lines()
    assert list(fast) == list(pipeline)
    assert {key: value for key, value in fast.items() if key != "timestamp"} == {
        key: value for key, value in pipeline.items() if key != "timestamp"
    }
    assert "s3cret-value" not in logs.raw().decode()


def test_an_in_memory_binary_stream_receives_the_lines(configure: Callable[..., CapturedLogs]) -> None:
    stream = io.BytesIO()
    writer = configure_logging(stream=stream)
    try:
        get_logger("docserver.test").info("hello")
        assert writer.flush(timeout=1)
        assert json.loads(stream.getvalue())["event"] == "hello"
    finally:
        writer.close(timeout=1)


async def _call_asgi(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET /healthz straight through ASGI: headers reach the app exactly as given."""
    scope = http_scope("GET", "/healthz", headers, host=b"test")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


async def test_an_id_with_cr_lf_that_reaches_the_app_is_replaced_and_never_logged(
    configure: Callable[..., CapturedLogs],
) -> None:
    # uvicorn's parser rejects raw CR/LF (see the subprocess test below); a
    # proxy or another server might not, so the middleware is checked directly.
    logs = configure()
    hostile = b"abc\r\nSet-Cookie: owned=1"

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    access_log = event_line("http_request", "docserver.http")
    app = ObservabilityMiddleware(ok, routes=["/healthz"], instruments=None, access_log=access_log)
    status, headers, _ = await _call_asgi(app, [(b"x-correlation-id", hostile)])

    assert status == 200
    assert UUID4.match(headers[b"x-correlation-id"].decode())
    lines = logs.lines()
    assert [line["event"] for line in lines] == ["correlation_id_replaced", "http_request"]
    assert all(line["correlation_id"] == headers[b"x-correlation-id"].decode() for line in lines)
    assert b"Set-Cookie" not in logs.raw()


# --- a real `docserver serve`: helpers ---------------------------------------------------


class LogFile:
    """The JSON lines a server has written so far (complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[dict[str, Any]]:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        parsed = []
        for raw in complete.split(b"\n")[:-1]:
            try:
                parsed.append(json.loads(raw))
            except ValueError:
                raise AssertionError(f"log line is not one JSON object: {raw[:300]!r}") from None
        return parsed

    def mark(self) -> int:
        return len(self.lines())

    def wait_for(self, done: Callable[[list[dict[str, Any]]], bool], since: int = 0, timeout: float = 15) -> list:
        """The lines after `since`, once `done(lines)` holds (the server writes from a thread)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()[since:]
            if done(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"log condition not met within {timeout} s; last lines: {lines[-5:]}")
            time.sleep(0.02)  # polling the file; the condition, not the sleep, is what is awaited

    def request_lines(self, correlation_id: str, since: int) -> list[dict[str, Any]]:
        """Every line after `since`, once the access line of `correlation_id` is there."""
        return self.wait_for(lambda lines: any(_is_access_line(line, correlation_id) for line in lines), since)


def _is_access_line(line: dict[str, Any], correlation_id: str) -> bool:
    return line.get("event") == "http_request" and line.get("correlation_id") == correlation_id


def tool_call_request(name: str, arguments: dict[str, Any]) -> tuple[dict[str, str], str]:
    """Headers and body of a current-protocol (2026-07-28) tools/call."""
    return current_request("tools/call", {"name": name, "arguments": arguments}, name=name)


def query_hash(query: str) -> str:
    """What docs/observability.md promises: the first 16 hex digits of SHA-256 of the UTF-8 query."""
    return hashlib.sha256(query.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def openai_env(embedding_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A database ingested through the real embedding server, and the settings to serve it."""
    database = tmp_path_factory.mktemp("logging_db") / "docserver.db"
    env = docserver_env(
        database,
        {
            "DOCSERVER_EMBEDDER": "openai",
            "DOCSERVER_EMBEDDING_URL": embedding_server,
            "DOCSERVER_EMBEDDING_MODEL": EMBEDDING_MODEL,
            # Spans are made but not exported: there is no collector to fail against.
            "OTEL_TRACES_EXPORTER": "none",
        },
    )
    result = run_cli("ingest", str(CORPUS), "--source", "corpus", env=env)
    assert result.returncode == 0, result.stderr
    return env


@pytest.fixture(scope="module")
def server(openai_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Every store query and embedding batch is "slow", so each logs a warning inside its request."""
    env = {
        **openai_env,
        "DOCSERVER_SLOW_QUERY_MS": "0.001",
        "DOCSERVER_SLOW_EMBEDDING_MS": "0.001",
        "DOCSERVER_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
    }
    with start_docserver(env, tmp_path_factory.mktemp("logging_serve") / "serve.log") as process:
        yield process


@pytest.fixture(scope="module")
def log(server: ServerProcess) -> LogFile:
    return LogFile(server.log_path)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


# --- a real `docserver serve`: access lines and correlation ids ------------------------------


@pytest.mark.slow
def test_every_line_the_server_writes_is_json_with_the_contract_fields(
    server: ServerProcess, log: LogFile, http: httpx.Client
) -> None:
    http.get(f"{server.url}/healthz", headers={"X-Correlation-ID": "contract-1"})

    lines = log.request_lines("contract-1", since=0)

    for line in log.lines():
        assert set(CONTRACT_FIELDS) <= set(line), line
        assert RFC3339_UTC.match(line["timestamp"]), line
        assert line["service_name"] == "docserver"
    assert lines


@pytest.mark.slow
def test_one_access_line_per_request_with_method_route_status_and_duration(
    server: ServerProcess, log: LogFile, http: httpx.Client
) -> None:
    since = log.mark()

    http.get(f"{server.url}/healthz", headers={"X-Correlation-ID": "access-1"})

    lines = log.request_lines("access-1", since)
    [access] = [line for line in lines if line["event"] == "http_request"]
    assert (access["method"], access["route"], access["status_code"]) == ("GET", "/healthz", 200)
    assert isinstance(access["duration_ms"], float | int) and access["duration_ms"] >= 0
    assert access["level"] == "info" and access["logger"] == "docserver.http"


def _foreign_origin(url: str) -> dict[str, Any]:
    headers, body = tool_call_request("list_sources", {})
    return {
        "method": "POST",
        "url": f"{url}/mcp",
        "headers": {**headers, "Origin": "http://evil.example"},
        "content": body,
    }


def _oversized(url: str) -> dict[str, Any]:
    headers, _ = tool_call_request("list_sources", {})
    return {"method": "POST", "url": f"{url}/mcp", "headers": headers, "content": b" " * (MAX_REQUEST_BYTES + 1)}


ECHO_CASES: dict[str, tuple[Callable[[str], dict[str, Any]], int]] = {
    "2xx-healthz": (lambda url: {"method": "GET", "url": f"{url}/healthz"}, 200),
    "404-unknown-path": (lambda url: {"method": "GET", "url": f"{url}/no/such/page"}, 404),
    "403-foreign-origin": (_foreign_origin, 403),
    "413-oversized-body": (_oversized, 413),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ECHO_CASES))
def test_a_supplied_id_is_echoed_and_on_every_line_of_the_request(
    server: ServerProcess, log: LogFile, http: httpx.Client, case: str
) -> None:
    build, status = ECHO_CASES[case]
    correlation_id = f"echo-{case}"
    request = build(server.url)
    request["headers"] = {**request.get("headers", {}), "X-Correlation-ID": correlation_id}
    since = log.mark()

    response = http.request(**request)

    assert response.status_code == status, response.text
    assert response.headers["x-correlation-id"] == correlation_id
    lines = log.request_lines(correlation_id, since)
    assert [line.get("correlation_id") for line in lines] == [correlation_id] * len(lines), lines
    assert sum(line["event"] == "http_request" for line in lines) == 1


@pytest.mark.slow
def test_a_docserver_error_body_carries_the_correlation_id(server: ServerProcess, http: httpx.Client) -> None:
    response = http.get(f"{server.url}/no/such/page", headers={"X-Correlation-ID": "body-404"})

    assert response.status_code == 404
    assert response.json()["correlation_id"] == "body-404"


@pytest.mark.slow
def test_a_request_without_an_id_gets_a_fresh_one_on_the_response_and_its_lines(
    server: ServerProcess, log: LogFile, http: httpx.Client
) -> None:
    since = log.mark()

    response = http.get(f"{server.url}/healthz")

    correlation_id = response.headers["x-correlation-id"]
    assert UUID4.match(correlation_id)
    lines = log.request_lines(correlation_id, since)
    # Only its own lines: a line of the test before may still land after the mark.
    assert [line["event"] for line in lines if line.get("correlation_id") == correlation_id] == ["http_request"]


@pytest.mark.slow
def test_a_tool_call_logs_tool_status_duration_results_and_only_a_hash_of_the_query(
    server: ServerProcess, log: LogFile, http: httpx.Client
) -> None:
    query = "how do I rotate access tokens"
    headers, body = tool_call_request("search_docs", {"query": query, "limit": 3})
    since = log.mark()

    response = http.post(server.mcp_url, headers={**headers, "X-Correlation-ID": "tool-1"}, content=body)

    assert response.status_code == 200, response.text
    results = response.json()["result"]["structuredContent"]["results"]
    lines = log.request_lines("tool-1", since)
    [call] = [line for line in lines if line["event"] == "tool_call"]
    assert (call["tool"], call["status"], call["results"]) == ("search_docs", "ok", len(results))
    assert call["duration_ms"] >= 0 and call["correlation_id"] == "tool-1"
    assert (call["query_length"], call["query_hash"]) == (len(query), query_hash(query))
    assert "query" not in call
    assert query not in log.path.read_text()


@pytest.mark.slow
def test_a_failed_tool_call_logs_status_error(server: ServerProcess, log: LogFile, http: httpx.Client) -> None:
    headers, body = tool_call_request("get_document", {"id": 999_999})
    since = log.mark()

    response = http.post(server.mcp_url, headers={**headers, "X-Correlation-ID": "tool-error-1"}, content=body)

    assert response.json()["result"]["isError"] is True
    lines = log.request_lines("tool-error-1", since)
    [call] = [line for line in lines if line["event"] == "tool_call"]
    assert (call["tool"], call["status"]) == ("get_document", "error")


@pytest.mark.slow
def test_log_queries_true_logs_the_query_itself(openai_env: dict[str, str], tmp_path: Path, http: httpx.Client) -> None:
    query = "journal flush interval durability"
    headers, body = tool_call_request("search_docs", {"query": query})
    with start_docserver({**openai_env, "LOG_QUERIES": "true"}, tmp_path / "serve.log") as verbatim:
        response = http.post(verbatim.mcp_url, headers={**headers, "X-Correlation-ID": "verbatim-1"}, content=body)
        assert response.status_code == 200
        lines = LogFile(verbatim.log_path).request_lines("verbatim-1", since=0)

    [call] = [line for line in lines if line["event"] == "tool_call"]
    assert call["query"] == query


# --- hostile ids --------------------------------------------------------------------------

HOSTILE_IDS = {
    "10-kb": b"a" * 10_240,
    "json-fragment": b'{"a":1}',
    "json-breakout": b'x","level":"critical","event":"forged',
    "unicode-line-separator": "abc\u2028def".encode(),
    "non-ascii": "café-ü-日本".encode(),
    "percent-encoded-crlf": b"abc%0D%0ASet-Cookie:%20x=1",
    "129-chars": b"b" * 129,
    "space": b"two words",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(HOSTILE_IDS))
def test_a_hostile_id_is_replaced_never_echoed_and_each_event_stays_one_json_line(
    server: ServerProcess, log: LogFile, http: httpx.Client, case: str
) -> None:
    hostile = HOSTILE_IDS[case]
    since = log.mark()

    response = http.get(f"{server.url}/healthz", headers={"X-Correlation-ID": hostile})

    assert response.status_code == 200
    fresh = response.headers["x-correlation-id"]
    assert UUID4.match(fresh), fresh
    lines = log.request_lines(fresh, since)  # parsing every line proves each event is one JSON line
    assert [line["event"] for line in lines] == ["correlation_id_replaced", "http_request"]
    assert all(line["correlation_id"] == fresh for line in lines)
    [replaced] = [line for line in lines if line["event"] == "correlation_id_replaced"]
    assert replaced["level"] == "warning"
    text = hostile.decode()
    escaped = json.dumps(text)[1:-1]
    written = log.path.read_bytes().decode()
    assert text not in written and escaped not in written
    assert hostile not in response.content and hostile not in b"".join(v for _, v in response.headers.raw)


@pytest.mark.slow
def test_raw_cr_lf_in_the_id_is_refused_by_the_http_parser_and_logged_as_one_json_line(
    server: ServerProcess, log: LogFile
) -> None:
    since = log.mark()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Correlation-ID: abc\rInjected: yes\r\n"
            b"Connection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 400")
    assert b"Injected" not in answer
    lines = log.wait_for(lambda lines: any(line["logger"] == "uvicorn.error" for line in lines), since)
    assert all(set(CONTRACT_FIELDS) <= set(line) for line in lines)
    assert b"Injected" not in log.path.read_bytes()


# --- context reaches every layer ---------------------------------------------------------------


@pytest.mark.slow
def test_the_correlation_id_reaches_the_store_and_the_embedder(
    server: ServerProcess, log: LogFile, http: httpx.Client
) -> None:
    headers, body = tool_call_request("search_docs", {"query": "restore a snapshot from backup 42"})
    since = log.mark()

    http.post(server.mcp_url, headers={**headers, "X-Correlation-ID": "layers-1"}, content=body)

    lines = log.request_lines("layers-1", since)
    by_event = {line["event"]: line for line in lines}
    assert by_event["slow_query"]["logger"] == "docserver.store"
    assert by_event["slow_query"]["correlation_id"] == "layers-1"
    assert by_event["slow_embedding_batch"]["logger"] == "docserver.embed"
    assert by_event["slow_embedding_batch"]["correlation_id"] == "layers-1"


@pytest.mark.slow
def test_outbound_calls_to_the_embedding_provider_carry_the_correlation_id(
    server: ServerProcess, http: httpx.Client, embedding_server: str
) -> None:
    headers, body = tool_call_request("search_docs", {"query": "memory watermark for outbound header test"})

    response = http.post(server.mcp_url, headers={**headers, "X-Correlation-ID": "outbound-1"}, content=body)

    assert response.json()["result"]["isError"] is False
    stats = http.get(embedding_server.removesuffix("/v1") + "/admin/stats").json()
    assert stats["last_headers"]["x-correlation-id"] == "outbound-1"


# --- 1,000 concurrent requests -------------------------------------------------------------------

CONCURRENT_REQUESTS = 1_000
IN_FLIGHT = 50


async def _send_all(server: ServerProcess, plan: list[tuple[str, str | None]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    in_flight = asyncio.Semaphore(IN_FLIGHT)  # cheaper than queueing a thousand tasks in the pool
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(correlation_id: str, query: str | None) -> httpx.Response:
            async with in_flight:
                if query is None:
                    return await client.get(f"{server.url}/healthz", headers={"X-Correlation-ID": correlation_id})
                headers, body = tool_call_request("search_docs", {"query": query, "limit": 2})
                return await client.post(
                    server.mcp_url, headers={**headers, "X-Correlation-ID": correlation_id}, content=body
                )

        return await asyncio.gather(*(one(cid, query) for cid, query in plan))


@pytest.mark.slow
def test_a_thousand_concurrent_requests_each_log_only_their_own_id(server: ServerProcess, log: LogFile) -> None:
    run = uuid.uuid4().hex[:8]
    # One request in four is a search (store, embedder and tool lines); the rest are /healthz.
    plan = [
        (f"c-{run}-{i}", f"enable tls certificate {run} {i}" if i % 4 == 0 else None)
        for i in range(CONCURRENT_REQUESTS)
    ]
    queries = {cid: query for cid, query in plan}
    since = log.mark()
    # Lines reach the file up to a writer interval late: one logged before the
    # burst may land after the mark, so the burst is also bounded in time.
    burst_started = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

    responses = asyncio.run(_send_all(server, plan))

    assert [r.status_code for r in responses] == [200] * CONCURRENT_REQUESTS
    assert [r.headers["x-correlation-id"] for r in responses] == [cid for cid, _ in plan]
    lines = log.wait_for(  # every request's own access line, not just as many access lines as requests
        lambda lines: (
            sum(line["event"] == "http_request" and line.get("correlation_id") in queries for line in lines)
            >= CONCURRENT_REQUESTS
        ),
        since,
    )
    by_id: dict[str, list[dict[str, Any]]] = {cid: [] for cid, _ in plan}
    for line in lines:
        if line["timestamp"] < burst_started:
            continue
        # 100% coverage: nothing was logged during the burst without one of its ids.
        assert line.get("correlation_id") in by_id, line
        by_id[line["correlation_id"]].append(line)
    for cid, own in by_id.items():
        events = [line["event"] for line in own]
        assert events.count("http_request") == 1, (cid, events)
        query = queries[cid]
        if query is None:
            assert events == ["http_request"], (cid, events)  # nothing bled in from a search
            continue
        [call] = [line for line in own if line["event"] == "tool_call"]
        assert call["query_hash"] == query_hash(query), (cid, call)  # no tool line from another search
        assert {"slow_query", "slow_embedding_batch"} <= set(events), (cid, events)


# --- logging never breaks serving ---------------------------------------------------------------


@dataclass
class PipedServer:
    url: str
    process: subprocess.Popen[bytes]
    probe: int | None
    """A second, non-blocking writer on the same FIFO: a 4 KB write to it fails once the pipe is full."""

    def pipe_is_full(self) -> bool:
        assert self.probe is not None
        try:
            os.write(self.probe, b"\n" * 4096)  # at most PIPE_BUF: all or nothing
        except BlockingIOError:
            return True
        return False


@pytest.fixture
def piped_server(openai_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[bool], PipedServer]]:
    """`start(close_reader)`: docserver serve with stdout on a FIFO that nobody reads, or whose reader is gone."""
    started: list[PipedServer] = []
    descriptors: list[int] = []

    def start(close_reader: bool) -> PipedServer:
        fifo = tmp_path / f"stdout-{len(started)}.fifo"
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        stdout = os.open(fifo, os.O_WRONLY)
        probe = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        port = free_port()
        stderr_path = tmp_path / f"stderr-{len(started)}.log"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "docserver", "serve", "--port", str(port)],
                env=openai_env,
                stdout=stdout,
                stderr=stderr,
            )
        os.close(stdout)
        if close_reader:  # from now on every write to the server's stdout fails with EPIPE
            os.close(reader)
            os.close(probe)
        else:
            descriptors.extend((reader, probe))
        piped = PipedServer(f"http://127.0.0.1:{port}", process, None if close_reader else probe)
        started.append(piped)
        _wait_healthy(ServerProcess(piped.url, process, stderr_path))
        return piped

    yield start
    for piped in started:
        piped.process.kill()
        piped.process.wait(timeout=30)
    for descriptor in descriptors:
        os.close(descriptor)


def _serve_some(http: httpx.Client, url: str, count: int) -> list[int]:
    statuses = [http.get(f"{url}/healthz", headers={"X-Correlation-ID": f"pipe-{i}"}).status_code for i in range(count)]
    headers, body = tool_call_request("search_docs", {"query": "dead letter exchange"})
    call = http.post(f"{url}/mcp", headers=headers, content=body)
    assert call.json()["result"]["isError"] is False
    return [*statuses, call.status_code]


@pytest.mark.slow
def test_requests_succeed_when_stdout_is_a_closed_pipe(
    piped_server: Callable[[bool], PipedServer], http: httpx.Client
) -> None:
    server = piped_server(True)

    statuses = _serve_some(http, server.url, 300)  # well over 64 KB of log lines

    assert statuses == [200] * 301
    assert server.process.poll() is None


@pytest.mark.slow
def test_requests_succeed_when_stdout_is_a_full_pipe(
    piped_server: Callable[[bool], PipedServer], http: httpx.Client
) -> None:
    server = piped_server(False)
    sent = 0
    while not server.pipe_is_full():  # the server's access lines fill it; nobody reads
        assert _serve_some(http, server.url, 25) == [200] * 26
        sent += 26
        assert sent < 5_000, "the pipe never filled up"

    statuses = _serve_some(http, server.url, 300)

    assert statuses == [200] * 301
    assert server.pipe_is_full()
    assert server.process.poll() is None


def test_fresh_correlation_ids_differ_within_a_process_and_after_a_fork() -> None:
    ids = {new_correlation_id() for _ in range(1000)}
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child writes one id of its own and leaves at once
        os.write(writer, new_correlation_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    forked = os.read(reader, 100).decode()
    os.close(reader)
    assert len(ids) == 1000 and all(UUID4.match(value) for value in ids)
    assert UUID4.match(forked) and forked[:24] != next(iter(ids))[:24]
