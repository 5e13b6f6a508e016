"""Generate docserver's Grafana dashboards: `python deploy/grafana/dashboards.py`.

Writes deploy/grafana/dashboards/*.json (commit them). Tests fail when a
committed file differs from what this script writes, when a query uses a
metric the server does not export, and when a query is not valid PromQL.

Every query filters on the `job` and `instance` variables, and tool panels on
`tool`; `$__rate_interval` lets Grafana pick a window of at least four scrapes.
Latency panels ask for exemplars: with tracing on, a dot on the graph is one
sampled request, and the Prometheus data source (provisioning/datasources)
links its `trace_id` to Jaeger. Every dashboard links to the runbook, and a
panel whose description names an alert links to that alert's section: the
same pages the alerts' `runbook_url` names (RUNBOOK; `deploy/kubernetes/
generate.py --runbook-base URL` rebases both).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
ALERT_RULES = Path(__file__).resolve().parents[1] / "prometheus" / "rules" / "alerts.yml"
RUNBOOK = "http://127.0.0.1:8000/runbook/"
"""The runbook page of the docs site, as the alert rules' runbook_url have it."""
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
RATE = "$__rate_interval"
TAGS = ["docserver"]


# --- building blocks -------------------------------------------------------------


@dataclass
class Query:
    expr: str
    legend: str = ""
    exemplar: bool = False
    instant: bool = False
    table: bool = False


@dataclass
class Panel:
    title: str
    description: str
    queries: list[Query]
    kind: str = "timeseries"  # timeseries, stat, heatmap, table
    unit: str = "short"
    width: int = 8
    height: int = 8
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, "green")])
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    title: str
    panels: list[Panel]


def q(expr: str, legend: str = "", *, exemplar: bool = False) -> Query:
    return Query(" ".join(expr.split()), legend, exemplar=exemplar)


def quantile(phi: float, metric: str, by: str, selector: str = SEL) -> str:
    return f"histogram_quantile({phi}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))"


def ratio(metric: str, where: str, by: str, selector: str = SEL) -> str:
    """Share of `metric` matching `where`, per `by`; 0 (not "no data") while the matching series is absent."""
    part = f"sum by ({by}) (rate({metric}{{{selector}, {where}}}[{RATE}]))"
    whole = f"sum by ({by}) (rate({metric}{{{selector}}}[{RATE}]))"
    return f"({part} or {whole} * 0) / {whole}"


def latency_panel(title: str, description: str, metric: str, by: str, selector: str = SEL) -> Panel:
    legend = "{{" + by + "}}"
    return Panel(
        title,
        description,
        [
            q(quantile(0.5, metric, by, selector), f"p50 {legend}", exemplar=True),
            q(quantile(0.95, metric, by, selector), f"p95 {legend}", exemplar=True),
            q(quantile(0.99, metric, by, selector), f"p99 {legend}", exemplar=True),
        ],
        unit="s",
    )


# --- rendering to Grafana's JSON model ------------------------------------------------


def _target(query: Query, ref: str) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": DATASOURCE,
        "refId": ref,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "range": not query.instant,
        "instant": query.instant,
        "exemplar": query.exemplar,
    }
    if query.table:
        target["format"] = "table"
    return target


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for value, color in panel.thresholds]
    rendered: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": [_target(query, chr(ord("A") + index)) for index, query in enumerate(panel.queries)],
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": panel.options,
    }
    alerts = [alert for alert in _alert_names() if re.search(rf"\b{alert}\b", panel.description)]
    if alerts:
        rendered["links"] = [
            {"title": f"Runbook: {alert}", "url": f"{RUNBOOK}#{alert.lower()}", "targetBlank": True} for alert in alerts
        ]
    if panel.kind == "timeseries":
        rendered["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
        rendered["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
            **panel.options,
        }
    elif panel.kind == "stat":
        reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
        rendered["options"] = {"reduceOptions": reduce, **panel.options}
    elif panel.kind == "heatmap":
        rendered["options"] = {
            "calculate": False,
            "yAxis": {"unit": panel.unit},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            **panel.options,
        }
    return rendered


def _variables() -> list[dict[str, Any]]:
    def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DATASOURCE,
            "definition": query,
            "query": {"query": query, "refId": f"{name}-values"},
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
        }

    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "refresh": 1,
        },
        query_variable("job", "Job", "label_values(docserver_build_info, job)"),
        query_variable("instance", "Instance", 'label_values(docserver_build_info{job=~"$job"}, instance)'),
        query_variable("tool", "Tool", 'label_values(docserver_tool_calls_total{job=~"$job"}, tool)'),
    ]


