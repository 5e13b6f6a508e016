"""deploy/ agrees with the code and the docs.

- Every metric a rule or dashboard reads is one a real `docserver serve` exports
  (histograms through their `_bucket`, `_sum` and `_count` series), or a recording
  rule, or one Prometheus makes itself (`up`, `scrape_*`).
- Every `le="..."` bound a query names is one the server writes (`le="1.0"`, not
  `le="1"`), and every label a selector names is one the metric has.
- Every dashboard query is valid PromQL, by promtool's verdict.
- Every alert has its section in docs/runbook.md, where its runbook_url points.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import CORPUS
from support.docserver_process import docserver_env, run_cli, start_docserver
from support.inprocess import current_request

ROOT = Path(__file__).parents[1]
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
RUNBOOK = ROOT / "docs" / "runbook.md"
PROMETHEUS_OWN = {"up", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_duration_seconds"}
TARGET_LABELS = {"job", "instance"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
KEYWORDS |= {"inf", "nan", "Inf", "NaN"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?!\s*\(|[\w:])")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)")


# --- what deploy/ uses -------------------------------------------------------------------


def rules() -> list[dict[str, str]]:
    return [
        rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every variable query of every dashboard."""
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                yield f"{path.name}: variable {variable['name']}", variable["definition"]


def rule_queries() -> Iterator[tuple[str, str]]:
    for rule in rules():
        yield rule.get("record") or rule["alert"], rule["expr"]


def all_queries() -> list[tuple[str, str]]:
    return [*rule_queries(), *dashboard_queries()]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (function names, keywords and labels left out)."""
    found = set(_LABEL_VALUES.findall(expr))
    if found:
        return found
    stripped = _RANGE.sub(" ", _GROUPING.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr))))
    return {name for name in _IDENTIFIER.findall(stripped) if name not in KEYWORDS}


def selectors(expr: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(metric, {label: value}) for every `metric{...}` selector in `expr`."""
    for metric, body in _SELECTOR.findall(expr):
        yield metric, dict(_MATCHER.findall(body))


def substitute(expr: str) -> str:
    """Grafana's variables replaced by what the dashboard would send."""
    expr = expr.replace("$__rate_interval", "5m").replace("${datasource}", "prometheus")
    return re.sub(r"\$(\w+)", ".+", expr)


def test_the_parser_finds_metrics_and_skips_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, tool) (rate(a_bucket{job=~"$job", le="0.5"}[$__rate_interval])))'
        " / on (job) group_left sum without (x) (b_total offset 1h) and c:d:e > 1e3 or vector(0) - time()"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:d:e"}
    assert metric_names('label_values(docserver_build_info{job=~"$job"}, instance)') == {"docserver_build_info"}
    assert list(selectors('x{a="1", b=~"2|3"} + y')) == [("x", {"a": "1", "b": "2|3"})]


# --- what the server exports -------------------------------------------------------------


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, str]]]:
    """Sample name -> label sets, from a real `docserver serve` after a little traffic of each kind."""
    tmp = tmp_path_factory.mktemp("deploy_consistency")
    database = tmp / "docserver.db"
    env = docserver_env(database, {"OTEL_TRACES_EXPORTER": "none"})
    assert run_cli("ingest", str(CORPUS), "--source", "corpus", env=env).returncode == 0
    with start_docserver(env, tmp / "serve.log") as server, httpx.Client(timeout=10) as http:
        for name, arguments in [
            ("search_docs", {"query": "enable TLS certificate"}),
            ("search_docs", {"query": "enable TLS certificate"}),
            ("list_sources", {}),
            ("get_document", {"id": 1}),
            ("no_such_tool", {}),
        ]:
            headers, body = current_request("tools/call", {"name": name, "arguments": arguments}, name=name)
            assert http.post(server.mcp_url, headers=headers, content=body).status_code == 200
        text = http.get(f"{server.url}/metrics").text
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}.get(family.type, ("",))
        for suffix in suffixes:  # families without children yet still count as exported
            samples.setdefault(family.name + suffix, [])
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.labels)
    return samples


@pytest.mark.slow
@pytest.mark.parametrize(("where", "expr"), all_queries(), ids=[where for where, _ in all_queries()])
def test_every_metric_used_is_exported(exposition: dict[str, list[dict[str, str]]], where: str, expr: str) -> None:
    unknown = metric_names(expr) - set(exposition) - recorded() - PROMETHEUS_OWN
    assert unknown == set(), f"{where} reads metrics docserver does not export: {sorted(unknown)}"


@pytest.mark.slow
@pytest.mark.parametrize(("where", "expr"), all_queries(), ids=[where for where, _ in all_queries()])
def test_every_selector_names_real_labels_and_bucket_bounds(
    exposition: dict[str, list[dict[str, str]]], where: str, expr: str
) -> None:
    for metric, matchers in selectors(expr):
        series = exposition.get(metric)
        if not series:  # a recording rule, Prometheus's own, or a family with no child yet
            continue
        labels = set().union(*(sample.keys() for sample in series)) | TARGET_LABELS
        assert set(matchers) <= labels, f"{where}: {metric} has no label {sorted(set(matchers) - labels)}"
        if "le" in matchers:
            bounds = {sample["le"] for sample in series}
            assert matchers["le"] in bounds, f'{where}: {metric} has no bucket le="{matchers["le"]}" ({bounds})'


# --- PromQL validity and runbook sections ---------------------------------------------------


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: install Debian's `prometheus` package (make system-deps)"
    queries = [(where, expr) for where, expr in dashboard_queries() if not expr.startswith("label_values(")]
    # One group per query, named after its panel: promtool names the group of a bad expression.
    groups = [
        {"name": f"{where} ({index})", "rules": [{"record": f"dashboard:query_{index}", "expr": substitute(expr)}]}
        for index, (where, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("rule", [rule for rule in rules() if "alert" in rule], ids=lambda rule: rule["alert"])
def test_every_alert_has_a_runbook_section(rule: dict[str, str]) -> None:
    anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
    assert anchor in runbook_anchors(), f"docs/runbook.md has no section #{anchor}"
    assert f"## {rule['alert']}\n" in RUNBOOK.read_text()


def test_every_alert_section_of_the_runbook_is_an_alert() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    text = RUNBOOK.read_text()
    sections = set(re.findall(r"^## ([A-Z][A-Za-z]+)$", text, re.MULTILINE))
    assert sections == alerts
