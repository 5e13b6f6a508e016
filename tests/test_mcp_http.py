"""MCP over Streamable HTTP against a real `docserver serve`: both protocol eras, tool errors, hostile HTTP.

One server serves the whole module (the corpus is ingested once); the official
SDK client speaks for well-behaved clients, raw httpx for everything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    HEADER_MISMATCH,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PROTOCOL_VERSION_META_KEY,
    UNSUPPORTED_PROTOCOL_VERSION,
    CallToolResult,
    TextContent,
)
from prometheus_client.parser import text_string_to_metric_families

from conftest import CORPUS, KNOWN_ANSWERS
from support.docserver_process import ServerProcess, docserver_env, free_port, run_cli, start_docserver

pytestmark = pytest.mark.slow

CURRENT = "2026-07-28"
HANDSHAKE = "2025-11-25"
HANDSHAKE_VERSIONS = ("2025-06-18", "2025-11-25")
TOOL_NAMES = {"search_docs", "list_sources", "get_document"}
ACCEPT_BOTH = "application/json, text/event-stream"
MAX_REQUEST_BYTES = 64 * 1024
"""The module's server runs with DOCSERVER_MAX_REQUEST_BYTES at this, so the setting itself is tested."""

RequestSpec = dict[str, Any]


# --- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp_http") / "docserver.db"
    result = run_cli("ingest", str(CORPUS), "--source", "corpus", env=docserver_env(path))
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def server(database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = docserver_env(database, {"DOCSERVER_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES)})
    with start_docserver(env, tmp_path_factory.mktemp("mcp_http_logs") / "serve.log") as process:
        yield process


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def session_id(server: ServerProcess, http: httpx.Client) -> Iterator[str]:
    session = open_session(http, server.mcp_url)
    yield session
    http.delete(server.mcp_url, headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE})


# --- raw request builders ---------------------------------------------------


def current_headers(method: str, name: str | None = None, version: str = CURRENT) -> dict[str, str]:
    """Headers of a 2026-07-28 POST, as the SDK client sends them."""
    headers = {
        "Accept": ACCEPT_BOTH,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": version,
        "Mcp-Method": method,
    }
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def current_message(method: str, params: dict[str, Any] | None = None, version: str = CURRENT) -> dict[str, Any]:
    """A 2026-07-28 request: the protocol version and client capabilities travel in `_meta`."""
    meta = {
        PROTOCOL_VERSION_META_KEY: version,
        CLIENT_CAPABILITIES_META_KEY: {},
        CLIENT_INFO_META_KEY: {"name": "test_mcp_http", "version": "0"},
    }
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**(params or {}), "_meta": meta}}


def current_body(method: str, params: dict[str, Any] | None = None, version: str = CURRENT) -> str:
    return json.dumps(current_message(method, params, version))


def handshake_headers(session_id: str | None = None, version: str = HANDSHAKE) -> dict[str, str]:
    headers = {"Accept": ACCEPT_BOTH, "Content-Type": "application/json", "MCP-Protocol-Version": version}
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
    return headers


def handshake_body(method: str, params: dict[str, Any] | None = None, request_id: int | None = 1) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def open_session(http: httpx.Client, url: str) -> str:
    """Run the handshake-era `initialize` exchange; return the session id."""
    params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "test_mcp_http", "version": "0"}}
    headers = {"Accept": ACCEPT_BOTH, "Content-Type": "application/json"}
    response = http.post(url, headers=headers, content=handshake_body("initialize", params))
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    initialized = http.post(
        url, headers=handshake_headers(session_id), content=handshake_body("notifications/initialized", None, None)
    )
    assert initialized.status_code == 202, initialized.text
    return session_id


def text_of(result: CallToolResult) -> str:
    return "\n".join(item.text for item in result.content if isinstance(item, TextContent))


# --- current protocol (2026-07-28) through the SDK client --------------------
# The SDK client is entered in the test body: its anyio task group cannot
# straddle an async fixture's set-up and tear-down tasks.


async def test_auto_mode_negotiates_the_current_protocol(server: ServerProcess) -> None:
    async with Client(server.mcp_url, mode="auto") as client:
        assert client.protocol_version == CURRENT


async def test_the_three_tools_are_listed_by_name(server: ServerProcess) -> None:
    async with Client(server.mcp_url, mode="auto") as client:
        listed = await client.list_tools()
    assert {tool.name for tool in listed.tools} == TOOL_NAMES


