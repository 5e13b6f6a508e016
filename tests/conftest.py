"""Shared fixtures: a sample corpus, stores in tmp_path, real subprocesses; the `services` marker."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import CodeType

import pytest

from docserver.binding import bind_embedder
from docserver.config import Settings, load_settings
from docserver.embed.hashing import HashEmbedder
from docserver.runtime import Runtime
from docserver.store.sqlite import SqliteStore
from support.embedding_server_fixture import start_embedding_server

# `services`: the test needs more than this Python process (a docserver or embedding-server
# subprocess, PostgreSQL, Redis, the local model, promtool/amtool/kubectl/go). `make check`
# leaves them out, with `slow`; `make test` runs everything. Marked here, from what each test
# uses, so that a new test is classified without anyone remembering to mark it.
SERVICE_MODULES = {
    "test_alerts_live",  # Prometheus, Alertmanager
    "test_deploy_alertmanager",  # amtool
    "test_deploy_consistency",  # promtool
    "test_deploy_kubernetes",  # kubectl kustomize, kubernetes-validate
    "test_deploy_rules",  # promtool
    "test_evaluation",  # the local model, through the CLI
    "test_local_embedder",  # the local model
    "test_metrics_live",  # docserver subprocesses, promtool
    "test_postgres_resilience",
    "test_postgres_scale",
    "test_postgres_store",
    "test_profiling_live",  # go tool pprof
    "test_redis_cache",
    "test_replicas",  # PostgreSQL, Redis
}
SERVICE_FIXTURES = {"embedding_server"}
SERVICE_PARAMS = ("postgresql",)
# A test (or a helper of its module it calls) referring to one of these starts a process.
SERVICE_NAMES = {"subprocess", "run_cli", "start_docserver", "start_embedding_server", "shared_server", "redis_url"}

# Fixtures shared by the OAuth tests: the loopback identity provider and an indexed runtime.
pytest_plugins = ["support.oauth"]

CORPUS = Path(__file__).with_name("corpus")

# (query, expected path, expected heading): the known answers of the test corpus.
KNOWN_ANSWERS = [
    ("how do I build quillstone from source", "guide/install.md", "Installing Quillstone > Build from source"),
    ("journal flush interval durability", "guide/tuning.md", "Performance tuning > Journal flush interval"),
    ("enable TLS certificate", "guide/security.rst", "Security > Transport encryption"),
    ("rotate access tokens", "guide/security.rst", "Security > Access tokens"),
    ("delete every message in a queue", "reference/cli.html", "Command line reference > quillstone purge"),
    ("restore a snapshot", "guide/backup.mdx", "Restoring"),
    ("memory high watermark back-pressure", "guide/tuning.md", "Performance tuning > Memory limits"),
    ("dead letter exchange poison messages", "reference/glossary.txt", ""),
]


@pytest.fixture
def corpus() -> Path:
    return CORPUS


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith(("DOCSERVER_", "LOG_")):
            monkeypatch.delenv(name)
    return load_settings(store={"url": f"sqlite:///{tmp_path / 'docserver.db'}"})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    sqlite_store = SqliteStore(tmp_path / "store.db")
    await sqlite_store.open()
    yield sqlite_store
    await sqlite_store.close()


@pytest.fixture
async def runtime(settings: Settings, store: SqliteStore) -> AsyncIterator[Runtime]:
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    yield Runtime(settings, store, embedder)


@pytest.fixture(scope="session")
def embedding_server() -> Iterator[str]:
    """A real OpenAI-compatible embedding server on loopback; yields its /v1 base URL."""
    with start_embedding_server() as (url, _process):
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_services(item):
            item.add_marker(pytest.mark.services)


def needs_services(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    if module is None or module.__name__.rpartition(".")[2] in SERVICE_MODULES:
        return module is not None
    if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    if any(param in item.name for param in SERVICE_PARAMS):
        return True
    function = getattr(item, "function", None)
    return function is not None and bool(SERVICE_NAMES & referenced_names(function.__code__, vars(module), set()))


def referenced_names(code: CodeType, scope: dict[str, object], seen: set[str]) -> set[str]:
    """The global names `code` uses, and those of the module's own functions it calls (recursively)."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            names |= referenced_names(constant, scope, seen)
    for name in names - seen:
        seen.add(name)
        value = scope.get(name)
        if callable(value) and getattr(value, "__module__", None) == scope["__name__"] and hasattr(value, "__code__"):
            names |= referenced_names(value.__code__, scope, seen)
    return names
