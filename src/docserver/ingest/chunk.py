"""Splitting one document into searchable chunks: by heading, then under a size cap.

Each chunk keeps its heading path ("Install > From source") and the lines it came
from in the original file, so a search hit can say where to look. Every format
takes the same two steps: a parser turns the text into numbered lines plus the
headings among them, then each section is packed into chunks at paragraph,
line and, as a last resort, character boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from itertools import accumulate
from typing import NamedTuple

DEFAULT_MAX_CHARS = 1500


@dataclass(frozen=True, slots=True)
class Chunk:
    heading: str
    """Heading path like "Install > From source"; "" before the first heading."""
    text: str
    start_line: int
    """1-based, inclusive, in the original file."""
    end_line: int
    """1-based, inclusive."""


class _Heading(NamedTuple):
    # A tuple rather than a frozen dataclass: a file can hold many headings and tuples build faster.
    start: int
    """Index of its first line among the parsed lines."""
    end: int
    """Index after its last line: an underline belongs to the heading."""
    level: int
    title: str


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A document as lines of text, each with the source lines it came from.

    Parallel sequences rather than an object per line: a large file has hundreds
    of thousands of lines, and for most formats `starts` and `ends` are one `range`.
    """

    lines: list[str]
    starts: Sequence[int]
    ends: Sequence[int]
    headings: list[_Heading]
    body_start: int = 0
    """Lines before it (front matter) belong to no chunk."""
    title: str = ""
    """An explicit title (front matter, <title>), which wins over any heading."""


