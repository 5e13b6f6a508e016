"""Website origins on real servers over loopback: Python's real HTML docs, and a site that misbehaves on demand.

The real docs (Debian's python3.11-doc, installed by `make system-deps`) are
served from a copy by the standard library's HTTP server, which answers
conditional GETs by modification time; the misbehaving site is
support/fault_server.py under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import shutil
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from docserver.binding import bind_embedder
from docserver.config import Settings
from docserver.embed.hashing import HashEmbedder
from docserver.errors import DocserverError
from docserver.observability import tracing
from docserver.observability.metrics import Metrics
from docserver.observability.sampling import ratio
from docserver.observability.tracing_setup import Tracing
from docserver.runtime import Runtime
from docserver.search import SearchService
from docserver.sources.commands import open_sources
from docserver.sources.filters import FileFilter
from docserver.sources.git import GitRepositories
from docserver.sources.origin import parse_origin
from docserver.sources.request import SourceRequest
from docserver.sources.service import Sources
from docserver.sources.web import CrawlLimits, FetchCallback, WebCrawler
from docserver.store.sqlite import SqliteStore
from support.captured_logs import capture_events
from support.docserver_process import docserver_env, run_cli
from support.fault_server import PREFIX, FaultSite, html_page
from support.inprocess import mcp_client, serve_in_process
from support.loopback import loopback_socket, serve_over_http

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
FAST = CrawlLimits(rate=1000.0, timeout=5.0, concurrency=4)
"""Loopback limits: politeness would only slow the tests down."""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tutorial(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(start URL, folder): a copy of Python's tutorial, served by http.server on loopback."""
    assert PYTHON_DOCS.is_dir(), "python3.11-doc is missing: run `make system-deps`"
    folder = shutil.copytree(PYTHON_DOCS / "tutorial", tmp_path / "html" / "tutorial")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=tmp_path / "html"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/tutorial/index.html", folder
    server.shutdown()
    server.server_close()


@pytest.fixture
def fetches() -> Counter[str]:
    """The result of every HTTP fetch the crawler made, counted."""
    return Counter()


@pytest.fixture
async def sources(tmp_path: Path, store: SqliteStore, fetches: Counter[str]) -> Sources:
    return await _sources(tmp_path, store, FAST, on_fetch=lambda result, size: fetches.update([result]))


async def _sources(
    tmp_path: Path, store: SqliteStore, limits: CrawlLimits, on_fetch: FetchCallback | None = None
) -> Sources:
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    web = WebCrawler(tmp_path / "web", limits, on_fetch=on_fetch)
    return Sources(store, embedder, GitRepositories(tmp_path / "git"), web, max_chars=1500)


@asynccontextmanager
async def served(site: FaultSite) -> AsyncIterator[str]:
    """The site over real HTTP; its base URL (pages are under /site/)."""
    async with serve_over_http(site.app(), loopback_socket()) as base:
        try:
            yield base + PREFIX
        finally:
            site.close()  # before the server stops: it waits for the slow answers to end


def web_request(url: str, name: str = "web", **filters: Any) -> SourceRequest:
    return SourceRequest(name, parse_origin(url), FileFilter(**filters))


async def stored_paths(store: SqliteStore, source: str = "web") -> set[str]:
    return set(await store.document_hashes(source))


def small_site() -> FaultSite:
    site = FaultSite()
    site.pages["index.html"] = html_page("Home", links=["install.html", "usage.html"])
    site.pages["install.html"] = html_page("Install", "Run the installer with the flag --yes.", links=["index.html"])
    site.pages["usage.html"] = html_page("Usage", "Call the tool with a file name.", links=["index.html"])
    return site


# -- real documentation ------------------------------------------------------------


async def test_the_crawl_stores_every_page_on_disk(sources: Sources, tutorial: tuple[str, Path]) -> None:
    start, folder = tutorial
    base = start.removesuffix("index.html")

    outcome = await sources.ingest(web_request(start))

    on_disk = {base + path.name for path in folder.glob("*.html")}
    assert outcome.summary is not None and outcome.summary.files == len(on_disk) == 17
    assert await stored_paths(sources.store) == on_disk