_RUNBOOK_LINK = {"type": "link", "title": "Runbook", "url": RUNBOOK, "icon": "doc", "targetBlank": True}


@functools.cache
def _alert_names() -> tuple[str, ...]:
    text = ALERT_RULES.read_text()
    return tuple(sorted(set(re.findall(r"^\s*- alert: (\w+)", text, flags=re.M))))


_LINKS = {
    "type": "dashboards",
    "title": "docserver",
    "tags": TAGS,
    "asDropdown": True,
    "includeVars": True,
    "keepTime": True,
}


def dashboard(uid: str, title: str, description: str, rows: Iterable[Row]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    panel_id = 1
    y = 0
    for row in rows:
        panels.append(
            {"id": panel_id, "type": "row", "title": row.title, "collapsed": False, "panels": [],
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}
        )  # fmt: skip
        panel_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "links": [_LINKS, _RUNBOOK_LINK],
        "panels": panels,
    }


# --- the dashboards ----------------------------------------------------------------------

SLO_AVAILABILITY = 'sloth_slo="tool-call-availability", job=~"$job"'
SLO_LATENCY = 'sloth_slo="search-latency", job=~"$job"'
PERCENT_SLO = [(None, "red"), (0.99, "orange"), (0.999, "green")]
BUDGET = [(None, "red"), (0.25, "orange"), (0.5, "green")]


MCP_POST = f'{SEL}, route="/mcp", method="POST"'