def chunk_document(text: str, suffix: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, list[Chunk]]:
    """Returns (title, chunks); the title is "" when the document names none.

    `suffix` picks the format (".md", ".rst", ".html", ...); unknown suffixes are plain text.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    parsed = _PARSERS.get("." + suffix.lower().lstrip("."), _parse_text)(text)
    packer = _Packer(parsed, max_chars)
    chunks = [chunk for heading, first, last in _sections(parsed) for chunk in packer.pack(heading, first, last)]
    return _title(parsed), chunks


def _title(parsed: _Parsed) -> str:
    if parsed.title:
        return parsed.title
    first_h1 = next((h.title for h in parsed.headings if h.level == 1 and h.title), "")
    return first_h1 or next((h.title for h in parsed.headings if h.title), "")


def _source_lines(lines: list[str], headings: list[_Heading], body_start: int = 0, title: str = "") -> _Parsed:
    """A document whose parsed lines are its source lines, numbered from 1."""
    numbers = range(1, len(lines) + 1)
    return _Parsed(lines, numbers, numbers, headings, body_start, title)


def _parse_text(text: str) -> _Parsed:
    return _source_lines(text.split("\n"), [])


# ---- Sections --------------------------------------------------------------------------------


def _sections(parsed: _Parsed) -> Iterator[tuple[str, int, int]]:
    """(heading path, first, last) line ranges of the sections, each starting at its heading."""
    lines, headings = parsed.lines, parsed.headings
    ends = [heading.start for heading in headings[1:]] + [len(lines)]
    yield "", parsed.body_start, headings[0].start if headings else len(lines)
    stack: list[_Heading] = []
    for index, heading in enumerate(headings):
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        following = headings[index + 1] if index + 1 < len(headings) else None
        # A heading with nothing under it but a subheading: the subheading's path already carries it.
        if following is not None and following.level > heading.level and _all_blank(lines, heading.end, ends[index]):
            continue
        yield " > ".join(h.title for h in stack if h.title), heading.start, ends[index]


def _all_blank(lines: list[str], first: int, last: int) -> bool:
    return not any(lines[index].strip() for index in range(first, last))


# ---- Packing under the size cap ---------------------------------------------------------------


class _Packer:
    """Packs a section's lines into chunks of at most `max_chars` characters."""

    def __init__(self, parsed: _Parsed, max_chars: int) -> None:
        self._lines, self._starts, self._ends = parsed.lines, parsed.starts, parsed.ends
        self._max_chars = max_chars
        # _offsets[i] is the length of lines[:i]; with the newlines, any span's length is O(1).
        self._offsets = list(accumulate(map(len, parsed.lines), initial=0))

    def pack(self, heading: str, first: int, last: int) -> Iterator[Chunk]:
        while first < last and not self._lines[first].strip():
            first += 1
        while last > first and not self._lines[last - 1].strip():
            last -= 1
        if first == last:
            return
        if self._length(first, last) <= self._max_chars:  # the common case: the section fits
            yield self._chunk(heading, first, last)
            return
        for span_first, span_last in self._merge(self._paragraphs(first, last)):
            if self._length(span_first, span_last) <= self._max_chars:
                yield self._chunk(heading, span_first, span_last)
                continue
            # One paragraph over the cap: fall back to line boundaries, then to cutting a line.
            for line_first, line_last in self._merge([(i, i + 1) for i in range(span_first, span_last)]):
                if self._length(line_first, line_last) <= self._max_chars:
                    yield self._chunk(heading, line_first, line_last)
                else:
                    yield from self._cut_line(heading, line_first)

    def _length(self, first: int, last: int) -> int:
        return self._offsets[last] - self._offsets[first] + (last - first - 1)

    def _paragraphs(self, first: int, last: int) -> list[tuple[int, int]]:
        """(first, last) ranges of the runs of non-blank lines."""
        spans: list[tuple[int, int]] = []
        start = -1
        for index in range(first, last):
            blank = not self._lines[index].strip()
            if blank and start >= 0:
                spans.append((start, index))
                start = -1
            elif not blank and start < 0:
                start = index
        if start >= 0:
            spans.append((start, last))
        return spans

    def _merge(self, units: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
        """Merge consecutive units greedily while the merged text stays within the cap.

        A unit that alone exceeds the cap comes out alone, for the caller to split further.
        """
        first = last = -1
        for unit_first, unit_last in units:
            if first >= 0 and self._length(first, unit_last) > self._max_chars:
                yield first, last
                first = -1
            if first < 0:
                first = unit_first
            last = unit_last
        if first >= 0:
            yield first, last

    def _cut_line(self, heading: str, index: int) -> Iterator[Chunk]:
        text, start, cap = self._lines[index], 0, self._max_chars
        while start < len(text):
            end = start + cap
            if end < len(text):
                # Prefer cutting after a space in the second half, so words stay whole.
                space = text.rfind(" ", start + cap // 2, end)
                end = space + 1 if space >= 0 else end
            piece = text[start:end]
            if piece.strip():
                yield Chunk(heading, piece, self._starts[index], self._ends[index])
            start = end

    def _chunk(self, heading: str, first: int, last: int) -> Chunk:
        text = "\n".join(self._lines[first:last])
        return Chunk(heading, text, self._starts[first], self._ends[last - 1])


# ---- Markdown ---------------------------------------------------------------------------------

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
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_ANCHOR = re.compile(r"[ \t]*\{#[^}]*\}[ \t]*$")


def _parse_markdown(text: str) -> _Parsed:
    raw = text.split("\n")
    body_start, title = _front_matter(raw)
    return _source_lines(raw, _markdown_headings(raw, body_start), body_start, title)


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


def _markdown_headings(lines: Sequence[str], start: int) -> list[_Heading]:
    headings: list[_Heading] = []
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
            headings.append(_Heading(index, index + 1, len(atx[1]), _clean_title(title)))
            paragraph = -1
        elif paragraph >= 0 and (underline := _SETEXT.match(line)):
            title = " ".join(part.strip() for part in lines[paragraph:index])
            level = 1 if underline[1][0] == "=" else 2
            headings.append(_Heading(paragraph, index + 1, level, _clean_title(title)))
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


def _clean_title(title: str) -> str:
    """A heading as a reader sees it: link text without the URL, no code ticks or `{#anchor}`."""
    if "[" in title or "{" in title:
        title = _LINK.sub(r"\1", _ANCHOR.sub("", title))
    return " ".join(title.replace("`", "").split())


# ---- reStructuredText -------------------------------------------------------------------------

_ADORNMENT = re.compile(r"""([=\-~^"'`#*+<>:._])\1*[ \t]*$""")


def _parse_rst(text: str) -> _Parsed:
    raw = text.split("\n")
    return _source_lines(raw, _rst_headings(raw))


def _rst_headings(lines: Sequence[str]) -> list[_Heading]:
    # As in docutils, a level is the order in which its adornment style first appears.
    styles: list[tuple[bool, str]] = []
    headings: list[_Heading] = []
    index = 0
    while index < len(lines):
        after_break = index == 0 or not lines[index - 1].strip() or bool(headings and headings[-1].end == index)
        found = _rst_title(lines, index) if after_break else None
        if found is None:
            index += 1
            continue
        style, title, size = found
        if style not in styles:
            styles.append(style)
        headings.append(_Heading(index, index + size, styles.index(style) + 1, _clean_title(title)))
        index += size
    return headings


def _rst_title(lines: Sequence[str], index: int) -> tuple[tuple[bool, str], str, int] | None:
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


# ---- HTML -------------------------------------------------------------------------------------

_HTML_SKIPPED = frozenset({"script", "style", "nav", "head", "template", "noscript", "svg"})
_HTML_BLOCKS = frozenset(
    "address article aside blockquote details dialog div dl fieldset figcaption figure footer form"
    " header hr main ol p pre section summary table ul".split()
)
_HTML_LINE_BREAKS = frozenset({"br", "dd", "dt", "li", "tr"})
_HTML_CELLS = frozenset({"td", "th"})
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}


def _parse_html(text: str) -> _Parsed:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    return _Parsed(parser.lines, parser.starts, parser.ends, parser.headings, title=parser.title)


class _HtmlText(HTMLParser):
    """A page's visible text as lines, each with the source lines it came from."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.headings: list[_Heading] = []
        self.title = ""
        self._skipping: list[str] = []  # open tags whose content is not page text
        self._parts: list[str] = []  # text of the line being collected
        self._first = self._last = 0  # source lines of that text; 0 while it is blank
        self._pre = 0
        self._heading: tuple[int, int] | None = None  # (level, index of its first line)
        self._title_parts: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skipping.clear()  # <head> may be left unclosed
        if tag in _HTML_SKIPPED:
            self._skipping.append(tag)
        elif tag == "title":
            # Only the page's own title: an inline <svg> has <title>s too.
            in_head = not self.title and self._skipping in ([], ["head"])
            self._title_parts = [] if in_head else None
        elif not self._skipping:
            self._open(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title_parts is not None:
            self.title = " ".join("".join(self._title_parts).split())
            self._title_parts = None
        elif self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
        else:
            self._close(tag)

    def handle_data(self, data: str) -> None:
        if self._title_parts is not None:
            self._title_parts.append(data)
        elif not self._skipping:
            self._add_text(data)

    def close(self) -> None:
        super().close()
        if self._heading is not None:
            self._end_heading(*self._heading)
        self._break_line()

    def _open(self, tag: str) -> None:
        if tag in _HTML_HEADINGS:
            self._break_paragraph()
            self._heading = (_HTML_HEADINGS[tag], len(self.lines))
        elif tag in _HTML_BLOCKS:
            self._break_paragraph()
        elif tag in _HTML_LINE_BREAKS:
            self._break_line()
        elif tag in _HTML_CELLS:
            self._parts.append(" ")
        if tag == "pre":
            self._pre += 1

    def _close(self, tag: str) -> None:
        if tag in _HTML_HEADINGS and self._heading is not None:
            self._end_heading(*self._heading)
        elif tag in _HTML_BLOCKS:
            self._break_paragraph()
        elif tag in _HTML_LINE_BREAKS:
            self._break_line()
        if tag == "pre" and self._pre:
            self._pre -= 1

    def _add_text(self, data: str) -> None:
        line = self.getpos()[0]
        if not self._pre:
            self._append(data, line)
            return
        first, *rest = data.split("\n")
        self._append(first, line)
        for offset, part in enumerate(rest, 1):
            self._break_line()
            self._append(part, line + offset)

    def _append(self, text: str, line: int) -> None:
        content = text.strip()
        if content:
            leading = len(text) - len(text.lstrip())
            self._first = self._first or line + text.count("\n", 0, leading)
            self._last = line + text.count("\n", 0, leading + len(content))
        self._parts.append(text)

    def _break_line(self) -> None:
        raw = "".join(self._parts)
        text = raw.rstrip() if self._pre else " ".join(raw.split())
        if text:
            self._add_line(text, self._first, self._last)
        elif self._pre:
            self._add_blank()  # a blank line in <pre> separates paragraphs of code
        self._parts.clear()
        self._first = self._last = 0

    def _break_paragraph(self) -> None:
        self._break_line()
        self._add_blank()

    def _add_blank(self) -> None:
        if self.lines and self.lines[-1]:
            line = self.getpos()[0]
            self._add_line("", line, line)

    def _add_line(self, text: str, first: int, last: int) -> None:
        self.lines.append(text)
        self.starts.append(first)
        self.ends.append(last)

    def _end_heading(self, level: int, first: int) -> None:
        self._break_line()
        self._heading = None
        title = " ".join(line for line in self.lines[first:] if line)
        if title:
            self.headings.append(_Heading(first, len(self.lines), level, title))
        self._add_blank()


_PARSERS: dict[str, Callable[[str], _Parsed]] = {
    ".md": _parse_markdown,
    ".mdx": _parse_markdown,
    ".rst": _parse_rst,
    ".html": _parse_html,
    ".htm": _parse_html,
    ".txt": _parse_text,
}
