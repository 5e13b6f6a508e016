"""A repeated search_docs call is answered from the wire form its first answer had (mcp/answers.py).

What a user relies on: the same answer, byte for byte, for the same call; a
call that differs in any way the SDK would answer differently (an unknown
argument, a coerced type, a malformed `_meta`, another caller's sources, a
new corpus) answered as the SDK answers it; and the result cache's hits
counted once per call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from prometheus_client import CollectorRegistry

from docserver.access.tokens import new_token, token_entry
from docserver.app import new_metrics
from docserver.config import Settings
from docserver.config.auth import AuthSettings
from docserver.ingest.pipeline import ingest
from docserver.mcp import tools
from docserver.runtime import Runtime
from support.inprocess import current_request, http_client, mcp_client, serve_in_process

QUERY = "enable TLS"


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every tool result the search tool built (the SDK's path), by query."""
    built: list[str] = []
    original = tools._rendered

    def counting(page: Any, query: str, source: str | None) -> Any:
        built.append(query)
        return original(page, query, source)

    monkeypatch.setattr(tools, "_rendered", counting)
    return built


async def _post(http: Any, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    headers, body = current_request(
        "tools/call", {"name": "search_docs", "arguments": arguments}, name="search_docs", meta=meta
    )
    response = await http.post("/mcp", content=body, headers=headers)
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_repeated_call_gets_the_same_answer_without_the_tool_running_again(
    settings: Settings, runtime: Runtime, corpus: Path, renders: list[str]
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        answers = [await _post(http, {"query": QUERY}) for _ in range(3)]
        await _post(http, {"query": QUERY, "limit": 5})  # the default, sent: the same call

    assert answers[0]["result"]["structuredContent"]["results"]
    assert answers[1] == answers[0] == answers[2]
    assert renders == [QUERY]  # built once, then served as it was


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_official_client_reads_a_served_answer_as_the_first(
    settings: Settings, runtime: Runtime, corpus: Path, renders: list[str], mode: Literal["auto", "legacy"]
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    async with serve_in_process(settings, runtime, None) as app, mcp_client(app, mode=mode) as client:
        first = await client.call_tool("search_docs", {"query": QUERY, "limit": 3})
        again = await client.call_tool("search_docs", {"query": QUERY, "limit": 3})

    assert not again.is_error
    assert again.structured_content == first.structured_content
    assert again.content == first.content
    assert len(renders) == 1


@pytest.mark.parametrize(
    ("arguments", "meta"),
    [
        ({"query": QUERY, "max_results": 3}, None),  # unknown: refused, not ignored
        ({"query": QUERY, "limit": 0}, None),  # out of the schema's range
        ({"query": "", "limit": 5}, None),  # shorter than the schema's minimum
        ({"query": QUERY}, {"progressToken": {"not": "a token"}}),  # a malformed _meta
    ],
)
async def test_a_call_the_sdk_would_refuse_is_refused_after_a_served_one(
    settings: Settings, runtime: Runtime, corpus: Path, arguments: dict[str, Any], meta: dict[str, Any] | None
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        fresh = await _post(http, arguments, meta)
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        await _post(http, {"query": QUERY})
        await _post(http, {"query": QUERY})
        after_served = await _post(http, arguments, meta)

    assert fresh.get("error") or fresh["result"].get("isError")
    assert after_served == fresh


@pytest.mark.parametrize(("limit", "coercible"), [(5, 5.0), (1, True)])
async def test_an_argument_the_sdk_coerces_goes_through_the_sdk(
    settings: Settings, runtime: Runtime, corpus: Path, renders: list[str], limit: int, coercible: object
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        await _post(http, {"query": QUERY, "limit": limit})
        coerced = await _post(http, {"query": QUERY, "limit": coercible})
        again = await _post(http, {"query": QUERY, "limit": limit})

    assert renders == [QUERY, QUERY]  # the coercible value is the SDK's to judge; the exact one again is served
    assert coerced == again


async def test_an_ingest_retires_a_served_answer(
    settings: Settings, runtime: Runtime, corpus: Path, tmp_path: Path
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "zephyr.md").write_text("# Zephyr\n\nThe zephyr gateway enables TLS on every listener.\n")
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        before = await _post(http, {"query": "zephyr TLS"})
        await _post(http, {"query": "zephyr TLS"})
        await ingest(runtime.store, runtime.embedder, [extra], "extra")
        after = await _post(http, {"query": "zephyr TLS"})

    assert "extra" not in {hit["source"] for hit in before["result"]["structuredContent"]["results"]}
    assert after["result"]["structuredContent"]["results"][0]["source"] == "extra"


async def test_another_caller_is_not_served_an_answer_made_for_more_sources(
    settings: Settings, runtime: Runtime, corpus: Path, tmp_path: Path
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "team-a")
    await ingest(runtime.store, runtime.embedder, [corpus], "team-b")
    everything, team_a = new_token(), new_token()
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        token_entry("everything", everything, ["docs:read"]) + token_entry("team-a-bot", team_a, ["docs:read:team-a"])
    )
    settings = settings.model_copy(update={"auth": AuthSettings(api_tokens_file=tokens)})
    async with serve_in_process(settings, runtime, None) as app:
        async with http_client(app, {"Authorization": f"Bearer {everything}"}) as http:
            for _ in range(2):
                wide = await _post(http, {"query": QUERY, "limit": 10})
        async with http_client(app, {"Authorization": f"Bearer {team_a}"}) as http:
            narrow = await _post(http, {"query": QUERY, "limit": 10})

    assert {hit["source"] for hit in wide["result"]["structuredContent"]["results"]} == {"team-a", "team-b"}
    assert {hit["source"] for hit in narrow["result"]["structuredContent"]["results"]} == {"team-a"}


async def test_each_served_call_counts_one_cache_hit_and_its_results(
    settings: Settings, runtime: Runtime, corpus: Path
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    metrics = new_metrics(settings, CollectorRegistry())
    runtime = Runtime(settings, runtime.store, runtime.embedder, metrics)
    async with serve_in_process(settings, runtime, metrics) as app, http_client(app) as http:
        for _ in range(4):
            await _post(http, {"query": QUERY, "limit": 2})
        exposition = (await http.get("/metrics")).text

    assert _sample(exposition, 'docserver_cache_requests_total{cache="search",result="hit"}') == 3
    assert _sample(exposition, 'docserver_cache_requests_total{cache="search",result="miss"}') == 1
    assert _sample(exposition, "docserver_search_results_count") == 4
    assert _sample(exposition, 'docserver_tool_calls_total{status="ok",tool="search_docs"}') == 4


def _sample(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed:\n{exposition[:3000]}")