def overview() -> dict[str, Any]:
    return dashboard(
        "docserver-overview",
        "docserver / Overview",
        "Service level and RED (rate, errors, duration) per HTTP route and per MCP tool.",
        [
            Row(
                "Service level objectives (30 days)",
                [
                    Panel(
                        "Tool calls that succeeded",
                        "Share of MCP tool calls (tools that exist) that succeeded over 30 days. Objective 99.9%.",
                        [q(f"1 - slo:sli_error:ratio_rate30d{{{SLO_AVAILABILITY}}}", "{{job}}")],
                        kind="stat",
                        unit="percentunit",
                        width=6,
                        height=5,
                        thresholds=PERCENT_SLO,
                    ),
                    Panel(
                        "Error budget left: tool calls",
                        "Share of the 30-day error budget (0.1% of calls) not yet spent. Below 0: objective missed.",
                        [q(f"slo:period_error_budget_remaining:ratio{{{SLO_AVAILABILITY}}}", "{{job}}")],
                        kind="stat",
                        unit="percentunit",
                        width=6,
                        height=5,
                        thresholds=BUDGET,
                    ),
                    Panel(
                        "Searches within 0.5 s",
                        "Share of search_docs calls answered within 0.5 s over 30 days. Objective 99%.",
                        [q(f"1 - slo:sli_error:ratio_rate30d{{{SLO_LATENCY}}}", "{{job}}")],
                        kind="stat",
                        unit="percentunit",
                        width=6,
                        height=5,
                        thresholds=[(None, "red"), (0.98, "orange"), (0.99, "green")],
                    ),
                    Panel(
                        "Error budget left: search latency",
                        "Share of the 30-day latency budget (1% of searches slower than 0.5 s) not yet spent.",
                        [q(f"slo:period_error_budget_remaining:ratio{{{SLO_LATENCY}}}", "{{job}}")],
                        kind="stat",
                        unit="percentunit",
                        width=6,
                        height=5,
                        thresholds=BUDGET,
                    ),
                    Panel(
                        "Error budget burn rate (5 m)",
                        "How many times faster than the budget allows errors arrive; 1 spends it exactly in 30 "
                        "days. The page alerts fire at 14.4 (1 h) and 6 (6 h), the tickets at 3 and 1.",
                        [q('slo:current_burn_rate:ratio{job=~"$job"}', "{{sloth_slo}} {{job}}")],
                        width=16,
                        height=7,
                        thresholds=[(None, "green"), (6, "orange"), (14.4, "red")],
                        options={},
                    ),
                    Panel(
                        "Targets up",
                        "docserver replicas Prometheus can scrape, of those it knows.",
                        [
                            q('sum(up{job=~"$job", instance=~"$instance"})', "up"),
                            q('count(up{job=~"$job", instance=~"$instance"})', "known"),
                        ],
                        kind="stat",
                        width=8,
                        height=7,
                    ),
                ],
            ),
            Row(
                "HTTP: rate, errors, duration per route",
                [
                    Panel(
                        "Requests per second by route",
                        "Every HTTP request answered, by route template (`unmatched` for unknown paths).",
                        [q(f"sum by (route) (rate(docserver_http_requests_total{{{SEL}}}[{RATE}]))", "{{route}}")],
                        unit="reqps",
                    ),
                    Panel(
                        "Server errors (5xx) by route",
                        "Share of requests answered with a 5xx status. /readyz answers 503 on purpose while a "
                        "dependency is down or the replica drains.",
                        [q(ratio("docserver_http_requests_total", 'status_code=~"5.."', "route"), "{{route}}")],
                        unit="percentunit",
                    ),
                    latency_panel(
                        "Latency by route",
                        "From the first byte of the request to the end of the response. Streams (SSE) are "
                        "not timed here.",
                        "docserver_http_request_duration_seconds",
                        "route",
                    ),
                ],
            ),
            Row(
                "Sources: freshness",
                [
                    Panel(
                        "Hours since each source's last successful refresh",
                        "Read from the store at every scrape, so it counts refreshes by any process (a CronJob, "
                        "a laptop). SourceStale tickets after 24 hours; `docserver sources` shows the last error.",
                        [
                            q(
                                f"(time() - max by (source) (docserver_source_last_success_timestamp_seconds{{{SEL}}}))"
                                " / 3600",
                                "{{source}}",
                            )
                        ],
                        unit="h",
                        width=12,
                        thresholds=[(None, "green"), (24, "red")],
                    ),
                    Panel(
                        "Fetches from origins by kind and result",
                        "Git fetches and crawled URLs (http) per second of the server's scheduled refreshes, by "
                        "result: not_modified is a page unchanged since the last crawl (no body, no embedding); "
                        "server_error, timeout and unreachable keep the page's old content and fail the page.",
                        [
                            q(
                                f"sum by (kind, result) (rate(docserver_fetch_requests_total{{{SEL}}}[{RATE}]))",
                                "{{kind}} {{result}}",
                            )
                        ],
                        unit="reqps",
                        width=12,
                    ),
                ],
            ),
            Row(
                "Admission: admitted vs rejected MCP requests",
                [
                    Panel(
                        "Admitted vs rejected MCP requests",
                        "POST /mcp per second: admitted, and refused before any work by reason (overload: 503, "
                        "every slot and the queue taken, shed before the HTTP metrics see it; rate_limit: 429, "
                        "a caller over its rate). AdmissionSaturated tickets when more than 1% are shed for overload.",
                        [
                            q(
                                f"sum(rate(docserver_http_requests_total{{{MCP_POST}}}[{RATE}])) - sum(rate("
                                f'docserver_requests_rejected_total{{{SEL}, reason="rate_limit"}}[{RATE}]))',
                                "admitted",
                            ),
                            q(
                                f"sum by (reason) (rate(docserver_requests_rejected_total{{{SEL}}}[{RATE}]))",
                                "rejected: {{reason}}",
                            ),
                        ],
                        unit="reqps",
                        width=16,
                    ),
                    Panel(
                        "Admission slots in use",
                        "MCP requests in flight and waiting for a slot, per replica (limits: "
                        "DOCSERVER_MAX_INFLIGHT, DOCSERVER_MAX_QUEUED). Flat at zero when admission is off.",
                        [
                            q(f"max by (instance) (docserver_admission_in_flight{{{SEL}}})", "in flight {{instance}}"),
                            q(f"max by (instance) (docserver_admission_queued{{{SEL}}})", "queued {{instance}}"),
                        ],
                    ),
                ],
            ),
            Row(
                "MCP tools: rate, errors, duration per tool",
                [
                    Panel(
                        "Tool calls per second",
                        "MCP tool calls by tool (`unknown`: a name the server does not have).",
                        [
                            q(
                                f'sum by (tool) (rate(docserver_tool_calls_total{{{SEL}, tool=~"$tool"}}[{RATE}]))',
                                "{{tool}}",
                            )
                        ],
                        unit="reqps",
                    ),
                    Panel(
                        "Tool error ratio",
                        "Share of tool calls that failed (a JSON-RPC error or a result with isError).",
                        [
                            q(
                                ratio("docserver_tool_calls_total", 'status="error"', "tool", f'{SEL}, tool=~"$tool"'),
                                "{{tool}}",
                            )
                        ],
                        unit="percentunit",
                    ),
                    Panel(
                        "Tool call latency (p95)",
                        "95th percentile of tool call duration. Dots are exemplars: one sampled request each, "
                        "linked to its trace.",
                        [
                            q(
                                quantile(0.95, "docserver_tool_call_duration_seconds", "tool", f'{SEL}, tool=~"$tool"'),
                                "{{tool}}",
                                exemplar=True,
                            )
                        ],
                        unit="s",
                    ),
                ],
            ),
        ],
    )


