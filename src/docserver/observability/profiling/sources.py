"""Function names for (filename, line) pairs, for stacks that carry no code objects.

tracemalloc records only a file and a line per frame, but pprof groups and
prints by function. The enclosing `def` (as a qualified name, e.g.
`Store.search.<locals>.run`) is found by parsing the file once with `ast`;
the index is cached per file and its modification time. A line outside any
function is `<module>`, as in Python's own tracebacks; a file that cannot be
read or parsed gives `file.py:LINE`.
"""

from __future__ import annotations

import ast
import bisect
import os
from functools import lru_cache
from typing import NamedTuple


class _Span(NamedTuple):
    start: int
    end: int
    qualname: str


class FunctionIndex:
    """The functions of one source file, innermost-match lookup by line."""

    def __init__(self, spans: list[_Span]) -> None:
        self._spans = sorted(spans)
        self._starts = [span.start for span in self._spans]

    def lookup(self, line: int) -> tuple[str, int] | None:
        """(qualified name, first line) of the innermost function containing `line`."""
        position = bisect.bisect_right(self._starts, line)
        # Nested functions start after their parents: the latest-starting span
        # that still contains the line is the innermost one.
        for span in reversed(self._spans[:position]):
            if span.end >= line:
                return span.qualname, span.start
        return None


def function_at(filename: str, line: int) -> tuple[str, int]:
    """(function name, its first line) for `line` of `filename`."""
    index = _index(filename, _mtime(filename))
    if index is None:
        return f"{os.path.basename(filename)}:{line}", 0
    return index.lookup(line) or ("<module>", 1)


def _mtime(filename: str) -> float:
    try:
        return os.stat(filename).st_mtime
    except OSError:
        return -1.0


@lru_cache(maxsize=2048)
def _index(filename: str, mtime: float) -> FunctionIndex | None:
    if mtime < 0 or not filename.endswith(".py"):
        return None
    try:
        with open(filename, "rb") as source:
            tree = ast.parse(source.read(), filename)
    except (OSError, SyntaxError, ValueError):
        return None
    spans: list[_Span] = []
    _collect(tree, "", spans)
    return FunctionIndex(spans)


def _collect(node: ast.AST, prefix: str, spans: list[_Span]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            qualname = f"{prefix}{child.name}"
            # A decorated function's code starts at its first decorator.
            first = min([child.lineno, *(decorator.lineno for decorator in child.decorator_list)])
            spans.append(_Span(first, child.end_lineno or child.lineno, qualname))
            _collect(child, f"{qualname}.<locals>.", spans)
        elif isinstance(child, ast.ClassDef):
            _collect(child, f"{prefix}{child.name}.", spans)
        else:
            _collect(child, prefix, spans)
