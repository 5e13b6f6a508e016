"""A fetched HTML page's main content, title, canonical URL and links (selectolax, the lexbor engine).

The main content is the page's `<main>`, `role="main"` or `<article>` element
when it has one (Sphinx, MkDocs, Docusaurus and most generators mark it), the
`<body>` otherwise; navigation, headers, footers, sidebars and the
generators' own chrome (DocBook's navheader/navfooter, Sphinx's `¶` links)
are then cut out of it. The result stays HTML, so the HTML format parser
makes sections of its headings and keeps their `id`s as anchors. Links are
read from the whole page before anything is cut: navigation is how a
crawler finds the other pages. docs/ingestion.md compares this with
trafilatura and readability-lxml on real pages (bench/extraction.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

_MAIN = ("main", "[role=main]", "article")
_CHROME = ", ".join(
    (
        "nav, header, footer, aside, script, style, noscript, template, form, iframe, svg",
        "[role=navigation], [role=banner], [role=contentinfo], [role=complementary], [role=search]",
        ".sphinxsidebar, .related, .navheader, .navfooter, .headerlink, .breadcrumbs, .sidebar",
    )
)


@dataclass(frozen=True, slots=True)
class ExtractedPage:
    title: str
    html: str
    """The main content, as HTML."""
    links: list[str]
    """Every `href` of the page, as written (relative or absolute)."""
    canonical: str | None
    """`<link rel="canonical">`, as written."""
    text_chars: int
    """Characters of visible text in the main content: 0 means nothing worth indexing."""


def extract(html: str) -> ExtractedPage:
    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    canonical = tree.css_first("link[rel=canonical]")
    links = [href for node in tree.css("a[href]") if (href := node.attributes.get("href"))]
    main = _main(tree)
    for node in main.css(_CHROME):
        node.decompose()
    return ExtractedPage(
        title=" ".join(title_node.text().split()) if title_node is not None else "",
        html=main.html or "",
        links=links,
        canonical=canonical.attributes.get("href") if canonical is not None else None,
        text_chars=len(main.text(strip=True)),
    )


def _main(tree: LexborHTMLParser) -> LexborNode:
    for selector in _MAIN:
        node = tree.css_first(selector)
        if node is not None and node.text(strip=True):
            return node
    return tree.body or tree.root  # type: ignore[return-value]