TOOL_SEL = f'{SEL}, tool=~"$tool"'


def mcp_tools() -> dict[str, Any]:
    return dashboard(
        "docserver-mcp-tools",
        "docserver / MCP tools",
        "MCP tool calls and protocol messages: rate, errors and latency, with exemplars linking to traces.",
        [
            Row(
                "Tool calls",
                [
                    Panel(
                        "Tool calls per second by status",
                        "MCP tool calls by tool and status (ok, error).",
                        [
                            q(
                                f"sum by (tool, status) (rate(docserver_tool_calls_total{{{TOOL_SEL}}}[{RATE}]))",
                                "{{tool}} {{status}}",
                            )
                        ],
                        unit="reqps",
                    ),
                    Panel(
                        "Error ratio by tool",
                        "Share of calls of each tool that failed.",
                        [q(ratio("docserver_tool_calls_total", 'status="error"', "tool", TOOL_SEL), "{{tool}}")],
                        unit="percentunit",
                    ),
                    latency_panel(
                        "Latency by tool",
                        "p50, p95 and p99 of tool call duration. Exemplars link to the trace of one call.",
                        "docserver_tool_call_duration_seconds",
                        "tool",
                        TOOL_SEL,
                    ),
                    Panel(
                        "Tool call duration",
                        "Distribution of tool call durations over time (histogram buckets), with exemplars.",
                        [
                            Query(
                                "sum by (le) "
                                f"(rate(docserver_tool_call_duration_seconds_bucket{{{TOOL_SEL}}}[{RATE}]))",
                                "{{le}}",
                                exemplar=True,
                            )
                        ],
                        kind="heatmap",
                        unit="s",
                        width=24,
                    ),
                ],
            ),
            Row(
                "MCP messages (OpenTelemetry MCP semantic conventions)",
                [
                    Panel(
                        "Messages per second by method",
                        "Every MCP message handled, by method (tools/call, tools/list, initialize, ...).",
                        [
                            q(
                                f"sum by (mcp_method_name) (rate(mcp_server_operation_duration_seconds_count{{{SEL}}}"
                                f"[{RATE}]))",
                                "{{mcp_method_name}}",
                            )
                        ],
                        unit="reqps",
                    ),
                    Panel(
                        "Failed messages by method and error type",
                        "error_type: a JSON-RPC error code (-32602 invalid params, ...), tool_error, or an "
                        "exception class.",
                        [
                            q(
                                "sum by (mcp_method_name, error_type) "
                                "(rate(mcp_server_operation_duration_seconds_count"
                                f'{{{SEL}, error_type!=""}}[{RATE}]))',
                                "{{mcp_method_name}} {{error_type}}",
                            )
                        ],
                        unit="reqps",
                    ),
                    Panel(
                        "Message latency by method (p95)",
                        "95th percentile of MCP message handling time.",
                        [
                            q(
                                quantile(0.95, "mcp_server_operation_duration_seconds", "mcp_method_name"),
                                "{{mcp_method_name}}",
                                exemplar=True,
                            )
                        ],
                        unit="s",
                    ),
                    Panel(
                        "Open sessions",
                        "Handshake-era sessions (Mcp-Session-Id). Current-protocol clients are stateless.",
                        [q(f"sum by (instance) (docserver_mcp_sessions_active{{{SEL}}})", "{{instance}}")],
                        width=12,
                    ),
                    Panel(
                        "Session duration (p50, p95)",
                        "How long handshake-era sessions last, observed when they end.",
                        [
                            q(quantile(0.5, "mcp_server_session_duration_seconds", "job"), "p50"),
                            q(quantile(0.95, "mcp_server_session_duration_seconds", "job"), "p95"),
                        ],
                        unit="s",
                        width=12,
                    ),
                ],
            ),
        ],
    )


