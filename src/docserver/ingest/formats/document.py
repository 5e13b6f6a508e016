"""A parsed document: numbered lines of text and the headings among them.

Every format parser produces one; packing it into chunks never looks at the
format again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_ANCHOR = re.compile(r"[ \t]*\{#[^}]*\}[ \t]*$")


class Heading(NamedTuple):
    # A tuple rather than a frozen dataclass: a file can hold many headings and tuples build faster.
    start: int
    """Index of its first line among the parsed lines."""
    end: int
    """Index after its last line: an underline belongs to the heading."""
    level: int
    title: str
    anchor: str = ""
    """The `id` a link to the section names (`#process-parameters`), where the format has one (HTML)."""


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A document as lines of text, each with the source lines it came from.

    Parallel sequences rather than an object per line: a large file has hundreds
    of thousands of lines, and for most formats `starts` and `ends` are one `range`.
    """

    lines: list[str]
    starts: Sequence[int]
    ends: Sequence[int]
    headings: list[Heading]
    body_start: int = 0
    """Lines before it (front matter) belong to no chunk."""
    title: str = ""
    """An explicit title (front matter, <title>), which wins over any heading."""


def source_lines(lines: list[str], headings: list[Heading], body_start: int = 0, title: str = "") -> ParsedDocument:
    """A document whose parsed lines are its source lines, numbered from 1."""
    numbers = range(1, len(lines) + 1)
    return ParsedDocument(lines, numbers, numbers, headings, body_start, title)


def parse_text(text: str) -> ParsedDocument:
    """Plain text: its lines, without headings."""
    return source_lines(text.split("\n"), [])


def clean_title(title: str) -> str:
    """A heading as a reader sees it: link text without the URL, no code ticks or `{#anchor}`."""
    if "[" in title or "{" in title:
        title = _LINK.sub(r"\1", _ANCHOR.sub("", title))
    return " ".join(title.replace("`", "").split())
