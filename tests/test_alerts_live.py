"""Dashboards and alerts against real processes: docserver, Prometheus, Alertmanager, a webhook.

One scenario runs once for the module (about two minutes), on loopback only:

1. `docserver serve` (OpenAI-compatible embedder pointed at tests/embedding_server.py,
   whose faults are switched at run time; metrics on the admin listener behind
   METRICS_TOKEN), scraped every second by Prometheus with exemplar storage and
   the shipped scrape configuration; Alertmanager with the shipped routing tree,
   every receiver posting to a webhook in this process.
2. The rules are the shipped ones with every window and `for:` divided by 60
   (generated from the rule files by `deploy/stack.py`, never copied by hand),
   so an alert meant to need ten minutes needs ten seconds.
3. A load driver sends a known mix of MCP tool calls; the dashboards' queries are
   compared with what the driver knows; then the embedding provider is made slow,
   then failing, then the store loses a table, then the corpus goes two days without a
   successful refresh, and each time the matching alert must
   reach the webhook and resolve once the fault is gone. At the end docserver is
   stopped and DocServerDown must page.

Each test below asserts one part of what the scenario recorded.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CORPUS
from docserver.observability.metrics import LATENCY_BUCKETS
from docserver.store import sqlite_driver
from support.docserver_process import ServerProcess, docserver_env, free_port, run_cli, start_docserver, stop
from support.embedding_server_fixture import start_embedding_server
from support.inprocess import current_request

DEPLOY = Path(__file__).parents[1] / "deploy"
sys.path.insert(0, str(DEPLOY))
import stack  # noqa: E402  (deploy/stack.py: the stack configured from the committed files)

pytestmark = pytest.mark.slow

FACTOR = 60
"""Windows and `for:` of the test copy of the rules: the real ones divided by this."""
WINDOW = 20.0
"""Seconds of load the dashboard values are compared over ($__rate_interval)."""
BASELINE = 25.0
UNITS_PER_SECOND = 4.0
BASE_DELAY = 0.15
"""Every embedding call takes this long in normal operation: cache misses land in a known bucket."""
SLOW_DELAY = 2.2
FAULT_DEADLINE = 60.0
FIXED_QUERY = "enable TLS certificate"
METRICS_TOKEN = "live-metrics-token"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"


# --- the load driver ---------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    tool: str
    finished: float  # time.time()
    latency: float
    ok: bool
    search_hit: bool | None = None  # what the driver expects of the caches, for searches
    embedding_hit: bool | None = None
    results: int | None = None


class LoadDriver:
    """Sends units of MCP tool calls at a steady pace and records every outcome.

    Unit A searches a new query three times: limit 5 (both caches miss), limit 3
    (the search cache misses, the query embedding is reused) and limit 3 again
    (the search cache hits). Unit B calls list_sources, get_document, a tool that
    does not exist, and searches a fixed query (a search cache hit). The calls of
    a unit run in order, on one worker, so the cache outcomes are known.
    """

    def __init__(self, mcp_url: str, document_id: int) -> None:
        self.mcp_url = mcp_url
        self.document_id = document_id
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="load")
        self._clients: list[httpx.Client] = []
        self._scheduler = threading.Thread(target=self._schedule, name="load-scheduler")
        self._queries = count()

    def __enter__(self) -> LoadDriver:
        self._scheduler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._scheduler.join()
        self._pool.shutdown(wait=True)
        for client in self._clients:
            client.close()

    def _schedule(self) -> None:
        started = time.monotonic()
        for unit in count():
            due = started + unit / UNITS_PER_SECOND
            if self._stopping.wait(max(0.0, due - time.monotonic())):
                return
            self._pool.submit(self._unit_a if unit % 2 == 0 else self._unit_b)

    def _unit_a(self) -> None:
        query = f"journal flush interval number {next(self._queries)}"
        self.search(query, 5, search_hit=False, embedding_hit=False)
        self.search(query, 3, search_hit=False, embedding_hit=True)
        self.search(query, 3, search_hit=True, embedding_hit=None)

    def _unit_b(self) -> None:
        self.call("list_sources", {})
        self.call("get_document", {"id": self.document_id})
        self.call("no_such_tool", {})
        self.search(FIXED_QUERY, 5, search_hit=True, embedding_hit=None)

    def search(self, query: str, limit: int, *, search_hit: bool, embedding_hit: bool | None) -> None:
        self.call("search_docs", {"query": query, "limit": limit}, search_hit=search_hit, embedding_hit=embedding_hit)

    def call(self, tool: str, arguments: dict[str, Any], **expected: Any) -> dict[str, Any] | None:
        started = time.monotonic()
        try:
            result = call_tool(self._client(), self.mcp_url, tool, arguments)
        except httpx.HTTPError:
            result = None
        ok = result is not None and not result.get("isError")
        results = None
        if ok and tool == "search_docs":
            results = len(result.get("structuredContent", {}).get("results", []))
        outcome = Call(tool, time.time(), time.monotonic() - started, ok, results=results, **expected)
        with self._lock:
            self.calls.append(outcome)
        return result

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=30)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def window(self, end: float, seconds: float = WINDOW) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if end - seconds < call.finished <= end]


def call_tool(http: httpx.Client, mcp_url: str, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """One current-protocol `tools/call`: the JSON-RPC result, or None for a JSON-RPC error."""
    headers, body = current_request("tools/call", {"name": name, "arguments": arguments}, name=name)
    response = http.post(mcp_url, headers=headers, content=body)
    response.raise_for_status()
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        lines = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        message = json.loads(lines[-1])
    else:
        message = response.json()
    result: dict[str, Any] | None = message.get("result")
    return result


def open_and_close_session(http: httpx.Client, mcp_url: str) -> None:
    """A handshake-era session: initialize, initialized, DELETE (its duration is then observed)."""
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "live", "version": "0"}}
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    response = http.post(mcp_url, headers=accept, json=initialize)
    headers = {**accept, "Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
    http.post(mcp_url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    http.delete(mcp_url, headers=headers)


# --- Prometheus, Alertmanager and the dashboards ----------------------------------------


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        data = answer["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def value(self, expr: str, at: float | None = None, **labels: str) -> float | None:
        """The value of the one series of `expr` carrying `labels`."""
        found = [value for metric, value in self.query(expr, at) if labels.items() <= metric.items()]
        assert len(found) <= 1, f"{expr} {labels}: several series"
        return found[0] if found else None

    def last_scrape(self) -> float:
        result = self.query('timestamp(up{job="docserver"})')
        return result[0][1] if result else 0.0


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            if panel["type"] != "row":
                yield path.stem, panel


def panel_exprs(dashboard: str, title: str) -> list[str]:
    found = [panel for name, panel in panels() if name == dashboard and panel["title"] == title]
    assert len(found) == 1, f"no panel {title!r} on dashboard {dashboard}"
    return [target["expr"] for target in found[0]["targets"]]


def substitute(expr: str, instance: str, window: str) -> str:
    """Grafana's variables, as the dashboard would send them for this one server."""
    return (
        expr.replace("$__rate_interval", window)
        .replace("$job", "docserver")
        .replace("$instance", instance.replace(".", "\\\\."))
        .replace("$tool", ".+")
    )