async def test_search_answers_carry_the_page_url_and_section_anchor(
    settings: Settings, store: SqliteStore, sources: Sources, tutorial: tuple[str, Path]
) -> None:
    start, _ = tutorial
    await sources.ingest(web_request(start))
    runtime = Runtime(settings, store, sources.embedder)

    async with serve_in_process(settings, runtime, None) as app, mcp_client(app) as client:
        result = await client.call_tool("search_docs", {"query": "class inheritance derived base class", "limit": 3})

    top = result.structured_content["results"][0]
    assert top["url"] == start.removesuffix("index.html") + "classes.html#tut-inheritance"
    assert top["heading"] == "9. Classes > 9.5. Inheritance"


async def test_html_pages_keep_their_main_content_only(sources: Sources, tutorial: tuple[str, Path]) -> None:
    start, _ = tutorial
    await sources.ingest(web_request(start))
    service = SearchService(sources.store, sources.embedder)

    hits = await service.search("Previous topic Next topic This Page Report a Bug", limit=20)

    assert not [hit for hit in hits if "Report a Bug" in hit.snippet]  # Sphinx's sidebar is left out


async def test_a_refresh_asks_conditionally_and_embeds_nothing(
    sources: Sources, tutorial: tuple[str, Path], fetches: Counter[str]
) -> None:
    start, _ = tutorial
    await sources.ingest(web_request(start))
    fetches.clear()

    [outcome] = await sources.refresh(["web"])

    assert outcome.result == "unchanged"
    assert outcome.summary is not None and (outcome.summary.changed, outcome.summary.chunks) == (0, 0)
    assert fetches["not_modified"] == 17 and fetches["ok"] == 0


async def test_a_changed_page_is_fetched_and_embedded_again(sources: Sources, tutorial: tuple[str, Path]) -> None:
    start, folder = tutorial
    await sources.ingest(web_request(start))
    page = folder / "whatnow.html"
    page.write_text(page.read_text().replace("What Now?", "What Comes Next?"))
    later = page.stat().st_mtime + 10  # http.server's Last-Modified counts whole seconds
    os.utime(page, (later, later))

    [outcome] = await sources.refresh(["web"])

    assert outcome.summary is not None and (outcome.summary.changed, outcome.summary.unchanged) == (1, 16)


async def test_a_page_now_missing_is_removed(sources: Sources, tutorial: tuple[str, Path]) -> None:
    start, folder = tutorial
    await sources.ingest(web_request(start))
    (folder / "appendix.html").unlink()

    [outcome] = await sources.refresh(["web"])

    assert outcome.summary is not None and outcome.summary.removed == 1
    assert start.removesuffix("index.html") + "appendix.html" not in await stored_paths(sources.store)


async def test_an_excluded_page_is_neither_fetched_nor_stored(
    sources: Sources, tutorial: tuple[str, Path], fetches: Counter[str]
) -> None:
    start, _ = tutorial

    outcome = await sources.ingest(web_request(start, exclude=("classes.html", "std*.html")))

    assert outcome.summary is not None and outcome.summary.files == 14
    assert not [path for path in await stored_paths(sources.store) if path.endswith(("classes.html", "lib.html"))]
    assert sum(fetches.values()) == 14 + 4  # the pages, robots.txt, sitemap.xml, llms.txt, llms-full.txt


async def test_an_exclude_added_later_removes_the_pages(sources: Sources, tutorial: tuple[str, Path]) -> None:
    start, _ = tutorial
    await sources.ingest(web_request(start))

    outcome = await sources.ingest(web_request(start, exclude=("classes.html",)))

    assert outcome.summary is not None and outcome.summary.removed == 1


# -- a site that misbehaves ----------------------------------------------------------


