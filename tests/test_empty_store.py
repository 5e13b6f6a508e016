"""An empty store says so: in the start-up log, on /readyz and inside an empty search_docs result."""

from __future__ import annotations

from pathlib import Path

from docserver.config import Settings
from docserver.empty_store import EMPTY_STORE_HINT, log_store_at_start
from docserver.ingest.pipeline import ingest
from docserver.runtime import Runtime
from support.captured_logs import capture_events
from support.inprocess import http_client, mcp_client, serve_in_process


async def test_start_up_names_the_database_and_warns_that_it_is_empty(settings: Settings, runtime: Runtime) -> None:
    with capture_events() as events:
        await log_store_at_start(settings, runtime)

    located, empty = events
    assert located["event"] == "store_location"
    assert located["database"] == settings.store.url
    assert (empty["event"], empty["log_level"], empty["hint"]) == ("store_empty", "warning", EMPTY_STORE_HINT)


async def test_start_up_stays_quiet_about_a_store_with_documentation(
    settings: Settings, runtime: Runtime, corpus: Path
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    with capture_events() as events:
        await log_store_at_start(settings, runtime)

    assert [event["event"] for event in events] == ["store_location"]


async def test_readyz_is_ready_and_carries_the_hint_when_nothing_is_indexed(
    settings: Settings, runtime: Runtime
) -> None:
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        response = await http.get("/readyz")

    assert response.status_code == 200
    assert response.json()["hint"] == EMPTY_STORE_HINT


async def test_readyz_has_no_hint_once_documentation_is_indexed(
    settings: Settings, runtime: Runtime, corpus: Path
) -> None:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    async with serve_in_process(settings, runtime, None) as app, http_client(app) as http:
        response = await http.get("/readyz")

    assert "hint" not in response.json()


async def test_an_empty_search_result_from_an_empty_store_carries_the_hint(
    settings: Settings, runtime: Runtime
) -> None:
    async with serve_in_process(settings, runtime, None) as app, mcp_client(app) as client:
        result = await client.call_tool("search_docs", {"query": "how do I configure logging"})

    assert not result.is_error
    assert result.structured_content == {
        "query": "how do I configure logging",
        "source": None,
        "results": [],
        "hint": EMPTY_STORE_HINT,
    }
    assert EMPTY_STORE_HINT in result.content[0].text  # type: ignore[union-attr]
