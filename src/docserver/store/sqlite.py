"""SqliteStore: one file holding documents, an FTS5 index (BM25) and sqlite-vec vectors.

Blocking SQLite work never runs on the event loop: reads go to a small pool
of threads, each with its own connection; writes go to one writer thread, so
a source update can span many calls inside one transaction. WAL mode lets
readers keep answering from the last committed version while a write runs.
The SQL itself is in sqlite_sql (and sqlite_reindex); the flow in StoreCore.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from docserver.errors import StoreError
from docserver.observability.instruments import StoreInstruments
from docserver.observability.logging import get_logger
from docserver.store import sqlite_driver, sqlite_reindex, sqlite_sources, sqlite_sql
from docserver.store.core import StoreCore
from docserver.store.migrations import apply_sqlite_migrations
from docserver.store.observe import collections_for
from docserver.store.refresh_lock import file_lock
from docserver.store.sqlite_folder import unwritable_folder_reason
from docserver.store.sqlite_tables import Connection
from docserver.store.writer import Execute

T = TypeVar("T")

_READER_THREADS = 4
log = get_logger("docserver.store")


class SqliteStore(StoreCore):
    """The default store: a single SQLite file."""

    backend = "sqlite"
    sql = sqlite_sql
    reindex_sql = sqlite_reindex
    sources_sql = sqlite_sources
    collections = collections_for(text="chunks_fts", vectors="chunk_vectors")

    def __init__(
        self, path: str | Path, *, instruments: StoreInstruments | None = None, slow_seconds: float = 0.25
    ) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()
        self._readers: ThreadPoolExecutor | None = None
        self._writer: ThreadPoolExecutor | None = None
        # One writer connection: a source update and the reindex steps that write take turns on it.
        self._write_lock = asyncio.Lock()
        # Thread-pool occupancy, reported as the pool gauges (SQLite has no
        # connection pool; its reader and writer threads play that part).
        self._stats_lock = threading.Lock()
        self._busy = 0
        self._waiting = 0
        self._index_builder: asyncio.Task[None] | None = None
        super().__init__(instruments=instruments, slow_seconds=slow_seconds, serialized=self._write_lock)

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"cannot open database {self.path}: folder {self.path.parent} does not exist")
        if (reason := unwritable_folder_reason(self.path.parent)) is not None:
            raise StoreError(f"cannot open database {self.path}: {reason}")
        self._readers = ThreadPoolExecutor(_READER_THREADS, thread_name_prefix="sqlite-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        await self._write("migrate", apply_sqlite_migrations)
        self._start_index_builder()

    def _start_index_builder(self) -> None:
        """Run the vector index's pending steps in the background, unless they already run."""
        if self._index_builder is None or self._index_builder.done():
            self._index_builder = asyncio.create_task(self._build_vector_index(), name="sqlite-vector-index")

    async def _build_vector_index(self) -> None:
        """Bring the approximate vector index up to date, a step per write transaction, between ingests.

        Run when a store opens, and after each write through it: the index is
        trained once the store is large enough, and again when it has outgrown
        its lists (see store/sqlite_vector_index.py). Resumable: each step
        commits with its cursor, so a stopped process leaves the rest to the
        next one that opens the file or writes to it.
        """
        try:
            while True:
                async with self._write_lock:
                    if await self._write("vector_index_build", sqlite_sql.build_vector_index):
                        return
        except StoreError as exc:  # another process holds the write lock: the next open continues
            log.warning("vector_index_build_failed", backend=self.backend, error=str(exc))

    def refresh_lock(self, source: str) -> AbstractAsyncContextManager[bool]:
        """A `flock` on a file beside the database, held for the block (see store/refresh_lock.py)."""
        return file_lock(self.path, source)

    async def vector_index_built(self) -> None:
        """Return once the background build started by `open` has finished (or given up)."""
        if self._index_builder is not None:
            await asyncio.shield(self._index_builder)

    async def close(self) -> None:
        if self._index_builder is not None:
            self._index_builder.cancel()
            await asyncio.gather(self._index_builder, return_exceptions=True)
            self._index_builder = None
        for executor in (self._readers, self._writer):
            if executor is not None:
                executor.shutdown(wait=True)
        self._readers = self._writer = None
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def pool_stats(self) -> tuple[int, int, int]:
        """(active, idle, pending) over the reader and writer threads, read at scrape time."""
        busy = max(self._busy, 0)
        return busy, max(_READER_THREADS + 1 - busy, 0), max(self._waiting, 0)

    # -- running work off the event loop --------------------------------------

    def _connection(self) -> Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite_driver.connect(self.path)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._stats_lock:
            self._waiting -= 1
            self._busy += 1
        try:
            return fn(self._connection(), *args)
        except sqlite_driver.Error as exc:
            raise StoreError(f"database error: {exc}") from exc
        finally:
            with self._stats_lock:
                self._busy -= 1

    async def _read(self, operation: str, statement: Callable[..., Any], *args: Any) -> Any:
        if self._readers is None:
            raise StoreError("store is not open")
        return await self._observer.run(operation, self._submit(self._readers, statement, args))

    @property
    def change_marker(self) -> Hashable:
        """Moves with every write through this store, and with any commit by another process.

        In WAL mode every commit appends to the `-wal` file (and a checkpoint
        resets it), so its size and modification time change: two `stat`
        calls (about 5 µs each here), instead of a query on a reader thread.
        """
        return (self.write_generation, _stat_key(Path(f"{self.path}-wal")), _stat_key(self.path))

    async def _write(self, operation: str, statement: Callable[..., Any], *args: Any) -> Any:
        if self._writer is None:
            raise StoreError("store is not open")
        return await self._observer.run(operation, self._submit(self._writer, statement, args))

    def _submit(self, executor: ThreadPoolExecutor, fn: Callable[..., T], args: tuple[Any, ...]) -> Awaitable[T]:
        with self._stats_lock:
            self._waiting += 1
        return asyncio.get_running_loop().run_in_executor(executor, partial(self._call, fn, *args))

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Execute]:
        async with self._write_lock:
            try:
                yield self._write
            except BaseException:
                # Shielded: a cancelled ingest must still roll back, or the
                # writer connection would be left inside a transaction.
                await asyncio.shield(self._write("rollback", sqlite_sql.rollback))
                raise
        self._start_index_builder()  # the store may have grown past the index's next step

    async def _after_switch(self) -> None:
        try:
            await self._write("reindex_cleanup", sqlite_reindex.drop_unused_vector_tables)
        except StoreError as exc:  # the next reindex drops what is left
            log.warning("reindex_cleanup_failed", backend=self.backend, error=str(exc))
        self._start_index_builder()  # the new vector table's lists are trained from its vectors


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns
