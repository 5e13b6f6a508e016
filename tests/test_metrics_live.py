"""/metrics of a real `docserver serve`: promtool's verdict, size budget, admin listener, kill switch, workers.

promtool (Debian's `prometheus` package; `make system-deps` installs it) is
the judge of the exposition format: its absence fails the test, it does not
skip it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import CORPUS
from support.docserver_process import ServerProcess, docserver_env, free_port, run_cli, start_docserver
from support.inprocess import current_request, handshake_request

pytestmark = pytest.mark.slow

DOCS = Path(__file__).parents[1] / "docs" / "metrics.md"
SCRAPE_BUDGET_BYTES = 200_000
"""The documented budget for one /metrics body (docs/metrics.md, "Cardinality")."""
PROFILING_TOKEN = "pprof-token"
ROUTES = (
    *("/mcp", "/healthz", "/readyz", "/metrics", "/no/such/page"),
    *("/debug/pprof/", "/debug/pprof/profile", "/debug/pprof/wall", "/debug/pprof/heap", "/debug/pprof/tasks"),
    "/debug/pprof/goroutine",
)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FOO")
"""Every verb on every route (pprof without its token: 401, no profile runs). uvicorn refuses `FOO` itself."""


def live_env(database: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """No trace collector runs here: without `none`, shutdown would wait on OTLP export retries."""
    return docserver_env(database, {"OTEL_TRACES_EXPORTER": "none", **(extra or {})})


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("metrics_live") / "docserver.db"
    result = run_cli("ingest", str(CORPUS), "--source", "corpus", env=docserver_env(path))
    assert result.returncode == 0, result.stderr
    return path


def call_tool(http: httpx.Client, url: str, name: str, arguments: dict[str, object]) -> httpx.Response:
    headers, body = current_request("tools/call", {"name": name, "arguments": arguments}, name=name)
    return http.post(f"{url}/mcp", headers=headers, content=body)


def drive_every_label(http: httpx.Client, url: str) -> None:
    """Traffic that gives every label its realistic values: each tool ok and failing, both eras, every verb."""
    for name, arguments in [
        ("search_docs", {"query": "enable TLS certificate"}),
        ("search_docs", {"query": "enable TLS certificate"}),  # a cache hit
        ("search_docs", {"query": "tls", "limit": 0}),
        ("search_docs", {"query": "tls", "source": "nosuch"}),
        ("list_sources", {}),
        ("get_document", {"id": 1}),
        ("get_document", {"id": 999_999}),
        ("no_such_tool", {}),
    ]:
        assert call_tool(http, url, name, arguments).status_code == 200
    headers, body = current_request("frobnicate")
    http.post(f"{url}/mcp", headers=headers, content=body)

    session = open_session(http, url)
    headers, body = handshake_request("tools/list", session)
    assert http.post(f"{url}/mcp", headers=headers, content=body).status_code == 200
    stream_headers = {**headers, "Accept": "text/event-stream"}
    with http.stream("GET", f"{url}/mcp", headers=stream_headers) as stream:
        assert stream.status_code == 200
    http.delete(f"{url}/mcp", headers=headers)

    for route in ROUTES:
        for method in METHODS:
            http.request(method, f"{url}{route}")


def open_session(http: httpx.Client, url: str) -> str:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "live", "version": "0"}}
    initialize = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    response = http.post(f"{url}/mcp", headers=headers, content=initialize)
    session = response.headers["mcp-session-id"]
    initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
    headers = {**headers, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    assert http.post(f"{url}/mcp", headers=headers, content=initialized).status_code == 202
    return session


@pytest.fixture(scope="module")
def exposition(database: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The classic-text /metrics body of a live server after traffic over every label."""
    log = tmp_path_factory.mktemp("metrics_live_logs") / "serve.log"
    env = live_env(database, {"ENABLE_PROFILING": "true", "PROFILING_TOKEN": PROFILING_TOKEN})
    with start_docserver(env, log) as server, httpx.Client(timeout=10) as http:
        drive_every_label(http, server.url)
        response = http.get(f"{server.url}/metrics")
    assert response.status_code == 200
    return response.text


