"""One crawl of a website source: which pages exist, which changed, which are gone.

The start URL is fetched first and alone: when it fails, the crawl fails with
its reason and nothing else is asked of the site. Then pages come from the
site's sitemap and `llms.txt`, from links (breadth first, up to the depth
limit), and last from the pages the store already holds that nothing
linked to this time, so a page behind a failing index page is checked
rather than lost. Each URL is fetched once; a redirect or a canonical link
makes its target the page's one URL, and a second URL with the very same text
is left out.

Removal is always for a reason the site gave: a 404 or 410, a redirect to
another page or out of scope, a canonical link elsewhere, robots.txt, a page
with no text, or an `--exclude`. A page that answers 5xx, times out, or is too large keeps what
was stored for it and counts as a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from html import escape

from docserver.errors import DocserverError
from docserver.observability.logging import get_logger
from docserver.sources.crawl_state import CrawlState, PageMemo
from docserver.sources.discovery import discovered_pages, markdown_links
from docserver.sources.extract import extract
from docserver.sources.fetch import NO_VALIDATORS, Fetcher, Response, Validators
from docserver.sources.filters import FileFilter
from docserver.sources.robots import ALLOW_ALL, Robots
from docserver.sources.scope import Scope, safe_url

log = get_logger("docserver.sources")

_REMOVING = ("not_found", "redirected_away")
"""Results that say the page is gone (removed from the store), rather than failed (kept)."""


class CrawlError(DocserverError):
    """The start URL cannot be crawled: nothing was changed."""


@dataclass(frozen=True, slots=True)
class Page:
    url: str
    kind: str
    """`html`, `md` or `txt`: the format parser to read `text` with."""
    text: str
    """What is stored: an HTML page's main content (with its <title>), a Markdown or text page as served."""


@dataclass(slots=True)
class CrawlResult:
    pages: list[Page] = field(default_factory=list)
    """Pages fetched in full (new, or changed since the validators were sent)."""
    unchanged: set[str] = field(default_factory=set)
    """Pages that answered 304 Not Modified."""
    removed: set[str] = field(default_factory=set)
    """Stored pages the site says are gone."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(URL fit for logs, reason) of every page left out, failed or gone."""
    failed: int = 0
    """Pages that failed (5xx, timeout, too large...): their stored content is kept."""
    limited: bool = False
    """The page limit stopped the crawl before every page was seen."""