def search() -> dict[str, Any]:
    return dashboard(
        "docserver-search",
        "docserver / Search",
        "What one search costs: caches, query embeddings, store queries, and what the searches found.",
        [
            Row(
                "Caches",
                [
                    Panel(
                        "Cache hit ratio by cache",
                        "search: whole results; embedding: query embeddings (looked up only when the search "
                        "cache missed).",
                        [q(ratio("docserver_cache_requests_total", 'result="hit"', "cache"), "{{cache}}")],
                        unit="percentunit",
                    ),
                    Panel(
                        "Searches that needed no embedding call",
                        "Share of searches answered from the search cache or with a cached query embedding. "
                        "LowCacheHitRate fires below 10%.",
                        [
                            q(
                                f'sum(rate(docserver_cache_requests_total{{{SEL}, result="hit"}}[{RATE}])) / '
                                f'sum(rate(docserver_cache_requests_total{{{SEL}, cache="search"}}[{RATE}]))',
                                "saved",
                            )
                        ],
                        unit="percentunit",
                    ),
                    Panel(
                        "Cache lookups per second",
                        "Lookups by cache and result.",
                        [
                            q(
                                f"sum by (cache, result) (rate(docserver_cache_requests_total{{{SEL}}}[{RATE}]))",
                                "{{cache}} {{result}}",
                            )
                        ],
                        unit="reqps",
                    ),
                ],
            ),
            Row(
                "Embeddings",
                [
                    latency_panel(
                        "Embedding batch latency",
                        "One observation per batch sent to the provider, failed batches included.",
                        "docserver_embedding_duration_seconds",
                        "provider",
                    ),
                    Panel(
                        "Texts per embedding batch",
                        "Average and 95th percentile of texts per batch (queries are batches of one).",
                        [
                            q(
                                f"sum by (provider) (rate(docserver_embedding_batch_size_sum{{{SEL}}}[{RATE}])) / "
                                f"sum by (provider) (rate(docserver_embedding_batch_size_count{{{SEL}}}[{RATE}]))",
                                "average {{provider}}",
                            ),
                            q(quantile(0.95, "docserver_embedding_batch_size", "provider"), "p95 {{provider}}"),
                        ],
                    ),
                    Panel(
                        "Embedding errors by reason",
                        "Batches that failed after their retries: timeout, rate_limited, http_error, "
                        "invalid_response, auth, not_found, connection, model.",
                        [
                            q(
                                f"sum by (provider, reason) (rate(docserver_embedding_errors_total{{{SEL}}}[{RATE}]))",
                                "{{provider}} {{reason}}",
                            )
                        ],
                        unit="reqps",
                    ),
                ],
            ),
            Row(
                "Store and results",
                [
                    latency_panel(
                        "Store query latency by operation",
                        "Every store operation (search_text, search_vector, get_chunks, ...).",
                        "docserver_query_duration_seconds",
                        "operation",
                    ),
                    Panel(
                        "Zero-result searches",
                        'Share of searches that found nothing (the le="0.0" bucket of docserver_search_results).',
                        [
                            q(
                                f'sum(rate(docserver_search_results_bucket{{{SEL}, le="0.0"}}[{RATE}])) / '
                                f"sum(rate(docserver_search_results_count{{{SEL}}}[{RATE}]))",
                                "no results",
                            )
                        ],
                        unit="percentunit",
                    ),
                    Panel(
                        "Results per search",
                        "Average number of results a search returned.",
                        [
                            q(
                                f"sum(rate(docserver_search_results_sum{{{SEL}}}[{RATE}])) / "
                                f"sum(rate(docserver_search_results_count{{{SEL}}}[{RATE}]))",
                                "average",
                            )
                        ],
                    ),
                ],
            ),
        ],
    )


