"""HTML as a ParsedDocument: the page's visible text, its <h1>-<h6> and its <title>.

A heading's anchor is the `id` that names its section: the heading's own, one
inside it (`<a id>`, `<a name>`), or, as Sphinx (`<section id>`) and DocBook
(`<div class="sect1" id>`) write it, the last one opened before it with no
text in between.
"""

from __future__ import annotations

from html.parser import HTMLParser

from docserver.ingest.formats.document import Heading, ParsedDocument

_SKIPPED = frozenset({"script", "style", "nav", "head", "template", "noscript", "svg"})
_BLOCKS = frozenset(
    "address article aside blockquote details dialog div dl fieldset figcaption figure footer form"
    " header hr main ol p pre section summary table ul".split()
)
_LINE_BREAKS = frozenset({"br", "dd", "dt", "li", "tr"})
_CELLS = frozenset({"td", "th"})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}


def parse_html(text: str) -> ParsedDocument:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    return ParsedDocument(parser.lines, parser.starts, parser.ends, parser.headings, title=parser.title)


class _HtmlText(HTMLParser):
    """A page's visible text as lines, each with the source lines it came from."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.headings: list[Heading] = []
        self.title = ""
        self._skipping: list[str] = []  # open tags whose content is not page text
        self._parts: list[str] = []  # text of the line being collected
        self._first = self._last = 0  # source lines of that text; 0 while it is blank
        self._pre = 0
        self._heading: tuple[int, int] | None = None  # (level, index of its first line)
        self._title_parts: list[str] | None = None
        self._last_id = ""  # the latest id opened since the last text: the next heading's anchor
        self._anchor = ""  # the anchor of the heading being read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skipping.clear()  # <head> may be left unclosed
        if tag in _SKIPPED:
            self._skipping.append(tag)
        elif tag == "title":
            # Only the page's own title: an inline <svg> has <title>s too.
            in_head = not self.title and self._skipping in ([], ["head"])
            self._title_parts = [] if in_head else None
        elif not self._skipping:
            self._note_id(tag, attrs)
            self._open(tag)

    def _note_id(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "id" or (name == "name" and tag == "a")):
                self._last_id = value
                if self._heading is not None and not self._anchor:
                    self._anchor = value
                return

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
        if tag in _HEADINGS:
            self._break_paragraph()
            self._heading = (_HEADINGS[tag], len(self.lines))
            self._anchor = self._last_id
        elif tag in _BLOCKS:
            self._break_paragraph()
        elif tag in _LINE_BREAKS:
            self._break_line()
        elif tag in _CELLS:
            self._parts.append(" ")
        if tag == "pre":
            self._pre += 1

    def _close(self, tag: str) -> None:
        if tag in _HEADINGS and self._heading is not None:
            self._end_heading(*self._heading)
        elif tag in _BLOCKS:
            self._break_paragraph()
        elif tag in _LINE_BREAKS:
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
            self._last_id = ""
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
            self.headings.append(Heading(first, len(self.lines), level, title, self._anchor))
        self._anchor = ""
        self._add_blank()
