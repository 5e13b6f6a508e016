"""The source writer every backend hands out: checks, statistics, and nothing backend-specific.

A backend opens the transaction and gives the writer an `Execute` that runs a
statement inside it; the writer never sees the store itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from docserver.errors import StoreError
from docserver.store.base import DocumentInput, SourceOrigin, WriteStats


class Execute(Protocol):
    """Runs `statement(connection, *args)` inside an open write transaction, observed as `operation`."""

    def __call__(self, operation: str, statement: Callable[..., Any], /, *args: Any) -> Awaitable[Any]: ...


class WriteStatements(Protocol):
    """A dialect's statements for changing one source's documents (connection first, then source)."""

    put_document: Callable[..., Any]
    delete_documents: Callable[..., Any]


class OriginStatements(Protocol):
    """A dialect's statements for a source's own row: its origin, its documents' paths."""

    source_paths: Callable[..., Any]
    record_origin: Callable[..., Any]


class TransactionWriter:
    """Writes to one source inside the update's transaction (see `SourceWriter`)."""

    def __init__(self, source: str, execute: Execute, statements: WriteStatements, origins: OriginStatements) -> None:
        self._source = source
        self._execute = execute
        self._statements = statements
        self._origins = origins
        self.stats = WriteStats()

    async def put_document(self, document: DocumentInput) -> None:
        if len(document.vectors) != len(document.chunks):
            raise StoreError(f"{document.path}: {len(document.chunks)} chunks but {len(document.vectors)} vectors")
        await self._execute("put_document", self._statements.put_document, self._source, document)
        self.stats.written += 1
        self.stats.chunks += len(document.chunks)

    async def delete_documents(self, paths: Sequence[str]) -> None:
        if paths:
            await self._execute("delete_documents", self._statements.delete_documents, self._source, list(paths))
            self.stats.deleted += len(paths)
            self.stats.deleted_paths.extend(paths)

    async def delete_all(self) -> None:
        # Read inside the transaction: a document another writer added just before is deleted too.
        paths: list[str] = await self._execute("source_paths", self._origins.source_paths, self._source)
        await self.delete_documents(paths)

    async def record_origin(self, origin: SourceOrigin) -> None:
        await self._execute("record_origin", self._origins.record_origin, self._source, origin)
