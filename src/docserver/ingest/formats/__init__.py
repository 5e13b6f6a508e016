"""Turning each supported file format into a ParsedDocument, chosen by file suffix."""

from __future__ import annotations

from collections.abc import Callable

from docserver.ingest.formats.document import ParsedDocument, parse_text
from docserver.ingest.formats.html import parse_html
from docserver.ingest.formats.markdown import parse_markdown
from docserver.ingest.formats.rst import parse_rst

_PARSERS: dict[str, Callable[[str], ParsedDocument]] = {
    ".md": parse_markdown,
    ".mdx": parse_markdown,
    ".rst": parse_rst,
    ".html": parse_html,
    ".htm": parse_html,
    ".txt": parse_text,
}


def parse(text: str, suffix: str) -> ParsedDocument:
    """Parses `text` by its suffix (".md", "rst", ...); unknown suffixes are plain text."""
    return _PARSERS.get("." + suffix.lower().lstrip("."), parse_text)(text)
