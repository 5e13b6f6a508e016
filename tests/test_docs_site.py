"""The documentation site builds strictly, alert links land on it, and known drift stays fixed.

The strict MkDocs build (also `make docs`, part of `make test`) fails on a broken link, a
broken anchor or a page missing from the navigation. The other tests check what the build
cannot: that every alert's runbook_url lands on a heading of the built runbook page, and
that the docs say what the code does where they once disagreed with it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.docserver_process import docserver_env, run_cli

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
ALERT_RULE_FILES = [ROOT / "deploy" / "prometheus" / "rules" / "alerts.yml"]
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"


def build_site(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(project / "mkdocs.yml"), "-d", str(site)],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    result = build_site(ROOT, folder)
    assert result.returncode == 0, result.stderr
    return folder


def html_ids(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text()))


def alert_rules() -> list[dict[str, Any]]:
    groups = [group for path in ALERT_RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    groups += yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("k8s_generate_docs", ROOT / "deploy" / "kubernetes" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the site -------------------------------------------------------------------------------


def test_the_site_builds_strictly_with_the_generated_reference(site: Path) -> None:
    for page in ("index.html", "runbook/index.html", "reference/settings/index.html", "reference/metrics/index.html"):
        assert (site / page).is_file(), page
    assert "DOCSERVER_DATABASE_URL" in (site / "reference" / "settings" / "index.html").read_text()
    assert "docserver_tool_calls_total" in (site / "reference" / "metrics" / "index.html").read_text()


def test_a_broken_anchor_fails_the_build(tmp_path: Path) -> None:
    """The runbook once linked #profile-a-replica eight times; the heading is "Profile a hot replica"."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(DOCS, tmp_path / "docs")
    runbook = tmp_path / "docs" / "runbook.md"
    runbook.write_text(runbook.read_text() + "\nSee [profiling](#profile-a-replica).\n")
    result = build_site(tmp_path, tmp_path / "site")
    assert result.returncode != 0
    assert "#profile-a-replica" in result.stderr


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: f"{rule['alert']}-{rule['labels']['severity']}")
def test_every_runbook_url_lands_on_a_heading_of_the_runbook_page(rule: dict[str, Any], site: Path) -> None:
    page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
    assert page.endswith("/runbook/"), f"{page} is not the site's runbook page"
    assert anchor in html_ids(site / "runbook" / "index.html"), f"the runbook page has no #{anchor}"


def test_the_runbook_base_is_one_generator_input() -> None:
    base = "https://docs.example.com/docserver/runbook/"
    groups = load_generator().prometheus_rule(base)["spec"]["groups"]
    urls = [rule["annotations"]["runbook_url"] for group in groups for rule in group["rules"] if "alert" in rule]
    assert urls and all(url.startswith(base + "#") for url in urls)
    assert {url.partition("#")[2] for url in urls} == {rule["alert"].lower() for rule in alert_rules()}


# --- drift that once happened ---------------------------------------------------------------


def test_no_page_sends_readers_to_a_design_document() -> None:
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        assert not re.search(r"DESIGN\.md|REFERENCE\.md", page.read_text()), page.name


def documented_levels() -> dict[str, str]:
    """event -> level, from the events table of docs/observability.md (single-event rows)."""
    events = (DOCS / "observability.md").read_text().partition("### Events")[2].partition("\n### ")[0]
    return dict(re.findall(r"^\| `(\w+)` \| (debug|info|warning|error) \|", events, re.MULTILINE))


def logged_levels(event: str) -> set[str]:
    sources = "\n".join(path.read_text() for path in (ROOT / "src" / "docserver").rglob("*.py"))
    levels = set(re.findall(rf'\.(debug|info|warning|error|exception)\(\s*"{event}"', sources))
    return levels | ({"info"} if f'event_line("{event}"' in sources else set())  # event_line writes INFO


@pytest.mark.parametrize("event", sorted(documented_levels()))
def test_documented_log_level_is_the_one_the_code_logs(event: str) -> None:
    """observability.md once said ingest_file_skipped is a warning; the code logs it at info."""
    levels = logged_levels(event)
    assert levels, f"no log call writes {event}"
    assert documented_levels()[event] in levels | {"error" for level in levels if level == "exception"}


def test_one_off_commands_log_warnings_only_as_configuration_says(tmp_path: Path) -> None:
    rows = (DOCS / "configuration.md").read_text().splitlines()
    row = next(line for line in rows if line.startswith("| `LOG_LEVEL`"))
    assert "`WARNING` for the one-off commands" in row
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text.\n")
    result = run_cli("ingest", str(tmp_path / "docs"), env=docserver_env(tmp_path / "store.db"))
    assert result.returncode == 0, result.stderr
    assert '"level":"info"' not in result.stderr


def test_local_model_figures_in_search_md_are_the_benchmarks() -> None:
    """search.md once quoted 70-74 chunks/s as the ingest rate, without its source."""
    text = (DOCS / "search.md").read_text()
    results = json.loads((ROOT / "bench" / "results" / "local_model.json").read_text())
    local = next(row for row in results if row["embedder"] == "local" and row["torch_threads"] == 1)
    hashed = next(row for row in results if row["embedder"] == "hash")
    assert "bench/results/local_model.json" in text
    assert f"embeds {round(local['ingest_chunks_per_s'])} chunks per second" in text
    assert f"against {round(hashed['ingest_chunks_per_s']):,}" in text
    assert f"p50 {local['p50_ms']:.1f} ms" in text
