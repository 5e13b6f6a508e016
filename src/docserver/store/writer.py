"""The source writer every backend hands out: checks, statistics, and nothing backend-specific.

A backend opens the transaction and gives the writer an `Execute` that runs a
statement inside it; the writer never sees the store itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from docserver.errors import StoreError
from docserver.store.base import DocumentInput, WriteStats


class Execute(Protocol):
    """Runs `statement(connection, *args)` inside an open write transaction, observed as `operation`."""

    def __call__(self, operation: str, statement: Callable[..., Any], /, *args: Any) -> Awaitable[Any]: ...


class WriteStatements(Protocol):
    """A dialect's statements for changing one source's documents (connection first, then source)."""

    put_document: Callable[..., Any]
    delete_documents: Callable[..., Any]


class TransactionWriter:
    """Writes to one source inside the update's transaction (see `SourceWriter`)."""

    def __init__(self, source: str, execute: Execute, statements: WriteStatements) -> None:
        self._source = source
        self._execute = execute
        self._statements = statements
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
