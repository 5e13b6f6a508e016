"""Splitting one document into searchable chunks: by heading, then under a size cap.

Each chunk keeps its heading path ("Install > From source") and the lines it came
from in the original file, so a search hit can say where to look. Every format
takes the same two steps: a parser (docserver.ingest.formats) turns the text into
numbered lines plus the headings among them, then each section is packed into
chunks at paragraph, line and, as a last resort, character boundaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from docserver.ingest.formats import parse
from docserver.ingest.formats.document import Heading, ParsedDocument

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
    anchor: str = ""
    """The anchor of the chunk's section (its nearest heading that has one), where the format has anchors."""


def chunk_document(text: str, suffix: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, list[Chunk]]:
    """Returns (title, chunks); the title is "" when the document names none.

    `suffix` picks the format (".md", ".rst", ".html", ...); unknown suffixes are plain text.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    parsed = parse(text, suffix)
    packer = _Packer(parsed, max_chars)
    chunks = [
        chunk
        for heading, anchor, first, last in _sections(parsed)
        for chunk in packer.pack(heading, anchor, first, last)
    ]
    return _title(parsed), chunks


def _title(parsed: ParsedDocument) -> str:
    if parsed.title:
        return parsed.title
    first_h1 = next((h.title for h in parsed.headings if h.level == 1 and h.title), "")
    return first_h1 or next((h.title for h in parsed.headings if h.title), "")


# ---- Sections --------------------------------------------------------------------------------


def _sections(parsed: ParsedDocument) -> Iterator[tuple[str, str, int, int]]:
    """(heading path, anchor, first, last) line ranges of the sections, each starting at its heading."""
    lines, headings = parsed.lines, parsed.headings
    ends = [heading.start for heading in headings[1:]] + [len(lines)]
    yield "", "", parsed.body_start, headings[0].start if headings else len(lines)
    stack: list[Heading] = []
    for index, heading in enumerate(headings):
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        following = headings[index + 1] if index + 1 < len(headings) else None
        # A heading with nothing under it but a subheading: the subheading's path already carries it.
        if following is not None and following.level > heading.level and _all_blank(lines, heading.end, ends[index]):
            continue
        anchor = next((h.anchor for h in reversed(stack) if h.anchor), "")
        yield " > ".join(h.title for h in stack if h.title), anchor, heading.start, ends[index]


def _all_blank(lines: list[str], first: int, last: int) -> bool:
    return not any(lines[index].strip() for index in range(first, last))


# ---- Packing under the size cap ---------------------------------------------------------------


class _Packer:
    """Packs a section's lines into chunks of at most `max_chars` characters."""

    def __init__(self, parsed: ParsedDocument, max_chars: int) -> None:
        self._lines, self._starts, self._ends = parsed.lines, parsed.starts, parsed.ends
        self._max_chars = max_chars
        # _offsets[i] is the length of lines[:i]; with the newlines, any span's length is O(1).
        self._offsets = list(accumulate(map(len, parsed.lines), initial=0))

    def pack(self, heading: str, anchor: str, first: int, last: int) -> Iterator[Chunk]:
        while first < last and not self._lines[first].strip():
            first += 1
        while last > first and not self._lines[last - 1].strip():
            last -= 1
        if first == last:
            return
        if self._length(first, last) <= self._max_chars:  # the common case: the section fits
            yield self._chunk(heading, anchor, first, last)
            return
        for span_first, span_last in self._merge(self._paragraphs(first, last)):
            if self._length(span_first, span_last) <= self._max_chars:
                yield self._chunk(heading, anchor, span_first, span_last)
                continue
            # One paragraph over the cap: fall back to line boundaries, then to cutting a line.
            for line_first, line_last in self._merge([(i, i + 1) for i in range(span_first, span_last)]):
                if self._length(line_first, line_last) <= self._max_chars:
                    yield self._chunk(heading, anchor, line_first, line_last)
                else:
                    yield from self._cut_line(heading, anchor, line_first)

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

    def _cut_line(self, heading: str, anchor: str, index: int) -> Iterator[Chunk]:
        text, start, cap = self._lines[index], 0, self._max_chars
        while start < len(text):
            end = start + cap
            if end < len(text):
                # Prefer cutting after a space in the second half, so words stay whole.
                space = text.rfind(" ", start + cap // 2, end)
                end = space + 1 if space >= 0 else end
            piece = text[start:end]
            if piece.strip():
                yield Chunk(heading, piece, self._starts[index], self._ends[index], anchor)
            start = end

    def _chunk(self, heading: str, anchor: str, first: int, last: int) -> Chunk:
        text = "\n".join(self._lines[first:last])
        return Chunk(heading, text, self._starts[first], self._ends[last - 1], anchor)