def bucket(value: float) -> int:
    """Index of the latency bucket holding `value` (len(LATENCY_BUCKETS) for +Inf)."""
    return next((index for index, bound in enumerate(LATENCY_BUCKETS) if value <= bound), len(LATENCY_BUCKETS))


def percentile(values: list[float], phi: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(phi * len(ordered)) - 1)]


# --- the scenario -------------------------------------------------------------------


@dataclass
class Fault:
    fired: dict[str, stack.Notification | None] = field(default_factory=dict)
    resolved: dict[str, stack.Notification | None] = field(default_factory=dict)
    alertnames: set[str] = field(default_factory=set)


@dataclass
class Report:
    baseline_notifications: list[stack.Notification] = field(default_factory=list)
    values: dict[str, tuple[float | None, float, float]] = field(default_factory=dict)  # got, expected, tolerance
    latency: tuple[float | None, float] = (None, 0.0)  # histogram p95, driver p95
    faults: dict[str, Fault] = field(default_factory=dict)
    inhibited_ticket: dict[str, Any] | None = None
    exemplars: list[dict[str, Any]] = field(default_factory=list)
    empty_panels: list[str] = field(default_factory=list)
    down: stack.Notification | None = None


@dataclass
class Stack:
    server: ServerProcess
    embedding_url: str
    database: Path
    prometheus: Prometheus
    alertmanager_url: str
    webhook: stack.WebhookReceiver
    instance: str


