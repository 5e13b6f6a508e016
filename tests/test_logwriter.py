"""The log writer thread: batching, flush order, a full queue, a broken or stalled stream, close."""

from __future__ import annotations

import io
import threading

from docserver.observability.logwriter import LogWriter


class RecordingStream(io.RawIOBase):
    """A binary stream that keeps each write call's bytes; `gate`, while clear, stalls every write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.entered.set()
        self.gate.wait()
        self.writes.append(bytes(data))
        return len(data)

    def lines(self) -> list[bytes]:
        return b"".join(self.writes).splitlines()


def test_flush_returns_once_every_line_before_it_is_written_in_order() -> None:
    stream = RecordingStream()
    writer = LogWriter(stream)
    for n in range(50):
        writer.put(b"line %d" % n)
    assert writer.flush(timeout=5)
    assert stream.lines() == [b"line %d" % n for n in range(50)]
    writer.close()


def test_lines_put_together_leave_in_one_write() -> None:
    stream = RecordingStream()
    writer = LogWriter(stream, interval=1.0)
    writer.put(b"first")
    writer.put(b"second")
    writer.put(b"third")
    assert writer.flush(timeout=5)
    assert stream.writes == [b"first\nsecond\nthird\n"]
    writer.close()


def test_flush_with_nothing_queued_returns_at_once() -> None:
    writer = LogWriter(RecordingStream())
    assert writer.flush(timeout=5)
    assert writer.flush(timeout=5)
    writer.close()


def test_a_stalled_stream_fills_the_queue_and_further_lines_are_dropped_and_counted() -> None:
    stream = RecordingStream()
    stream.gate.clear()
    writer = LogWriter(stream, max_queued=2, interval=0.001)
    writer.put(b"taken")
    assert stream.entered.wait(5), "the writer never reached the stream"
    for n in range(5):  # the writer is stuck in write(): two fit in the queue, three do not
        writer.put(b"queued %d" % n)
    assert writer.dropped == 3
    stream.gate.set()
    assert writer.flush(timeout=5)
    assert stream.lines() == [b"taken", b"queued 0", b"queued 1"]
    writer.close()


def test_a_broken_stream_drops_and_counts_the_lines_and_the_writer_keeps_going() -> None:
    class Broken(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise BrokenPipeError(32, "Broken pipe")

    writer = LogWriter(Broken())
    writer.put(b"one")
    writer.put(b"two")
    assert writer.flush(timeout=5)
    writer.put(b"three")
    assert writer.flush(timeout=5)
    assert writer.dropped == 3
    writer.close()


def test_close_writes_what_is_queued_and_stops_the_thread() -> None:
    stream = RecordingStream()
    writer = LogWriter(stream, interval=0.5)
    writer.put(b"last words")
    writer.close(timeout=5)
    assert stream.lines() == [b"last words"]
    assert not writer.flush(timeout=0.1)  # the thread has stopped
