"""reStructuredText section titles as a ParsedDocument."""

from __future__ import annotations

import re
from collections.abc import Sequence

from docserver.ingest.formats.document import Heading, ParsedDocument, clean_title, source_lines

_ADORNMENT = re.compile(r"""([=\-~^"'`#*+<>:._])\1*[ \t]*$""")


def parse_rst(text: str) -> ParsedDocument:
    raw = text.split("\n")
    return source_lines(raw, _headings(raw))


def _headings(lines: Sequence[str]) -> list[Heading]:
    # As in docutils, a level is the order in which its adornment style first appears.
    styles: list[tuple[bool, str]] = []
    headings: list[Heading] = []
    index = 0
    while index < len(lines):
        after_break = index == 0 or not lines[index - 1].strip() or bool(headings and headings[-1].end == index)
        found = _title_at(lines, index) if after_break else None
        if found is None:
            index += 1
            continue
        style, title, size = found
        if style not in styles:
            styles.append(style)
        headings.append(Heading(index, index + size, styles.index(style) + 1, clean_title(title)))
        index += size
    return headings


def _title_at(lines: Sequence[str], index: int) -> tuple[tuple[bool, str], str, int] | None:
    """((has overline, adornment char), title, line count) for a title starting at `index`."""
    line = lines[index]
    over = _ADORNMENT.match(line)
    if over and index + 2 < len(lines):
        title = lines[index + 1].strip()
        under = _ADORNMENT.match(lines[index + 2])
        if title and under and under[1] == over[1] and _underlines(line, title):
            return (True, over[1]), title, 3
    if over or not line.strip() or line[0].isspace() or index + 1 >= len(lines):
        return None
    under = _ADORNMENT.match(lines[index + 1])
    if under and _underlines(lines[index + 1], line.strip()):
        return (False, under[1]), line.strip(), 2
    return None


def _underlines(adornment: str, title: str) -> bool:
    return len(adornment.rstrip()) >= len(title)
