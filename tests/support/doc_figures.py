"""Measured figures in Markdown, and whether their section names the benchmark behind them.

A page is split into sections (a heading to the next heading of any level) and each section
into blocks: a paragraph, a list item or a whole table. A block quotes a *measured figure*
when, outside code, it has a latency, size, share, rate, ratio or instruction count
(`12 ms`, `400 MB`, `+5.2%`, `74 chunks/s`, `300 searches per second`, `9x`,
`1.2 M instructions`), unless the number is a setting or a limit, which reads as such:
it follows "default", "at most", "above", "within", "goal" and the like.

Such a block is cited when its section names both a benchmark (`bench/<name>.py`) and a
results file (`bench/results/<name>.json`). A block that quotes a figure which is not a
measurement says so just before it, with its reason:

    <!-- figure: not measured "the pod's memory limit, a setting" -->
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NUMBER = r"(?<![\w.])[+\-−]?\d[\d,]*(?:\.\d+)?"
MEASURED = re.compile(
    rf"""
      {NUMBER}\s?(?:ms|µs|ns|MB|MiB|GB|GiB|KB|KiB|kB|%)(?![\w/])          # latency, size, share
    | {NUMBER}\s?[kM]?\s?instructions\b                                   # instruction counts
    | {NUMBER}\s?(?:k|M)\b(?=[^.\n]*instructions)                         # 1.2 M ... instructions
    | {NUMBER}[x×](?!\w)                                                   # ratios: 9x, 1.15x
    | {NUMBER}\s?(?:x|×|times)\s(?:faster|slower|more|less)\b              # 3 times faster
    | {NUMBER}(?:\s[a-z]+){{0,2}}\s(?:per\ second|[a-z]+/s\b)             # 300 searches per second
    | {NUMBER}\s?s\ (?:per|of\ CPU)\b                                     # seconds per, of CPU
    """,
    re.VERBOSE,
)
# A number that follows one of these is a setting, a limit, an interval or a goal, not a
# measurement. The price: a measurement phrased as a bound ("under 1 ms") is not checked.
LIMIT_WORDS = (
    r"default|defaults to|at most|at least|up to|above|below|over|under|within|exceeds|"
    r"more than|less than|fewer than|period|limit|timeout|budget|goal|aim|threshold|every"
)
LIMIT = re.compile(rf"\b(?:{LIMIT_WORDS})\s+(?:about\s+)?(?:[+\-]\s?)?$", re.IGNORECASE)
SCRIPT = re.compile(r"\bbench/(?:[\w-]+/)*[\w-]+\.py\b")
RESULTS = re.compile(r"\bbench/results/[\w.-]+\.json\b")
NOT_MEASURED = re.compile(r'<!--\s*figure:\s*not measured\s+"([^"]+)"\s*-->')
HEADING = re.compile(r"^#{1,6}\s")
FENCE = re.compile(r"^\s*(```|~~~)")
ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")
INLINE_CODE = re.compile(r"`[^`\n]*`")
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


@dataclass(frozen=True)
class Block:
    """A paragraph, list item or table: its first line number and its text."""

    line: int
    text: str
    exempt: bool = False


@dataclass(frozen=True)
class Section:
    heading: str
    text: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Uncited:
    """A block quoting a measured figure in a section that names no benchmark or results file."""

    page: str
    line: int
    section: str
    figures: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.section}): {', '.join(self.figures)}"


def measured_figures(text: str) -> list[str]:
    """The measured figures of a block's prose: code spans, comments and limits left out."""
    prose = INLINE_CODE.sub(" ", COMMENT.sub(" ", text))
    return [match.group().strip() for match in MEASURED.finditer(prose) if not is_limit(prose, match.start())]


def is_limit(prose: str, start: int) -> bool:
    return bool(LIMIT.search(prose[max(0, start - 40) : start]))


def sections(markdown: str) -> Iterator[Section]:
    """The page's sections; a section's text is all of it (code too), its blocks are its prose."""
    heading, raw, prose = "(top of page)", [], []
    for number, line, is_prose in classified_lines(markdown):
        if is_prose and HEADING.match(line):
            yield Section(heading, "\n".join(raw), tuple(blocks(prose)))
            heading, raw, prose = line.lstrip("#").strip(), [], []
        raw.append(line)
        if is_prose:
            prose.append((number, line))
    yield Section(heading, "\n".join(raw), tuple(blocks(prose)))


def classified_lines(markdown: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, line, whether it is prose): fenced code and indented code (four spaces
    after a blank line) are not."""
    fenced = indented = False
    previous = ""
    for number, line in enumerate(markdown.splitlines(), 1):
        indented = line.startswith("    ") and (indented or not previous.strip())
        fence = bool(FENCE.match(line))
        fenced ^= fence
        yield number, line, not (fenced or fence or indented)
        previous = line


def blocks(lines: list[tuple[int, str]]) -> Iterator[Block]:
    """Split on blank lines, list items and the edges of tables. A not-measured marker exempts
    the block it is in, or the next one when it stands alone."""
    current: list[tuple[int, str]] = []
    marked = False
    for number, line in [*lines, (0, "")]:
        starts_new = not line.strip() or ITEM.match(line) or is_table(line) != is_table_block(current)
        if starts_new and current:
            text = "\n".join(text for _, text in current)
            has_marker = bool(NOT_MEASURED.search(text))
            yield Block(current[0][0], text, exempt=marked or has_marker)
            marked = has_marker and not COMMENT.sub("", text).strip()
            current = []
        if line.strip():
            current.append((number, line))


def is_table(line: str) -> bool:
    return line.lstrip().startswith("|")


def is_table_block(lines: list[tuple[int, str]]) -> bool:
    return bool(lines) and is_table(lines[0][1])


def cites_a_benchmark(section_text: str) -> bool:
    return bool(SCRIPT.search(section_text)) and bool(RESULTS.search(section_text))


def uncited_figures(page: str, markdown: str) -> list[Uncited]:
    """Every block quoting a measured figure whose section names no benchmark and results file."""
    found = []
    for part in sections(markdown):
        if cites_a_benchmark(part.text):
            continue
        for block in part.blocks:
            figures = measured_figures(block.text)
            if figures and not block.exempt:
                found.append(Uncited(page, block.line, part.heading, tuple(figures)))
    return found


def named_sources(markdown: str) -> set[str]:
    """Every bench/*.py and bench/results/*.json the page names."""
    return set(SCRIPT.findall(markdown)) | set(RESULTS.findall(markdown))


def named_sources_missing(root: Path, markdown: str) -> list[str]:
    return sorted(name for name in named_sources(markdown) if not (root / name).is_file())