def database() -> dict[str, Any]:
    return dashboard(
        "docserver-database",
        "docserver / Database",
        "The store's connection pool (for SQLite: 4 reader threads and 1 writer) and its queries.",
        [
            Row(
                "Pool",
                [
                    Panel(
                        "Connections by state",
                        "Active and idle connections of each replica's pool, read at scrape time.",
                        [
                            q(
                                f"sum by (instance, state) (docserver_db_pool_connections{{{SEL}}})",
                                "{{instance}} {{state}}",
                            )
                        ],
                    ),
                    Panel(
                        "Callers waiting for a connection",
                        "DatabasePoolSaturated fires when callers wait, or no connection is idle, for 5 minutes.",
                        [q(f"sum by (instance) (docserver_db_pool_pending_requests{{{SEL}}})", "{{instance}}")],
                        thresholds=[(None, "green"), (1, "red")],
                    ),
                    Panel(
                        "Pool in use",
                        "Share of the pool's connections that are busy.",
                        [
                            q(
                                f'sum by (instance) (docserver_db_pool_connections{{{SEL}, state="active"}}) / '
                                f"sum by (instance) (docserver_db_pool_connections{{{SEL}}})",
                                "{{instance}}",
                            )
                        ],
                        unit="percentunit",
                    ),
                ],
            ),
            Row(
                "Queries",
                [
                    Panel(
                        "Queries per second by operation",
                        "Store operations by operation and backend.",
                        [
                            q(
                                f"sum by (operation, backend) (rate(docserver_query_duration_seconds_count{{{SEL}}}"
                                f"[{RATE}]))",
                                "{{operation}} {{backend}}",
                            )
                        ],
                        unit="ops",
                    ),
                    Panel(
                        "Query errors per second by operation",
                        "Store operations that raised (the database failed).",
                        [
                            q(
                                f"sum by (operation) (rate(docserver_query_errors_total{{{SEL}}}[{RATE}]))",
                                "{{operation}}",
                            )
                        ],
                        unit="ops",
                    ),
                    Panel(
                        "Query error ratio by operation",
                        "Share of each operation that failed. DatabaseQueryErrors fires above 1%.",
                        [
                            q(
                                f"sum by (operation) (rate(docserver_query_errors_total{{{SEL}}}[{RATE}])) / "
                                f"sum by (operation) (rate(docserver_query_duration_seconds_count{{{SEL}}}[{RATE}]))",
                                "{{operation}}",
                            )
                        ],
                        unit="percentunit",
                    ),
                    Panel(
                        "Query latency by operation (p99)",
                        "99th percentile of store operation duration, with exemplars.",
                        [
                            q(
                                quantile(0.99, "docserver_query_duration_seconds", "operation"),
                                "{{operation}}",
                                exemplar=True,
                            )
                        ],
                        unit="s",
                        width=24,
                    ),
                ],
            ),
        ],
    )


