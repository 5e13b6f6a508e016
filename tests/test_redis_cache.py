"""The Redis shared cache: what replicas share, what keys it, and that a Redis down or slow never fails a search.

Against a real Redis (the machine's on 127.0.0.1:6379, or one these tests start), each
test under its own key prefix, removed afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from conftest import CORPUS
from docserver.binding import bind_embedder
from docserver.cache import open_shared_cache
from docserver.config import load_settings
from docserver.embed.base import Embedder
from docserver.embed.hashing import HashEmbedder
from docserver.errors import ConfigError
from docserver.ingest.pipeline import ingest
from docserver.observability.metrics import Metrics
from docserver.search import Fusion, SearchService
from docserver.sharedcache import SharedCache
from docserver.store.base import Vectors
from support.captured_logs import capture_events
from support.counting_store import CountingStore
from support.docserver_process import free_port
from support.redis_server import redis_url, start_redis, stop_redis

QUERY = "journal flush interval durability"
PASSWORD = "redis-Pa55word-x"


class CountingEmbedder(HashEmbedder):
    def __init__(self, dimension: int = 512) -> None:
        super().__init__(dimension=dimension)
        self.queries = 0

    async def embed_query(self, text: str) -> Vectors:
        self.queries += 1
        return await super().embed_query(text)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"docserver-test-{uuid.uuid4().hex}:"
    yield name
    client = redis.Redis.from_url(redis_url())
    keys = list(client.scan_iter(match=f"{name}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def shared(prefix: str) -> AsyncIterator[SharedCache]:
    cache = SharedCache(redis_url(), prefix=prefix, ttl=60)
    yield cache
    await cache.aclose()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    """One database both "replicas" read: the corpus ingested with the hash embedder."""
    opened = CountingStore(tmp_path / "shared.db")
    await opened.open()
    embedder = HashEmbedder()
    await bind_embedder(opened, embedder)
    await ingest(opened, embedder, [CORPUS], "corpus")
    yield opened
    await opened.close()


def replica(
    store: CountingStore, shared: SharedCache | None, embedder: Embedder | None = None
) -> tuple[SearchService, Metrics]:
    """A search service with its own in-process caches and metrics, as one replica has."""
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    # Both retrievers always, so every search needs a query embedding (the hash
    # embedder's own default ranks by BM25 and embeds only to fill).
    service = SearchService(
        store,
        embedder or CountingEmbedder(),
        shared_cache=shared,
        fusion=Fusion(1.0, 1.0),
        instruments=metrics.for_search(),
    )
    return service, metrics


def cache_count(metrics: Metrics, cache: str, result: str) -> float | None:
    return metrics.registry.get_sample_value("docserver_cache_requests_total", {"cache": cache, "result": result})


# -- what replicas share ----------------------------------------------------------------------------


async def test_a_value_put_by_one_replica_is_read_by_another_and_expires(prefix: str) -> None:
    first = SharedCache(redis_url(), prefix=prefix, ttl=30)
    second = SharedCache(redis_url(), prefix=prefix, ttl=30)
    try:
        await first.put("search:key", b"value")
        assert await second.get("search:key") == b"value"
        assert await second.get("search:other") is None
        client = redis.Redis.from_url(redis_url())
        assert 0 < client.pttl(f"{prefix}search:key") <= 30_000
        client.close()
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_result_found_by_one_replica_is_served_by_another(store: CountingStore, shared: SharedCache) -> None:
    first, _ = replica(store, shared)
    second, metrics = replica(store, shared)
    found = await first.search(QUERY)
    calls = store.calls.copy()

    served = await second.search(QUERY)

    assert served == found
    assert store.calls == calls  # no retrieval: the result came from Redis
    assert cache_count(metrics, "search", "hit") == 1
    assert cache_count(metrics, "search", "miss") == 0
    assert await second.search(QUERY) is served  # and it now sits in the second replica's own cache too


async def test_query_embeddings_are_shared_between_replicas_of_one_embedder(
    store: CountingStore, shared: SharedCache
) -> None:
    first, _ = replica(store, shared)
    embedder = CountingEmbedder()
    second, metrics = replica(store, shared, embedder)
    await first.search(QUERY)

    await second.search(QUERY, limit=3)  # another result key, the same query embedding

    assert embedder.queries == 0
    assert cache_count(metrics, "embedding", "hit") == 1


async def test_another_embedder_never_gets_a_shared_vector_or_result(store: CountingStore, shared: SharedCache) -> None:
    first, _ = replica(store, shared)
    await first.search(QUERY)
    renamed = CountingEmbedder()
    renamed.model = "hash-ngram-renamed"
    other, metrics = replica(store, shared, renamed)
    await other._embed_query(QUERY)
    await other.search(QUERY)  # the store holds the first model's vectors: full text alone, and its own result key
    assert renamed.queries == 1
    assert (cache_count(metrics, "embedding", "hit"), cache_count(metrics, "search", "hit")) == (0, 0)

    smaller = CountingEmbedder(dimension=256)
    smaller.model = CountingEmbedder().model  # the same model name, another dimension
    third, metrics = replica(store, shared, smaller)
    await third._embed_query(QUERY)
    assert smaller.queries == 1
    assert cache_count(metrics, "embedding", "hit") == 0


async def test_after_an_ingest_no_replica_serves_an_older_result(
    store: CountingStore, shared: SharedCache, tmp_path: Path
) -> None:
    first, _ = replica(store, shared)
    second, _ = replica(store, shared)
    before = await first.search(QUERY)
    assert await second.search(QUERY) == before  # cached everywhere
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "flush.md").write_text("# Journal flush\n\nThe journal flush interval, durability first.\n")
    await ingest(store, first.embedder, [tmp_path / "more"], "more")  # through "the CLI"

    after = await second.search(QUERY)

    assert "more" in {hit.source for hit in after}
    assert after != before


# -- Redis down or slow -----------------------------------------------------------------------------


async def test_a_redis_that_is_down_is_a_miss_and_one_warning(store: CountingStore) -> None:
    down = SharedCache(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", prefix="x:", ttl=60, retry_after=0)
    service, metrics = replica(store, down)
    try:
        with capture_events() as events:
            results = [await service.search(f"{QUERY} {n}") for n in range(5)]
    finally:
        await down.aclose()
    assert all(results)
    assert cache_count(metrics, "search", "miss") == 5
    warnings = [event for event in events if event["log_level"] == "warning"]
    assert [event["event"] for event in warnings] == ["shared_cache_unavailable"]
    assert warnings[0]["redis"].startswith("redis://:***@127.0.0.1:")
    assert PASSWORD not in repr(events)


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers: a Redis that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_slow_redis_costs_a_search_at_most_the_timeout_then_nothing(
    store: CountingStore, silent_port: int
) -> None:
    slow = SharedCache(f"redis://127.0.0.1:{silent_port}/0", prefix="x:", ttl=60, timeout=0.05, retry_after=60)
    service, _ = replica(store, slow)
    try:
        with capture_events() as events:
            started = time.perf_counter()
            assert await service.search(QUERY)
            first = time.perf_counter() - started
            started = time.perf_counter()
            assert await service.search(f"{QUERY} again")
            second = time.perf_counter() - started
    finally:
        await slow.aclose()
    assert first < 1.0  # one 50 ms timeout (plus the search itself), not a hang
    assert second < first  # while the circuit is open, Redis is not asked at all
    assert [event["event"] for event in events if event["log_level"] == "warning"] == ["shared_cache_unavailable"]


async def test_recovery_is_logged_once_and_a_new_outage_warns_again() -> None:
    port = free_port()
    cache = SharedCache(f"redis://127.0.0.1:{port}/0", prefix=f"recovery-{uuid.uuid4().hex}:", ttl=60, retry_after=0)
    try:
        with capture_events() as events:
            assert await cache.get("k") is None  # down: warning
            assert await cache.get("k") is None  # still down: silence
            process = start_redis(port)
            try:
                await cache.put("k", b"v")  # back: one info line
                assert await cache.get("k") == b"v"
            finally:
                stop_redis(process)
            assert await cache.get("k") is None  # down again: a second warning
    finally:
        await cache.aclose()
    assert [(event["event"], event["log_level"]) for event in events] == [
        ("shared_cache_unavailable", "warning"),
        ("shared_cache_recovered", "info"),
        ("shared_cache_unavailable", "warning"),
    ]


# -- settings ---------------------------------------------------------------------------------------


async def test_the_redis_settings_build_the_shared_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSERVER_REDIS_URL", f"redis://:{PASSWORD}@cache.example.com:6379/2")
    monkeypatch.setenv("DOCSERVER_REDIS_KEY_PREFIX", "docs-prod:")
    monkeypatch.setenv("DOCSERVER_REDIS_TIMEOUT_MS", "80")
    settings = load_settings()
    cache = open_shared_cache(settings)
    assert cache is not None
    assert (cache.prefix, cache.where) == ("docs-prod:", "redis://:***@cache.example.com:6379/2")
    assert PASSWORD in settings.secrets()
    await cache.aclose()
    monkeypatch.delenv("DOCSERVER_REDIS_URL")
    assert open_shared_cache(load_settings()) is None


@pytest.mark.parametrize("url", ["http://cache:6379", f"redis://:{PASSWORD}@cache:port/0", "redis:///0"])
def test_a_bad_redis_url_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DOCSERVER_REDIS_URL", url)
    with pytest.raises(ConfigError, match=r"^invalid setting DOCSERVER_REDIS_URL: ") as raised:
        load_settings()
    assert PASSWORD not in str(raised.value)
