"""Where a crawl learns of pages besides links: sitemaps, `llms.txt`, and the links of each kind of page.

A sitemap is an XML `urlset` (page URLs) or `sitemapindex` (more sitemaps);
`llms.txt` and `llms-full.txt` are Markdown whose links name a site's pages
for language models. Links in Markdown and plain-text pages are read the
same way, so a site of `.md` pages is crawled like one of HTML pages.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree

from docserver.sources.fetch import Fetcher
from docserver.sources.robots import Robots
from docserver.sources.scope import Scope

SITEMAP = "sitemap.xml"
LLMS_FILES = ("llms.txt", "llms-full.txt")
MAX_SITEMAPS = 20
_MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_XML_NAMESPACE = re.compile(r"^\{[^}]*\}")


def markdown_links(text: str) -> list[str]:
    """The targets of `[text](target)` links."""
    return _MARKDOWN_LINK.findall(text)


def sitemap_locations(xml: str) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs) of a sitemap; both empty when it is not one."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return [], []
    locations = [
        (node.text or "").strip() for node in root.iter() if _XML_NAMESPACE.sub("", node.tag) == "loc" and node.text
    ]
    if _XML_NAMESPACE.sub("", root.tag) == "sitemapindex":
        return [], locations
    return locations, []


async def discovered_pages(fetcher: Fetcher, scope: Scope, robots: Robots) -> list[str]:
    """In-scope page URLs named by the site's sitemaps and `llms.txt` files, when it has them."""
    return await _sitemap_pages(fetcher, scope, robots) + await _llms_pages(fetcher, scope)


async def _sitemap_pages(fetcher: Fetcher, scope: Scope, robots: Robots) -> list[str]:
    def on_site(url: str) -> bool:
        return url.startswith(scope.root) and robots.allows(url)

    queue = [scope.prefix + SITEMAP, *(url for url in robots.sitemaps if on_site(url))]
    found: list[str] = []
    for _ in range(MAX_SITEMAPS):
        if not queue:
            break
        response = await fetcher.get(queue.pop(0))
        if response.ok:
            pages, nested = sitemap_locations(response.text)
            found += scope.resolve_all(pages, response.url)
            queue += [sitemap for sitemap in nested if on_site(sitemap)]
    return found


async def _llms_pages(fetcher: Fetcher, scope: Scope) -> list[str]:
    found: list[str] = []
    for name in LLMS_FILES:
        response = await fetcher.get(scope.prefix + name)
        if response.ok and response.kind in ("md", "txt"):
            found += scope.resolve_all(markdown_links(response.text), response.url)
    return found
