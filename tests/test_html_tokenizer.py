"""HTML pages read by docserver's tokenizer as html.parser reads them.

parse_html reads most pages with its own tokenizer, several times faster than
html.parser, and falls back to html.parser for markup outside that tokenizer's
rules. These tests hold the two readings to the same lines, line numbers,
headings, anchors and title: on real documentation (Python's and PostgreSQL's
HTML docs, which `make system-deps` installs) and on the corner cases of the
rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docserver.ingest.chunk import chunk_document
from docserver.ingest.discover import read_text
from docserver.ingest.formats.html import parse_html, parse_html_with_html_parser

REAL_DOCS = {
    "python3.11-doc": Path("/usr/share/doc/python3.11/html"),
    "postgresql-doc-15": Path("/usr/share/doc/postgresql-doc-15/html"),
}
EVERY = 4
"""Every 4th page of each manual: 133 of Python's and 293 of PostgreSQL's, a few seconds."""


def real_pages(name: str) -> list[Path]:
    root = REAL_DOCS[name]
    assert root.is_dir(), f"{name} is missing: run `make system-deps`"
    return sorted(root.rglob("*.html"))[::EVERY]


@pytest.mark.parametrize("manual", sorted(REAL_DOCS))
def test_real_pages_read_as_html_parser_reads_them(manual: str) -> None:
    differing = []
    for page in real_pages(manual):
        text = read_text(page)
        if parse_html(text) != parse_html_with_html_parser(text):
            differing.append(page.name)
    assert differing == []


def test_real_pages_give_their_text_and_sections() -> None:
    page = REAL_DOCS["python3.11-doc"] / "library" / "json.html"
    title, chunks = chunk_document(read_text(page), ".html")
    assert title.startswith("json — JSON encoder and decoder")
    headings = {chunk.heading.split(" > ")[-1] for chunk in chunks}
    assert "Basic Usage¶" in headings
    assert any(chunk.anchor == "json.dumps" or chunk.anchor == "basic-usage" for chunk in chunks)
    assert any("json.dumps" in chunk.text for chunk in chunks)


CORNER_CASES = {
    "comment": "<p>a<!-- <h1>not a heading</h1> -->b</p>",
    "comment closed with spaces": "<p>a<!-- x --  >b</p>",
    "unclosed comment": "<p>a<!-- never closed <h1>x</h1></p>",
    "doctype and processing instruction": "<!DOCTYPE html><?xml version='1.0'?><h1>T</h1><p>x</p>",
    "script holding markup": '<h1>T</h1><script>if (a < b) { s = "</div><h2>no</h2>"; }</script><p>after</p>',
    "unclosed script": "<h1>T</h1><p>kept</p><script>var x = 1; <p>dropped",
    "style in capitals": "<STYLE>h1 { x: y }</STYLE><H1 ID=Top>Title</H1><P>text</P>",
    "bare less-than": "<p>if a < b and c <= d then 3<4</p>",
    "less-than before a letter": "<p>a<b</p><h2>next</h2>",
    "entities split by tags": "<p>&am<span>p; &lt;<b>x</b>&gt; &#8217;s &copy 2024</p>",
    "entities in attributes": '<h2 id="a&amp;b">x</h2><h3><a name="n&lt;1"></a>y</h3>',
    "id inside a value": '<p><span title="x id=y">t</span></p><h2>after</h2>',
    "quoted greater-than": '<p><a href="x" title="a > b">link</a> text</p><h1 id=">">h</h1>',
    "unquoted attributes": "<div id=main class=x><h1 id=top/>T</h1></div>",
    "self-closing tags": "<p>a<br/>b<br />c<img src=x.png alt='' />d</p>",
    "attribute without whitespace": '<p><a href="x"title="y">z</a></p>',
    "tag spanning lines": '<p>one <span\n  class="x">two</span>\nthree <a\nhref="y">four</a> five</p>',
    "pre with blank lines": "<pre>a\n\n\n<span>b</span>\n\n  c\n</pre><p>after</p>",
    "pre with tags spanning lines": '<pre><span\nclass="k">def</span> f():\n\n    <span\n>pass</span></pre>',
    "cdata section": "<p>a<![CDATA[ x ]]>b</p>",
    "template syntax": '<p>see <a href="{{< ref "x" >}}">x</a></p>',
    "end tag with attributes": '<h1>T</h1 class="x"><p>x</p>',
    "uppercase end tags and spaces": "<H2>T</ H2 ><P>x</P  >",
    "title and svg title": "<head><title>Page &amp; Co</title></head><svg><title>icon</title></svg><h1>H</h1>",
    "unclosed head": "<html><head><title>T</title><body><h1>H</h1><p>x</p>",
    "nested skipped": "<nav><div><h2>menu</h2></div></nav><main><h1>M</h1><p>x</p></main>",
    "text after line-break end tags": "<dl><dt>term</dt>loose<dd>def</dd>more</dl><ul><li>a</li>b</ul>",
    "table cells": "<table><tr><th>a</th><td>b</td></tr><tr><td>c</td></tr></table>",
    "custom and namespaced tags": "<my-widget x=1>w</my-widget><svg:rect/><h1>T</h1>",
    "text after the last tag": "<h1>T</h1>tail &amp; more\n",
    "a lone less-than at the end": "<p>x</p><",
    "vertical tab and no-break space in tags": "<p\x0b>a</p><p class=x\xa0y>b</p>",
    "empty": "",
}


@pytest.mark.parametrize("html", CORNER_CASES.values(), ids=CORNER_CASES.keys())
def test_corner_cases_read_as_html_parser_reads_them(html: str) -> None:
    assert parse_html(html) == parse_html_with_html_parser(html)


def test_text_between_inline_tags_keeps_its_line_numbers() -> None:
    html = '<h1>T</h1>\n<p>one <span\n class="x">two</span>\nthree</p>\n<pre>a\n\n<b>b</b>\n</pre>'
    document = parse_html(html)
    assert list(zip(document.lines, document.starts, document.ends, strict=True)) == [
        ("T", 1, 1),
        ("", 1, 1),
        ("one two three", 2, 4),
        ("", 4, 4),
        ("a", 5, 5),
        ("", 6, 6),  # the blank line of the <pre>, on its own line
        ("b", 7, 7),
        ("", 8, 8),
    ]
