"""The real SQLite store, counting the retrieval calls that a cached (or text-only) search must not make."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from docserver.store.base import ChunkRecord, RankedId, SourceFilter, Vectors
from docserver.store.sqlite import SqliteStore


class CountingStore(SqliteStore):
    """SqliteStore with a count per retrieval method in `calls`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: Counter[str] = Counter()

    async def search_text(self, query: str, *, source: SourceFilter, limit: int) -> list[RankedId]:
        self.calls["search_text"] += 1
        return await super().search_text(query, source=source, limit=limit)

    async def search_vector(self, vector: Vectors, *, source: SourceFilter, limit: int) -> list[RankedId]:
        self.calls["search_vector"] += 1
        return await super().search_vector(vector, source=source, limit=limit)

    async def get_chunks(self, chunk_ids: Sequence[int]) -> list[ChunkRecord]:
        self.calls["get_chunks"] += 1
        return await super().get_chunks(chunk_ids)