async def test_a_page_answering_5xx_keeps_its_content_and_is_logged(sources: Sources) -> None:
    site = small_site()
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))
        site.faults["install.html"] = 503
        with capture_events() as events:
            [outcome] = await sources.refresh(["web"])

    assert outcome.result == "unchanged"
    assert base + "install.html" in await stored_paths(sources.store)
    [failed] = [event for event in events if event["event"] == "crawl_page_failed"]
    assert (failed["url"], failed["reason"]) == (base + "install.html", "503 Service Unavailable")


async def test_a_page_that_times_out_keeps_its_content(tmp_path: Path, store: SqliteStore) -> None:
    sources = await _sources(tmp_path, store, CrawlLimits(rate=1000.0, timeout=2.0))
    site = small_site()
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))
        site.faults["usage.html"] = "slow"
        [outcome] = await sources.refresh(["web"])

    assert outcome.summary is not None and ("usage.html" in outcome.summary.skipped_files[0][0])
    assert outcome.summary.skipped_files[0][1] == "no answer within 2 s"
    assert base + "usage.html" in await stored_paths(sources.store)


async def test_a_page_answering_410_is_removed(sources: Sources) -> None:
    site = small_site()
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))
        site.faults["usage.html"] = 410
        [outcome] = await sources.refresh(["web"])

    assert outcome.summary is not None and outcome.summary.removed == 1
    assert await stored_paths(sources.store) == {base + "index.html", base + "install.html"}


async def test_a_redirected_page_is_stored_once_under_its_target(sources: Sources) -> None:
    site = small_site()
    site.pages["index.html"] = html_page("Home", links=["install.html", "old-install.html", "usage.html"])
    site.redirects["old-install.html"] = "install.html"
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))

    assert await stored_paths(sources.store) == {base + name for name in ("index.html", "install.html", "usage.html")}


async def test_a_canonical_link_deduplicates_a_page(sources: Sources) -> None:
    site = small_site()
    site.pages["index.html"] = html_page("Home", links=["install.html", "print/install.html", "usage.html"])
    site.pages["print/install.html"] = html_page("Install", "Run the installer.", canonical="../install.html")
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))

    assert base + "print/install.html" not in await stored_paths(sources.store)


async def test_a_folder_and_its_index_page_are_stored_once(sources: Sources) -> None:
    site = small_site()
    site.pages[""] = site.pages["index.html"]  # the folder serves its index, as most servers do
    site.pages["install.html"] = html_page("Install", links=["index.html"])
    async with served(site) as base:
        await sources.ingest(web_request(base))

    assert await stored_paths(sources.store) == {base, base + "install.html", base + "usage.html"}


async def test_an_include_added_later_removes_unchanged_pages(sources: Sources) -> None:
    site = small_site()
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))
        outcome = await sources.ingest(web_request(base + "index.html", include=("in*.html",)))

    assert outcome.summary is not None and outcome.summary.removed == 1
    assert await stored_paths(sources.store) == {base + "index.html", base + "install.html"}


async def test_a_redirect_loop_is_skipped_with_its_reason(sources: Sources) -> None:
    site = small_site()
    site.pages["index.html"] = html_page("Home", links=["install.html", "a.html"])
    site.redirects.update({"a.html": "b.html", "b.html": "a.html"})
    async with served(site) as base:
        outcome = await sources.ingest(web_request(base + "index.html"))

    assert outcome.summary is not None
    assert outcome.summary.skipped_files == [(base + "a.html", f"redirect loop at {base}a.html")]


async def test_robots_disallow_is_honoured(sources: Sources) -> None:
    site = small_site()
    site.robots = f"User-agent: *\nDisallow: {PREFIX}usage.html\n"
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))

    assert site.requests[PREFIX + "usage.html"] == 0
    assert await stored_paths(sources.store) == {base + "index.html", base + "install.html"}


