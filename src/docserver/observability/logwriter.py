"""LogWriter: log lines leave the request path through a queue and a writer thread.

A request pays for a queue put, never for a write: the first line after a
quiet spell wakes the writer thread, which waits a few milliseconds more for
others to join it and writes them all in one call. An idle server's writer
sleeps (no timer), and a busy one's wakes once per batch, not per line. A
slow terminal, a full pipe or a closed stdout (EPIPE) therefore cannot stall
or fail a request. When the queue is full, or the stream is broken, lines are
dropped and counted.

The queue is the C `queue.SimpleQueue`: a put, and the writer's wake-up,
cost no Python-level locking (threading.Event and Condition are Python code:
each wait and set is several calls).
"""

from __future__ import annotations

import io
import queue
import threading
import time
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
        self._lines: queue.SimpleQueue[bytes | threading.Event | None] = queue.SimpleQueue()
        """Lines; an Event that flush waits for, set once every line before it is written; None from close."""
        self._max_queued = max_queued
        self._interval = interval
        self._stopping = False
        self.dropped = 0
        self.status_line: StatusLine | None = None
        """Set while a progress bar shares the stream: log lines then never land on top of it."""
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def put(self, line: bytes) -> None:
        # The size check may race by a line, which is harmless.
        if self._lines.qsize() >= self._max_queued:
            self.dropped += 1
            return
        self._lines.put(line)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line queued so far has been written (or dropped)."""
        if not self._thread.is_alive():
            return False
        written = threading.Event()
        self._lines.put(written)  # behind every line queued so far
        return written.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        self._stopping = True
        self._lines.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        lines = self._lines
        while True:
            first = lines.get()  # sleeps until a line (or a flush, or close) arrives
            if isinstance(first, bytes) and not self._stopping:
                time.sleep(self._interval)  # lines arriving meanwhile join this write
            self._drain(first)
            if self._stopping:
                self._drain(None)
                return

    def _drain(self, first: bytes | threading.Event | None) -> None:
        """Write `first` and everything queued behind it, in batches; a flush's Event is set once the
        lines before it are written."""
        lines = self._lines
        # Only this thread takes from the queue: qsize() items are there to take. Items put
        # meanwhile stay queued, and the next get() returns at once for them.
        items = [first, *(lines.get_nowait() for _ in range(lines.qsize()))]
        batch: list[bytes] = []
        for item in items:
            if isinstance(item, bytes):
                batch.append(item)
                if len(batch) == 1024:
                    batch = self._write_batch(batch)
            elif item is not None:
                batch = self._write_batch(batch)
                item.set()
        self._write_batch(batch)

    def _write_batch(self, batch: list[bytes]) -> list[bytes]:
        """Writes the lines, if any; returns an empty batch."""
        if batch:
            self._write(b"\n".join(batch) + b"\n", len(batch))
        return []

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
