"""Two refreshes of one source at once, on a real SQLite file and a real PostgreSQL: one works, one is busy.

The race is made certain, not likely: the embedding API (a real server on
loopback) holds the first refresh's request, so that refresh is inside its
work, holding the source, while the second runs from start to end. No sleep
stands in for that: the test waits until the server reports the request held.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from conftest import CORPUS
from docserver.binding import bind_embedder
from docserver.embed.openai import OpenAIEmbedder
from docserver.observability.metrics import Metrics
from docserver.sources.git import GitRepositories
from docserver.sources.origin import parse_origin
from docserver.sources.request import SourceRequest
from docserver.sources.service import REFRESH_RESULTS, Sources
from docserver.sources.web import CrawlLimits, WebCrawler
from docserver.store.base import Store
from docserver.store.postgres import PostgresOptions, PostgresStore
from docserver.store.sqlite import SqliteStore
from support.docserver_process import docserver_env, run_cli
from support.postgres_server import database_name, shared_server

MODEL = "race-embed"
HELD_TIMEOUT = 60.0
SECOND_TIMEOUT = 60.0
"""The second refresh must end while the first is held: one that waited for it would never end."""
CHANGED = "# Installing\n\nNow from a package only: the wombat installer.\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race.db'}"
        return
    server = shared_server()
    name = database_name(str(tmp_path))
    yield server.create_database(name)  # its URL
    server.drop_database(name)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return Path(shutil.copytree(CORPUS, tmp_path / "docs"))


@contextmanager
def held_embeddings(embedding_server: str) -> Iterator[httpx.Client]:
    """Every embedding request waits until the block ends; yields a client of the server's admin API."""
    admin = embedding_server.removesuffix("/v1")
    with httpx.Client(base_url=admin, timeout=10) as client:
        client.post("/admin/fault", json={"mode": "hold"}).raise_for_status()
        try:
            yield client
        finally:
            client.post("/admin/fault", json={"mode": "none"}).raise_for_status()


def wait_until_held(admin: httpx.Client, first: subprocess.Popen[str] | None = None) -> None:
    """Return once an embedding request is held (the first refresh is inside its work)."""
    deadline = time.monotonic() + HELD_TIMEOUT
    while admin.get("/admin/stats").json()["held"] < 1:
        assert first is None or first.poll() is None, "the first refresh ended before embedding anything"
        assert time.monotonic() < deadline, "the first refresh never reached the embedding API"
        time.sleep(0.05)  # polling a condition, with a deadline: not a sleep standing in for it


def cli_env(database_url: str, embedding_server: str, tmp_path: Path) -> dict[str, str]:
    return docserver_env(
        tmp_path / "unused.db",
        {
            "DOCSERVER_DATABASE_URL": database_url,
            "DOCSERVER_EMBEDDER": "openai",
            "DOCSERVER_EMBEDDING_URL": embedding_server,
            "DOCSERVER_EMBEDDING_MODEL": MODEL,
            "XDG_DATA_HOME": str(tmp_path / "data"),
        },
    )


def test_two_refresh_commands_at_once_one_works_and_one_is_busy(
    database_url: str, embedding_server: str, docs: Path, tmp_path: Path
) -> None:
    env = cli_env(database_url, embedding_server, tmp_path)
    ingested = run_cli("ingest", str(docs), "--source", "docs", env=env)
    assert ingested.returncode == 0, ingested.stderr
    (docs / "guide" / "install.md").write_text(CHANGED)

    with held_embeddings(embedding_server) as admin:
        first = subprocess.Popen(
            [sys.executable, "-m", "docserver", "refresh", "docs"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_held(admin, first)
        second = run_cli("refresh", "docs", env=env, timeout=SECOND_TIMEOUT)  # busy does not wait
    out, err = first.communicate(timeout=120)

    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "source 'docs': busy, skipped: another process is refreshing it"
    assert first.returncode == 0, err
    assert "(1 new or changed, 5 unchanged, 0 removed" in out
    listed = run_cli("sources", "--json", env=env)
    [source] = [(s["name"], s["documents"], s["last_error"]) for s in json.loads(listed.stdout)]
    assert source == ("docs", 6, None)
    found = run_cli("search", "wombat installer", "--limit", "1", env=env)
    assert "guide/install.md" in found.stdout
    again = run_cli("refresh", "docs", env=env)  # the lock went with the first refresh
    assert again.stdout.strip().startswith("source 'docs': 6 files (0 new or changed, 6 unchanged"), again.stderr


def open_store(database_url: str) -> Store:
    if database_url.startswith("sqlite:///"):
        return SqliteStore(database_url.removeprefix("sqlite:///"))
    return PostgresStore(database_url, PostgresOptions(min_size=1, max_size=4))


async def test_two_replicas_refreshing_at_once_count_one_refresh_and_one_busy(
    database_url: str, embedding_server: str, docs: Path, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    refreshes = Metrics(registry, process_collectors=False).source_refreshes
    replicas = []

    def count(result: str) -> None:
        refreshes.labels(result).inc()

    for number in (1, 2):  # two replicas: a store (connections), an embedder and a refresher each
        store = open_store(database_url)
        await store.open()
        embedder = OpenAIEmbedder(base_url=embedding_server, model=MODEL)
        await bind_embedder(store, embedder)
        git = GitRepositories(tmp_path / f"git{number}")
        web = WebCrawler(tmp_path / f"web{number}", CrawlLimits())
        replicas.append(Sources(store, embedder, git, web, max_chars=1500, on_refresh=count))
    first, second = replicas
    origin = parse_origin(str(docs))
    await first.ingest(SourceRequest("docs", origin, paths=(origin.location,)))
    (docs / "guide" / "install.md").write_text(CHANGED)
    counted_before = {
        result: registry.get_sample_value("docserver_source_refresh_total", {"result": result})
        for result in REFRESH_RESULTS
    }

    try:
        with held_embeddings(embedding_server) as admin:
            working = asyncio.create_task(first.refresh(["docs"]))
            await asyncio.to_thread(wait_until_held, admin)
            [skipped] = await asyncio.wait_for(second.refresh(["docs"]), SECOND_TIMEOUT)  # busy does not wait
        [worked] = await working
        [listed] = await second.store.list_sources()
    finally:
        for replica in replicas:
            await replica.embedder.aclose()  # type: ignore[attr-defined]
            await replica.store.close()

    assert (worked.result, skipped.result) == ("ok", "busy")
    assert (listed.name, listed.documents) == ("docs", 6)
    counted = {
        result: registry.get_sample_value("docserver_source_refresh_total", {"result": result}) - counted_before[result]
        for result in REFRESH_RESULTS
    }
    assert counted == {"ok": 1.0, "unchanged": 0.0, "failed": 0.0, "busy": 1.0}
