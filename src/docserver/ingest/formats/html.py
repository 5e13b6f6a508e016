"""HTML as a ParsedDocument: the page's visible text, its <h1>-<h6> and its <title>.

A heading's anchor is the `id` that names its section: the heading's own, one
inside it (`<a id>`, `<a name>`), or, as Sphinx (`<section id>`) and DocBook
(`<div class="sect1" id>`) write it, the last one opened before it with no
text in between.

Pages are tokenized by `_read_fast`, which follows html.parser's rules (the
standard library's tokenizer, as in Python 3.11) for the markup real pages are
made of: start and end tags, comments, doctypes, text with character
references, and script and style content. It reads Python's manual in about
0.4 times html.parser's CPU time, mostly because it hands the page reader only
the tags that change what the reader keeps (blocks, headings, skipped
elements, tags with an `id`), not the hundreds of thousands of `<span>`s and
`<a>`s around code and links. A page with markup outside those rules (a tag
html.parser would read as text, an unclosed comment, `<![CDATA[`, template
syntax such as `{{< ref >}}`) is read by html.parser itself, from the start.
tests/test_html_tokenizer.py holds the two to the same result on real
documentation and on the corner cases.
"""

from __future__ import annotations

import re
from html import unescape
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

# The tags whose start or end changes what _HtmlText keeps; any other start tag
# matters only for an `id` (or an `<a name>`) it carries, any other end tag not at all.
_STARTS_THAT_MATTER = _SKIPPED | _BLOCKS | _LINE_BREAKS | _CELLS | _HEADINGS.keys() | {"title", "body"}
_ENDS_THAT_MATTER = _SKIPPED | _BLOCKS | _LINE_BREAKS | _HEADINGS.keys() | {"title"}

# html.parser's script and style content ("CDATA"): raw text up to the element's end tag.
_RAW_TEXT = {"script": re.compile(r"</\s*script\s*>", re.I), "style": re.compile(r"</\s*style\s*>", re.I)}

# The markup _read_fast reads. Each alternative accepts only what html.parser reads
# the same way, so what it accepts it reads as html.parser does:
# - a start tag: its name as html.parser's `tagfind_tolerant` reads it; attributes
#   after ASCII whitespace, each a name (no whitespace, quotes, `<`, `>`, `/`, `=`)
#   with an optional value (quoted, or unquoted without whitespace, quotes, `=`,
#   `<`, `>` or a backtick); `>` or `/>` at the end;
# - an end tag, exactly as html.parser's `endtagfind` writes it;
# - a comment up to the first `--` `>` (html.parser's `commentclose`);
# - a doctype, and a processing instruction, up to the first `>`.
_SPACE = r"[ \t\n\r\f]"
_NAME = r"""[^\s"'<>/=]+"""
_VALUE = r"""(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+)"""
_MARKUP = re.compile(
    rf"<(?P<start>[a-zA-Z][^\t\n\r\f />\x00]*)(?P<attributes>(?:{_SPACE}+{_NAME}(?:{_SPACE}*={_SPACE}*{_VALUE})?)*)"
    rf"{_SPACE}*(?P<closed>/?)>"
    r"|</\s*(?P<end>[a-zA-Z][-.a-zA-Z0-9:_]*)\s*>"
    r"|<!--.*?--\s*>"
    r"|<![dD][oO][cC][tT][yY][pP][eE][^>]*>"
    r"|<\?[^>]*>",
    re.S,
)
_ATTRIBUTES = re.compile(rf"{_SPACE}+({_NAME})(?:{_SPACE}*={_SPACE}*({_VALUE}))?")
# Where a start tag's attributes may hold an `id` or a `name` (or only seem to, inside a value).
_NAMING = re.compile(r"\s(?:id|name)\s*=", re.I)
# A `<` html.parser would read as the start of markup: outside the rules above, so the page is left to it.
_OTHER_MARKUP = re.compile(r"<[a-zA-Z/!?]")


def parse_html(text: str) -> ParsedDocument:
    page = _HtmlText()
    return page.document() if _read_fast(page, text) else parse_html_with_html_parser(text)


def parse_html_with_html_parser(text: str) -> ParsedDocument:
    """The page as html.parser tokenizes it: parse_html's fallback, slower, and the reference it is held to."""
    page = _HtmlText()
    page.feed(text)
    page.close()
    return page.document()


