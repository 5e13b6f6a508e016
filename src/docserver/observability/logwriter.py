"""LogWriter: log lines leave the request path through a queue and a writer thread.

A request pays for a queue put, never for a write: a slow terminal, a full
pipe or a closed stdout (EPIPE) cannot stall or fail it. When the queue is
full, or the stream is broken, lines are dropped and counted instead.
"""

from __future__ import annotations

import io
import queue
import threading
from typing import Any, BinaryIO, TextIO

MAX_QUEUED_LINES = 20_000
_BATCH = 512


class LogWriter:
    """Writes lines (bytes, without newline) to `stream` from a daemon thread."""

    def __init__(self, stream: BinaryIO | TextIO, *, max_queued: int = MAX_QUEUED_LINES) -> None:
        self._binary: Any = getattr(stream, "buffer", None)
        self._text: Any = None
        if self._binary is None:
            if isinstance(stream, io.TextIOBase):
                self._text = stream
            else:  # a binary stream (a file opened "wb", io.BytesIO, a pipe)
                self._binary = stream
        self._queue: queue.SimpleQueue[bytes | threading.Event | None] = queue.SimpleQueue()
        self._max_queued = max_queued
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def put(self, line: bytes) -> None:
        if self._queue.qsize() >= self._max_queued:
            self.dropped += 1
            return
        self._queue.put(line)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line queued so far has been written (or dropped)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            lines: list[bytes] = []
            markers: list[threading.Event] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    lines.append(item)
                if stop or len(lines) >= _BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if lines:
                self._write(b"\n".join(lines) + b"\n", len(lines))
            for marker in markers:
                marker.set()
            if stop:
                return

    def _write(self, chunk: bytes, count: int) -> None:
        try:
            if self._binary is not None:
                self._binary.write(chunk)
                self._binary.flush()
            else:
                self._text.write(chunk.decode())
                self._text.flush()
        except Exception:  # EPIPE, EBADF, a closed file, anything: drop the lines, keep the thread
            self.dropped += count