def firing(name: str, since: float, receiver: str | None = None) -> Callable[[list[stack.Notification]], Any]:
    def find(notifications: list[stack.Notification]) -> stack.Notification | None:
        return next(
            (
                n
                for n in notifications
                if n.alertname == name
                and n.status == "firing"
                and n.received_at >= since
                and receiver in (None, n.receiver)
            ),
            None,
        )

    return find


def resolved(name: str, since: float) -> Callable[[list[stack.Notification]], Any]:
    def find(notifications: list[stack.Notification]) -> stack.Notification | None:
        return next(
            (n for n in notifications if n.alertname == name and n.status == "resolved" and n.received_at >= since),
            None,
        )

    return find


def set_fault(embedding_url: str, **fault: Any) -> None:
    response = httpx.post(embedding_url.removesuffix("/v1") + "/admin/fault", json=fault, timeout=5)
    assert response.status_code == 200, response.text


def until(condition: Callable[[], Any], within: float) -> Any:
    """Poll `condition` (Prometheus or Alertmanager state, which has no push) until it is truthy."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)  # poll interval; the condition is what is awaited


def run_fault(
    live: Stack,
    start: Callable[[], None],
    end: Callable[[], None],
    expected: tuple[str, ...],
    during: Callable[[], None],
) -> Fault:
    fault = Fault()
    since = time.monotonic()
    start()
    try:
        for name in expected:
            fault.fired[name] = live.webhook.wait_for(firing(name, since, "ticket"), FAULT_DEADLINE)
        during()
    finally:
        end()
    ended = time.monotonic()
    for name in expected:
        if fault.fired[name] is not None:
            fault.resolved[name] = live.webhook.wait_for(resolved(name, ended), FAULT_DEADLINE)
    # What fired during the fault: an earlier fault's alert notified resolved meanwhile is not a cause.
    fault.alertnames = {
        n.alertname for n in live.webhook.notifications if n.received_at >= since and n.status == "firing"
    }
    return fault


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("alerts_live")
    with start_embedding_server(log_path=tmp / "embedding.log") as (embedding_url, _process):
        admin = f"127.0.0.1:{free_port()}"
        database = tmp / "docserver.db"
        env = docserver_env(
            database,
            {
                "DOCSERVER_EMBEDDER": "openai",
                "DOCSERVER_EMBEDDING_URL": embedding_url,
                "DOCSERVER_EMBEDDING_MODEL": "test-embed",
                "DOCSERVER_EMBEDDING_MAX_RETRIES": "0",
                "DOCSERVER_EMBEDDING_TIMEOUT": "10",
                "DOCSERVER_ADMIN_ADDR": admin,
                "METRICS_TOKEN": METRICS_TOKEN,
                "OTEL_TRACES_EXPORTER": "none",  # sampled spans, hence exemplars, and no collector to wait for
                "OTEL_TRACE_SAMPLE_RATE": "1",
                "LOG_LEVEL": "WARNING",
            },
        )
        ingest = run_cli("ingest", str(CORPUS), "--source", "corpus", env=env)
        assert ingest.returncode == 0, ingest.stderr
        set_fault(embedding_url, mode="slow", delay=BASE_DELAY)

        token_file = tmp / "metrics-token"
        token_file.write_text(METRICS_TOKEN)
        rule_files = []
        for path in stack.RULE_FILES:
            scaled = tmp / path.name
            scaled.write_text(stack.scale_rules(path.read_text(), FACTOR))
            rule_files.append(scaled)
        prometheus_port, alertmanager_port = free_port(), free_port()
        prometheus_yml = tmp / "prometheus.yml"
        prometheus_yml.write_text(
            stack.prometheus_config(
                target=admin,
                alertmanager=f"127.0.0.1:{alertmanager_port}",
                token_file=token_file,
                rule_files=tuple(rule_files),
                interval="1s",
            )
        )
        with stack.WebhookReceiver() as webhook:
            alertmanager_yml = tmp / "alertmanager.yml"
            alertmanager_yml.write_text(stack.alertmanager_config(webhook.url, fast=True))
            alertmanager_url = f"http://127.0.0.1:{alertmanager_port}"
            prometheus_url = f"http://127.0.0.1:{prometheus_port}"
            with (
                start_docserver(env, tmp / "docserver.log") as server,
                stack.running(
                    stack.alertmanager_command(alertmanager_yml, tmp / "am-data", alertmanager_port),
                    tmp / "alertmanager.log",
                    f"{alertmanager_url}/-/ready",
                ),
                stack.running(
                    stack.prometheus_command(prometheus_yml, tmp / "prom-data", prometheus_port),
                    tmp / "prometheus.log",
                    f"{prometheus_url}/-/ready",
                ),
            ):
                yield Stack(
                    server, embedding_url, database, Prometheus(prometheus_url), alertmanager_url, webhook, admin
                )


@pytest.fixture(scope="module")
def report(live: Stack) -> Report:
    report = Report()
    with httpx.Client(timeout=30) as http:
        open_and_close_session(http, live.server.mcp_url)
        warm = call_tool(http, live.server.mcp_url, "search_docs", {"query": FIXED_QUERY, "limit": 5})
        assert warm is not None and not warm.get("isError"), warm
        document_id = warm["structuredContent"]["results"][0]["document_id"]

    started = time.monotonic()
    with LoadDriver(live.server.mcp_url, document_id) as driver:
        threading.Event().wait(BASELINE)  # the load runs for this long: a duration, not a synchronisation
        measured_at = time.time()
        assert until(lambda: live.prometheus.last_scrape() >= measured_at - 0.5, 10), "no fresh scrape"
        report.baseline_notifications = list(live.webhook.notifications)
        measure_baseline(live, driver, measured_at, report)

        report.faults["slow embeddings"] = run_fault(
            live,
            lambda: set_fault(live.embedding_url, mode="slow", delay=SLOW_DELAY),
            lambda: set_fault(live.embedding_url, mode="slow", delay=BASE_DELAY),
            ("SlowEmbeddings", "SlowSearch"),
            lambda: None,
        )

        def watch_inhibition() -> None:
            report.inhibited_ticket = until(lambda: inhibited_ticket(live.alertmanager_url), FAULT_DEADLINE)

        report.faults["embedding errors"] = run_fault(
            live,
            lambda: set_fault(live.embedding_url, mode="error", status=500),
            lambda: set_fault(live.embedding_url, mode="slow", delay=BASE_DELAY),
            ("EmbeddingProviderErrors", "HighToolErrorRate"),
            watch_inhibition,
        )
        report.faults["store failure"] = run_fault(
            live,
            lambda: rename_table(live.database, "documents", "documents_gone"),
            lambda: rename_table(live.database, "documents_gone", "documents"),
            ("DatabaseQueryErrors",),
            lambda: None,
        )
        # The corpus's last successful refresh moves two days back, as if every refresh since had
        # failed; the freshness gauge is read from the store at each scrape. A refresh puts it back.
        report.faults["stale source"] = run_fault(
            live,
            lambda: set_refreshed_at(live.database, time.time() - 2 * 86400),
            lambda: set_refreshed_at(live.database, time.time()),
            ("SourceStale",),
            lambda: None,
        )

    everything = f"{int(time.monotonic() - started) + 30}s"  # the whole run: every fault left data
    report.empty_panels = [
        f"{name}: {panel['title']} ({target['expr']})"
        for name, panel in panels()
        for target in panel["targets"]
        if not live.prometheus.query(substitute(target["expr"], live.instance, everything))
    ]
    now = time.time()
    answer = httpx.get(
        f"{live.prometheus.url}/api/v1/query_exemplars",
        params={"query": "docserver_tool_call_duration_seconds_bucket", "start": now - 600, "end": now},
        timeout=10,
    ).json()
    report.exemplars = [exemplar for series in answer["data"] for exemplar in series["exemplars"]]

    since = time.monotonic()
    stop(live.server.process)
    report.down = live.webhook.wait_for(firing("DocServerDown", since, "page"), FAULT_DEADLINE)
    return report


def measure_baseline(live: Stack, driver: LoadDriver, at: float, report: Report) -> None:
    calls = driver.window(at)
    window = f"{WINDOW:g}s"
    prometheus = live.prometheus

    def panel(dashboard: str, title: str, index: int = 0) -> str:
        return substitute(panel_exprs(dashboard, title)[index], live.instance, window)

    def per_second(n: int) -> float:
        return n / WINDOW

    def record(name: str, got: float | None, expected: float, tolerance: float) -> None:
        report.values[name] = (got, expected, tolerance)

    record(
        "requests per second on /mcp",
        prometheus.value(panel("overview", "Requests per second by route"), at, route="/mcp"),
        per_second(len(calls)),
        0.2 * per_second(len(calls)),
    )
    for tool in ("search_docs", "list_sources", "get_document", "unknown"):
        named = [call for call in calls if (call.tool if call.tool != "no_such_tool" else "unknown") == tool]
        record(
            f"{tool} calls per second",
            prometheus.value(panel("overview", "Tool calls per second"), at, tool=tool),
            per_second(len(named)),
            0.25 * per_second(len(named)),
        )
        record(
            f"{tool} error ratio",
            prometheus.value(panel("overview", "Tool error ratio"), at, tool=tool),
            sum(not call.ok for call in named) / len(named),
            0.02,
        )
    record(
        "server error ratio on /mcp",
        prometheus.value(panel("overview", "Server errors (5xx) by route"), at, route="/mcp"),
        0.0,
        0.0,
    )
    searches = [call for call in calls if call.tool == "search_docs"]
    lookups = [call for call in searches if call.embedding_hit is not None]
    expected_search = sum(bool(call.search_hit) for call in searches) / len(searches)
    expected_embedding = sum(bool(call.embedding_hit) for call in lookups) / len(lookups)
    hit_ratio = panel("search", "Cache hit ratio by cache")
    record("search cache hit ratio", prometheus.value(hit_ratio, at, cache="search"), expected_search, 0.08)
    record("embedding cache hit ratio", prometheus.value(hit_ratio, at, cache="embedding"), expected_embedding, 0.08)
    saved = (sum(bool(c.search_hit) for c in searches) + sum(bool(c.embedding_hit) for c in lookups)) / len(searches)
    record(
        "searches needing no embedding",
        prometheus.value(panel("search", "Searches that needed no embedding call"), at),
        saved,
        0.08,
    )
    zero = sum(call.results == 0 for call in searches) / len(searches)
    record("zero-result ratio", prometheus.value(panel("search", "Zero-result searches"), at), zero, 0.0)
    record(
        "tool calls that succeeded (SLO)",
        prometheus.value(panel("overview", "Tool calls that succeeded"), at),
        1.0,
        0.0,
    )
    record(
        "error budget left (SLO)", prometheus.value(panel("overview", "Error budget left: tool calls"), at), 1.0, 0.0
    )
    pool = prometheus.query(panel("database", "Connections by state"), at)
    record("pool connections (4 readers + 1 writer)", sum(value for _, value in pool), 5.0, 0.0)
    record("open sessions", prometheus.value(panel("mcp-tools", "Open sessions"), at), 0.0, 0.0)
    report.latency = (
        prometheus.value(panel("overview", "Tool call latency (p95)"), at, tool="search_docs"),
        percentile([call.latency for call in searches], 0.95),
    )


def inhibited_ticket(alertmanager_url: str) -> dict[str, Any] | None:
    alerts = httpx.get(
        f"{alertmanager_url}/api/v2/alerts", params={"filter": 'alertname="ToolCallErrorBudgetBurn"'}, timeout=5
    ).json()
    for alert in alerts:
        if alert["labels"].get("severity") == "ticket" and alert["status"]["inhibitedBy"]:
            return alert
    return None


def rename_table(database: Path, old: str, new: str) -> None:
    """A real store failure: the table disappears under the server's connections."""
    saboteur = sqlite_driver.connect(database)
    try:
        saboteur.execute(f"ALTER TABLE {old} RENAME TO {new}")
    finally:
        saboteur.close()


