"""A progress bar for ingestion and re-embedding, drawn only on a terminal."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from docserver.observability.logwriter import LogWriter

CLEAR_LINE = "\x1b[K"


class ProgressBar:
    """`[#######.........]  120/1000 files  12%` on one line of stderr, redrawn at most 10 times a second.

    Log lines share the terminal (warnings go to stderr while a command runs).
    Given the `log_writer` that writes them, the bar is its status line: the
    writer clears the bar, writes its lines and draws the bar again below
    them, while the bar waits, so no log line is ever drawn over the bar and
    the bar stays the last line. The bar leaves the cursor at the start of its
    line, so anything else written there still starts at the left margin.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        width: int = 30,
        unit: str = "files",
        log_writer: LogWriter | None = None,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self._drawn_at = 0.0
        self._last = ""
        self._lock = threading.Lock()  # the log writer's thread and this one take turns on the terminal
        self._log_writer = log_writer if self.enabled else None
        if self._log_writer is not None:
            self._log_writer.status_line = self

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        now = time.monotonic()
        if done < total and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        filled = self.width * done // total
        bar = "#" * filled + "." * (self.width - filled)
        with self._lock:
            self._last = f"{self.label} [{bar}] {done}/{total} {self.unit} {100 * done // total:3d}%"
            self._draw("\r")

    def close(self) -> None:
        """Leave the last state on its own line, below every log line written before."""
        if self._log_writer is not None:
            self._log_writer.flush()
            self._log_writer.status_line = None
        with self._lock:
            if self._last:
                self._draw("\n")
                self._last = ""

    @contextmanager
    def holding(self) -> Iterator[None]:
        with self._lock:
            yield

    def framed(self, chunk: bytes) -> bytes:
        """Log lines over the cleared bar, and the bar again below them (called holding the lock)."""
        again = f"{self._last}\r" if self._last else ""
        return f"\r{CLEAR_LINE}".encode() + chunk + again.encode()

    def _draw(self, end: str) -> None:
        self.stream.write(f"\r{CLEAR_LINE}{self._last}{end}")
        self.stream.flush()
