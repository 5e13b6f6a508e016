"""Website sources: crawl a site (settings.sources.crawl_*), then store what changed.

A page is stored under its URL, in the format it came in: an HTML page's
main content (HTML, so its sections become chunks with headings and anchors),
a Markdown or plain-text page as served. Pages that answered 304 or failed
are left as stored; the crawl names the ones the site says are gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from docserver.config import SourcesSettings
from docserver.embed.base import Embedder
from docserver.ingest.pipeline import FetchedDocument, IngestOptions, IngestSummary, ProgressFn, ingest_fetched
from docserver.sources.crawl import Crawl, CrawlResult
from docserver.sources.crawl_state import CrawlState
from docserver.sources.fetch import Fetcher
from docserver.sources.filters import FileFilter
from docserver.sources.scope import Scope
from docserver.store.base import Store

FetchCallback = Callable[[str, int], None]
"""Called with (result, body bytes) after every HTTP fetch: the fetch metrics."""


@dataclass(frozen=True, slots=True)
class CrawlLimits:
    max_pages: int = 5000
    max_page_bytes: int = 5_000_000
    max_depth: int = 20
    concurrency: int = 4
    rate: float = 5.0
    """Request starts per second."""
    timeout: float = 30.0
    user_agent: str = "docserver"

    @classmethod
    def of(cls, settings: SourcesSettings) -> CrawlLimits:
        return cls(
            settings.crawl_max_pages,
            settings.crawl_max_page_bytes,
            settings.crawl_max_depth,
            settings.crawl_concurrency,
            settings.crawl_rate,
            settings.crawl_timeout,
            settings.crawl_user_agent,
        )


class WebCrawler:
    """Crawls website sources with one set of limits; remembers validators in `cache` between crawls."""

    def __init__(self, cache: Path, limits: CrawlLimits, on_fetch: FetchCallback | None = None) -> None:
        self.cache = cache
        self.limits = limits
        self._on_fetch = on_fetch

    async def crawl(
        self, url: str, file_filter: FileFilter, known: set[str], source: str, *, force: bool = False
    ) -> CrawlResult:
        """Crawl from `url`; CrawlError (one line, nothing changed) when the start URL cannot be crawled.

        `known` are the page URLs the store holds; `force` sends no validators, so every page comes back whole.
        """
        scope = Scope.of(url)
        state = CrawlState.load(self.cache, scope.start)
        if force:
            state.pages.clear()
        limits = self.limits
        headers = {"User-Agent": limits.user_agent, "Accept": "text/html, text/markdown;q=0.9, text/plain;q=0.8"}
        async with httpx.AsyncClient(auth=scope.auth, headers=headers, follow_redirects=False) as client:
            fetcher = Fetcher(
                client,
                max_bytes=limits.max_page_bytes,
                timeout=limits.timeout,
                concurrency=limits.concurrency,
                interval=1.0 / limits.rate,
                may_follow=lambda target: crawl.may_follow(target),
                on_fetch=self._on_fetch,
            )
            crawl = Crawl(
                scope,
                file_filter,
                known,
                fetcher,
                state,
                max_pages=limits.max_pages,
                max_depth=limits.max_depth,
                concurrency=limits.concurrency,
                source=source,
            )
            result = await crawl.run()
        kept = {page.url for page in result.pages} | result.unchanged | (known - result.removed)
        state.pages = {url: memo for url, memo in state.pages.items() if url in kept}
        state.save()
        return result


async def ingest_crawl(
    store: Store,
    embedder: Embedder,
    source: str,
    crawl: CrawlResult,
    *,
    max_chars: int,
    progress: ProgressFn | None,
    options: IngestOptions,
) -> IngestSummary:
    """Write the crawled pages that changed and delete the gone ones, in one transaction."""
    summary = IngestSummary(source, files=len(crawl.unchanged), unchanged=len(crawl.unchanged), unit="pages")
    summary.skipped = len(crawl.skipped)
    summary.skipped_files = list(crawl.skipped)
    documents = [FetchedDocument(page.url, f".{page.kind}", page.text) for page in crawl.pages]
    return await ingest_fetched(
        store,
        embedder,
        documents,
        summary,
        removed=crawl.removed,
        max_chars=max_chars,
        progress=progress,
        options=options,
    )