def set_refreshed_at(database: Path, unix: float) -> None:
    """When the store says every source was last refreshed successfully (another process's write)."""
    moment = datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    writer = sqlite_driver.connect(database)
    try:
        writer.execute("UPDATE sources SET refreshed_at = ?", (moment,))
        writer.commit()
    finally:
        writer.close()


# --- what the scenario must show ------------------------------------------------------------


def test_no_alert_fires_under_normal_load(report: Report) -> None:
    assert [(n.alertname, n.status) for n in report.baseline_notifications] == []


@pytest.mark.parametrize(
    "name",
    [
        "requests per second on /mcp",
        *(f"{tool} calls per second" for tool in ("search_docs", "list_sources", "get_document", "unknown")),
        *(f"{tool} error ratio" for tool in ("search_docs", "list_sources", "get_document", "unknown")),
        "server error ratio on /mcp",
        "search cache hit ratio",
        "embedding cache hit ratio",
        "searches needing no embedding",
        "zero-result ratio",
        "tool calls that succeeded (SLO)",
        "error budget left (SLO)",
        "pool connections (4 readers + 1 writer)",
        "open sessions",
    ],
)
def test_dashboard_value_agrees_with_the_load_driver(report: Report, name: str) -> None:
    got, expected, tolerance = report.values[name]
    assert got is not None, f"{name}: the panel returned no series"
    assert abs(got - expected) <= tolerance + 1e-9, f"{name}: dashboard {got:.4f}, driver {expected:.4f}"