def runtime() -> dict[str, Any]:
    return dashboard(
        "docserver-runtime",
        "docserver / Runtime",
        "The Python process of each replica: CPU, memory, garbage collection, file descriptors, "
        "connections, sessions, and the telemetry it could not deliver.",
        [
            Row(
                "Process",
                [
                    Panel(
                        "CPU",
                        "CPU seconds per second (1 = one core busy).",
                        [q(f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}])", "{{instance}}")],
                    ),
                    Panel(
                        "Memory",
                        "Resident (RSS) and virtual memory. MemoryGrowth fires on steady RSS growth.",
                        [
                            q(f"process_resident_memory_bytes{{{SEL}}}", "RSS {{instance}}"),
                            q(f"process_virtual_memory_bytes{{{SEL}}}", "virtual {{instance}}"),
                        ],
                        unit="bytes",
                    ),
                    Panel(
                        "Open file descriptors",
                        "Open descriptors and the limit.",
                        [
                            q(f"process_open_fds{{{SEL}}}", "open {{instance}}"),
                            q(f"process_max_fds{{{SEL}}}", "limit {{instance}}"),
                        ],
                    ),
                    Panel(
                        "GC collections per second by generation",
                        "Python garbage collector runs.",
                        [
                            q(
                                f"sum by (instance, generation) (rate(python_gc_collections_total{{{SEL}}}[{RATE}]))",
                                "{{instance}} gen {{generation}}",
                            )
                        ],
                        unit="ops",
                    ),
                    Panel(
                        "GC objects collected per second",
                        "Objects freed by the collector, by generation.",
                        [
                            q(
                                f"sum by (instance, generation) (rate(python_gc_objects_collected_total{{{SEL}}}"
                                f"[{RATE}]))",
                                "{{instance}} gen {{generation}}",
                            )
                        ],
                    ),
                    Panel(
                        "Uptime",
                        "Time since each replica's process started.",
                        [q(f"time() - process_start_time_seconds{{{SEL}}}", "{{instance}}")],
                        kind="stat",
                        unit="s",
                    ),
                ],
            ),
            Row(
                "Connections and sessions",
                [
                    Panel(
                        "In-flight HTTP requests",
                        "Requests being handled right now.",
                        [
                            q(
                                f'sum by (instance) (docserver_active_connections{{{SEL}, transport="http"}})',
                                "{{instance}}",
                            )
                        ],
                    ),
                    Panel(
                        "Open SSE streams",
                        "Event streams open right now (POST response streams, GET streams, subscriptions).",
                        [
                            q(
                                f'sum by (instance) (docserver_active_connections{{{SEL}, transport="sse"}})',
                                "{{instance}}",
                            )
                        ],
                    ),
                    Panel(
                        "Open MCP sessions",
                        "Handshake-era sessions open right now.",
                        [q(f"sum by (instance) (docserver_mcp_sessions_active{{{SEL}}})", "{{instance}}")],
                    ),
                ],
            ),
            Row(
                "Telemetry and build",
                [
                    Panel(
                        "Spans dropped per second",
                        "Spans that never reached the trace collector, by reason (TraceExportFailing).",
                        [
                            q(
                                "sum by (instance, reason) "
                                f"(rate(docserver_trace_spans_dropped_total{{{SEL}}}[{RATE}]))",
                                "{{instance}} {{reason}}",
                            )
                        ],
                    ),
                    Panel(
                        "Log lines dropped per second",
                        "Lines dropped because stdout was closed, broken or too slow (LogLinesDropped).",
                        [
                            q(
                                f"sum by (instance) (rate(docserver_log_lines_dropped_total{{{SEL}}}[{RATE}]))",
                                "{{instance}}",
                            )
                        ],
                    ),
                    Panel(
                        "Refused requests per second",
                        "Requests to /mcp, /metrics or /debug/pprof without a valid token, by endpoint and "
                        "reason (AuthFailuresSpike).",
                        [
                            q(
                                f"sum by (instance, endpoint, reason) "
                                f"(rate(docserver_auth_failures_total{{{SEL}}}[{RATE}]))",
                                "{{instance}} {{endpoint}} {{reason}}",
                            )
                        ],
                    ),
                    Panel(
                        "Build",
                        "Version, Python, store backend and embedder of each replica.",
                        [Query(f"docserver_build_info{{{SEL}}}", instant=True, table=True)],
                        kind="table",
                        width=24,
                        height=6,
                    ),
                ],
            ),
        ],
    )


DASHBOARDS = {
    "overview.json": overview,
    "mcp-tools.json": mcp_tools,
    "search.json": search,
    "database.json": database,
    "runtime.json": runtime,
}


def render() -> dict[str, str]:
    """File name -> JSON text, as committed."""
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