def _read_fast(page: _HtmlText, text: str) -> bool:
    """Feed `page` what html.parser would; False, with `page` half read, at markup outside _MARKUP's rules.

    The text between two tags the page reader has no use for (`<span>`, `<a>`
    without an `id`) reaches it in one piece, as html.parser's pieces would
    together (each unescaped on its own, as html.parser does), unless such a tag
    spans lines: the reader counts lines from the start of a piece.
    """
    line, counted = 1, 0  # the line number at offset `counted`, for page.lineno (html.parser's getpos)
    pending: list[str] = []  # text not yet handed to the page
    pending_at = 0  # where it starts in `text`

    def hand_over(at: int) -> None:
        """Hand the pending text to the page, then set its line number to that of offset `at`."""
        nonlocal line, counted
        if pending:
            line, counted = line + text.count("\n", counted, pending_at), pending_at
            page.lineno = line
            page.handle_data("".join(pending))
            pending.clear()
        line, counted = line + text.count("\n", counted, at), at
        page.lineno = line

    position, end = 0, len(text)
    while position < end:
        raw_text: re.Pattern[str] | None = None  # after <script> or <style>: their end tag
        for markup in _MARKUP.finditer(text, position):
            start = markup.start()
            if start > position:
                data = text[position:start]
                if "<" in data and _OTHER_MARKUP.search(data):
                    return False
                if not pending:
                    pending_at = position
                pending.append(unescape(data) if "&" in data else data)
            position = markup.end()
            kind = markup.lastgroup
            if kind == "closed":  # a start tag
                tag, attributes = markup[1].lower(), markup[2]
                attrs = _names(attributes) if attributes and _NAMING.search(attributes) else []
                if tag in _STARTS_THAT_MATTER or attrs:
                    hand_over(start)
                    page.handle_starttag(tag, attrs)
                    if markup[3]:
                        page.handle_endtag(tag)
                    elif tag in _RAW_TEXT:
                        raw_text = _RAW_TEXT[tag]
                        break
                    continue
            elif kind == "end":
                tag = markup[4].lower()
                if tag in _ENDS_THAT_MATTER:
                    hand_over(start)
                    page.handle_endtag(tag)
                    continue
            if pending and "\n" in markup[0]:
                hand_over(start)
        else:  # no more markup
            data = text[position:]
            if "<" in data and _OTHER_MARKUP.search(data):
                return False
            if data:
                pending_at = position if not pending else pending_at
                pending.append(unescape(data) if "&" in data else data)
            position = end
            break
        closing = raw_text.search(text, position)
        if closing is None:
            break  # html.parser drops an unclosed script's text, and stops there
        if closing.start() > position:
            hand_over(position)
            page.handle_data(text[position : closing.start()])
        position = closing.start()  # _MARKUP reads the end tag next
    hand_over(position)
    page.finish()
    return True


def _names(attributes: str) -> list[tuple[str, str | None]]:
    """The `id` and `name` attributes among `attributes`, in order, as html.parser gives them."""
    found: list[tuple[str, str | None]] = []
    for match in _ATTRIBUTES.finditer(attributes):
        name = match[1].lower()
        if name in ("id", "name"):
            value = match[2]
            if value is not None and value[0] in "\"'":
                value = value[1:-1]
            found.append((name, unescape(value) if value else value))
    return found


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
        self.finish()

    def document(self) -> ParsedDocument:
        return ParsedDocument(self.lines, self.starts, self.ends, self.headings, title=self.title)

    def finish(self) -> None:
        """The page has been read: end its last heading and line."""
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
            self._break_line(line + offset - 1)
            self._append(part, line + offset)

    def _append(self, text: str, line: int) -> None:
        content = text.strip()
        if content:
            self._last_id = ""
            leading = len(text) - len(text.lstrip())
            self._first = self._first or line + text.count("\n", 0, leading)
            self._last = line + text.count("\n", 0, leading + len(content))
        self._parts.append(text)

    def _break_line(self, line: int = 0) -> None:
        """End the line being read; `line` is its number when a newline in <pre> ends it, 0 at a tag."""
        raw = "".join(self._parts)
        text = raw.rstrip() if self._pre else " ".join(raw.split())
        if text:
            self._add_line(text, self._first, self._last)
        elif self._pre:
            self._add_blank(line)  # a blank line in <pre> separates paragraphs of code
        self._parts.clear()
        self._first = self._last = 0

    def _break_paragraph(self) -> None:
        self._break_line()
        self._add_blank()

    def _add_blank(self, line: int = 0) -> None:
        """A blank line, numbered `line`, or as the tag being read when 0."""
        if self.lines and self.lines[-1]:
            line = line or self.getpos()[0]
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
