"""Closed label sets: 10,000 hostile requests create no new series, and /metrics stays under its budget.

Every kind of request below carries client-chosen values (paths, HTTP
methods, tool names, session ids, MCP method names) that must never become
label values. After one warm-up request of each kind has created the series
that kind legitimately adds (`route="unmatched"`, `method="other"`,
`tool="unknown"`, ...), the exposition must not grow by a single series.
"""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import CORPUS
from docserver.binding import bind_embedder
from docserver.config import Settings
from docserver.embed.hashing import HashEmbedder
from docserver.ingest.pipeline import ingest
from docserver.observability.metrics import HTTP_METHODS
from docserver.runtime import Runtime
from docserver.store.sqlite import SqliteStore
from support.inprocess import current_request, handshake_request, http_client, new_metrics, serve_in_process

pytestmark = pytest.mark.slow

TOTAL_REQUESTS = 10_000
SCRAPE_BUDGET_BYTES = 200_000
"""The documented budget for one /metrics body (docs/metrics.md, "Cardinality")."""

Request = dict[str, Any]
"""Keyword arguments of `httpx.AsyncClient.request`."""


def token(rng: random.Random, size: int = 12) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=size))


def garbage_method(rng: random.Random) -> str:
    method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 9)))
    return method if method not in HTTP_METHODS else "FOO"


def junk_path(rng: random.Random) -> Request:
    return {"method": "GET", "url": f"/{token(rng)}/{token(rng, 4)}.{token(rng, 3)}"}


def any_method_junk_path(rng: random.Random) -> Request:
    method = rng.choice([*sorted(HTTP_METHODS), garbage_method(rng)])
    return {"method": method, "url": f"/{token(rng)}"}


def garbage_method_on_mcp(rng: random.Random) -> Request:
    return {"method": garbage_method(rng), "url": "/mcp"}


def random_tool(rng: random.Random) -> Request:
    name = token(rng)
    headers, body = current_request("tools/call", {"name": name, "arguments": {}}, name=name)
    return {"method": "POST", "url": "/mcp", "headers": headers, "content": body}


def random_session_id(rng: random.Random) -> Request:
    headers, body = handshake_request("tools/list", token(rng, 32))
    return {"method": "POST", "url": "/mcp", "headers": headers, "content": body}


def random_mcp_method_header(rng: random.Random) -> Request:
    headers, body = current_request("tools/list", header_method=f"{token(rng, 6)}/{token(rng, 6)}")
    return {"method": "POST", "url": "/mcp", "headers": headers, "content": body}


def random_jsonrpc_method(rng: random.Random) -> Request:
    headers, body = current_request(f"{token(rng, 6)}/{token(rng, 6)}")
    return {"method": "POST", "url": "/mcp", "headers": headers, "content": body}


@dataclass(frozen=True)
class Kind:
    build: Callable[[random.Random], Request]
    count: int
    warm_up: tuple[Request, ...] = ()
    """Requests that create every series this kind may add; one built request when empty."""


KINDS = [
    Kind(junk_path, 3_900),
    Kind(
        any_method_junk_path,
        3_900,
        tuple({"method": method, "url": "/warm-up"} for method in (*sorted(HTTP_METHODS), "FOO")),
    ),
    Kind(garbage_method_on_mcp, 500),
    Kind(random_tool, 300),  # each costs a real MCP tools/call (~1 ms)
    Kind(random_session_id, 500),
    Kind(random_mcp_method_header, 500),
    Kind(random_jsonrpc_method, 400),
]
assert sum(kind.count for kind in KINDS) == TOTAL_REQUESTS


@pytest.fixture
async def runtime_parts(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, HashEmbedder]]:
    store = SqliteStore(tmp_path / "docserver.db")
    await store.open()
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    await ingest(store, embedder, [CORPUS], "corpus")
    yield store, embedder
    await store.close()


def series(exposition: str) -> list[str]:
    """One `name{labels}` per sample line of a scrape."""
    return [line.rpartition(" ")[0] for line in exposition.splitlines() if line and not line.startswith("#")]


def total(exposition: str, name: str, labels: dict[str, str] | None = None) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and (labels is None or sample.labels == labels)
    )


async def test_random_requests_create_no_series_and_the_scrape_stays_in_budget(
    settings: Settings, runtime_parts: tuple[SqliteStore, HashEmbedder]
) -> None:
    rng = random.Random(4)
    store, embedder = runtime_parts
    metrics = new_metrics()
    runtime = Runtime(settings, store, embedder, metrics)
    async with serve_in_process(settings, runtime, metrics) as app, http_client(app) as http:

        async def send(request: Request) -> httpx.Response:
            return await http.request(**request)

        await http.get("/metrics")
        for kind in KINDS:
            for request in kind.warm_up or (kind.build(rng),):
                await send(request)
        before = (await http.get("/metrics")).text

        statuses: dict[str, set[int]] = {}
        for kind in KINDS:
            for _ in range(kind.count):
                response = await send(kind.build(rng))
                statuses.setdefault(kind.build.__name__, set()).add(response.status_code)

        after = (await http.get("/metrics")).text

    assert all(max(codes) < 500 for codes in statuses.values()), statuses
    requests = "docserver_http_requests_total"
    assert total(after, requests) - total(before, requests) == TOTAL_REQUESTS + 1  # plus the scrape `before`
    unknown = {"tool": "unknown", "status": "error"}
    assert (
        total(after, "docserver_tool_calls_total", unknown) - total(before, "docserver_tool_calls_total", unknown)
        == 300
    )
    new = sorted(set(series(after)) - set(series(before)))
    assert (len(series(after)), new[:5]) == (len(series(before)), [])
    assert len(after.encode()) < SCRAPE_BUDGET_BYTES
