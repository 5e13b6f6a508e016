"""Protocol details at the /mcp endpoint, in process: each test is a defect a foreign client met.

Header whitespace needs a real socket (httpx refuses to send it), so that test
is in test_conformance.py's module server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from docserver.config import Settings
from docserver.ingest.pipeline import ingest
from docserver.mcp.resources import PAGE_SIZE, URI_TEMPLATE
from docserver.runtime import Runtime
from support.inprocess import (
    ACCEPT_BOTH,
    HANDSHAKE,
    MCP_URL,
    current_request,
    handshake_request,
    http_client,
    mcp_client,
    new_metrics,
    serve_in_process,
)

JSON_HEADERS = {"Accept": ACCEPT_BOTH, "Content-Type": "application/json"}


def _initialize(version: str = HANDSHAKE) -> str:
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "tests", "version": "0"}}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})


async def _open_session(http: httpx.AsyncClient) -> str:
    response = await http.post(MCP_URL, headers=JSON_HEADERS, content=_initialize())
    session_id = response.headers["mcp-session-id"]
    headers, _ = handshake_request("ping", session_id)
    await http.post(MCP_URL, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return session_id


async def _call(http: httpx.AsyncClient, session_id: str, method: str, params: dict[str, Any]) -> Any:
    headers, _ = handshake_request(method, session_id)
    body = {"jsonrpc": "2.0", "id": 2, "method": method, "params": params}
    return (await http.post(MCP_URL, headers=headers, json=body)).json()


async def test_a_get_reconnecting_with_last_event_id_gets_a_stream_not_a_500(
    settings: Settings, runtime: Runtime
) -> None:
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        session_id = await _open_session(http)
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id, "MCP-Protocol-Version": HANDSHAKE}
        response = await http.get(MCP_URL, headers={**headers, "Last-Event-ID": "abc"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")


async def test_prompts_are_not_declared_and_prompts_get_is_method_not_found(
    settings: Settings, runtime: Runtime
) -> None:
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        opened = await http.post(MCP_URL, headers=JSON_HEADERS, content=_initialize())
        session_id = opened.headers["mcp-session-id"]
        answer = await _call(http, session_id, "prompts/get", {"name": "nope"})

    capabilities = opened.json()["result"]["capabilities"]
    assert "prompts" not in capabilities
    assert capabilities["tools"] == {"listChanged": False}
    assert answer["error"]["code"] == METHOD_NOT_FOUND


async def test_a_batch_era_version_is_not_agreed_to(settings: Settings, runtime: Runtime) -> None:
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        answers = [
            (await http.post(MCP_URL, headers=JSON_HEADERS, content=_initialize(version))).json()
            for version in ("2024-11-05", "2025-03-26", "2025-06-18")
        ]

    agreed = [answer["result"]["protocolVersion"] for answer in answers]
    assert agreed == [LATEST_HANDSHAKE_VERSION, LATEST_HANDSHAKE_VERSION, "2025-06-18"]


async def test_a_body_that_is_no_json_rpc_message_is_invalid_request(settings: Settings, runtime: Runtime) -> None:
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        session_id = await _open_session(http)
        headers, _ = handshake_request("ping", session_id)
        answers = [
            await http.post(MCP_URL, headers=headers, content=body)
            for body in (b"[]", b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', b'{"id": 1, "method": "ping"}')
        ]

    assert {response.status_code for response in answers} == {400}
    errors = [response.json()["error"] for response in answers]
    assert {error["code"] for error in errors} == {INVALID_REQUEST}
    assert not any("pydantic" in error["message"] for error in errors)


async def test_errors_to_requests_without_a_session_carry_no_session_id(settings: Settings, runtime: Runtime) -> None:
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        missing = await http.post(MCP_URL, headers=JSON_HEADERS, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        refused = await http.post(MCP_URL, headers={**JSON_HEADERS, "Accept": "text/html"}, content=_initialize())

    assert (missing.status_code, refused.status_code) == (400, 406)
    assert "mcp-session-id" not in missing.headers
    assert "mcp-session-id" not in refused.headers


async def test_an_unsupported_protocol_version_in_a_session_names_the_version(
    settings: Settings, runtime: Runtime
) -> None:
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        session_id = await _open_session(http)
        headers, body = handshake_request("ping", session_id)
        response = await http.post(MCP_URL, headers={**headers, "MCP-Protocol-Version": "1999-01-01"}, content=body)

    assert response.status_code == 400
    answer = response.json()
    assert answer["id"] == json.loads(body)["id"]
    error = answer["error"]
    assert error["code"] == UNSUPPORTED_PROTOCOL_VERSION
    assert "1999-01-01" in error["message"]
    assert "_meta" not in error["message"]
    assert error["data"] == {"supported": ["2025-06-18", "2025-11-25"], "requested": "1999-01-01"}


async def test_an_unsupported_protocol_version_without_a_session_lists_what_discover_lists(
    settings: Settings, runtime: Runtime
) -> None:
    headers, body = current_request("tools/list")
    message = {**json.loads(body), "id": 301}
    message["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "1999-01-01"
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        refused = await http.post(MCP_URL, headers={**headers, "MCP-Protocol-Version": "1999-01-01"}, json=message)
        discover_headers, discover_body = current_request("server/discover")
        discovered = await http.post(MCP_URL, headers=discover_headers, content=discover_body)

    assert refused.status_code == 400
    answer = refused.json()
    assert (answer["id"], answer["error"]["code"]) == (301, UNSUPPORTED_PROTOCOL_VERSION)
    assert answer["error"]["data"]["supported"] == discovered.json()["result"]["supportedVersions"]


async def test_a_document_is_a_resource_with_its_text_and_mime_type(
    settings: Settings, runtime: Runtime, corpus: Path
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    hit = (await runtime.service.search("snapshot", limit=1))[0]
    uri = f"docs://corpus/{hit.document_id}"
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        session_id = await _open_session(http)
        templates = await _call(http, session_id, "resources/templates/list", {})
        read = await _call(http, session_id, "resources/read", {"uri": uri})
        wrong_source = await _call(http, session_id, "resources/read", {"uri": f"docs://other/{hit.document_id}"})

    assert [t["uriTemplate"] for t in templates["result"]["resourceTemplates"]] == [URI_TEMPLATE]
    (contents,) = read["result"]["contents"]
    assert contents["uri"] == uri
    assert contents["mimeType"] == "text/markdown"
    assert "snapshot" in contents["text"]
    assert wrong_source["error"]["code"] == INVALID_PARAMS
    assert "search_docs" in wrong_source["error"]["message"]


async def test_completion_suggests_source_names_by_prefix(settings: Settings, runtime: Runtime, corpus: Path) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    await ingest(runtime.store, runtime.embedder, [corpus], "cookbook")
    ref = {"type": "ref/resource", "uri": URI_TEMPLATE}
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        session_id = await _open_session(http)
        answer = await _call(
            http, session_id, "completion/complete", {"ref": ref, "argument": {"name": "source", "value": "co"}}
        )
        prompt = await _call(
            http,
            session_id,
            "completion/complete",
            {"ref": {"type": "ref/prompt", "name": "x"}, "argument": {"name": "a", "value": ""}},
        )

    assert answer["result"]["completion"] == {"values": ["cookbook", "corpus"], "total": 2, "hasMore": False}
    assert prompt["error"]["code"] == INVALID_PARAMS


async def test_resource_reads_and_completions_are_measured_without_a_tool_label(
    settings: Settings, runtime: Runtime, corpus: Path
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    metrics = new_metrics()
    measured = Runtime(settings, runtime.store, runtime.embedder, metrics)
    ref = {"type": "ref/resource", "uri": URI_TEMPLATE}
    async with serve_in_process(settings, measured, metrics) as app, http_client(app) as http:
        session_id = await _open_session(http)
        await _call(http, session_id, "resources/read", {"uri": "docs://corpus/999999"})
        await _call(http, session_id, "completion/complete", {"ref": ref, "argument": {"name": "source", "value": ""}})

    def count(method: str, error_type: str) -> float | None:
        labels = {"mcp_method_name": method, "gen_ai_tool_name": "", "error_type": error_type}
        return metrics.registry.get_sample_value("mcp_server_operation_duration_seconds_count", labels)

    assert count("resources/read", str(INVALID_PARAMS)) == 1
    assert count("completion/complete", "") == 1


async def test_resources_list_pages_through_every_document_with_a_cursor(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(PAGE_SIZE + 30):
        (folder / f"page-{number:03}.md").write_text(f"# Page {number}\n\nText of page {number}.\n")
    await ingest(runtime.store, runtime.embedder, [folder], "many")
    async with serve_in_process(settings, runtime, None) as app, mcp_client(app, mode="legacy") as client:
        first = await client.list_resources()
        second = await client.list_resources(cursor=first.next_cursor)

    assert (len(first.resources), len(second.resources)) == (PAGE_SIZE, 30)
    assert first.next_cursor is not None and second.next_cursor is None
    names = [resource.name for resource in first.resources + second.resources]
    assert sorted(names) == [f"many/page-{number:03}.md" for number in range(PAGE_SIZE + 30)]
    assert {resource.mime_type for resource in first.resources} == {"text/markdown"}


async def test_resources_list_refuses_a_cursor_it_did_not_hand_out(settings: Settings, runtime: Runtime) -> None:
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        session_id = await _open_session(http)
        cursors = ("abc", "ZG9jczot")  # not base64; base64 of "docs:-"
        answers = [await _call(http, session_id, "resources/list", {"cursor": cursor}) for cursor in cursors]

    assert [answer["error"]["code"] for answer in answers] == [INVALID_PARAMS, INVALID_PARAMS]
    assert "nextCursor" in answers[0]["error"]["message"]


async def test_both_eras_declare_the_same_capabilities(settings: Settings, runtime: Runtime) -> None:
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        initialized = await http.post(MCP_URL, headers=JSON_HEADERS, content=_initialize())
        headers, body = current_request("server/discover")
        discovered = await http.post(MCP_URL, headers=headers, content=body)

    handshake = initialized.json()["result"]["capabilities"]
    current = discovered.json()["result"]["capabilities"]
    assert handshake == current
    assert handshake["tools"] == {"listChanged": False}
    assert handshake["resources"] == {"subscribe": False, "listChanged": False}


async def test_an_initialize_with_an_unsupported_protocol_version_names_the_session_versions(
    settings: Settings, runtime: Runtime
) -> None:
    headers = {**JSON_HEADERS, "MCP-Protocol-Version": "1999-01-01"}
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        response = await http.post(MCP_URL, headers=headers, content=_initialize())

    assert response.status_code == 400
    answer = response.json()
    assert (answer["id"], answer["error"]["code"]) == (1, UNSUPPORTED_PROTOCOL_VERSION)
    assert answer["error"]["data"] == {"supported": ["2025-06-18", "2025-11-25"], "requested": "1999-01-01"}
    assert "_meta" not in answer["error"]["message"]