class Crawl:
    def __init__(
        self,
        scope: Scope,
        file_filter: FileFilter,
        known: Collection[str],
        fetcher: Fetcher,
        state: CrawlState,
        *,
        max_pages: int,
        max_depth: int,
        concurrency: int,
        source: str,
    ) -> None:
        self.scope, self.filter, self.fetcher, self.state = scope, file_filter, fetcher, state
        self.known = frozenset(known)
        self.max_pages, self.max_depth, self.concurrency = max_pages, max_depth, concurrency
        self.source = source
        self.robots = ALLOW_ALL
        self.result = CrawlResult()
        self._queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._seen: set[str] = set()
        self._done: set[str] = set()
        self._texts: dict[bytes, str] = {}  # a stored text's digest -> its page's URL

    async def run(self) -> CrawlResult:
        self.robots = await self._read_robots()
        self.fetcher.slow_down(self.robots.crawl_delay())
        await self._start()
        for url in await discovered_pages(self.fetcher, self.scope, self.robots):
            self._enqueue(url, 1)
        await self._drain()
        for url in sorted(self.known - self._seen):  # stored pages no link led to this time
            self._enqueue(url, self.max_depth)
        await self._drain()
        if self.result.limited:
            log.warning("crawl_page_limit_reached", source=self.source, max_pages=self.max_pages)
        return self.result

    def may_follow(self, url: str) -> str | None:
        """Why a redirect to `url` is not followed, None when it is (the fetcher asks)."""
        if not self.scope.contains(url):
            return "out of scope"
        return None if self.robots.allows(url) else "robots.txt disallows it"

    # -- the start, robots.txt and discovery ---------------------------------------

    async def _start(self) -> None:
        start = self.scope.start
        if not self.robots.allows(start):
            reason = self.robots.unavailable or "robots.txt disallows it"
            raise CrawlError(f"cannot crawl {safe_url(start)}: {reason}")
        self._seen.add(start)
        response = await self._visit(start, 0)
        if response is not None and response.result not in ("ok", "not_modified"):
            raise CrawlError(f"cannot crawl {safe_url(start)}: {response.reason or response.result}")

    async def _read_robots(self) -> Robots:
        response = await self.fetcher.get(self.scope.root + "robots.txt")
        if response.ok:
            return Robots.parse(response.text)
        if response.result == "unreachable":
            raise CrawlError(f"cannot crawl {safe_url(self.scope.start)}: {response.reason}")
        if response.result in ("server_error", "timeout"):
            return Robots(unavailable=f"its robots.txt could not be read ({response.reason})")
        return ALLOW_ALL

    # -- the frontier ------------------------------------------------------------

    def _enqueue(self, url: str, depth: int) -> None:
        if url not in self._seen:
            self._seen.add(url)
            self._queue.put_nowait((url, depth))

    async def _drain(self) -> None:
        workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        await self._queue.join()
        for worker in workers:
            worker.cancel()
        errors = [e for e in await asyncio.gather(*workers, return_exceptions=True) if isinstance(e, Exception)]
        if errors:
            raise errors[0]

    async def _work(self) -> None:
        while True:
            url, depth = await self._queue.get()
            try:
                await self._visit(url, depth)
            finally:
                self._queue.task_done()

    # -- one page ------------------------------------------------------------------

    async def _visit(self, url: str, depth: int) -> Response | None:
        if url in self._done:
            return None
        if self.filter.excluded(self.scope.relative(url)):
            self._remove(url)
            return None
        if not self.robots.allows(url):
            self._skip(url, "robots.txt disallows it", failed=False)
            return None
        if len(self.result.pages) + len(self.result.unchanged) >= self.max_pages:
            self.result.limited = True
            return None
        response = await self.fetcher.get(url, self._validators)
        if response.url != url:
            self._remove(url)  # a redirect now: the page lives at its target
            if response.url in self._done:
                return response
        self._seen.add(response.url)
        self._done.add(response.url)
        await self._handle(response, depth)
        return response

    async def _handle(self, response: Response, depth: int) -> None:
        if response.ok:
            await self._page(response, depth)
        elif response.result == "not_modified":
            memo = self.state.pages.get(response.url)
            self._follow(memo.links if memo else [], depth)
            self._keep(response.url, lambda: self.result.unchanged.add(response.url))
        else:
            self._skip(response.url, response.reason or response.result, failed=response.result not in _REMOVING)

    async def _page(self, response: Response, depth: int) -> None:
        if response.kind == "xml":
            self._skip(response.url, "not a page: XML", failed=False)
            return
        url, text, links = response.url, response.text, markdown_links(response.text)
        if response.kind == "html":
            page = await asyncio.to_thread(extract, response.text)
            canonical = self.scope.resolve(page.canonical, url) if page.canonical else None
            if canonical is not None and canonical != url:
                self._remove(url)
                if canonical in self._done:
                    return  # the same page under another URL: kept once, under its canonical one
                url = canonical
                self._done.add(url)
            if not page.text_chars:
                self._skip(url, "no text", failed=False)
                return
            text, links = f"<title>{escape(page.title)}</title>\n{page.html}", page.links
        resolved = self.scope.resolve_all(links, response.url)
        validators = response.validators if url == response.url else NO_VALIDATORS
        self.state.pages[url] = PageMemo(validators, resolved)
        self._follow(resolved, depth)
        twin = self._texts.setdefault(hashlib.sha256(text.encode()).digest(), url)
        if twin != url:  # `guide/` and `guide/index.html`, with no canonical link to say so
            self._skip(url, f"same content as {safe_url(twin)}", failed=False)
            return
        self._keep(url, lambda: self.result.pages.append(Page(url, response.kind, text)))

    def _keep(self, url: str, keep: Callable[[], object]) -> None:
        """Keep the page when --include (if any) wants it; remove it otherwise."""
        if self.filter.allows(self.scope.relative(url)):
            keep()
        else:
            self._remove(url)

    def _follow(self, links: list[str], depth: int) -> None:
        if depth < self.max_depth:
            for link in links:
                self._enqueue(link, depth + 1)

    def _validators(self, url: str) -> Validators | None:
        """A hop's validators, sent only for a page the store holds (else a 304 would leave it missing)."""
        memo = self.state.pages.get(url) if url in self.known else None
        return memo.validators if memo is not None else None

    def _remove(self, url: str) -> None:
        if url in self.known:
            self.result.removed.add(url)

    def _skip(self, url: str, reason: str, *, failed: bool) -> None:
        """Leave a page out: failed (what was stored stays), or gone or no page (what was stored goes)."""
        shown = safe_url(url)
        self.result.skipped.append((shown, reason))
        if failed:
            self.result.failed += 1
            log.warning("crawl_page_failed", source=self.source, url=shown, reason=reason)
        else:
            self._remove(url)
            log.info("crawl_page_left_out", source=self.source, url=shown, reason=reason)