def exported_names(text: str) -> set[str]:
    """Every family name as a scraper sees it (classic text: `# TYPE <name> <type>`)."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_promtool_accepts_the_live_exposition(exposition: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: install Debian's `prometheus` package (make system-deps)"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_live_scrape_stays_under_its_size_budget(exposition: str) -> None:
    assert len(exposition.encode()) < SCRAPE_BUDGET_BYTES


def test_the_live_scrape_carries_the_traffic(exposition: str) -> None:
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert samples[("docserver_tool_calls_total", (("status", "ok"), ("tool", "search_docs")))] == 2
    assert samples[("docserver_tool_calls_total", (("status", "error"), ("tool", "search_docs")))] == 2
    assert samples[("docserver_http_requests_total", (("method", "PUT"), ("route", "/mcp"), ("status_code", "405")))]
    pprof_failures = [
        value
        for (name, labels), value in samples.items()
        if name == "docserver_auth_failures_total" and ("endpoint", "pprof") in labels
    ]
    assert sum(pprof_failures) > 0
    assert samples[("mcp_server_session_duration_seconds_count", ())] == 1
    assert samples[("docserver_active_connections", (("transport", "sse"),))] == 0


def test_docs_list_every_live_metric(exposition: str) -> None:
    documented = set(re.findall(r"\b[a-z][a-z0-9_]*\b", DOCS.read_text()))
    assert sorted(exported_names(exposition) - documented) == []


def test_docs_name_no_metric_the_server_does_not_export(exposition: str) -> None:
    exported = exported_names(exposition)
    mentioned = set(re.findall(r"\b((?:docserver|mcp_server)_[a-z0-9_]*[a-z0-9])\b", DOCS.read_text()))
    stale = {name for name in mentioned if re.sub(r"_(bucket|count|sum)$", "", name) not in exported}
    assert sorted(stale) == []


# --- DOCSERVER_ADMIN_ADDR ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin_server(database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server with an admin listener and profiling on; yields (server, admin base URL)."""
    admin = f"127.0.0.1:{free_port()}"
    env = live_env(
        database,
        {"DOCSERVER_ADMIN_ADDR": admin, "ENABLE_PROFILING": "true", "PROFILING_TOKEN": PROFILING_TOKEN},
    )
    log = tmp_path_factory.mktemp("metrics_admin_logs") / "serve.log"
    with start_docserver(env, log) as server:
        admin_url = f"http://{admin}"
        wait_for(f"{admin_url}/metrics", server)
        yield server, admin_url


def wait_for(url: str, server: ServerProcess, within: float = 15.0) -> None:
    """Poll until `url` answers: the admin listener starts alongside the public one."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)  # polling for start-up; the answer, not the sleep, is what is awaited
    raise AssertionError(f"{url} did not answer within {within} s:\n{server.logs()}")


def test_metrics_answer_on_the_admin_port(admin_server: tuple[ServerProcess, str]) -> None:
    _, admin_url = admin_server
    response = httpx.get(f"{admin_url}/metrics")
    assert response.status_code == 200
    assert "docserver_build_info{" in response.text


def test_metrics_are_not_on_the_public_port_when_an_admin_port_is_set(admin_server: tuple[ServerProcess, str]) -> None:
    server, _ = admin_server
    assert httpx.get(f"{server.url}/metrics").status_code == 404


def test_pprof_answers_on_the_admin_port(admin_server: tuple[ServerProcess, str]) -> None:
    _, admin_url = admin_server
    response = httpx.get(f"{admin_url}/debug/pprof/", headers={"Authorization": f"Bearer {PROFILING_TOKEN}"})
    assert response.status_code == 200


def test_pprof_is_not_on_the_public_port_when_an_admin_port_is_set(admin_server: tuple[ServerProcess, str]) -> None:
    server, _ = admin_server
    response = httpx.get(f"{server.url}/debug/pprof/", headers={"Authorization": f"Bearer {PROFILING_TOKEN}"})
    assert response.status_code == 404


def test_the_admin_port_does_not_serve_mcp(admin_server: tuple[ServerProcess, str]) -> None:
    _, admin_url = admin_server
    headers, body = current_request("tools/list")
    assert httpx.post(f"{admin_url}/mcp", headers=headers, content=body).status_code == 404


# --- DOCSERVER_TELEMETRY=off -------------------------------------------------------------------------


def test_telemetry_off_still_serves_build_info_and_counts_nothing(
    database: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = live_env(database, {"DOCSERVER_TELEMETRY": "off"})
    log = tmp_path_factory.mktemp("metrics_off_logs") / "serve.log"
    with start_docserver(env, log) as server, httpx.Client(timeout=10) as http:
        assert call_tool(http, server.url, "search_docs", {"query": "tls"}).json()["result"]["isError"] is False
        response = http.get(f"{server.url}/metrics")
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    [(build, info)] = [(key, value) for key, value in values.items() if key[0] == "docserver_build_info"]
    assert (dict(build[1])["backend"], dict(build[1])["embedder"], info) == ("sqlite", "hash", 1.0)
    # Switched off, the replica shows as unmonitored, not as idle: no request families at all.
    assert not [key for key in values if key[0].startswith(("docserver_http_", "docserver_tool_", "mcp_server_"))]


# --- one process per container -----------------------------------------------------------------------


def test_serve_refuses_more_than_one_worker(database: Path) -> None:
    result = run_cli("serve", "--port", str(free_port()), "--workers", "2", env=docserver_env(database), timeout=30)
    lines = result.stderr.strip().splitlines()
    assert (result.returncode, len(lines)) == (2, 1), result.stderr
    assert "--workers must be 1" in lines[0]
    assert "process per container" in lines[0]
