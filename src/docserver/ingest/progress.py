"""A progress bar for ingestion and re-embedding, drawn only on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """`[#######.........]  120/1000 files  12%` on one line of stderr, redrawn at most 10 times a second."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30, unit: str = "files") -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self._drawn_at = 0.0
        self._visible = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        now = time.monotonic()
        if done < total and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        filled = self.width * done // total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {self.unit} {100 * done // total:3d}%")
        self.stream.flush()
        self._visible = True

    def close(self) -> None:
        if self._visible:
            self.stream.write("\n")
            self.stream.flush()
            self._visible = False