def test_search_p95_agrees_with_the_driver_within_a_bucket(report: Report) -> None:
    histogram, driver = report.latency
    assert histogram is not None
    # The server's time is the client's minus the HTTP round trip: same bucket, or the one below.
    assert bucket(driver) - 1 <= bucket(histogram) <= bucket(driver), (histogram, driver)


FAULT_ALERTS = [
    ("slow embeddings", "SlowEmbeddings"),
    ("slow embeddings", "SlowSearch"),
    ("embedding errors", "EmbeddingProviderErrors"),
    ("embedding errors", "HighToolErrorRate"),
    ("store failure", "DatabaseQueryErrors"),
    ("stale source", "SourceStale"),
]
"""Each injected fault and an alert it must fire as a ticket, then resolve."""


@pytest.mark.parametrize(("fault", "alertname"), FAULT_ALERTS)
def test_fault_fires_its_alert_as_a_ticket(report: Report, fault: str, alertname: str) -> None:
    notification = report.faults[fault].fired[alertname]
    assert notification is not None, f"{alertname} did not reach the ticket receiver during {fault}"
    assert notification.labels["severity"] == "ticket"
    assert notification.annotations["runbook_url"].endswith("#" + alertname.lower())


@pytest.mark.parametrize(("fault", "alertname"), FAULT_ALERTS)
def test_alert_resolves_once_the_fault_is_gone(report: Report, fault: str, alertname: str) -> None:
    assert report.faults[fault].resolved.get(alertname) is not None, f"{alertname} did not resolve after {fault}"


