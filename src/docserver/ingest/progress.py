"""A progress bar for ingestion and re-embedding, drawn only on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

CLEAR_LINE = "\x1b[K"


class ProgressBar:
    """`[#######.........]  120/1000 files  12%` on one line of stderr, redrawn at most 10 times a second.

    Log lines share the terminal (warnings go to stderr while a command runs):
    the bar leaves the cursor at the start of its line, so a line written by
    anyone else starts at the left margin and covers the bar, instead of being
    glued after its percentage; the bar is drawn again, on the line below, at
    its next update and when it closes.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30, unit: str = "files") -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self._drawn_at = 0.0
        self._last = ""

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        now = time.monotonic()
        if done < total and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        filled = self.width * done // total
        bar = "#" * filled + "." * (self.width - filled)
        self._last = f"{self.label} [{bar}] {done}/{total} {self.unit} {100 * done // total:3d}%"
        self._draw("\r")

    def close(self) -> None:
        """Leave the last state on its own line, below any log line that covered it."""
        if self._last:
            self._draw("\n")
            self._last = ""

    def _draw(self, end: str) -> None:
        self.stream.write(f"\r{CLEAR_LINE}{self._last}{end}")
        self.stream.flush()