async def test_oversize_and_binary_pages_are_skipped_with_their_reasons(tmp_path: Path, store: SqliteStore) -> None:
    sources = await _sources(tmp_path, store, CrawlLimits(rate=1000.0, max_page_bytes=4096))
    site = small_site()
    site.pages["install.html"] = html_page("Install", "word " * 2000)
    site.faults["usage.html"] = "binary"
    async with served(site) as base:
        outcome = await sources.ingest(web_request(base + "index.html"))

    assert outcome.summary is not None
    assert sorted(outcome.summary.skipped_files) == [
        (base + "install.html", "over the 4096-byte limit"),
        (base + "usage.html", "binary content"),
    ]


async def test_sitemap_and_llms_txt_name_pages_no_link_reaches(sources: Sources) -> None:
    site = small_site()
    site.pages["hidden.html"] = html_page("Hidden", "Only the sitemap knows this page.")
    site.pages["guide.md"] = "# Guide\n\n## Setup\n\nSet it up.\n"
    site.pages["sitemap.xml"] = (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        "<url><loc>hidden.html</loc></url><url><loc>http://elsewhere.example/x.html</loc></url></urlset>"
    )
    site.pages["llms.txt"] = "# Site\n\n- [Guide](guide.md): the guide\n"
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))

    assert {base + "hidden.html", base + "guide.md"} <= await stored_paths(sources.store)


async def test_markdown_pages_are_chunked_by_heading(sources: Sources) -> None:
    site = FaultSite()
    site.pages["index.md"] = "# Guide\n\nSee [setup](setup.md).\n"
    site.pages["setup.md"] = "# Setup\n\n## Requirements\n\nPython 3.11 or later.\n"
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.md"))
    service = SearchService(sources.store, sources.embedder)

    [hit] = await service.search("Python 3.11 or later", limit=1)

    assert (hit.path, hit.heading, hit.url) == (base + "setup.md", "Setup > Requirements", base + "setup.md")


async def test_the_depth_limit_stops_following_links(tmp_path: Path, store: SqliteStore) -> None:
    sources = await _sources(tmp_path, store, CrawlLimits(rate=1000.0, max_depth=1))
    site = small_site()
    site.pages["usage.html"] = html_page("Usage", links=["deep.html"])
    site.pages["deep.html"] = html_page("Deep")
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))

    assert base + "deep.html" not in await stored_paths(sources.store)


# -- bad input: one clear line, nothing stored lost ------------------------------------


async def test_an_unreachable_host_fails_in_one_line_and_keeps_the_source(sources: Sources) -> None:
    site = small_site()
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))
    # The server has stopped: nothing listens on its port any more.

    with pytest.raises(DocserverError, match=r"^cannot crawl http://127\.0\.0\.1:\d+/site/index\.html: cannot connect"):
        await sources.ingest(web_request(base + "index.html"))

    assert len(await stored_paths(sources.store)) == 3


async def test_a_start_url_in_a_redirect_loop_fails_in_one_line(sources: Sources) -> None:
    site = FaultSite(redirects={"index.html": "loop.html", "loop.html": "index.html"})
    async with served(site) as base:
        with pytest.raises(DocserverError, match=f"^cannot crawl {base}index.html: redirect loop at {base}index.html$"):
            await sources.ingest(web_request(base + "index.html"))


async def test_a_start_url_robots_txt_disallows_fails_in_one_line(sources: Sources) -> None:
    site = small_site()
    site.robots = "User-agent: docserver\nDisallow: /\n"
    async with served(site) as base:
        with pytest.raises(DocserverError, match=f"^cannot crawl {base}index.html: robots.txt disallows it$"):
            await sources.ingest(web_request(base + "index.html"))
    assert site.requests[PREFIX + "index.html"] == 0


@pytest.mark.parametrize("url", ["http://", "https:///path", "http://exa mple.com/"])
def test_an_invalid_url_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(DocserverError, match=r"^invalid URL: .*\(expected http://HOST/PATH or https://HOST/PATH\)$"):
        parse_origin(url)