@pytest.mark.parametrize(
    ("fault", "unrelated"),
    [
        ("slow embeddings", {"EmbeddingProviderErrors", "DatabaseQueryErrors", "HighToolErrorRate"}),
        ("embedding errors", {"SlowEmbeddings", "DatabaseQueryErrors"}),
        ("store failure", {"EmbeddingProviderErrors", "SlowEmbeddings"}),
        ("stale source", {"SourceRefreshFailing", "DatabaseQueryErrors", "EmbeddingProviderErrors", "SlowEmbeddings"}),
    ],
)
def test_a_fault_fires_no_unrelated_cause_alert(report: Report, fault: str, unrelated: set[str]) -> None:
    assert report.faults[fault].alertnames & unrelated == set()


def test_a_high_tool_error_rate_names_the_failing_tool(report: Report) -> None:
    notification = report.faults["embedding errors"].fired["HighToolErrorRate"]
    assert notification is not None and notification.labels["tool"] == "search_docs"


def test_the_slo_ticket_is_held_back_while_its_page_fires(report: Report) -> None:
    assert report.inhibited_ticket is not None, "no inhibited ToolCallErrorBudgetBurn ticket seen in Alertmanager"


def test_latency_exemplars_carry_trace_ids_for_grafana(report: Report) -> None:
    trace_ids = [exemplar["labels"].get("trace_id", "") for exemplar in report.exemplars]
    assert trace_ids and all(len(value) == 32 and int(value, 16) for value in trace_ids)


def test_every_dashboard_query_returns_data(report: Report) -> None:
    assert report.empty_panels == []


def test_a_stopped_server_pages_as_docserverdown(report: Report) -> None:
    assert report.down is not None and report.down.labels["severity"] == "page"
