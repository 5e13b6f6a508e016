"""Markdown (CommonMark headings, YAML front matter) as a ParsedDocument.

A single pass over the lines, tracking fenced code blocks and the paragraph
being read, finds ATX (`# Title`) and setext (underlined) headings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from docserver.ingest.formats.document import Heading, ParsedDocument, clean_title, source_lines

# A backtick fence's info string cannot hold a backtick, so "```code```" on one line is not a fence.
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}(?=[^`]*$)|~{3,})")
_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_ATX_CLOSE = re.compile(r"(?:^|[ \t]+)#+$")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
# Lines that end a paragraph, so the line after them cannot be a setext underline:
# list items, block quotes, indented code and thematic breaks.
_NOT_PARAGRAPH = re.compile(
    r" {4}|\t| {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)| {0,3}>| {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$"
)
# The first characters of every line the scanner below treats as more than prose ("" is blank).
_MARKUP_STARTS = " \t#`~=-*+_>0123456789"
_FRONT_MATTER_TITLE = re.compile(r"title:[ \t]*(.*?)[ \t]*$")


def parse_markdown(text: str) -> ParsedDocument:
    raw = text.split("\n")
    body_start, title = _front_matter(raw)
    return source_lines(raw, _headings(raw, body_start), body_start, title)


def _front_matter(lines: Sequence[str]) -> tuple[int, str]:
    """(index of the first line after the front matter, its title); (0, "") when there is none."""
    if not lines or lines[0].rstrip() != "---":
        return 0, ""
    for index in range(1, len(lines)):
        if lines[index].rstrip() in ("---", "..."):
            return index + 1, _front_matter_title(lines[1:index])
    return 0, ""


def _front_matter_title(lines: Sequence[str]) -> str:
    for line in lines:
        if match := _FRONT_MATTER_TITLE.match(line):
            value = match[1]
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            # A block scalar (`title: >`) spans lines we do not parse; better no title than ">".
            return "" if value in ("", ">", "|", ">-", "|-") else value
    return ""


def _headings(lines: Sequence[str], start: int) -> list[Heading]:
    headings: list[Heading] = []
    fence = ""  # the opening fence while inside a fenced code block
    paragraph = -1  # first line of the paragraph being read: the text of a setext heading
    for index in range(start, len(lines)):
        line = lines[index]
        if fence:
            fence = "" if _closes_fence(line, fence) else fence
        elif line[:1] not in _MARKUP_STARTS:
            # Most lines are prose, which can only start or go on with a paragraph.
            paragraph = index if paragraph < 0 else paragraph
        elif opening := _FENCE_OPEN.match(line):
            fence, paragraph = opening[1], -1
        elif atx := _ATX.match(line):
            title = atx[2] or ""
            title = _ATX_CLOSE.sub("", title) if title.endswith("#") else title
            headings.append(Heading(index, index + 1, len(atx[1]), clean_title(title)))
            paragraph = -1
        elif paragraph >= 0 and (underline := _SETEXT.match(line)):
            title = " ".join(part.strip() for part in lines[paragraph:index])
            level = 1 if underline[1][0] == "=" else 2
            headings.append(Heading(paragraph, index + 1, level, clean_title(title)))
            paragraph = -1
        elif not line.strip() or _NOT_PARAGRAPH.match(line):
            paragraph = -1
        elif paragraph < 0:
            paragraph = index
    return headings


def _closes_fence(line: str, fence: str) -> bool:
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return indent <= 3 and len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)
