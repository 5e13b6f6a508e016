"""LogWriter: log lines leave the request path through a queue and a writer thread.

A request pays for a deque append, never for a write: the first line
after a quiet spell wakes the writer thread, which waits a few
milliseconds more for others to join it and writes them all in one call.
An idle server's writer sleeps (no timer), and a busy one's wakes once per
batch, not per line. A slow terminal, a full pipe or a closed stdout
(EPIPE) therefore cannot stall or fail a request. When the queue is full,
or the stream is broken, lines are dropped and counted.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from contextlib import AbstractContextManager
from typing import Any, BinaryIO, Protocol, TextIO

MAX_QUEUED_LINES = 20_000
FLUSH_INTERVAL = 0.02  # seconds: how stale a log line may be before it is written


class StatusLine(Protocol):
    """A line kept below the log lines on the same terminal (the CLI's progress bar)."""

    def holding(self) -> AbstractContextManager[None]:
        """Held while log lines are written: the line is not drawn meanwhile."""

    def framed(self, chunk: bytes) -> bytes:
        """`chunk` written over the cleared status line, with the status line drawn again below it."""


class LogWriter:
    """Writes lines (bytes, without newline) to `stream` from a daemon thread."""

    def __init__(
        self, stream: BinaryIO | TextIO, *, max_queued: int = MAX_QUEUED_LINES, interval: float = FLUSH_INTERVAL
    ) -> None:
        self._binary: Any = getattr(stream, "buffer", None)
        self._text: Any = None
        if self._binary is None:
            if isinstance(stream, io.TextIOBase):
                self._text = stream
            else:  # a binary stream (a file opened "wb", io.BytesIO, a pipe)
                self._binary = stream
        self._lines: deque[bytes] = deque()
        self._max_queued = max_queued
        self._interval = interval
        self._wake = threading.Event()
        """Cuts the batching wait short (flush, close)."""
        self._arrived = threading.Event()
        """Set by the first line after the writer's last pass began."""
        self._stopping = False
        self._written = threading.Condition()
        self._generation = 0
        self.dropped = 0
        self.status_line: StatusLine | None = None
        """Set while a progress bar shares the stream: log lines then never land on top of it."""
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def put(self, line: bytes) -> None:
        # deque.append is atomic under the GIL; the length check may race by a line, which is harmless.
        if len(self._lines) >= self._max_queued:
            self.dropped += 1
            return
        self._lines.append(line)
        # The writer clears the flag before each pass, so a line appended
        # after that sets it again: none waits for a later line to be written.
        if not self._arrived.is_set():
            self._arrived.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line queued so far has been written (or dropped)."""
        if not self._thread.is_alive():
            return False
        with self._written:
            target = self._generation + 2  # a full pass that started after this call

            def written() -> bool:
                if self._generation < target:
                    self._arrived.set()  # a pass even when no line is queued
                    self._wake.set()
                return self._generation >= target

            return self._written.wait_for(written, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        self._stopping = True
        self._arrived.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._arrived.wait()
            self._arrived.clear()
            self._wake.wait(self._interval)  # lines arriving meanwhile join this write
            self._wake.clear()
            self._drain()
            with self._written:
                self._generation += 1
                self._written.notify_all()
            if self._stopping:
                self._drain()
                return

    def _drain(self) -> None:
        lines = self._lines
        while lines:
            batch = [lines.popleft() for _ in range(min(len(lines), 1024))]
            self._write(b"\n".join(batch) + b"\n", len(batch))

    def _write(self, chunk: bytes, count: int) -> None:
        status = self.status_line
        if status is None:
            self._write_out(chunk, count)
            return
        with status.holding():
            self._write_out(status.framed(chunk), count)

    def _write_out(self, chunk: bytes, count: int) -> None:
        try:
            if self._binary is not None:
                self._binary.write(chunk)
                self._binary.flush()
            else:
                self._text.write(chunk.decode())
                self._text.flush()
        except Exception:  # EPIPE, EBADF, a closed file, anything: drop the lines, keep the thread
            self.dropped += count