async def test_search_docs_schema_requires_query_and_bounds_limit(server: ServerProcess) -> None:
    async with Client(server.mcp_url, mode="auto") as client:
        listed = await client.list_tools()
    schema = next(tool.input_schema for tool in listed.tools if tool.name == "search_docs")
    assert schema["required"] == ["query"]
    limit = schema["properties"]["limit"]
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 20)
    assert "source" in schema["properties"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(("query", "path"), [answer[:2] for answer in KNOWN_ANSWERS], ids=[a[0] for a in KNOWN_ANSWERS])
async def test_search_docs_ranks_the_known_answer_first(server: ServerProcess, query: str, path: str) -> None:
    async with Client(server.mcp_url, mode="auto") as client:
        result = await client.call_tool("search_docs", {"query": query})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["results"][0]["path"] == path


async def test_list_sources_reports_the_ingested_corpus(server: ServerProcess) -> None:
    async with Client(server.mcp_url, mode="auto") as client:
        result = await client.call_tool("list_sources", {})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    files = [path for path in CORPUS.rglob("*") if path.is_file()]
    [source] = result.structured_content["sources"]
    [version] = source["versions"]
    assert (source["name"], version["version"], version["documents"]) == ("corpus", None, len(files))


async def test_get_document_returns_the_whole_file_of_a_search_hit(server: ServerProcess) -> None:
    query, path, _ = KNOWN_ANSWERS[0]
    async with Client(server.mcp_url, mode="auto") as client:
        found = await client.call_tool("search_docs", {"query": query, "limit": 1})
        assert found.structured_content is not None
        document_id = found.structured_content["results"][0]["document_id"]

        result = await client.call_tool("get_document", {"id": document_id})

    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["path"] == path
    assert result.structured_content["content"] == (CORPUS / path).read_text()


# --- handshake era (initialize, sessions) -------------------------------------


async def test_legacy_client_completes_the_handshake_and_calls_a_tool(server: ServerProcess) -> None:
    query, path, _ = KNOWN_ANSWERS[1]
    async with Client(server.mcp_url, mode="legacy") as client:
        version = client.protocol_version
        listed = await client.list_tools()
        result = await client.call_tool("search_docs", {"query": query})

    assert version in HANDSHAKE_VERSIONS
    assert {tool.name for tool in listed.tools} == TOOL_NAMES
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["results"][0]["path"] == path


def test_get_opens_the_session_event_stream(server: ServerProcess, http: httpx.Client, session_id: str) -> None:
    headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id, "MCP-Protocol-Version": HANDSHAKE}
    with http.stream("GET", server.mcp_url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")


def test_delete_ends_the_session(server: ServerProcess, http: httpx.Client, session_id: str) -> None:
    headers = {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": HANDSHAKE}
    deleted = http.delete(server.mcp_url, headers=headers)
    assert deleted.status_code in (200, 204)

    after = http.post(server.mcp_url, headers=handshake_headers(session_id), content=handshake_body("tools/list"))

    assert after.status_code == 404


# --- tool errors are MCP tool errors, not HTTP errors ---------------------------

_SEARCH_ARGUMENTS = "search_docs takes `query` (a string of 1 to 1000 characters, required), `source` (a string)"
TOOL_ERRORS = [
    pytest.param("no_such_tool", {}, ["'no_such_tool'", "search_docs, list_sources, get_document"], id="unknown-tool"),
    pytest.param(
        "search_docs", {"query": 5}, ["`query` must be a string of 1 to 1000 characters, not 5"], id="query-5"
    ),
    pytest.param(
        "search_docs",
        {"query": "tls", "limit": "many"},
        ["`limit` must be an integer from 1 to 20, not a string.", _SEARCH_ARGUMENTS],
        id="limit-not-an-integer",
    ),
    pytest.param(
        "search_docs", {"query": "tls", "limit": 0}, ["`limit` must be an integer from 1 to 20, not 0"], id="limit-0"
    ),
    pytest.param("search_docs", {"query": "tls", "limit": 21}, ["`limit`", "not 21"], id="limit-21"),
    pytest.param("search_docs", {"query": ""}, ["`query` must be", "not a string of 0 characters"], id="empty-query"),
    pytest.param("search_docs", {"query": "   "}, ["query is empty"], id="blank-query"),
    pytest.param("search_docs", {}, ["`query` is missing: send a string of 1 to 1000 characters"], id="missing-query"),
    pytest.param(
        "search_docs",
        {"query": "tls", "max_results": 3},
        ["`max_results` is not an argument of search_docs.", _SEARCH_ARGUMENTS],
        id="unknown-argument",
    ),
    pytest.param("search_docs", {"query": "tls", "source": "nosuch"}, ["'nosuch'", "corpus"], id="unknown-source"),
    pytest.param("get_document", {"id": 999_999}, ["999999", "search_docs"], id="unknown-document"),
    pytest.param("get_document", {"id": "abc"}, ["`id` must be an integer of at least 1, not a string"], id="id-abc"),
]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(("tool", "arguments", "fragments"), TOOL_ERRORS)
async def test_bad_tool_calls_are_tool_errors_that_say_what_to_fix(
    server: ServerProcess, mode: str, tool: str, arguments: dict[str, Any], fragments: list[str]
) -> None:
    async with Client(server.mcp_url, mode=mode) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    message = text_of(result)
    for fragment in fragments:
        assert fragment in message
    assert "pydantic" not in message


def test_a_tool_error_is_an_http_200_result_in_the_current_era(server: ServerProcess, http: httpx.Client) -> None:
    body = current_body("tools/call", {"name": "get_document", "arguments": {"id": 999_999}})
    response = http.post(server.mcp_url, headers=current_headers("tools/call", "get_document"), content=body)
    assert response.status_code == 200
    assert response.json()["result"]["isError"] is True


def test_a_tool_error_is_an_http_200_result_in_the_handshake_era(
    server: ServerProcess, http: httpx.Client, session_id: str
) -> None:
    body = handshake_body("tools/call", {"name": "get_document", "arguments": {"id": 999_999}})
    response = http.post(server.mcp_url, headers=handshake_headers(session_id), content=body)
    assert response.status_code == 200
    assert response.json()["result"]["isError"] is True


# --- hostile HTTP ---------------------------------------------------------------


def _oversized_chunks() -> Iterator[bytes]:
    """A body with no Content-Length (chunked), bigger than the limit."""
    for _ in range(4):
        yield b" " * (MAX_REQUEST_BYTES // 2)


HostileCase = tuple[Callable[[str], RequestSpec], int, int | None]
"""(build the request from a live session id, expected HTTP status, expected JSON-RPC error code or None)."""

HOSTILE: dict[str, HostileCase] = {
    "current-malformed-json": (
        lambda sid: {"headers": current_headers("tools/list"), "content": "{not json"},
        400,
        PARSE_ERROR,
    ),
    "handshake-malformed-json": (
        lambda sid: {"headers": handshake_headers(sid), "content": "{not json"},
        400,
        PARSE_ERROR,
    ),
    "current-json-not-json-rpc": (
        lambda sid: {"headers": current_headers("tools/list"), "content": '{"hello": "world", "id": 1}'},
        400,
        None,
    ),
    "handshake-json-not-json-rpc": (
        lambda sid: {"headers": handshake_headers(sid), "content": '{"hello": "world"}'},
        400,
        None,
    ),
    "current-unknown-method": (
        lambda sid: {"headers": current_headers("frobnicate"), "content": current_body("frobnicate")},
        404,
        METHOD_NOT_FOUND,
    ),
    "handshake-unknown-method": (
        lambda sid: {"headers": handshake_headers(sid), "content": handshake_body("frobnicate")},
        200,
        METHOD_NOT_FOUND,
    ),
    "current-foreign-origin": (
        lambda sid: {
            "headers": {**current_headers("tools/list"), "Origin": "http://evil.example"},
            "content": current_body("tools/list"),
        },
        403,
        None,
    ),
    "handshake-foreign-origin": (
        lambda sid: {
            "headers": {**handshake_headers(sid), "Origin": "http://evil.example"},
            "content": handshake_body("tools/list"),
        },
        403,
        None,
    ),
    "current-foreign-host": (
        lambda sid: {
            "headers": {**current_headers("tools/list"), "Host": "evil.example"},
            "content": current_body("tools/list"),
        },
        421,
        None,
    ),
    "handshake-foreign-host": (
        lambda sid: {
            "headers": {**handshake_headers(sid), "Host": "evil.example"},
            "content": handshake_body("tools/list"),
        },
        421,
        None,
    ),
    "current-unsupported-version": (
        lambda sid: {
            "headers": current_headers("tools/list", version="1999-01-01"),
            "content": current_body("tools/list", version="1999-01-01"),
        },
        400,
        UNSUPPORTED_PROTOCOL_VERSION,
    ),
    "handshake-unsupported-version": (
        lambda sid: {"headers": handshake_headers(sid, version="1999-01-01"), "content": handshake_body("tools/list")},
        400,
        None,
    ),
    "current-method-header-mismatch": (
        lambda sid: {
            "headers": current_headers("tools/call", "list_sources"),
            "content": current_body("tools/call", {"name": "search_docs", "arguments": {"query": "tls"}}),
        },
        400,
        HEADER_MISMATCH,
    ),
    "unknown-session-id": (
        lambda sid: {"headers": handshake_headers("0" * 32), "content": handshake_body("tools/list")},
        404,
        None,
    ),
    "oversized-body": (
        lambda sid: {"headers": handshake_headers(sid), "content": b" " * (MAX_REQUEST_BYTES + 1)},
        413,
        None,
    ),
    "oversized-chunked-body": (
        lambda sid: {"headers": current_headers("tools/list"), "content": _oversized_chunks()},
        413,
        None,
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_request_gets_a_4xx_answer_not_a_500(
    server: ServerProcess, http: httpx.Client, session_id: str, case: str
) -> None:
    build, status, code = HOSTILE[case]

    response = http.post(server.mcp_url, **build(session_id))

    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["error"]["code"] == code


def test_a_body_just_under_the_limit_is_served(server: ServerProcess, http: httpx.Client) -> None:
    message = current_message("tools/list")
    message["params"]["_meta"]["padding"] = "x" * (MAX_REQUEST_BYTES - 1024)
    body = json.dumps(message)
    assert len(body) < MAX_REQUEST_BYTES

    response = http.post(server.mcp_url, headers=current_headers("tools/list"), content=body)

    assert response.status_code == 200, response.text
    assert {tool["name"] for tool in response.json()["result"]["tools"]} == TOOL_NAMES


def test_server_keeps_serving_after_hostile_requests(
    server: ServerProcess, http: httpx.Client, session_id: str
) -> None:
    for build, _status, _code in HOSTILE.values():
        http.post(server.mcp_url, **build(session_id))

    body = current_body("tools/call", {"name": "list_sources", "arguments": {}})
    call = http.post(server.mcp_url, headers=current_headers("tools/call", "list_sources"), content=body)
    health = http.get(f"{server.url}/healthz")

    assert call.status_code == 200, call.text
    assert call.json()["result"]["isError"] is False
    assert health.status_code == 200
    assert server.process.poll() is None
    assert "Traceback" not in server.logs()


# --- health endpoints -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoint_reports_ok(server: ServerProcess, http: httpx.Client, path: str) -> None:
    response = http.get(f"{server.url}{path}")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


# --- start-up refuses a store built by another embedder ----------------------------


def test_serve_refuses_a_store_built_with_another_embedder(tmp_path: Path, embedding_server: str) -> None:
    database = tmp_path / "openai.db"
    openai = {
        "DOCSERVER_EMBEDDER": "openai",
        "DOCSERVER_EMBEDDING_URL": embedding_server,
        "DOCSERVER_EMBEDDING_MODEL": "test-embed",
    }
    ingested = run_cli("ingest", str(CORPUS), "--source", "corpus", env=docserver_env(database, openai))
    assert ingested.returncode == 0, ingested.stderr

    served = run_cli("serve", "--port", str(free_port()), env=docserver_env(database), timeout=30)

    assert served.returncode != 0
    lines = served.stderr.strip().splitlines()
    assert len(lines) == 1, served.stderr
    assert "openai" in lines[0] and "hash" in lines[0]
    assert "Traceback" not in served.stdout + served.stderr


# --- tool errors are counted as errors -----------------------------------------------


def tool_calls(http: httpx.Client, server: ServerProcess, tool: str, status: str) -> float:
    """The current value of docserver_tool_calls_total{tool, status} on the server's /metrics."""
    text = http.get(f"{server.url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "docserver_tool_calls_total" and sample.labels == {"tool": tool, "status": status}:
                return sample.value
    return 0.0


def test_a_tool_error_is_counted_with_status_error(server: ServerProcess, http: httpx.Client) -> None:
    before = tool_calls(http, server, "get_document", "error")
    body = current_body("tools/call", {"name": "get_document", "arguments": {"id": 999_999}})
    response = http.post(server.mcp_url, headers=current_headers("tools/call", "get_document"), content=body)
    assert response.json()["result"]["isError"] is True

    assert tool_calls(http, server, "get_document", "error") == before + 1
