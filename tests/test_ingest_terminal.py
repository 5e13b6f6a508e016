"""What a person sees on the terminal during an ingest: warnings for a slow provider only, and an intact bar."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from docserver.binding import bind_embedder
from docserver.embed.base import BatchObserver
from docserver.embed.hashing import HashEmbedder
from docserver.ingest.pipeline import ingest
from docserver.ingest.progress import ProgressBar
from docserver.store.base import Vectors
from docserver.store.sqlite import SqliteStore
from support.captured_logs import capture_events

SLOW_SECONDS = 0.025  # DOCSERVER_SLOW_EMBEDDING_MS=25


class PacedEmbedder(HashEmbedder):
    """The built-in embedder, taking `seconds_per_text` for each text, as a model or an API does."""

    def __init__(self, seconds_per_text: float, batch_size: int) -> None:
        super().__init__(batch_size=batch_size, observer=BatchObserver(slow_seconds=SLOW_SECONDS))
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


async def test_a_provider_slow_for_each_text_logs_each_slow_batch(store: SqliteStore, docs: Path) -> None:
    embedder = PacedEmbedder(seconds_per_text=0.03, batch_size=16)
    warnings = await slow_batch_warnings(store, embedder, docs)
    assert len(warnings) == embedder.batches >= 3
    assert {event["provider"] for event in warnings} == {"hash"}
    assert all(event["duration_ms"] > 30 * event["batch_size"] for event in warnings)  # type: ignore[operator]


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
