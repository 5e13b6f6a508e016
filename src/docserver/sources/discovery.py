"""Where a crawl learns of pages besides links: sitemaps, `llms.txt`, and the links of each kind of page.

A sitemap is an XML `urlset` (page URLs) or `sitemapindex` (more sitemaps);
`llms.txt` and `llms-full.txt` are Markdown whose links name a site's pages
for language models. Links in Markdown and plain-text pages are read the
same way, so a site of `.md` pages is crawled like one of HTML pages.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree

SITEMAP = "sitemap.xml"
LLMS_FILES = ("llms.txt", "llms-full.txt")
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
