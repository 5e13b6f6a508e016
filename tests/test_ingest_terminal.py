"""What a person sees on the terminal during an ingest: a few warnings for a slow provider only, and an intact bar."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from docserver.binding import bind_embedder
from docserver.embed.base import SLOW_BATCH_LOG_INTERVAL, BatchObserver
from docserver.embed.hashing import HashEmbedder
from docserver.ingest.pipeline import ingest
from docserver.ingest.progress import ProgressBar
from docserver.observability.logwriter import LogWriter
from docserver.store.base import Vectors
from docserver.store.sqlite import SqliteStore
from support.captured_logs import capture_events

SLOW_SECONDS = 0.025  # DOCSERVER_SLOW_EMBEDDING_MS=25


class Clock:
    """A monotonic clock that moves `step` seconds each time it is read: each batch sees a later time."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class PacedEmbedder(HashEmbedder):
    """The built-in embedder, taking `seconds_per_text` for each text, as a model or an API does."""

    def __init__(self, seconds_per_text: float, batch_size: int, clock: Clock | None = None) -> None:
        observer = BatchObserver(slow_seconds=SLOW_SECONDS, clock=clock or Clock(0.0))
        super().__init__(batch_size=batch_size, observer=observer)
        self.seconds_per_text = seconds_per_text
        self.batches = 0

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        self.batches += 1
        await asyncio.sleep(self.seconds_per_text * len(texts))
        return await super().embed_batch(texts)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """48 chunks: 8 pages of 6 sections."""
    for page in range(8):
        sections = "".join(f"## Step {n}\n\nRun the step {n} of procedure {page} and check it.\n\n" for n in range(6))
        (tmp_path / f"procedure-{page}.md").write_text(f"# Procedure {page}\n\n{sections}", encoding="utf-8")
    return tmp_path


async def slow_batch_warnings(store: SqliteStore, embedder: PacedEmbedder, docs: Path) -> list[dict[str, object]]:
    await bind_embedder(store, embedder)
    with capture_events() as events:
        await ingest(store, embedder, [docs], "docs")
    return [event for event in events if event["event"] == "slow_embedding_batch"]


async def test_big_batches_at_normal_speed_log_no_slow_batch_warning(store: SqliteStore, docs: Path) -> None:
    """16 texts at 2 ms each take 32 ms, over 25 ms, but 2 ms a text is no slow provider."""
    embedder = PacedEmbedder(seconds_per_text=0.002, batch_size=16)
    assert await slow_batch_warnings(store, embedder, docs) == []
    assert embedder.batches >= 3


async def test_a_provider_slow_for_each_text_logs_its_first_slow_batch(store: SqliteStore, docs: Path) -> None:
    embedder = PacedEmbedder(seconds_per_text=0.03, batch_size=16)
    warnings = await slow_batch_warnings(store, embedder, docs)
    assert len(warnings) == 1
    assert warnings[0]["provider"] == "hash"
    assert warnings[0]["suppressed"] == 0
    assert warnings[0]["duration_ms"] > 30 * warnings[0]["batch_size"]  # type: ignore[operator]


async def test_slow_batches_log_one_line_per_interval_counting_the_ones_left_out(
    store: SqliteStore, docs: Path
) -> None:
    """Eight slow batches, each seen 40% of an interval after the last: lines at the 1st, 4th and 7th."""
    embedder = PacedEmbedder(seconds_per_text=0.03, batch_size=8, clock=Clock(0.4 * SLOW_BATCH_LOG_INTERVAL))
    warnings = await slow_batch_warnings(store, embedder, docs)
    assert embedder.batches == 8
    assert [event["suppressed"] for event in warnings] == [0, 2, 2]


class Terminal(io.StringIO):
    """A stream that says it is a terminal; `screen()` is what the terminal shows."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        lines, column = [""], 0
        text = self.getvalue().replace("\x1b[K", "\0")
        for char in text:
            if char == "\r":
                column = 0
            elif char == "\n":
                lines.append("")
                column = 0
            elif char == "\0":  # clear to the end of the line
                lines[-1] = lines[-1][:column]
            else:
                line = lines[-1]
                lines[-1] = line[:column] + char + line[column + 1 :]
                column += 1
        return lines


def test_a_log_line_during_the_bar_gets_a_line_of_its_own() -> None:
    terminal = Terminal()
    bar = ProgressBar("ingesting docs", stream=terminal, width=10)
    bar(1, 4)
    terminal.write('{"event": "slow_embedding_batch", "level": "warning", "batch_size": 64, "duration_ms": 9000.0}\n')
    bar(4, 4)
    bar.close()
    assert terminal.screen() == [
        '{"event": "slow_embedding_batch", "level": "warning", "batch_size": 64, "duration_ms": 9000.0}',
        "ingesting docs [##########] 4/4 files 100%",
        "",
    ]


def test_log_lines_from_the_log_writer_are_never_drawn_over_the_bar() -> None:
    """Shorter log lines than the bar clear it first; the bar comes back below them."""
    terminal = Terminal()
    writer = LogWriter(terminal)
    bar = ProgressBar("ingesting docs", stream=terminal, width=10, log_writer=writer)
    bar(1, 4)
    writer.put(b"slow batch")
    writer.put(b"slow again")
    assert writer.flush()
    assert terminal.screen() == ["slow batch", "slow again", "ingesting docs [##........] 1/4 files  25%"]
    bar(4, 4)
    bar.close()
    writer.put(b"after the bar")
    writer.close()
    assert terminal.screen() == [
        "slow batch",
        "slow again",
        "ingesting docs [##########] 4/4 files 100%",
        "after the bar",
        "",
    ]


def test_the_bar_ends_on_its_last_state_even_when_a_log_line_came_after_it() -> None:
    terminal = Terminal()
    bar = ProgressBar("re-embedding", stream=terminal, width=4, unit="chunks")
    bar(2, 2)
    terminal.write("2026-12-05 09:00:00 [warning  ] embedding_retry                attempt=1\n")
    bar.close()
    assert terminal.screen() == [
        "2026-12-05 09:00:00 [warning  ] embedding_retry                attempt=1",
        "re-embedding [####] 2/2 chunks 100%",
        "",
    ]


def test_nothing_is_drawn_when_the_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar("ingesting docs", stream=stream)
    bar(1, 1)
    bar.close()
    assert stream.getvalue() == ""
