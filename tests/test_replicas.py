"""Two `docserver serve` replicas on one PostgreSQL and one Redis, and an ingest through the CLI.

Both replicas answer from the new content at once; nothing cached before the
ingest (in either replica, or in Redis) is served after it.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from conftest import CORPUS
from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver
from support.postgres_server import database_name, shared_server
from support.redis_server import redis_url

pytestmark = pytest.mark.slow

QUERY = "zeppelin mooring mast"
NEW_PAGE = "# Airships\n\n## Mooring\n\nA zeppelin is tied to its mooring mast by the nose cone.\n"


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings every process shares: one database, one Redis (under a prefix of this test's own)."""
    server = shared_server()
    name = database_name(str(tmp_path))
    prefix = f"docserver-test-{uuid.uuid4().hex}:"
    extra = {
        "DOCSERVER_DATABASE_URL": server.create_database(name),
        "DOCSERVER_REDIS_URL": redis_url(),
        "DOCSERVER_REDIS_KEY_PREFIX": prefix,
        "OTEL_TRACES_EXPORTER": "none",
    }
    yield docserver_env(tmp_path / "unused.db", extra)
    client = redis.Redis.from_url(redis_url())
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
    server.drop_database(name)


@pytest.fixture
def replicas(environment: dict[str, str], tmp_path: Path) -> Iterator[list[ServerProcess]]:
    docs = tmp_path / "docs"
    shutil.copytree(CORPUS, docs)
    first = run_cli("ingest", str(docs), "--source", "docs", env=environment)
    assert first.returncode == 0, first.stderr
    with ExitStack() as stack:
        yield [stack.enter_context(start_docserver(environment, tmp_path / f"replica-{n}.log")) for n in (1, 2)]


async def search(server: ServerProcess, query: str) -> list[dict[str, Any]]:
    async with Client(server.mcp_url) as client:
        result = await client.call_tool("search_docs", {"query": query, "limit": 3})
    assert not result.is_error
    assert result.structured_content is not None
    return list(result.structured_content["results"])


def search_cache(server: ServerProcess, result: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "docserver_cache_requests_total" and sample.labels == {
                "cache": "search",
                "result": result,
            }:
                return sample.value
    return 0.0


async def test_an_ingest_through_the_cli_reaches_both_replicas_at_once(
    replicas: list[ServerProcess], environment: dict[str, str], tmp_path: Path
) -> None:
    first, second = replicas
    before = await search(first, QUERY)
    assert await search(second, QUERY) == before  # served from Redis: the second replica never searched
    assert search_cache(second, "hit") == 1
    assert "airships.md" not in [hit["path"] for hit in before]

    (tmp_path / "docs" / "airships.md").write_text(NEW_PAGE)
    ingested = run_cli("ingest", str(tmp_path / "docs"), "--source", "docs", env=environment)
    assert ingested.returncode == 0, ingested.stderr

    for replica in (first, second):
        hits = await search(replica, QUERY)  # the same query whose old result both replicas have cached
        assert hits[0]["path"] == "airships.md", hits
        assert hits[0]["heading"] == "Airships > Mooring"
    assert search_cache(second, "hit") == 2  # the second had the first's new result from Redis