async def test_credentials_in_the_url_never_reach_the_logs(sources: Sources) -> None:
    site = small_site()
    site.faults["usage.html"] = 500
    async with served(site) as base:
        secret = base.replace("http://", "http://reader:s3cret@")
        with capture_events() as events:
            await sources.ingest(web_request(secret + "index.html?token=t0k"))
            with pytest.raises(DocserverError):
                await sources.ingest(web_request(secret + "missing.html?token=t0k"))

    assert events and not [event for event in events if "s3cret" in repr(event) or "t0k" in repr(event)]
    assert all("reader" not in path for path in await stored_paths(sources.store))


@pytest.mark.slow
def test_the_command_crawls_and_search_prints_the_url(tmp_path: Path, tutorial: tuple[str, Path]) -> None:
    start, _ = tutorial
    env = docserver_env(tmp_path / "cli.db", {"XDG_DATA_HOME": str(tmp_path / "data"), "DOCSERVER_CRAWL_RATE": "1000"})

    ingested = run_cli("ingest", start, "--source", "tutorial", env=env)
    found = run_cli("search", "class inheritance derived base class", "--limit", "1", env=env)

    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.startswith("source 'tutorial': 17 pages (17 new or changed, 0 unchanged")
    assert found.stdout.startswith(f"1. [tutorial] {start.removesuffix('index.html')}classes.html#tut-inheritance > ")


@pytest.mark.slow
def test_the_command_says_an_unreachable_host_in_one_line(tmp_path: Path) -> None:
    env = docserver_env(tmp_path / "cli.db", {"XDG_DATA_HOME": str(tmp_path / "data")})
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/docs/"

        ingested = run_cli("ingest", url, env=env)

    assert ingested.returncode == 1
    [line] = ingested.stderr.strip().splitlines()
    assert line.startswith(f"docserver: error: cannot crawl {url}: cannot connect")


# -- observed --------------------------------------------------------------------------


async def test_each_fetch_is_a_span_under_the_refresh(sources: Sources) -> None:
    exporter = InMemorySpanExporter()
    traced = Tracing(TracerProvider(sampler=ALWAYS_ON), ratio(1.0))
    traced.add_processor(SimpleSpanProcessor(exporter))
    site = small_site()
    site.faults["usage.html"] = 503
    traced.install()
    try:
        async with served(site) as base:
            # A context of its own, as the scheduled refresh has: no request (left by another test) around it.
            await asyncio.create_task(sources.ingest(web_request(base + "index.html")), context=contextvars.Context())
    finally:
        tracing.install(None)

    spans = exporter.get_finished_spans()
    [refresh] = [span for span in spans if span.name == "refresh web"]
    fetched = {span.attributes["url.full"]: span for span in spans if span.name == "fetch http"}
    assert {span.parent.span_id for span in fetched.values() if span.parent} == {refresh.context.span_id}
    assert fetched[base + "usage.html"].attributes["docserver.fetch.result"] == "server_error"
    assert fetched[base + "usage.html"].status.status_code is StatusCode.ERROR
    assert len(fetched) == 3 + 4  # the pages, robots.txt, sitemap.xml, llms.txt, llms-full.txt


async def test_fetches_are_counted_by_kind_and_result(
    tmp_path: Path, settings: Settings, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_collectors=False)
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    fast = settings.replace(sources={"crawl_rate": 1000.0})
    sources = open_sources(fast, Runtime(fast, store, embedder), metrics)
    site = small_site()
    async with served(site) as base:
        await sources.ingest(web_request(base + "index.html"))
        await sources.refresh(["web"])

    def fetched(result: str) -> float | None:
        return registry.get_sample_value("docserver_fetch_requests_total", {"kind": "http", "result": result})

    assert (fetched("ok"), fetched("not_modified"), fetched("not_found")) == (3.0, 3.0, 2 * 4.0)
    page_bytes = sum(len(site.pages[name].encode()) for name in ("index.html", "install.html", "usage.html"))
    assert registry.get_sample_value("docserver_fetch_bytes_total", {"kind": "http"}) == page_bytes  # 304s: none
